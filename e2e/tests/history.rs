//! History replay (M3), device replacement and owner key recovery on the real brokers: a grant from
//! a given epoch gets exactly the history from that epoch; a time-windowed grant gets exactly its
//! epochs, replayed and live; a replay request for an existing re-key
//! gets what its policy admits and is refused once revoked; bad replay requests are dead-lettered
//! and counted; a replacement device rebuilds exactly the old device's state; a restored owner
//! grants and revokes. Needs `infra/start.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::time::Duration;

use armored_base::time::now_ms;
use armored_client::kafka::Ctl;
use armored_client::owner::{control, EpochWindow, Owner};
use armored_client::replay::{self, grant_with_history, request_replay};
use armored_crypto::domain::SigDomain;
use armored_crypto::sig::SigningKey;
use armored_device::link::LinkEvent;
use armored_device::Device;
use armored_e2e::{applied, consume, rand_id, Env, Running, TestDevice, SERIAL};
use armored_schemas::v1::{self, control_record};
use armored_schemas::{decode_strict, limits::MAX_DELIVERY_BYTES, WIRE_VERSION};
use prost::Message;
use rand_core::{OsRng, RngCore};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const HOUR: u64 = 3_600_000;
/// Routed records, delivered to the writer's sibling device d2 through its device re-key (a change
/// never goes back to its writer).
const DEVICE_DELIVERIES: &str = "at_reencrypt_deliveries_total{kind=\"device\"}";

/// Records a change at `at_ms` and writes it to at.sync.v1 as the bridge would (`bridge` is signed
/// in as its principal).
async fn store(
    bridge: &Ctl,
    d: &mut Device,
    attrs: &[&str],
    delta: serde_json::Value,
    at_ms: u64,
) -> anyhow::Result<()> {
    let env = d.record(attrs, delta, at_ms)?;
    let (up, _) = d.topics();
    Ok(bridge.send(&bridge.topics.sync(), &up, &env).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_from_epoch_replays_exactly_the_history_from_it() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let mut d1 = env.enrolled_device(&owner, &ctl, &twin, "d1").await?;
    let _d2 = env.enrolled_device(&owner, &ctl, &twin, "d2").await?;
    // Four changes, one per hour, the last one now: epochs e-3 .. e.
    let now = now_ms();
    let e = now / HOUR;
    for (i, back) in [3u64, 2, 1, 0].iter().enumerate() {
        store(
            &bridge,
            &mut d1,
            &["sync"],
            json!({ "n": i }),
            now - back * HOUR,
        )
        .await?;
    }
    // The worker has routed them (to d2 only, through its device re-key) before the service
    // is granted anything: count the deliveries, not the records received, which move first.
    worker.wait_metric(DEVICE_DELIVERIES, 4.0, WAIT).await?;

    let (party, mut svc) = env.service(&owner, &ctl).await?;
    let (_rk, request) = grant_with_history(&owner, &ctl, &party, "sync", e - 1).await?;
    let status = replay::watch_replay(&ctl, &request, WAIT, |_| {})
        .await?
        .expect("a progress report");
    assert_eq!(status.state, "done", "{status:?}");
    assert_eq!(status.delivered, 2, "{status:?}");
    assert!(status.scanned >= 4, "{status:?}");

    let got = consume(&env, &mut svc, Some(2), Duration::from_secs(5)).await?;
    let mut epochs: Vec<u64> = got.iter().map(|r| r.epoch).collect();
    epochs.sort();
    assert_eq!(epochs, vec![e - 1, e], "{got:?}");
    assert_eq!(
        got.iter().map(|r| r.delta.clone()).collect::<Vec<_>>(),
        vec![json!({"n": 2}), json!({"n": 3})]
    );
    // Nothing before the epoch arrives, even waiting for more.
    let more = consume(&env, &mut svc, Some(1), Duration::from_secs(3)).await?;
    assert!(more.is_empty(), "history before the epoch: {more:?}");
    // The deliveries name the request.
    let ids: Vec<String> = env
        .records(&env.topics.deliver())?
        .into_iter()
        .filter(|(k, _)| *k == party.as_bytes())
        .map(|(_, p)| {
            decode_strict::<v1::Delivery>("Delivery", &p, MAX_DELIVERY_BYTES)
                .map(|d| d.replay_request_id)
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(ids, vec![request.clone(), request]);
    assert_eq!(
        worker
            .metric("at_reencrypt_replay_deliveries_total")
            .await?,
        2.0
    );
    assert_eq!(
        worker
            .metric("at_reencrypt_replays_total{outcome=\"done\"}")
            .await?,
        1.0
    );
    assert_eq!(worker.metric("at_reencrypt_replays_in_flight").await?, 0.0);
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_time_windowed_grant_admits_only_its_epochs_live_and_replayed() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let mut d1 = env.enrolled_device(&owner, &ctl, &twin, "d1").await?;
    let _d2 = env.enrolled_device(&owner, &ctl, &twin, "d2").await?;
    // Four changes before any grant, in epochs e-3, e-2, e-1 and e.
    let now = now_ms();
    let e = now / HOUR;
    for (n, back) in [3u64, 2, 1, 0].iter().enumerate() {
        store(
            &bridge,
            &mut d1,
            &["sync"],
            json!({ "n": n }),
            now - back * HOUR,
        )
        .await?;
    }
    worker.wait_metric(DEVICE_DELIVERIES, 4.0, WAIT).await?;

    // The service may see epochs e-2 and e-1 only: [e-2, e).
    let (party, mut svc) = env.service(&owner, &ctl).await?;
    let window = EpochWindow {
        from_epoch: Some(e - 2),
        until_epoch: Some(e),
    };
    let (rk, request) =
        replay::grant_window_with_history(&owner, &ctl, &party, "sync", window).await?;
    let status = replay::watch_replay(&ctl, &request, WAIT, |_| {})
        .await?
        .expect("a progress report");
    assert_eq!(status.state, "done", "{status:?}");
    // e-3 is before the window, e after it.
    assert_eq!(
        status.delivered, 2,
        "the history inside the window: {status:?}"
    );
    // Live, after the replay: a change of epoch e-1 (inside: written late, with an older time),
    // one of e and one of e+1 (outside).
    store(&bridge, &mut d1, &["sync"], json!({"n": 4}), now - HOUR).await?;
    store(&bridge, &mut d1, &["sync"], json!({"n": 5}), now).await?;
    store(&bridge, &mut d1, &["sync"], json!({"n": 6}), now + HOUR).await?;
    worker.wait_metric(DEVICE_DELIVERIES, 7.0, WAIT).await?;

    let got = consume(&env, &mut svc, Some(3), Duration::from_secs(5)).await?;
    let mut seen: Vec<(u64, serde_json::Value)> =
        got.iter().map(|r| (r.epoch, r.delta.clone())).collect();
    seen.sort_by_key(|(epoch, d)| (*epoch, d.to_string()));
    assert_eq!(
        seen,
        vec![
            (e - 2, json!({"n": 1})),
            (e - 1, json!({"n": 2})),
            (e - 1, json!({"n": 4})),
        ]
    );
    let more = consume(&env, &mut svc, Some(1), Duration::from_secs(3)).await?;
    assert!(more.is_empty(), "outside the window: {more:?}");
    assert_eq!(
        worker
            .metric("at_reencrypt_deliveries_total{kind=\"service\"}")
            .await?,
        3.0
    );
    // The owner's ledger shows the window.
    let entry = owner
        .ledger()?
        .into_iter()
        .find(|l| l.rk_id == rk)
        .expect("the grant in the ledger");
    assert_eq!(entry.window, window);
    assert_eq!(entry.window.describe(), format!("{}..{}", e - 2, e));
    // A replay of the whole history for this re-key still delivers only the window's epochs:
    // e-2, e-1 and the late e-1 of the seven stored changes.
    let all = request_replay(&owner, &ctl, &rk, 0).await?;
    let status = replay::watch_replay(&ctl, &all, WAIT, |_| {})
        .await?
        .expect("a progress report");
    assert_eq!(
        (status.state.as_str(), status.delivered),
        ("done", 3),
        "{status:?}"
    );
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_for_an_existing_rekey_follows_its_policy_and_stops_at_revocation(
) -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let mut d1 = env.enrolled_device(&owner, &ctl, &twin, "d1").await?;
    let _d2 = env.enrolled_device(&owner, &ctl, &twin, "d2").await?;
    let now = now_ms();
    store(
        &bridge,
        &mut d1,
        &["sync", "location"],
        json!({"lat": 1}),
        now - 2 * HOUR,
    )
    .await?;
    store(
        &bridge,
        &mut d1,
        &["sync", "health"],
        json!({"pulse": 60}),
        now - HOUR,
    )
    .await?;
    store(
        &bridge,
        &mut d1,
        &["sync", "location"],
        json!({"lat": 2}),
        now,
    )
    .await?;
    worker.wait_metric(DEVICE_DELIVERIES, 3.0, WAIT).await?;

    // A grant without history sees nothing of the past...
    let (party, mut svc) = env.service(&owner, &ctl).await?;
    let rk = owner.grant(&ctl, &party, "sync AND location", None).await?;
    worker.wait_metric("at_reencrypt_rekeys", 3.0, WAIT).await?;
    assert!(consume(&env, &mut svc, Some(1), Duration::from_secs(3))
        .await?
        .is_empty());
    // ... until the owner asks for it: only what the policy admits.
    let request = request_replay(&owner, &ctl, &rk, 0).await?;
    let status = replay::watch_replay(&ctl, &request, WAIT, |_| {})
        .await?
        .expect("a progress report");
    assert_eq!((status.state.as_str(), status.delivered), ("done", 2));
    let got = consume(&env, &mut svc, Some(2), Duration::from_secs(5)).await?;
    assert_eq!(
        got.iter().map(|r| r.delta.clone()).collect::<Vec<_>>(),
        vec![json!({"lat": 1}), json!({"lat": 2})],
        "in the order the cloud stored them, without the health change"
    );
    // A second replay of the same history delivers the same changes again (a receiver with a
    // persisted seen-set, like a device, drops them; `atctl service run` keeps it per run).
    let again = request_replay(&owner, &ctl, &rk, 0).await?;
    let s = replay::watch_replay(&ctl, &again, WAIT, |_| {}).await?;
    assert_eq!(s.map(|s| s.delivered), Some(2));
    let twice = consume(&env, &mut svc, Some(2), Duration::from_secs(5)).await?;
    assert_eq!(twice, got);

    // Revoked: a replay request for it is refused.
    owner.revoke_rekey(&ctl, &rk).await?;
    worker
        .wait_metric("at_reencrypt_revocations_total", 1.0, WAIT)
        .await?;
    let late = request_replay(&owner, &ctl, &rk, 0).await?;
    let dl = env
        .wait_dead_letter(WAIT, |d| d.key == late.as_bytes())
        .await?;
    assert_eq!(dl.reason, "revoked");
    env.stop().await;
    Ok(())
}

/// A worker, an owner and an enrolled device whose re-key (its id, returned) the worker holds.
async fn replay_cast(env: &Env) -> anyhow::Result<(Ctl, Running, Owner, String)> {
    let ctl = env.owner_ctl()?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let _d1 = env.enrolled_device(&owner, &ctl, &twin, "d1").await?;
    let device_rk = owner.ledger()?[0].rk_id.clone();
    worker.wait_metric("at_reencrypt_rekeys", 1.0, WAIT).await?;
    Ok((ctl, worker, owner, device_rk))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_replay_requests_are_dead_lettered_and_counted() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let (ctl, worker, owner, device_rk) = replay_cast(&env).await?;
    let topic = ctl.topics.control();
    let body = |signer: &[u8], rk: &[u8]| v1::ReplayRequest {
        version: WIRE_VERSION,
        request_id: vec![7; 16],
        owner_sig_key_id: signer.to_vec(),
        rk_id: rk.to_vec(),
        from_epoch: 0,
        issued_at_ms: now_ms(),
    };
    let owner_kid = owner.verifying_key().key_id();
    let rk_bytes = hex::decode(&device_rk)?;
    let mallory = SigningKey::generate(&mut OsRng);

    // Forged: names the owner's key, signed by another.
    let forged = mallory.sign_to_vec(
        SigDomain::Replay,
        body(owner_kid.as_bytes(), &rk_bytes).encode_to_vec(),
    );
    // Unknown re-key, properly signed.
    let mut unknown = [0u8; 16];
    OsRng.fill_bytes(&mut unknown);
    let (_, unknown_rk) = armored_crypto::history::issue_replay_request(
        owner.signing_key(),
        &unknown,
        0,
        now_ms(),
        &mut OsRng,
    );
    // Signed by a key no owner holds.
    let stranger = mallory.sign_to_vec(
        SigDomain::Replay,
        body(mallory.key_id().as_bytes(), &rk_bytes).encode_to_vec(),
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "forged",
            control(control_record::Record::ReplayRequest(forged)),
            "bad_signature",
        ),
        (
            "unknown-rk",
            control(control_record::Record::ReplayRequest(unknown_rk)),
            "unknown_rekey",
        ),
        (
            "stranger",
            control(control_record::Record::ReplayRequest(stranger)),
            "unknown_owner",
        ),
        ("garbage", b"\x00not a record\xff".to_vec(), "malformed"),
        (
            "wrong-type",
            control(control_record::Record::Revocation(b"x".to_vec())),
            "wrong_topic",
        ),
    ];
    for (key, payload, _) in &cases {
        ctl.send(&topic, key, payload).await?;
    }
    for (key, _, reason) in &cases {
        let d = env
            .wait_dead_letter(WAIT, |d| d.key == key.as_bytes() && d.source_topic == topic)
            .await?;
        assert_eq!(d.reason, *reason, "{key}");
        assert_eq!(d.service, "reencrypt");
        assert!(
            worker
                .metric(&format!(
                    "at_reencrypt_dead_letters_total{{reason=\"{reason}\"}}"
                ))
                .await?
                >= 1.0,
            "metric for {reason}"
        );
    }
    // atctl sees a refusal as such (the dead letter under the request id).
    let refused = request_replay(&owner, &ctl, &hex::encode(unknown), 0).await?;
    let s = replay::watch_replay(&ctl, &refused, WAIT, |_| {})
        .await?
        .expect("a report");
    assert_eq!(s.state, "refused");
    assert!(s.detail.starts_with("unknown_rekey"), "{s:?}");
    // Still serving: a valid request completes.
    let ok = request_replay(&owner, &ctl, &device_rk, 0).await?;
    let s = replay::watch_replay(&ctl, &ok, WAIT, |_| {}).await?;
    assert_eq!(s.map(|s| s.state), Some("done".to_string()));
    assert_eq!(worker.metric("at_reencrypt_replays_in_flight").await?, 0.0);
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replacement_device_rebuilds_the_old_device_state() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let mut d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    for d in [&mut d1, &mut d2] {
        d.wait_roster(2, WAIT).await;
    }
    // The twin's history: both devices write, one field ("mode") by both.
    d1.publish(&["sync"], json!({"mode": "eco", "a": 1}))
        .await?;
    d1.publish(&["sync", "location"], json!({"lat": 48.2}))
        .await?;
    d2.collect_until(WAIT, |e| applied(e).len() >= 2).await;
    d2.publish(&["sync"], json!({"mode": "sport", "b": 2}))
        .await?;
    d1.collect_until(WAIT, |e| !applied(e).is_empty()).await;
    d1.publish(&["sync"], json!({"c": 3})).await?;
    d2.collect_until(WAIT, |e| !applied(e).is_empty()).await;
    let old = d1.stop().await;
    let old_state = old.lock().expect("lock").state().clone();
    assert_eq!(old_state.fields.get("mode"), Some(&json!("sport")));
    assert_eq!(old_state.applied, 4);

    // The replacement: set up and connected first (its MQTT session queues the history).
    let dir = env.dir.join(format!("{twin}-d3"));
    let card = armored_device::setup(&dir, &twin, "d3", HOUR)?;
    armored_device::pin_owner(&dir, &owner.identity()?)?;
    env.add_mqtt_user(&format!("{twin}/d3"), "pw-d3").await?;
    let mut d3 = TestDevice::start(&env, &dir, "pw-d3").await?;
    let r = replay::replace_device(&owner, &ctl, "d1", &card, None).await?;
    assert_eq!(r.revoked_rekeys, 1);
    assert_eq!(r.last_valid_seq, 2, "d1 stored seqs 0, 1, 2");
    // d3 learns the twin (d1 with its bound, d2, itself) before the history reaches it.
    d3.wait_roster(3, WAIT).await;
    let request = request_replay(&owner, &ctl, &r.new_rk, 0).await?;
    let seen = d3.collect_until(WAIT, |e| applied(e).len() >= 4).await;
    assert_eq!(applied(&seen).len(), 4, "{seen:?}");
    let new_state = d3.device.lock().expect("lock").state().clone();
    assert_eq!(
        new_state.fields, old_state.fields,
        "the replacement's state"
    );
    assert_eq!(new_state.applied, old_state.applied);
    let s = replay::watch_replay(&ctl, &request, WAIT, |_| {}).await?;
    assert_eq!(s.map(|s| (s.state, s.delivered)), Some(("done".into(), 4)));

    // The old key is trusted only for its past: a change it signs now is refused by the devices.
    let mut stale = Device::open(&env.dir.join(format!("{twin}-d1")))?;
    let (up, _) = stale.topics();
    let forged_later = stale.record(&["sync"], json!({"mode": "stolen"}), now_ms())?;
    env.bridge_ctl()?
        .send(&ctl.topics.sync(), &up, &forged_later)
        .await?;
    let seen = d2
        .collect_until(WAIT, |e| {
            e.iter().any(|x| matches!(x, LinkEvent::Rejected { .. }))
        })
        .await;
    assert!(
        seen.iter().any(|x| matches!(
            x,
            LinkEvent::Rejected {
                reason: "revoked",
                ..
            }
        )),
        "{seen:?}"
    );
    assert_eq!(
        d2.device.lock().expect("lock").state().fields.get("mode"),
        Some(&json!("sport"))
    );
    // And the old device's re-key is gone: the worker holds d2's and d3's only.
    worker
        .wait_metric("at_reencrypt_revocations_total", 1.0, WAIT)
        .await?;
    assert_eq!(worker.metric("at_reencrypt_rekeys").await?, 2.0);
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_owner_grants_and_revokes() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let worker = env.start_worker(&rand_id("reenc"));
    let original = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let mut d1 = env.enrolled_device(&original, &ctl, &twin, "d1").await?;
    let (party, mut svc) = env.service(&original, &ctl).await?;

    // The management device is lost; two of three trustees bring their shares.
    let shares = armored_client::owner::backup::backup_shares(
        &env.dir.join("owner"),
        &env.dir.join("alice"),
        2,
        3,
    )?;
    std::fs::remove_dir_all(env.dir.join("owner"))?;
    let bundle = armored_client::owner::backup::open_shares(&shares[1..])?;
    armored_client::owner::backup::restore(&bundle, &env.dir.join("restored"))?;
    let owner = Owner::open(&env.dir.join("restored"))?;
    assert_eq!(owner.owner_id, original.owner_id);

    let rk = owner.grant(&ctl, &party, "sync", None).await?;
    worker.wait_metric("at_reencrypt_rekeys", 2.0, WAIT).await?;
    store(
        &bridge,
        &mut d1,
        &["sync"],
        json!({"after": "restore"}),
        now_ms(),
    )
    .await?;
    let got = consume(&env, &mut svc, Some(1), Duration::from_secs(10)).await?;
    assert_eq!(
        got.first().map(|r| r.delta.clone()),
        Some(json!({"after": "restore"}))
    );

    owner.revoke_rekey(&ctl, &rk).await?;
    worker
        .wait_metric("at_reencrypt_revocations_total", 1.0, WAIT)
        .await?;
    store(
        &bridge,
        &mut d1,
        &["sync"],
        json!({"after": "revoke"}),
        now_ms(),
    )
    .await?;
    worker
        .wait_metric("at_reencrypt_messages_in_total", 2.0, WAIT)
        .await?;
    assert!(consume(&env, &mut svc, Some(1), Duration::from_secs(3))
        .await?
        .is_empty());
    // The cloud accepted every record of the restored owner.
    assert!(env
        .dead_letters()?
        .iter()
        .all(|d| d.reason != "unknown_owner" && d.reason != "bad_signature"));
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_request_runs_once_and_a_stale_one_is_refused() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let (ctl, worker, owner, device_rk) = replay_cast(&env).await?;
    let topic = ctl.topics.control();

    let first = request_replay(&owner, &ctl, &device_rk, 0).await?;
    let s = replay::watch_replay(&ctl, &first, WAIT, |_| {}).await?;
    assert_eq!(s.map(|s| s.state), Some("done".to_string()));
    // Whoever captured it appends the same signed request again: refused, not run again.
    let captured = env
        .records(&topic)?
        .into_iter()
        .find(|(k, _)| k == first.as_bytes())
        .map(|(_, p)| p)
        .ok_or_else(|| anyhow::anyhow!("the request on {topic}"))?;
    ctl.send(&topic, "again", &captured).await?;
    let d = env
        .wait_dead_letter(WAIT, |d| d.key == b"again" && d.source_topic == topic)
        .await?;
    assert_eq!(d.reason, "duplicate_request");
    // A request signed two days ago: refused as stale.
    let rk: [u8; 16] = hex::decode(&device_rk)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("rk id"))?;
    let (_, old) = armored_crypto::history::issue_replay_request(
        owner.signing_key(),
        &rk,
        0,
        now_ms() - 2 * 86_400_000,
        &mut OsRng,
    );
    ctl.send(
        &topic,
        "old",
        &control(control_record::Record::ReplayRequest(old)),
    )
    .await?;
    let d = env
        .wait_dead_letter(WAIT, |d| d.key == b"old" && d.source_topic == topic)
        .await?;
    assert_eq!(d.reason, "stale_request");
    assert_eq!(
        worker
            .metric("at_reencrypt_replays_total{outcome=\"done\"}")
            .await?,
        1.0,
        "the history was replayed once"
    );
    env.stop().await;
    Ok(())
}
