//! Write tokens on the real brokers: a service writes a twin's state with an owner-signed token;
//! the twin's device accepts it while the token is valid and refuses an expired, a revoked (the
//! revocation reaches the device in its roster) and a forged one, each with its typed reason and
//! counter. A token holder may also send requests.

use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_client::request::{request, Ask, Requester};
use armored_client::service::write::{seal, Write};
use armored_client::service::Service;
use armored_crypto::envelope::Writer;
use armored_crypto::identity::PartyKind;
use armored_crypto::sig::SigningKey;
use armored_crypto::tokens::issue_write_token_for;
use armored_device::link::LinkEvent;
use armored_device::Event;
use armored_e2e::{rand_id, Env, SERIAL};
use rand_core::OsRng;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_with_valid_expired_revoked_and_forged_tokens() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("heater");
    let mut d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let svc_dir = env.dir.join("svc");
    let identity = std::fs::read(Service::init(
        &svc_dir,
        &rand_id("svc"),
        PartyKind::Service,
    )?)?;
    let now = now_ms();
    let hour = 3_600_000;

    let (valid, valid_token) =
        armored_client::owner::write_tokens::issue(&owner, &ctl, &identity, &twin, now, now + hour)
            .await?;
    let (_, expired_token) = armored_client::owner::write_tokens::issue(
        &owner,
        &ctl,
        &identity,
        &twin,
        now - 2 * hour,
        now - hour,
    )
    .await?;
    let (revoked, revoked_token) =
        armored_client::owner::write_tokens::issue(&owner, &ctl, &identity, &twin, now, now + hour)
            .await?;
    let writer = Requester::open(&svc_dir)?;
    // The service writes and asks as its own principal.
    let svc_ctl = env.service_ctl(&writer.id).await?;
    let forged_token = issue_write_token_for(
        &SigningKey::generate(&mut OsRng),
        &twin,
        writer.signing_key().verifying_key(),
        now,
        now + hour,
        &mut OsRng,
    );
    let ledger = armored_client::owner::write_tokens::ledger(&owner)?;
    assert_eq!(ledger.len(), 3);

    // Revoke one and wait until the device holds the revocation (pushed in its roster).
    armored_client::owner::write_tokens::revoke(&owner, &ctl, &revoked.token_id).await?;
    assert!(armored_client::owner::write_tokens::ledger(&owner)?
        .iter()
        .any(|e| e.token_id == revoked.token_id && e.revoked));
    let revoked_id = hex::decode(&revoked.token_id)?;
    let deadline = Instant::now() + WAIT;
    while !d1
        .device
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .write_token_revoked(&revoked_id)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the revocation never reached the device"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It is kept on disk: the device opened again (a restart) honours it before any roster.
    assert!(
        armored_device::Device::open(&d1.dir)?.write_token_revoked(&revoked_id),
        "a restarted device forgot the revocation"
    );

    // Four writes, in this order on the twin's partition.
    let reg = ctl.registry().await?;
    for (i, (token, check)) in [
        (&valid_token, true),
        (&expired_token, false),
        (&revoked_token, false),
        (&forged_token, false),
    ]
    .into_iter()
    .enumerate()
    {
        let w = Write {
            twin_id: &twin,
            token,
            delta: json!({ "target": i }),
            attributes: &["sync"],
            check_token: check,
        };
        let (envl, _) = seal(&reg, &svc_dir, &w, now_ms())?;
        svc_ctl.send(&svc_ctl.topics.sync(), &twin, &envl).await?;
    }
    // The service's own check refuses the bad tokens before sending.
    for bad in [&expired_token, &forged_token] {
        let w = Write {
            twin_id: &twin,
            token: bad,
            delta: json!({"x": 1}),
            attributes: &["sync"],
            check_token: true,
        };
        assert!(seal(&reg, &svc_dir, &w, now_ms()).is_err());
    }

    let seen = d1
        .collect_until(WAIT, |e| {
            e.iter()
                .filter(|x| {
                    matches!(
                        x,
                        LinkEvent::Rejected { .. } | LinkEvent::Downlink(Event::Applied { .. })
                    )
                })
                .count()
                >= 4
        })
        .await;
    let outcomes: Vec<String> = seen
        .iter()
        .filter_map(|x| match x {
            LinkEvent::Downlink(Event::Applied { writer, delta, .. }) => {
                let valid_id = hex::decode(&valid.token_id).ok()?;
                assert_eq!(*writer, Writer::Token(valid_id));
                Some(format!("applied {delta}"))
            }
            LinkEvent::Rejected { reason, .. } => Some(format!("rejected {reason}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "applied {\"target\":0}",
            "rejected expired",
            "rejected revoked",
            "rejected bad_signature",
        ]
    );
    {
        let d = d1.device.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let c = &d.state().counters;
        for k in [
            "rejected_expired",
            "rejected_revoked",
            "rejected_bad_signature",
        ] {
            assert_eq!(c.get(k), Some(&1), "{k}: {c:?}");
        }
        assert_eq!(d.state().fields.get("target"), Some(&json!(0)));
    }

    // A token holder may also ask the device; a revoked token may not.
    let ask = |token: &Vec<u8>| Ask {
        twin_id: &twin,
        body: json!({"op": "read", "fields": ["target"]})
            .to_string()
            .into_bytes(),
        ttl: Duration::from_secs(300),
        wait: WAIT,
        write_token: Some(token.clone()),
    };
    let a = request(&svc_ctl, &writer, &ask(&valid_token)).await?;
    assert_eq!(a.response, json!({"ok": true, "state": {"target": 0}}));
    let r = request(&svc_ctl, &writer, &ask(&revoked_token)).await?;
    assert_eq!(r.response["reason"], json!("revoked"), "{r:?}");
    env.stop().await;
    Ok(())
}
