//! Protocol 2, phase 3+ on the real brokers: a device's share bundles travel MQTT → bridge →
//! worker → node j's share topic, each node opens only its own share and the three shares combine
//! to the simulator's point; forged or injected shares never open; process tokens and their
//! revocations land on at.tokens.v1 and verify. Needs `infra/start.sh`.

use armored_schemas::Refusal;
use std::collections::BTreeMap;
use std::time::Duration;

use armored_base::time::now_ms;
use armored_client::kafka::Ctl;
use armored_client::owner::{Owner, ProcessTokenRequest};
use armored_client::service::Service;
use armored_crypto::designation::verify_designation;
use armored_crypto::envelope::{Receiver, TrustStore};
use armored_crypto::identity::PartyKind;
use armored_crypto::keyfile::load_pre_key;
use armored_crypto::shares::{
    seal_share_bundle, share_attributes, share_epoch, ShareInput, DEFAULT_SLOTS_PER_SHARE_EPOCH,
};
use armored_crypto::sig::SigningKey;
use armored_crypto::tokens::{verify_process_token, verify_revocation, RevocationSet};
use armored_crypto::Error as CryptoError;
use armored_device::sim::Sim;
use armored_e2e::{rand_id, Env, SERIAL};
use armored_mpc::field::Fp;
use armored_mpc::shamir::combine;
use armored_schemas::v1::{self, control_record::Record};
use prost::Message;
use rand_core::OsRng;

const SLOT_MS: u64 = 1_000;
const WAIT: Duration = Duration::from_secs(30);

/// What a node trusts, folded from the registry (owner-signed enrollments), as a node would, and
/// d1's enrolled slots per share epoch.
async fn trust_from_registry(
    ctl: &Ctl,
    owner: &Owner,
    twin: &str,
) -> anyhow::Result<(TrustStore, u64)> {
    let r = ctl.registry().await?;
    let d = r
        .device(twin, "d1")
        .ok_or_else(|| anyhow::anyhow!("{twin}/d1 not in the registry"))?;
    let mut t = TrustStore::new(owner.verifying_key());
    t.add_device(twin, d.enrollment.sig);
    Ok((t, d.enrollment.slots_per_share_epoch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn device_shares_reach_each_node_and_combine_to_the_simulated_points() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("phone");
    let node_dirs = env.mpc_nodes(&owner, &ctl).await?.dirs;
    let dev = env.phone(&owner, &ctl, &twin, SLOT_MS).await?;

    // Phase 3+: five slots ending now, points from the simulator, three envelopes per slot.
    let sim = Sim::new(42);
    let now_slot = now_ms() / SLOT_MS;
    let slots: Vec<u64> = (now_slot - 4..=now_slot).collect();
    dev.upload_shares(&sim, now_slot - 4..now_slot + 1).await?;
    let mut recs = Vec::new();
    for j in 1..=3 {
        let topic = env.topics.mpc_shares(j);
        recs.push(env.wait_records(&topic, slots.len(), WAIT).await?);
    }

    let (trust, spe) = trust_from_registry(&ctl, &owner, &twin).await?;
    assert_eq!(
        spe, DEFAULT_SLOTS_PER_SHARE_EPOCH,
        "the card's default, enrolled"
    );
    // One capsule per (share epoch, node): the five slots span at most two share epochs.
    for (i, r) in recs.iter().enumerate() {
        let mut capsules = std::collections::BTreeSet::new();
        for (_, payload) in r {
            let d = v1::Delivery::decode(payload.as_slice())?;
            let h = v1::EnvelopeHeader::decode(d.envelope_header.as_slice())?;
            capsules.insert((h.epoch, h.capsule_id));
        }
        let epochs: std::collections::BTreeSet<u64> =
            slots.iter().map(|s| share_epoch(*s, spe)).collect();
        assert_eq!(
            capsules.len(),
            epochs.len(),
            "node {}: a capsule per share epoch",
            i + 1
        );
    }
    // Per slot, the three nodes' shares of x and y.
    let mut got: BTreeMap<u64, [[u64; 2]; 3]> = BTreeMap::new();
    for (i, dir) in node_dirs.iter().enumerate() {
        let j = i as u8 + 1;
        assert_eq!(recs[i].len(), slots.len(), "node {j}: one bundle per slot");
        let mut rx = Receiver::new(load_pre_key(&dir.join("pre.key"), &mut OsRng)?);
        for (key, payload) in &recs[i] {
            assert_eq!(key, twin.as_bytes(), "keyed by twin");
            let item = rx
                .open_share_delivery(payload, &trust, j, spe, &mut OsRng)?
                .into_inner();
            assert_eq!(
                (item.twin_id.as_str(), item.device_id.as_str()),
                (twin.as_str(), "d1")
            );
            assert_eq!(item.node_index, j);
            assert_eq!(item.owner_key_id, owner.pre_key().key_id());
            got.entry(item.slot).or_default()[i] = [item.values[0], item.values[1]];
            // Another node's index never opens it, and no other node key does.
            let other = j % 3 + 1;
            assert!(matches!(
                rx.open_share_delivery(payload, &trust, other, spe, &mut OsRng),
                Err(CryptoError::WrongNode { .. })
            ));
            let mut rx_other = Receiver::new(load_pre_key(
                &node_dirs[usize::from(other) - 1].join("pre.key"),
                &mut OsRng,
            )?);
            assert!(matches!(
                rx_other.open_share_delivery(payload, &trust, other, spe, &mut OsRng),
                Err(CryptoError::KeyMismatch(_))
            ));
        }
    }
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), slots);
    let fp = |v: u64| Fp::from_canonical(v).ok_or_else(|| anyhow::anyhow!("non-canonical share"));
    for (slot, shares) in &got {
        let (x, y) = sim.point(&twin, *slot);
        let cx = combine([fp(shares[0][0])?, fp(shares[1][0])?, fp(shares[2][0])?])?;
        let cy = combine([fp(shares[0][1])?, fp(shares[1][1])?, fp(shares[2][1])?])?;
        assert_eq!(
            (cx.value(), cy.value()),
            (u64::from(x), u64::from(y)),
            "slot {slot}"
        );
    }
    // No share bundle was ever delivered to anyone else.
    assert!(
        env.records(&env.topics.deliver())?.is_empty(),
        "share bundles reach only the node topics"
    );
    dev.stop().await;
    env.stop().await;
    Ok(())
}

/// A share envelope for node 1 of `twin` whose header names `header_writer` but whose body is
/// signed by `signer` (what an attacker without the device key can make: the owner's PRE key is
/// public).
fn forged_share(
    owner: &Owner,
    twin: &str,
    slot: u64,
    header_writer: &SigningKey,
    signer: &SigningKey,
    seq: u64,
) -> anyhow::Result<Vec<u8>> {
    share_as(owner, twin, "d1", slot, header_writer, signer, seq)
}

/// [`forged_share`] with the device id the header and body name.
fn share_as(
    owner: &Owner,
    twin: &str,
    device_id: &str,
    slot: u64,
    header_writer: &SigningKey,
    signer: &SigningKey,
    seq: u64,
) -> anyhow::Result<Vec<u8>> {
    let mut keys =
        armored_crypto::epoch::EpochKeyManager::new(owner.pre_key().public().clone(), twin)?;
    let attrs = share_attributes(1)?;
    let a: Vec<&str> = attrs.iter().map(String::as_str).collect();
    // Sealed as the device (enrolled with the default share epoch) would.
    let spe = DEFAULT_SLOTS_PER_SHARE_EPOCH;
    let key = keys.key_for(share_epoch(slot, spe), &a, &mut OsRng)?;
    let input = ShareInput {
        device_id: device_id.into(),
        item_id: 999,
        slot,
        node_index: 1,
        values: vec![1, 2],
        seq,
    };
    let genuine = seal_share_bundle(key, header_writer, &input, spe, &mut OsRng)?;
    if header_writer.key_id() == signer.key_id() {
        return Ok(genuine);
    }
    // Same header (naming header_writer), body signed by someone else, re-sealed with the DEK.
    let env = v1::Envelope::decode(genuine.as_slice())?;
    let body = v1::ShareBody {
        version: 1,
        twin_id: twin.into(),
        device_id: device_id.into(),
        item_id: 999,
        slot,
        node_index: 1,
        values: vec![1, 2],
        header: env.header.clone(),
    };
    let signed = signer.sign_to_vec(
        armored_crypto::domain::SigDomain::MpcShare,
        body.encode_to_vec(),
    );
    let nonce = [5u8; 12];
    let ciphertext = armored_crypto::sym::seal(&key.dek().sym(), &nonce, &signed, &env.header);
    Ok(v1::Envelope {
        nonce: nonce.to_vec(),
        ciphertext,
        ..env
    }
    .encode_to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_injected_shares_never_open() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let _ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("phone");
    let node_dirs = env.mpc_nodes(&owner, &ctl).await?.dirs;
    let dev = env.phone(&owner, &ctl, &twin, SLOT_MS).await?;
    let device_key = armored_crypto::keyfile::load_signing_key(&dev.dir.join("sig.key"))?;
    let stranger = SigningKey::generate(&mut OsRng);
    let slot = now_ms() / SLOT_MS;

    // 1. Over the device's own MQTT login, a share signed and named by a stranger's key: the edge
    //    refuses it (the writer is not the device's key).
    dev.outbox
        .send(forged_share(
            &owner, &twin, slot, &stranger, &stranger, 100,
        )?)
        .await?;
    env.wait_dead_letter(Duration::from_secs(20), |d| d.reason == "writer_mismatch")
        .await?;
    // 2. Over MQTT, the header naming the device, the body signed by the stranger: the edge
    //    cannot tell (no signature checks in the cloud), node 1 refuses it. (Seqs stay within the
    //    edge's duplicate window of the device's own, which come later from 0.)
    dev.outbox
        .send(forged_share(
            &owner,
            &twin,
            slot,
            &device_key,
            &stranger,
            101,
        )?)
        .await?;
    // 3. Written straight into at.sync.v1 by a Kafka client, naming the device but with a
    //    stranger's key: the worker re-checks the edge's rule and dead-letters it.
    let injected = forged_share(&owner, &twin, slot + 1, &stranger, &stranger, 102)?;
    armored_runtime::kafka::send(
        &bridge.producer,
        &bridge.topics.sync(),
        twin.as_bytes(),
        &injected,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    // 4. A requester's share bundle on at.requests.v1: never routed to a node.
    let requested = forged_share(&owner, &twin, slot + 2, &stranger, &stranger, 103)?;
    armored_runtime::kafka::send(
        &ctl.producer,
        &ctl.topics.requests(),
        twin.as_bytes(),
        &requested,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    // 5. A genuine share last, so that once it arrived everything before it was routed.
    let envs = dev
        .device
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .share_point(slot + 3, 10, 20)?;
    dev.outbox.send(envs[0].clone()).await?;

    let d = env
        .wait_dead_letter(WAIT, |d| {
            d.reason == "writer_mismatch" && d.service == "reencrypt"
        })
        .await?;
    assert_eq!(
        d.payload, injected,
        "the injected share, refused by the worker"
    );
    let recs = env.wait_records(&env.topics.mpc_shares(1), 2, WAIT).await?;
    let (trust, spe) = trust_from_registry(&ctl, &owner, &twin).await?;
    let mut rx = Receiver::new(load_pre_key(&node_dirs[0].join("pre.key"), &mut OsRng)?);
    let mut reasons: Vec<&'static str> = recs
        .iter()
        .map(
            |(_, p)| match rx.open_share_delivery(p, &trust, 1, spe, &mut OsRng) {
                Ok(item) => {
                    assert_eq!(item.slot, slot + 3, "only the genuine share opens");
                    "ok"
                }
                Err(e) => e.reason(),
            },
        )
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["bad_signature", "ok"],
        "forged over MQTT, genuine"
    );
    // The requester's bundle went nowhere; node 1's topic holds exactly the two above.
    for j in 2..=3 {
        assert!(env.records(&env.topics.mpc_shares(j))?.is_empty());
    }
    dev.stop().await;
    env.stop().await;
    Ok(())
}

/// Node 1's share store (the service itself, folding its topic) keeps only shares signed by the
/// enrolled device the header names, enrolled with a slot length; everything else is refused with
/// its reason, counted and dead-lettered. The records are written straight into at.sync.v1, as
/// only a Kafka client past the edge could. The worker re-checks the edge's rules on the plain
/// header (a header naming a device must carry its key id) and dead-letters two of them; the
/// others it cannot tell apart (the cloud checks no signatures), so they reach the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_stores_only_shares_of_the_enrolled_device() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("phone");
    let node_dirs = env.mpc_nodes(&owner, &ctl).await?.dirs;
    let mut devices = Vec::new();
    for d in ["d1", "d2"] {
        let dir = env.dir.join(format!("{twin}-{d}"));
        let card = armored_device::setup_with_slot_len(&dir, &twin, d, 3_600_000, SLOT_MS)?;
        armored_device::pin_owner(&dir, &owner.identity()?)?;
        owner.enroll_device(&ctl, &card).await?;
        devices.push(dir);
    }
    let d2_key = armored_crypto::keyfile::load_signing_key(&devices[1].join("sig.key"))?;
    let d1_key = armored_crypto::keyfile::load_signing_key(&devices[0].join("sig.key"))?;
    // d3 is enrolled by the owner without an MPC slot length (an older enrollment).
    let d3_key = SigningKey::generate(&mut OsRng);
    let d3_pre = armored_crypto::kpcpre::SecretKey::generate(&mut OsRng);
    let enrollment = armored_crypto::identity::enroll_device(
        owner.signing_key(),
        &twin,
        "d3",
        d3_pre.public(),
        d3_key.verifying_key(),
        3_600_000,
    );
    ctl.send(
        &ctl.topics.registry(),
        &format!("device:{twin}/d3"),
        &armored_crypto::registry::record(v1::registry_record::Record::Enrollment(enrollment)),
    )
    .await?;
    let stranger = SigningKey::generate(&mut OsRng);
    let slot = now_ms() / SLOT_MS;
    let genuine = armored_device::Device::open(&devices[0])?.share_point(slot + 4, 10, 20)?;
    let records = [
        // Signed and named by a key no owner enrolled.
        forged_share(&owner, &twin, slot, &stranger, &stranger, 1)?,
        // Naming d1, signed by the stranger.
        forged_share(&owner, &twin, slot + 1, &d1_key, &stranger, 2)?,
        // Signed by d2, an enrolled device of the twin, but naming d1.
        share_as(&owner, &twin, "d1", slot + 2, &d2_key, &d2_key, 3)?,
        // Signed by d3, whose enrollment has no slot length.
        share_as(&owner, &twin, "d3", slot + 3, &d3_key, &d3_key, 4)?,
        // The genuine one, last.
        genuine[0].clone(),
    ];
    for r in &records {
        armored_runtime::kafka::send(&bridge.producer, &bridge.topics.sync(), twin.as_bytes(), r)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    // Records 1 and 3 name d1 with another key: the worker's re-check refuses them.
    let mut refused = 0;
    let deadline = std::time::Instant::now() + WAIT;
    while refused < 2 && std::time::Instant::now() < deadline {
        refused = env
            .dead_letters()?
            .iter()
            .filter(|d| d.reason == "writer_mismatch" && d.service == "reencrypt")
            .count();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        refused, 2,
        "the worker refuses the two headers naming d1 with another key"
    );
    let routed = env.wait_records(&env.topics.mpc_shares(1), 3, WAIT).await?;
    anyhow::ensure!(
        routed.len() >= 3,
        "the worker did not route the other three"
    );

    // Node 1 itself: it folds its topic before it reports healthy.
    let mut cfg = env.node_config(1, &node_dirs)?;
    cfg.node.state_dir = env.dir.join("node1-state").display().to_string();
    cfg.node.group = rand_id("node1");
    cfg.node.round_timeout_ms = 2_000;
    cfg.node.cutoff_skew_ms = 1_000;
    cfg.node.max_cutoff_wait_ms = 60_000;
    cfg.node.max_participants = 100;
    let node = env.start_node(cfg);
    node.wait_healthy(Duration::from_secs(60)).await?;
    assert_eq!(
        node.metric("at_mpc_shares_stored").await?,
        1.0,
        "only the genuine share is stored"
    );
    // (The node's own unknown_signer and device_mismatch checks guard against a worker that
    // routes such records anyway; the worker's re-check keeps them from the node here.)
    let reasons = ["bad_signature", "no_slot_length"];
    for r in reasons {
        assert_eq!(
            node.metric(&format!("at_mpc_shares_rejected_total{{reason=\"{r}\"}}"))
                .await?,
            1.0,
            "{r} counted once"
        );
        let d = env
            .wait_dead_letter(Duration::from_secs(20), |d| {
                d.reason == r && d.source_topic == env.topics.mpc_shares(1)
            })
            .await?;
        assert_eq!(d.service, "mpc-node", "{r} dead-lettered by the node");
    }
    node.shutdown.cancel();
    let _ = node.task.await;
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_token_and_its_revocation_on_the_token_topic() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let owner = env.owner(&ctl).await?;
    let rx_id = Service::init(&env.dir.join("svc"), &rand_id("svc"), PartyKind::Service)?;
    let ha_dir = env.dir.join("ha");
    let ha_id = Service::init(&ha_dir, &rand_id("health"), PartyKind::Service)?;
    let twin = rand_id("phone");
    let req = ProcessTokenRequest {
        receiver_identity: std::fs::read(&rx_id)?,
        designator_identity: std::fs::read(&ha_id)?,
        function: armored_client::owner::CONTACT_TRACING.into(),
        distance: 25,
        slot_len_ms: SLOT_MS,
        window_slots: 50,
        max_jobs_per_window: 2,
        not_after_ms: now_ms() + 3_600_000,
        policy: None,
        twins: vec![twin.clone()],
    };
    let (id, _) = owner.process_token(&ctl, &req).await?;
    owner.revoke_process_token(&ctl, &id).await?;

    let recs = env.records(&env.topics.tokens())?;
    assert_eq!(recs.len(), 2, "the token and its revocation");
    assert!(
        recs.iter().all(|(k, _)| *k == id.as_bytes()),
        "both under the token id"
    );
    let owner_vk = owner.verifying_key();
    let decode = |p: &[u8]| -> anyhow::Result<Record> {
        v1::ControlRecord::decode(p)?
            .record
            .ok_or_else(|| anyhow::anyhow!("empty control record"))
    };
    let Record::ProcessToken(token) = decode(&recs[0].1)? else {
        anyhow::bail!("first record is not a process token")
    };
    let Record::Revocation(rv) = decode(&recs[1].1)? else {
        anyhow::bail!("second record is not a revocation")
    };
    let mut revoked = RevocationSet::default();
    let g = verify_process_token(&token, &owner_vk, &revoked, now_ms())?;
    assert_eq!(hex::encode(&g.token.token_id), id);
    let want = armored_client::owner::default_policy(std::slice::from_ref(&twin))?;
    assert_eq!(
        g.policy.canonical(),
        armored_crypto::kpcpre::Policy::parse(&want)?.canonical()
    );
    let f = &g.token.grants[0];
    assert_eq!(
        (
            f.function.as_str(),
            f.distance,
            f.slot_len_ms,
            f.window_alignment,
            f.min_window_slots
        ),
        ("contact-tracing/v1", 25, SLOT_MS, 50, 50)
    );
    let ha_bytes = std::fs::read(&ha_id)?;
    let ha = armored_crypto::identity::verify_pinned_identity(
        &ha_bytes,
        &armored_crypto::identity::fingerprint(&ha_bytes),
    )?;
    assert_eq!(f.reference_designator_key_id, ha.sig.key_id().0.to_vec());
    // The revocation verifies, and from then on the token does not.
    let rv = verify_revocation(&rv, &owner_vk)?;
    revoked.apply(&rv);
    assert!(matches!(
        verify_process_token(&token, &owner_vk, &revoked, now_ms()),
        Err(CryptoError::Revoked(_))
    ));
    let ledger = owner.ledger()?;
    assert!(ledger
        .iter()
        .any(|e| e.rk_id == id && e.revoked && e.token.is_some()));
    // The designator's statement verifies under the key the grant names.
    let d = armored_client::mpc::designate::designate(&ha_dir, &twin, 100, 50)?;
    assert_eq!(verify_designation(&d, &ha.sig)?.reference_twin_id, twin);
    env.stop().await;
    Ok(())
}
