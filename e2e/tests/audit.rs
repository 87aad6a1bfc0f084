//! The audit trail of every re-encryption (issue 19, item 3) on the real brokers: a worker writes
//! one signed entry per delivery to `at.audit.v1` (live routing, requests, history replay), and
//! `armored_client::owner::audit` reads them for the owner. Every delivery of a scenario (a
//! device's changes to a sibling device and to a service, a request of the owner to the devices,
//! then a history replay to a second service) has exactly one entry, with the delivery's twin,
//! receiver, epoch, capsule id, re-key, attribute-set digest, source record and digest; `verify`
//! passes on it; after the owner revokes the service's re-key, no entry for it appears for a later
//! change; then `verify` flags a batch forged by a raw producer under an unknown key, a malformed
//! record on the topic, and a delivery written raw to `at.deliver.v1` without an entry (a gap).
//! Needs `infra/start.sh`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use armored_client::owner::audit::{self, AuditFilter, AuditOptions, AuditReport, AuditRow};
use armored_client::owner::Owner;
use armored_client::replay::{self, grant_with_history};
use armored_client::request::{request, Ask, Requester};
use armored_crypto::audit::{attributes_digest, delivery_digest, seal_batch};
use armored_crypto::envelope::parse_header;
use armored_crypto::sig::SigningKey;
use armored_e2e::{consume, rand_id, Env, SERIAL};
use armored_schemas::limits::MAX_DELIVERY_BYTES;
use armored_schemas::{decode_strict, v1};
use prost::Message;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Every entry of the owner's twins and the report.
async fn scan(
    owner: &Owner,
    ctl: &armored_client::kafka::Ctl,
    verify: bool,
) -> anyhow::Result<(Vec<AuditRow>, AuditReport)> {
    let mut rows = Vec::new();
    let opts = AuditOptions {
        verify,
        ..AuditOptions::default()
    };
    let report = audit::scan(
        owner,
        ctl,
        &AuditFilter::default(),
        &opts,
        |r| rows.push(r),
        |_, _, _| {},
    )
    .await?;
    Ok((rows, report))
}

/// Checks that every delivery on at.deliver.v1 has exactly one entry with its fields, and no
/// entry is left over; returns the number of deliveries.
fn check_one_entry_each(env: &Env, rows: &[AuditRow]) -> anyhow::Result<usize> {
    let mut by_digest: HashMap<&str, Vec<&AuditRow>> = HashMap::new();
    for r in rows {
        by_digest
            .entry(r.delivery_sha256.as_str())
            .or_default()
            .push(r);
    }
    let deliveries = env.located(&env.topics.deliver())?;
    for m in &deliveries {
        let d: v1::Delivery = decode_strict("Delivery", &m.payload, MAX_DELIVERY_BYTES)?;
        let h = parse_header(&d.envelope_header)?;
        let digest = hex::encode(delivery_digest(&m.payload));
        let entries = by_digest.get(digest.as_str()).cloned().unwrap_or_default();
        anyhow::ensure!(
            entries.len() == 1,
            "delivery {}@{} to {:?} has {} entries",
            m.partition,
            m.offset,
            m.key,
            entries.len()
        );
        let e = entries[0];
        let receiver = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default());
        assert_eq!(e.receiver, receiver, "receiver");
        assert_eq!(e.twin, h.twin_id, "twin");
        assert_eq!(e.epoch, h.epoch, "epoch");
        assert_eq!(e.capsule_id, hex::encode(&h.capsule_id), "capsule id");
        assert_eq!(e.rk_id, hex::encode(&d.rk_id), "rk id");
        assert_eq!(
            e.attributes_digest,
            hex::encode(attributes_digest(&h.attributes)),
            "attribute-set digest"
        );
        assert_eq!(e.replay_request_id, d.replay_request_id, "replay request");
        assert_eq!(e.delivery_topic, env.topics.deliver());
        // A request's re-encryptions come from at.requests.v1, the rest from the log.
        let source = if h.attributes.iter().any(|a| a == "req") {
            env.topics.requests()
        } else {
            env.topics.sync()
        };
        assert_eq!(e.source_topic, source);
        check_source(env, &source, e)?;
        let kind = if receiver.contains('/') {
            "device"
        } else {
            "service"
        };
        assert_eq!(e.receiver_kind, kind);
        assert!(e.pinned, "{e:?}");
    }
    anyhow::ensure!(
        rows.len() == deliveries.len(),
        "{} entries for {} deliveries",
        rows.len(),
        deliveries.len()
    );
    Ok(deliveries.len())
}

/// The entry's source record holds an envelope of its twin with its capsule id.
fn check_source(env: &Env, topic: &str, e: &AuditRow) -> anyhow::Result<()> {
    let rec = env
        .located(topic)?
        .into_iter()
        .find(|r| r.partition == e.source_partition && r.offset == e.source_offset)
        .ok_or_else(|| anyhow::anyhow!("no record at the entry's source: {e:?}"))?;
    let (_, h, _) = armored_crypto::envelope::decode_envelope(&rec.payload)?;
    anyhow::ensure!(
        h.twin_id == e.twin && hex::encode(&h.capsule_id) == e.capsule_id,
        "the entry's source holds another envelope: {e:?}"
    );
    Ok(())
}

/// Waits until every delivery has its entry (entries are acknowledged with the deliveries, not
/// before them), then checks them.
async fn settled(
    env: &Env,
    owner: &Owner,
    ctl: &armored_client::kafka::Ctl,
) -> anyhow::Result<Vec<AuditRow>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (rows, _) = scan(owner, ctl, false).await?;
        match check_one_entry_each(env, &rows) {
            Ok(_) => return Ok(rows),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_delivery_has_one_signed_entry_and_verify_flags_forgeries_and_gaps(
) -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    let worker = env.start_worker(&rand_id("reenc"));
    worker.wait_healthy(WAIT).await?;
    let owner = env.owner(&ctl).await?;

    // Verify refuses to run with nothing pinned; the worker's key is pinned from its state dir.
    let none = scan(&owner, &ctl, true).await;
    assert!(
        matches!(
            none.as_ref()
                .err()
                .and_then(|e| e.downcast_ref::<armored_client::ClientError>()),
            Some(armored_client::ClientError::Invalid(_))
        ),
        "{none:?}"
    );
    let keys = env.worker_audit_keys()?;
    assert_eq!(keys.len(), 1, "{keys:?}");
    for k in &keys {
        let (_, new) = audit::trust_worker(&owner, &k.display().to_string(), "test worker")?;
        assert!(new);
    }
    assert!(!audit::trust_worker(&owner, &keys[0].display().to_string(), "")?.1);

    let twin = rand_id("bike");
    let mut d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    let (svc_id, mut svc) = env.service(&owner, &ctl).await?;
    let svc_rk = owner
        .grant(
            &ctl,
            &svc_id,
            &format!("sync AND location AND twin:{twin}"),
            None,
        )
        .await?;

    // A change with location (to d1, d2 and the service), one without (to the devices only).
    let first = json!({"lat": 48.2});
    d1.publish(&["sync", "location"], first.clone()).await?;
    d2.wait_applied(&first, WAIT, "d1's change at d2").await?;
    let second = json!({"pulse": 72});
    d2.publish(&["sync"], second.clone()).await?;
    d1.wait_applied(&second, WAIT, "d2's change at d1").await?;
    let got = consume(&env, &mut svc, Some(1), Duration::from_secs(5)).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    // A request of the owner (phase 5): re-encrypted for the twin's devices, audited too.
    let me = Requester::open(owner.dir())?;
    let ask = Ask {
        twin_id: &twin,
        body: json!({"op": "read"}).to_string().into_bytes(),
        ttl: Duration::from_secs(300),
        wait: WAIT,
        write_token: None,
    };
    let answer = request(&ctl, &me, &ask).await?;
    assert_eq!(answer.response["ok"], json!(true), "{answer:?}");

    // A second service granted the history: the replay's deliveries are audited too.
    let (auditor, _) = env.service(&owner, &ctl).await?;
    let (_, request) = grant_with_history(&owner, &ctl, &auditor, "sync", 0).await?;
    let status = replay::watch_replay(&ctl, &request, WAIT, |_| {})
        .await?
        .ok_or_else(|| anyhow::anyhow!("no replay status"))?;
    assert_eq!(status.state, "done", "{status:?}");
    assert_eq!(status.delivered, 2, "{status:?}");

    let rows = settled(&env, &owner, &ctl).await?;
    let for_svc: Vec<&AuditRow> = rows.iter().filter(|r| r.receiver == svc_id).collect();
    assert_eq!(for_svc.len(), 1, "{for_svc:?}");
    assert_eq!(for_svc[0].rk_id, svc_rk);
    assert!(
        for_svc[0]
            .grant
            .as_deref()
            .is_some_and(|g| g.contains("location")),
        "the grant's policy from the ledger: {:?}",
        for_svc[0].grant
    );
    let replayed: Vec<&AuditRow> = rows.iter().filter(|r| r.receiver == auditor).collect();
    assert_eq!(replayed.len(), 2);
    assert!(replayed.iter().all(|r| r.replay_request_id == request));
    assert!(rows
        .iter()
        .all(|r| r.worker == rows[0].worker && !r.worker.is_empty()));

    let (_, clean) = scan(&owner, &ctl, true).await?;
    assert!(!clean.flagged(), "{clean:?}");
    assert_eq!(clean.deliveries_checked as usize, rows.len());
    assert!(worker.metric("at_reencrypt_audit_entries_total").await? >= rows.len() as f64);

    // The owner revokes the service's re-key: a later change reaches the devices, never the
    // service, and no entry names the service for it (every delivery still has its one entry).
    let revoked = owner.revoke_receiver(&ctl, &svc_id).await?;
    assert_eq!(revoked, 1);
    let devices_before = rows.iter().filter(|r| r.receiver_kind == "device").count();
    let third = json!({"lat": 48.3});
    d1.publish(&["sync", "location"], third.clone()).await?;
    d2.wait_applied(&third, WAIT, "d1's change after the revocation")
        .await?;
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let rows = settled(&env, &owner, &ctl).await?;
        let devices = rows.iter().filter(|r| r.receiver_kind == "device").count();
        if devices > devices_before || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        after.iter().filter(|r| r.receiver_kind == "device").count() > devices_before,
        "no entry for the change after the revocation: {after:?}"
    );
    assert_eq!(
        after.iter().filter(|r| r.receiver == svc_id).count(),
        1,
        "an entry for the revoked service: {after:?}"
    );
    let more = consume(&env, &mut svc, Some(1), Duration::from_secs(3)).await?;
    assert!(more.is_empty(), "the revoked service received {more:?}");

    // A forged batch (a raw producer, a key nobody pinned) naming a delivery of the twin, and a
    // malformed record: flagged, counted, and the forged entry covers nothing.
    let insider = env.insider_ctl()?;
    let forger = SigningKey::generate(&mut rand_core::OsRng);
    let mut forged = v1::AuditEntry {
        rk_id: hex::decode(&svc_rk)?,
        receiver_kind: v1::ReceiverKind::Service as i32,
        receiver_id: svc_id.clone(),
        twin_id: twin.clone(),
        epoch: for_svc[0].epoch,
        attributes_digest: hex::decode(&for_svc[0].attributes_digest)?,
        capsule_id: hex::decode(&for_svc[0].capsule_id)?,
        at_ms: armored_base::time::now_ms(),
        source_topic: env.topics.sync(),
        delivery_topic: env.topics.deliver(),
        delivery_sha256: vec![7; 32],
        ..v1::AuditEntry::default()
    };
    insider
        .send(
            &env.topics.audit(),
            "evil",
            &seal_batch(&forger, "evil", 0, vec![forged.clone()]),
        )
        .await?;
    insider
        .send(&env.topics.audit(), "junk", b"\x08\x01not a batch")
        .await?;
    let (_, forgery) = scan(&owner, &ctl, true).await?;
    assert!(forgery.flagged());
    let unknown = forgery
        .unknown_signers
        .get(&forger.key_id().to_hex())
        .ok_or_else(|| anyhow::anyhow!("the forger is not flagged: {forgery:?}"))?;
    assert_eq!((unknown.batches, unknown.entries), (1, 1));
    assert_eq!(forgery.malformed, 1);
    assert_eq!(forgery.gap_count, 0, "{forgery:?}");

    // A delivery written raw to at.deliver.v1 with no entry (a copy of the service's, altered):
    // a gap, even if a forged entry names its digest.
    let (key, payload) = env
        .records(&env.topics.deliver())?
        .into_iter()
        .find(|(k, _)| *k == svc_id.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("no delivery of the service"))?;
    let mut d: v1::Delivery = decode_strict("Delivery", &payload, MAX_DELIVERY_BYTES)?;
    d.replay_request_id = "not-from-a-worker".into();
    let raw = d.encode_to_vec();
    forged.delivery_sha256 = delivery_digest(&raw).to_vec();
    insider
        .send(
            &env.topics.audit(),
            "evil",
            &seal_batch(&forger, "evil", 0, vec![forged]),
        )
        .await?;
    insider
        .send(&env.topics.deliver(), &String::from_utf8_lossy(&key), &raw)
        .await?;
    let (_, gap) = scan(&owner, &ctl, true).await?;
    assert_eq!(gap.gap_count, 1, "{gap:?}");
    assert_eq!(gap.gaps[0].twin, twin);
    assert_eq!(gap.gaps[0].sha256, hex::encode(delivery_digest(&raw)));

    for d in [d1, d2] {
        d.stop().await;
    }
    env.stop().await;
    Ok(())
}
