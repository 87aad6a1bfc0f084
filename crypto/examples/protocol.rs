//! Protocol 1 of the paper, phases 1-4 and 6, played in one process: an owner, two devices, the cloud
//! as re-encryption proxy, and a processing service that may read only a subset (`sync AND location`).
//! Prints what each party can and cannot read.
//!
//! Run: `cargo run --release -p armored-crypto --example protocol`

use std::collections::BTreeMap;

use armored_crypto::envelope::{
    decode_envelope, make_delivery, seal_state_change, Receiver, StateChangeInput, TrustStore,
};
use armored_crypto::epoch::{epoch_of, EpochKeyManager};
use armored_crypto::identity::{
    create_owner_identity, enroll_device, verify_enrollment, verify_owner_identity,
};
use armored_crypto::kpcpre::{reencrypt, Policy, ReKey, SecretKey};
use armored_crypto::replay::ReplayGuard;
use armored_crypto::sig::SigningKey;
use armored_crypto::tokens::{
    issue_rekey_upload, verify_rekey_upload, ReKeyGrant, ReKeyUploadInput, ReceiverKind,
    RevocationSet,
};
use armored_crypto::{Error, KeyId, Verified};
use rand_core::OsRng;

const TWIN: &str = "bike-7";
const EPOCH_LEN_MS: u64 = 3_600_000;

fn main() -> Result<(), Error> {
    let mut rng = OsRng;
    let now_ms = 1_764_000_000_000u64;
    let epoch = epoch_of(now_ms, EPOCH_LEN_MS);

    println!("== Phase 1: Setup ==");
    let owner_pre = SecretKey::generate(&mut rng);
    let owner_sig = SigningKey::generate(&mut rng);
    let identity = create_owner_identity("alice", &owner_pre, &owner_sig, 0, &owner_sig, &mut rng);
    let id = verify_owner_identity(&identity, None)?;
    println!(
        "owner {:?}: PRE key {}, signing key {} (proof of knowledge of x verified)",
        id.owner_id,
        id.pre.key_id(),
        id.sig.key_id()
    );
    let mut trust = TrustStore::new(*owner_sig.verifying_key());
    let mut devices = Vec::new();
    for name in ["d1", "d2"] {
        // The device makes its keys; the owner receives the public halves out of band (QR code).
        let pre = SecretKey::generate(&mut rng);
        let sig = SigningKey::generate(&mut rng);
        let enrollment = enroll_device(
            &owner_sig,
            TWIN,
            name,
            pre.public(),
            sig.verifying_key(),
            EPOCH_LEN_MS,
        );
        let e = verify_enrollment(&enrollment, owner_sig.verifying_key())?;
        trust.add_device(&e.twin_id, e.sig);
        println!(
            "device {name}: enrolled for twin {TWIN} (PRE key {}, signing key {})",
            pre.key_id(),
            sig.key_id()
        );
        devices.push((name, pre, sig));
    }
    let service = SecretKey::generate(&mut rng);
    println!("processing service: PRE key {}", service.key_id());

    println!("\n== Phase 2: Control access (owner -> cloud: signed re-keys) ==");
    let mut grants: Vec<(&str, Verified<ReKeyGrant>)> = Vec::new();
    let device_policy = Policy::parse(&format!("sync OR (req AND twin:{TWIN})"))?;
    let service_policy = Policy::parse("sync AND location")?;
    let d2_pub = devices[1].1.public().clone();
    for (who, kind, policy, pk) in [
        ("d2", ReceiverKind::Device, &device_policy, &d2_pub),
        (
            "svc",
            ReceiverKind::Service,
            &service_policy,
            service.public(),
        ),
    ] {
        let rk = ReKey::generate(&owner_pre, policy, pk, &mut rng)?;
        let upload = issue_rekey_upload(
            &owner_sig,
            &rk,
            &ReKeyUploadInput {
                receiver_kind: kind,
                receiver_id: who,
                not_after_ms: None,
                history_from_epoch: Some(0),
                until_epoch: None,
            },
        );
        // The cloud accepts only uploads signed by the owner's registered key.
        let g = verify_rekey_upload(
            &upload,
            owner_sig.verifying_key(),
            owner_pre.key_id(),
            &RevocationSet::default(),
            now_ms,
        )?;
        println!(
            "re-key for {who:<3} policy {:<32} ({} bytes signed)",
            g.rk.policy().canonical(),
            upload.len()
        );
        grants.push((who, g));
    }

    println!("\n== Phase 3: Synchronize to cloud (d1 seals three state changes) ==");
    let (_, _, d1_sig) = &devices[0];
    let mut keys = EpochKeyManager::new(owner_pre.public().clone(), TWIN)?;
    let changes: [(&[&str], &str); 3] = [
        (&["sync", "location"], "lat=48.2082"),
        (&["sync", "location"], "lon=16.3738"),
        (&["sync", "health"], "pulse=72"),
    ];
    let mut log = Vec::new();
    for (seq, (attrs, delta)) in changes.iter().enumerate() {
        let key = keys.key_for(epoch, attrs, &mut rng)?;
        let input = StateChangeInput {
            device_id: "d1".into(),
            seq: seq as u64,
            observed_at_ms: now_ms,
            delta: delta.as_bytes().to_vec(),
            ..Default::default()
        };
        let env = seal_state_change(key, d1_sig, &input, &mut rng)?;
        let (_, header, _) = decode_envelope(&env)?;
        println!(
            "cloud stores envelope seq {seq}: attributes {:?}, {} bytes; payload unreadable to it",
            header.attributes,
            env.len()
        );
        log.push((delta.to_string(), env));
    }
    println!(
        "Enc^1 ran {} times for 3 messages (one DEK per epoch and attribute set)",
        keys.capsules_made()
    );

    println!("\n== Phases 4 and 6: the cloud re-encrypts; receivers decrypt ==");
    let mut d2 = Receiver::new(SecretKey::from_bytes(
        &devices[1].1.to_bytes()[..],
        &mut rng,
    )?);
    let mut svc = Receiver::new(service);
    let mut guard = ReplayGuard::new();
    let mut table: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (delta, env) in &log {
        let (e, _, c1) = decode_envelope(env)?;
        let checked = c1.check(&mut rng)?; // once per capsule, whatever the number of re-keys
        let owner_view = Receiver::new(SecretKey::from_bytes(&owner_pre.to_bytes()[..], &mut rng)?)
            .open_envelope(env, &trust, now_ms)
            .map(|s| String::from_utf8_lossy(&s.delta).into_owned());
        let mut row = vec![
            show(owner_view),
            "cannot read (holds only re-keys)".to_string(),
        ];
        for (who, g) in &grants {
            let outcome = match reencrypt(&g.rk, &checked) {
                Err(Error::PolicyNotSatisfied) => {
                    Err("not re-encrypted: policy not satisfied".to_string())
                }
                Err(err) => Err(err.to_string()),
                Ok(c2) => {
                    let delivery = make_delivery(&e, &c2, None);
                    let receiver = if *who == "d2" { &mut d2 } else { &mut svc };
                    receiver
                        .open_delivery(&delivery, &trust, now_ms, &mut rng)
                        .map_err(|e| e.to_string())
                        .and_then(|s| {
                            let kid = KeyId::from_slice(&s.header.writer_key_id, "writer")
                                .map_err(|e| e.to_string())?;
                            guard
                                .check(&format!("{who}/{}", s.header.twin_id), kid, s.header.seq)
                                .map_err(|e| e.to_string())?;
                            Ok(format!(
                                "{} (signed by {:?})",
                                String::from_utf8_lossy(&s.delta),
                                s.writer
                            ))
                        })
                }
            };
            row.push(match outcome {
                Ok(s) => s,
                Err(s) => s,
            });
        }
        table.insert(delta.clone(), row);
    }
    let head = [
        "state change",
        "owner",
        "cloud",
        "d2 (sync)",
        "service (sync AND location)",
    ];
    println!(
        "{:<14} | {:<18} | {:<33} | {:<38} | {}",
        head[0], head[1], head[2], head[3], head[4]
    );
    for (delta, row) in &table {
        println!(
            "{:<14} | {:<18} | {:<33} | {:<38} | {}",
            delta, row[0], row[1], row[2], row[3]
        );
    }

    println!("\n== What goes wrong on purpose ==");
    let (e, _, c1) = decode_envelope(&log[0].1)?;
    let c2 = reencrypt(&grants[0].1.rk, &c1.check(&mut rng)?)?;
    let delivery = make_delivery(&e, &c2, None);
    println!(
        "service opens d2's delivery:        {}",
        show(
            svc.open_delivery(&delivery, &trust, now_ms, &mut rng)
                .map(|_| String::new())
        )
    );
    let mut tampered = delivery.clone();
    let n = tampered.len();
    tampered[n - 3] ^= 1;
    println!(
        "d2 opens a tampered delivery:       {}",
        show(
            d2.open_delivery(&tampered, &trust, now_ms, &mut rng)
                .map(|_| String::new())
        )
    );
    let s = d2.open_delivery(&delivery, &trust, now_ms, &mut rng)?;
    let kid = KeyId::from_slice(&s.header.writer_key_id, "writer")?;
    println!(
        "d2 receives the same record again:  {}",
        show(
            guard
                .check(&format!("d2/{TWIN}"), kid, s.header.seq)
                .map(|_| String::new())
        )
    );
    Ok(())
}

fn show(r: Result<String, impl std::fmt::Display>) -> String {
    match r {
        Ok(s) => s,
        Err(e) => format!("error: {e}"),
    }
}
