//! Bad input on the real pipeline: each case is dead-lettered (or refused by the receiver) with its
//! typed reason and a metric increment, and good traffic still flows afterwards.

use std::time::Duration;

use armored_base::time::now_ms;
use armored_client::owner::{control, Owner};
use armored_crypto::domain::SigDomain;
use armored_crypto::envelope::{seal_state_change, StateChangeInput, Writer};
use armored_crypto::epoch::{epoch_of, EpochKeyManager};
use armored_crypto::identity::create_owner_identity;
use armored_crypto::keyfile::load_signing_key;
use armored_crypto::kpcpre::{Policy, ReKey, SecretKey};
use armored_crypto::registry::record;
use armored_crypto::sig::SigningKey;
use armored_crypto::sym::seal;
use armored_crypto::tokens::{issue_rekey_upload, ReKeyUploadInput, ReceiverKind};
use armored_device::link::LinkEvent;
use armored_device::Event;
use armored_e2e::{applied, mqtt_login_ok, rand_id, rejected, Env, TestDevice};
use armored_runtime::kafka::send;
use armored_schemas::v1::{control_record, registry_record::Record};
use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;
use rand_core::OsRng;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

fn applied_deltas(events: &[LinkEvent]) -> Vec<serde_json::Value> {
    applied(events).into_iter().map(|(_, d)| d).collect()
}

/// An envelope for `twin` under the owner's key whose header names `claimed` as writer but whose
/// body is signed by `signer`, optionally with a signed header that differs from the envelope's.
fn forged(
    owner: &Owner,
    twin: &str,
    claimed: &SigningKey,
    signer: &SigningKey,
    header_differs: bool,
) -> anyhow::Result<Vec<u8>> {
    let mut keys = EpochKeyManager::new(owner.pre_key().public().clone(), twin)?;
    let key = keys.key_for(epoch_of(now_ms(), 3_600_000), &["sync"], &mut OsRng)?;
    let input = StateChangeInput {
        device_id: "d1".into(),
        seq: 777,
        observed_at_ms: now_ms(),
        delta: b"{\"evil\":1}".to_vec(),
        ..Default::default()
    };
    let real = seal_state_change(key, claimed, &input, &mut OsRng)?;
    let env = v1::Envelope::decode(real.as_slice())?;
    let mut signed_header = v1::EnvelopeHeader::decode(env.header.as_slice())?;
    if header_differs {
        signed_header.seq += 1;
    }
    let body = v1::StateChangeBody {
        version: WIRE_VERSION,
        header: signed_header.encode_to_vec(),
        observed_at_ms: 1,
        delta: b"{\"evil\":1}".to_vec(),
        write_token: vec![],
    };
    let signed = signer.sign_to_vec(SigDomain::StateChange, body.encode_to_vec());
    let nonce = [7u8; 12];
    Ok(v1::Envelope {
        ciphertext: seal(&key.dek().sym(), &nonce, &signed, &env.header),
        nonce: nonce.to_vec(),
        ..env
    }
    .encode_to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_dead_lettered_counted_and_good_traffic_flows() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let ingest = env.start_ingest().await?;
    let worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    d2.wait_roster(2, WAIT).await;
    let up = |dev: &TestDevice, bytes: Vec<u8>| {
        let tx = dev.outbox.clone();
        async move { tx.send(bytes).await }
    };
    let ingest_dl = |reason: &str| format!("at_ingest_dead_letters_total{{reason=\"{reason}\"}}");

    // --- The MQTT edge (at-ingest) ---
    // Header ids that do not match the topic: d2's envelope on d1's connection.
    let d2_env = d2
        .device
        .lock()
        .expect("lock")
        .record(&["sync"], json!({"x": 1}), now_ms())?;
    up(&d1, d2_env).await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "id_mismatch")
        .await?;
    // A stale epoch.
    let stale = d1.device.lock().expect("lock").record(
        &["sync"],
        json!({"old": 1}),
        now_ms() - 2 * 86_400_000,
    )?;
    up(&d1, stale).await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "stale_epoch")
        .await?;
    // Oversized: over the bridge's 256 KiB envelope limit, under the broker's 264 KiB packet
    // limit (bigger ones never reach the bridge: tests/mqtt_limits.rs).
    up(&d1, vec![0u8; 260 * 1024]).await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "oversized")
        .await?;
    // Reserved attributes on the wrong path.
    let req = d1
        .device
        .lock()
        .expect("lock")
        .record(&["req"], json!({"r": 1}), now_ms())?;
    up(&d1, req).await?;
    let share_sync = d1.device.lock().expect("lock").record(
        &["mpc-share", "node-1", "sync"],
        json!({"s": 1}),
        now_ms(),
    )?;
    up(&d1, share_sync).await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "reserved_attribute")
        .await?;
    // Garbage bytes.
    up(&d1, b"\x00garbage\xff".to_vec()).await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "malformed" && d.service == "ingest")
        .await?;
    // A device with an MQTT login that its owner never enrolled.
    let rogue_dir = env.dir.join("rogue");
    armored_device::setup(&rogue_dir, &twin, "rogue", 3_600_000)?;
    armored_device::pin_owner(&rogue_dir, &owner.identity()?)?;
    env.add_mqtt_user(&format!("{twin}/rogue"), "rogue-pw")
        .await?;
    let rogue = TestDevice::start(&env, &rogue_dir, "rogue-pw").await?;
    rogue.publish(&["sync"], json!({"r": 1})).await?;
    env.wait_dead_letter(WAIT, |d| d.reason == "unknown_device")
        .await?;
    for reason in [
        "id_mismatch",
        "stale_epoch",
        "oversized",
        "reserved_attribute",
        "malformed",
        "unknown_device",
    ] {
        assert!(
            ingest.metric(&ingest_dl(reason)).await? >= 1.0,
            "metric for {reason}"
        );
    }
    let reserved = env
        .dead_letters()?
        .iter()
        .filter(|d| d.reason == "reserved_attribute")
        .count();
    assert_eq!(reserved, 2, "req and a share bundle with sync");

    // The broker itself: a wrong password is refused (a refused login takes over no session); a
    // publish outside the ACL never reaches Kafka. The publisher is a device login of its own: a
    // login as d1 would take over d1's live session (client ids are bound to users,
    // tests/session_takeover.rs).
    assert!(!mqtt_login_ok(&env.mqtt(&format!("{twin}/d1"), "wrong", &rand_id("p"))).await);
    env.add_mqtt_user(&format!("{twin}/eve"), "eve-pw").await?;
    let sync_before = env.records(&env.topics.sync())?.len();
    {
        let mut o = armored_base::mqtt::options(
            &env.mqtt(&format!("{twin}/eve"), "eve-pw", &rand_id("acl")),
            false,
        )?;
        o.set_clean_session(true);
        let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
        let foreign =
            d2.device
                .lock()
                .expect("lock")
                .record(&["sync"], json!({"acl": 1}), now_ms())?;
        c.publish(
            format!("at/v1/up/{twin}/d2"),
            rumqttc::QoS::AtLeastOnce,
            false,
            foreign,
        )
        .await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while el.poll().await.is_ok() {}
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.records(&env.topics.sync())?.len(),
        sync_before,
        "an ACL-denied publish reached Kafka"
    );

    // --- The control topics (at-reencrypt) ---
    // A second identity for a known owner id.
    let other_pre = SecretKey::generate(&mut OsRng);
    let other_sig = SigningKey::generate(&mut OsRng);
    let dup = create_owner_identity(
        &owner.owner_id,
        &other_pre,
        &other_sig,
        0,
        &other_sig,
        &mut OsRng,
    );
    send(
        &ctl.producer,
        &ctl.topics.registry(),
        b"dup",
        &record(Record::OwnerIdentity(dup)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.wait_dead_letter(WAIT, |d| d.reason == "registry_conflict")
        .await?;
    // A re-key signed by nobody the registry knows.
    let rk = ReKey::generate(
        owner.pre_key(),
        &Policy::parse("sync")?,
        other_pre.public(),
        &mut OsRng,
    )?;
    let input = ReKeyUploadInput {
        receiver_kind: ReceiverKind::Service,
        receiver_id: "mallory",
        not_after_ms: None,
        history_from_epoch: None,
        until_epoch: None,
    };
    let unsigned = issue_rekey_upload(&other_sig, &rk, &input);
    send(
        &ctl.producer,
        &ctl.topics.rekeys(),
        b"x",
        &control(control_record::Record::RekeyUpload(unsigned)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.wait_dead_letter(WAIT, |d| d.reason == "unknown_owner")
        .await?;
    // A re-key of another owner's PRE key, signed by this owner.
    let bob = Owner::init(&env.dir.join("bob"), &rand_id("bob"), &ctl).await?;
    let foreign = ReKey::generate(
        bob.pre_key(),
        &Policy::parse("sync")?,
        other_pre.public(),
        &mut OsRng,
    )?;
    let up_foreign = issue_rekey_upload(owner.signing_key(), &foreign, &input);
    send(
        &ctl.producer,
        &ctl.topics.rekeys(),
        b"y",
        &control(control_record::Record::RekeyUpload(up_foreign)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.wait_dead_letter(WAIT, |d| d.reason == "key_mismatch")
        .await?;
    // A re-key re-sent after its revocation stays revoked.
    let good = issue_rekey_upload(owner.signing_key(), &rk, &input);
    let rk_hex = hex::encode(rk.rk_id());
    send(
        &ctl.producer,
        &ctl.topics.rekeys(),
        rk_hex.as_bytes(),
        &control(control_record::Record::RekeyUpload(good.clone())),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    owner.revoke_rekey(&ctl, &rk_hex).await?;
    send(
        &ctl.producer,
        &ctl.topics.rekeys(),
        rk_hex.as_bytes(),
        &control(control_record::Record::RekeyUpload(good)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.wait_dead_letter(WAIT, |d| d.reason == "revoked")
        .await?;

    // --- Data that only an insider could write to the log (at-reencrypt, then the receiver) ---
    let bridge = env.bridge_ctl()?;
    send(
        &bridge.producer,
        &bridge.topics.sync(),
        twin.as_bytes(),
        b"\x08\x01garbage",
    )
    .await
    .map_err(anyhow::Error::msg)?;
    env.wait_dead_letter(WAIT, |d| {
        d.reason == "malformed" && d.service == "reencrypt"
    })
    .await?;
    for reason in [
        "registry_conflict",
        "unknown_owner",
        "key_mismatch",
        "revoked",
        "malformed",
    ] {
        let m = format!("at_reencrypt_dead_letters_total{{reason=\"{reason}\"}}");
        assert!(worker.metric(&m).await? >= 1.0, "metric for {reason}");
    }
    // A state change claiming d1 but signed by another key; one whose signed header differs.
    let d1_sig = load_signing_key(&d1.dir.join("sig.key"))?;
    let impostor = SigningKey::generate(&mut OsRng);
    let bad_sig = forged(&owner, &twin, &d1_sig, &impostor, false)?;
    let bad_hdr = forged(&owner, &twin, &d1_sig, &d1_sig, true)?;
    send(
        &bridge.producer,
        &bridge.topics.sync(),
        twin.as_bytes(),
        &bad_sig,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    send(
        &bridge.producer,
        &bridge.topics.sync(),
        twin.as_bytes(),
        &bad_hdr,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let seen = d2
        .collect_until(WAIT, |e| {
            rejected(e, "bad_signature") && rejected(e, "mismatch")
        })
        .await;
    assert!(
        rejected(&seen, "bad_signature") && rejected(&seen, "mismatch"),
        "{seen:?}"
    );
    assert!(applied_deltas(&seen)
        .iter()
        .all(|d| d.get("evil").is_none()));
    let counters = d2.device.lock().expect("lock").state().counters.clone();
    assert!(counters.get("rejected_bad_signature").copied().unwrap_or(0) >= 1);

    // --- Duplicates: the same envelope twice over MQTT (QoS 1 redelivery) and once more in the log.
    let ok = d1
        .device
        .lock()
        .expect("lock")
        .record(&["sync"], json!({"good": 1}), now_ms())?;
    up(&d1, ok.clone()).await?;
    up(&d1, ok.clone()).await?;
    let seen = d2
        .collect_until(WAIT, |e| !applied_deltas(e).is_empty())
        .await;
    assert_eq!(
        applied_deltas(&seen),
        vec![json!({"good": 1})],
        "good traffic flows after bad input"
    );
    send(
        &bridge.producer,
        &bridge.topics.sync(),
        twin.as_bytes(),
        &ok,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let seen = d2
        .collect_until(WAIT, |e| {
            e.iter()
                .any(|x| matches!(x, LinkEvent::Downlink(Event::Duplicate)))
        })
        .await;
    assert!(
        seen.iter()
            .any(|x| matches!(x, LinkEvent::Downlink(Event::Duplicate))),
        "{seen:?}"
    );
    assert!(
        applied_deltas(&seen).is_empty(),
        "a duplicate is never applied twice"
    );
    assert_eq!(ingest.metric("at_ingest_duplicates_total").await?, 1.0);
    let copies = env
        .records(&env.topics.sync())?
        .into_iter()
        .filter(|(_, p)| *p == ok)
        .count();
    assert_eq!(
        copies, 2,
        "one from the bridge (its duplicate dropped), one injected"
    );
    assert_eq!(
        d2.device.lock().expect("lock").state().fields.get("good"),
        Some(&json!(1))
    );
    let _ = Writer::Owner;
    env.stop().await;
    Ok(())
}
