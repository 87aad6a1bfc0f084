//! `atctl twin show` for the owner on the real brokers (`armored_client::twin`): the state the owner
//! folds from the log equals what the twin's devices persisted after changes from two devices and
//! a service's write with a write token (and its write after the token was revoked, which the
//! devices refuse); the state as of a time between two changes is the one
//! before the second; a record that does not open is counted, not shown; the checkpoint makes the
//! next call read only what came since; after a device's replacement (M3) the view still equals
//! the other device's state, and a change the replaced device seals later is refused by both.
//! Needs `infra/start.sh`.

use std::time::Duration;

use armored_base::time::now_ms;
use armored_client::request::Requester;
use armored_client::service::write::{seal, Write};
use armored_client::service::Service;
use armored_client::twin;
use armored_crypto::identity::PartyKind;
use armored_device::link::LinkEvent;
use armored_e2e::{rand_id, Env, TestDevice, SERIAL};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// The owner's view of `twin`, and the (read, total) records of that call.
async fn view(
    owner: &armored_client::owner::Owner,
    ctl: &armored_client::kafka::Ctl,
    twin: &str,
    rescan: bool,
) -> anyhow::Result<(twin::TwinLog, (u64, u64))> {
    let mut seen = (0, 0);
    let log = twin::load(twin::Viewer::Owner(owner), ctl, twin, rescan, |n, total| {
        seen = (n, total)
    })
    .await?;
    Ok((log, seen))
}

/// The values of a folded state, by field.
fn values(
    state: &std::collections::BTreeMap<String, twin::Field>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    state
        .iter()
        .map(|(k, f)| (k.clone(), f.value.clone()))
        .collect()
}

/// The fields a device persisted.
fn persisted(
    d: &TestDevice,
) -> anyhow::Result<std::collections::BTreeMap<String, serde_json::Value>> {
    Ok(d.device
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .state()
        .fields
        .clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owners_view_equals_the_devices_state_at_any_time() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin_id = rand_id("bike");
    let mut d1 = env.device(&owner, &ctl, &twin_id, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin_id, "d2").await?;

    // d1, then d2 (over the same field), then a service with a write token.
    let first = json!({"lat": 1, "lon": 2});
    d1.publish(&["sync"], first.clone()).await?;
    d2.wait_applied(&first, WAIT, "d1's change at d2").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = json!({"lat": 3});
    d2.publish(&["sync"], second.clone()).await?;
    d1.wait_applied(&second, WAIT, "d2's change at d1").await?;

    let svc_dir = env.dir.join("svc");
    let identity = std::fs::read(Service::init(
        &svc_dir,
        &rand_id("svc"),
        PartyKind::Service,
    )?)?;
    let now = now_ms();
    let (entry, token) = armored_client::owner::write_tokens::issue(
        &owner,
        &ctl,
        &identity,
        &twin_id,
        now,
        now + 3_600_000,
    )
    .await?;
    let writer = Requester::open(&svc_dir)?;
    let svc_ctl = env.service_ctl(&writer.id).await?;
    let third = json!({"mode": "eco"});
    let w = Write {
        twin_id: &twin_id,
        token: &token,
        delta: third.clone(),
        attributes: &["sync"],
        check_token: true,
    };
    let (envl, _) = seal(&ctl.registry().await?, &svc_dir, &w, now_ms())?;
    svc_ctl
        .send(&svc_ctl.topics.sync(), &twin_id, &envl)
        .await?;
    d1.wait_applied(&third, WAIT, "the service's write at d1")
        .await?;
    d2.wait_applied(&third, WAIT, "the service's write at d2")
        .await?;
    // The owner revokes the token; once both devices hold the revocation, the service writes
    // again: the devices refuse it, and so must the owner's view.
    armored_client::owner::write_tokens::revoke(&owner, &ctl, &entry.token_id).await?;
    let token_id = hex::decode(&entry.token_id)?;
    for d in [&d1, &d2] {
        let deadline = std::time::Instant::now() + WAIT;
        while !d
            .device
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .write_token_revoked(&token_id)
        {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "no revocation at a device"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let late = Write {
        delta: json!({"mode": "sport"}),
        check_token: false,
        ..w
    };
    let (envl, _) = seal(&ctl.registry().await?, &svc_dir, &late, now_ms())?;
    svc_ctl
        .send(&svc_ctl.topics.sync(), &twin_id, &envl)
        .await?;
    for d in [&mut d1, &mut d2] {
        let seen = d
            .collect_until(WAIT, |e| {
                e.iter().any(|x| matches!(x, LinkEvent::Rejected { .. }))
            })
            .await;
        anyhow::ensure!(
            seen.iter().any(|x| matches!(x, LinkEvent::Rejected { .. })),
            "a device did not refuse the revoked token's write: {seen:?}"
        );
    }
    // An insider's record under the twin's key: it opens for nobody, so it is counted, not shown.
    env.insider_ctl()?
        .send(&env.topics.sync(), &twin_id, b"\x08\x01not an envelope")
        .await?;

    let (log, seen) = view(&owner, &ctl, &twin_id, false).await?;
    assert!(seen.1 >= 4, "the first call reads the log: {seen:?}");
    let state = log.state_at(None);
    for d in [&d1, &d2] {
        assert_eq!(
            values(&state),
            persisted(d)?,
            "the owner's view against a device's own state"
        );
    }
    assert_eq!(
        values(&state),
        [
            ("lat".to_string(), json!(3)),
            ("lon".to_string(), json!(2)),
            ("mode".to_string(), json!("eco")),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(state["lat"].writer, "device:d2");
    assert!(
        state["mode"].writer.starts_with("token:"),
        "{:?}",
        state["mode"]
    );
    assert_eq!(
        log.refused, 2,
        "the revoked token's write and the insider's record"
    );
    let writers: Vec<&str> = log.changes.iter().map(|c| c.writer.as_str()).collect();
    assert_eq!(writers[..2], ["device:d1", "device:d2"]);
    assert_eq!(log.changes.len(), 3);

    // As of a time between the first two changes: the first alone.
    let then = log.state_at(Some(between));
    assert_eq!(then["lat"].value, json!(1));
    assert_eq!(then["lon"].value, json!(2));
    assert!(!then.contains_key("mode"));
    assert_eq!(log.history(Some(between), None).len(), 2);

    // The checkpoint: nothing new, nothing read; one change later, only it.
    let (again, seen) = view(&owner, &ctl, &twin_id, false).await?;
    assert_eq!(seen, (0, 0), "a second call re-read the log");
    assert_eq!(again.changes, log.changes);
    let fourth = json!({"lon": 5});
    d1.publish(&["sync"], fourth.clone()).await?;
    d2.wait_applied(&fourth, WAIT, "d1's last change at d2")
        .await?;
    let (more, seen) = view(&owner, &ctl, &twin_id, false).await?;
    assert!(
        seen.1 >= 1 && seen.1 < 4,
        "read only what came since: {seen:?}"
    );
    assert_eq!(more.changes.len(), 4);
    assert_eq!(more.state_at(None)["lon"].value, json!(5));
    // A rescan reads everything again and comes to the same.
    let (rescanned, _) = view(&owner, &ctl, &twin_id, true).await?;
    assert_eq!(rescanned.changes, more.changes);

    // M3: d1 is replaced by d3. d1's changes up to its revocation's last seq stay in the view; a
    // change d1 seals afterwards (a stolen phone, written straight into the log, past the edge that
    // now refuses it) is refused by d2 and by the owner's view alike.
    let old = d1.stop().await;
    let dir = env.dir.join(format!("{twin_id}-d3"));
    let card = armored_device::setup(&dir, &twin_id, "d3", 3_600_000)?;
    armored_device::pin_owner(&dir, &owner.identity()?)?;
    env.add_mqtt_user(&format!("{twin_id}/d3"), "pw-d3").await?;
    let d3 = TestDevice::start(&env, &dir, "pw-d3").await?;
    let r = armored_client::replay::replace_device(&owner, &ctl, "d1", &card, None).await?;
    assert_eq!(r.last_valid_seq, 1, "d1 stored seqs 0 and 1");
    d2.wait_roster(3, WAIT).await;
    let stolen = old
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .record(&["sync"], json!({"lat": 99}), now_ms())?;
    env.insider_ctl()?
        .send(&env.topics.sync(), &twin_id, &stolen)
        .await?;
    let fifth = json!({"lon": 7});
    d3.publish(&["sync"], fifth.clone()).await?;
    d2.wait_applied(&fifth, WAIT, "d3's change at d2").await?;
    let (replaced, _) = view(&owner, &ctl, &twin_id, false).await?;
    let state = replaced.state_at(None);
    assert_eq!(
        values(&state),
        persisted(&d2)?,
        "the owner's view against d2 after the replacement"
    );
    assert_eq!(
        state["lat"].value,
        json!(3),
        "the stolen phone's change is not shown"
    );
    assert_eq!(state["lon"].writer, "device:d3");
    assert_eq!(
        replaced.refused, 3,
        "and the stolen phone's change is counted as refused"
    );

    for d in [d2, d3] {
        d.stop().await;
    }
    env.stop().await;
    Ok(())
}
