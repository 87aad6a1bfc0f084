//! Fuzz entry points: one function per decoder of wire input (and the policy parser), shared by the
//! cargo-fuzz targets of `fuzz/` (nightly, libFuzzer) and by the stable test at the bottom of this
//! file (every committed seed plus a bounded proptest over random and mutated bytes).
//!
//! Each entry point feeds `data` to the decoder and checks the property of issue 16: a typed error,
//! or a value that re-encodes to exactly the bytes it was decoded from. A panic (a failed assertion
//! included) is a finding. Each returns whether the input was accepted, which the seed test uses to
//! show that the seeds reach the deepest checks.
//!
//! Signature-checking verifiers use fixed test keys ([`Fixture`]). Where a signature would stop
//! every mutated input at the first check, the entry point has a second mode in which `data` is the
//! *body*: the harness signs it with the fixture's key, so the fuzzer explores the body's decoder
//! and the checks behind the signature. Byte 0 selects the mode where there are several.
//!
//! Compiled for tests and under the `fuzz` feature only; not part of the crate's API.
// The fixture is built from constants: a failure there is a broken harness, not input-derived.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Mutex, OnceLock};

use armored_schemas::limits::{
    MAX_CONTROL_BYTES, MAX_JOB_BYTES, MAX_PEER_MESSAGE_BYTES, MAX_REKEY_BYTES,
};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

use crate::domain::SigDomain;
use crate::envelope::{
    decode_envelope, make_delivery, parse_header, seal_state_change, Receiver, StateChangeInput,
    TrustStore,
};
use crate::epoch::EpochKeyManager;
use crate::group::{Gt, Scalar, G1, G2};
use crate::hpke::HpkeSecretKey;
use crate::identity::{create_party_identity, enroll_device, PartyKind};
use crate::kpcpre::{
    reencrypt, Capsule1, Capsule2, Dek, Header, Policy, PublicKey, ReKey, SecretKey,
};
use crate::peer::{ChannelId, PeerReceiver, PeerSender};
use crate::registry::Registry;
use crate::shares::{seal_share_bundle, ShareInput};
use crate::sig::{decode_signed, SigningKey};
use crate::tokens::{
    issue_process_token, issue_rekey_upload, issue_revocation, issue_write_token_for,
    verify_process_token_content, verify_rekey_upload, verify_revocation, verify_write_token,
    ProcessTokenInput, ReKeyUploadInput, ReceiverKind, RevocationKind, RevocationSet,
};

/// "Now" for every expiry check of the harness.
pub const NOW_MS: u64 = 1_700_000_000_000;
const TWIN: &str = "t1";
const DEVICE: &str = "d1";
const SERVICE: &str = "svc";
const NODE: u8 = 1;

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`) and its
/// entry point.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Target name.
    pub name: &'static str,
    /// Entry point: runs the decoder, asserts the property, returns whether `data` was accepted.
    pub run: fn(&[u8]) -> bool,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "policy",
        run: policy,
    },
    Target {
        name: "envelope",
        run: envelope,
    },
    Target {
        name: "state_change",
        run: state_change,
    },
    Target {
        name: "delivery",
        run: delivery,
    },
    Target {
        name: "capsule1",
        run: capsule1,
    },
    Target {
        name: "capsule2",
        run: capsule2,
    },
    Target {
        name: "capsule_header",
        run: capsule_header,
    },
    Target {
        name: "points",
        run: points,
    },
    Target {
        name: "rekey",
        run: rekey,
    },
    Target {
        name: "rekey_upload",
        run: rekey_upload,
    },
    Target {
        name: "tokens",
        run: tokens,
    },
    Target {
        name: "control_record",
        run: control_record,
    },
    Target {
        name: "registry",
        run: registry,
    },
    Target {
        name: "share_bundle",
        run: share_bundle,
    },
    Target {
        name: "peer_message",
        run: peer_message,
    },
    Target {
        name: "mpc_job",
        run: mpc_job,
    },
    Target {
        name: "local_state",
        run: local_state,
    },
];

/// Fixed keys and records every entry point shares (built once per process, deterministically, so
/// that the committed seeds verify in every run).
pub struct Fixture {
    owner_sig: SigningKey,
    owner_pre: SecretKey,
    device_sig: SigningKey,
    service_sig: SigningKey,
    service_pre: SecretKey,
    node_public: PublicKey,
    /// Receivers of the owner, the service and node 1 (keys are not `Clone`; their DEK caches key
    /// on exact capsule bytes, so reuse across inputs changes no result).
    owner_rx: Mutex<Receiver>,
    service_rx: Mutex<Receiver>,
    node_rx: Mutex<Receiver>,
    node1_hpke: HpkeSecretKey,
    node2_hpke: HpkeSecretKey,
    trust: TrustStore,
    /// Epoch keys of the twin (behind a lock: handing out a key counts its uses). Keys for epoch 5
    /// (`sync`, `location`) and slot 9 (node 1's shares) exist from the start, so that the seeds
    /// and every run see the same capsules.
    epochs: Mutex<EpochKeyManager>,
    /// Epoch 5's DEK and capsule, for [`state_change`] (which must never rotate the key).
    state_key: (Dek, Capsule1),
    /// The registry with the owner, its device and the service already folded in.
    registry: Registry,
    /// The peer channel node 1 -> node 2 of the harness.
    channel: ChannelId,
}

impl core::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Fixture(<test keys>)")
    }
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The shared fixture.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut r = rng(1);
        let owner_sig = SigningKey::from_bytes(&[0x11; 32]).expect("owner signing key");
        let owner_pre = SecretKey::from_bytes(&[0x12; 32], &mut r).expect("owner PRE key");
        let device_sig = SigningKey::from_bytes(&[0x21; 32]).expect("device signing key");
        let device_pre = SecretKey::from_bytes(&[0x22; 32], &mut r).expect("device PRE key");
        let service_sig = SigningKey::from_bytes(&[0x31; 32]).expect("service signing key");
        let service_pre = SecretKey::from_bytes(&[0x32; 32], &mut r).expect("service PRE key");
        let service_hpke = HpkeSecretKey::from_bytes(&[0x33; 32]).expect("service HPKE key");
        let node_pre = SecretKey::from_bytes(&[0x41; 32], &mut r).expect("node PRE key");
        let node1_hpke = HpkeSecretKey::from_bytes(&[0x42; 32]).expect("node 1 HPKE key");
        let node2_hpke = HpkeSecretKey::from_bytes(&[0x52; 32]).expect("node 2 HPKE key");
        let mut trust = TrustStore::new(*owner_sig.verifying_key());
        trust.add_device(TWIN, *device_sig.verifying_key());
        let mut epochs = EpochKeyManager::new(owner_pre.public().clone(), TWIN).expect("twin id");
        let k = epochs
            .key_for(5, &["sync", "location"], &mut r)
            .expect("epoch 5 key");
        let state_key = (k.dek().clone(), k.capsule().clone());
        let share_attrs = crate::shares::share_attributes(NODE).expect("share attributes");
        let share_attrs: Vec<&str> = share_attrs.iter().map(String::as_str).collect();
        epochs.key_for(9, &share_attrs, &mut r).expect("slot 9 key");

        let mut registry = Registry::new();
        let owner_identity = crate::identity::create_owner_identity(
            "owner1", &owner_pre, &owner_sig, 0, &owner_sig, &mut r,
        );
        let enrollment = enroll_device(
            &owner_sig,
            TWIN,
            DEVICE,
            device_pre.public(),
            device_sig.verifying_key(),
            60_000,
        );
        let party = create_party_identity(
            PartyKind::Service,
            SERVICE,
            service_pre.public(),
            &service_sig,
            service_hpke.public(),
            0,
        );
        for rec in [
            v1::registry_record::Record::OwnerIdentity(owner_identity),
            v1::registry_record::Record::Enrollment(enrollment),
            v1::registry_record::Record::PartyIdentity(party),
        ] {
            registry
                .apply(&crate::registry::record(rec))
                .expect("fixture registry record");
        }
        Fixture {
            owner_sig,
            owner_pre,
            device_sig,
            service_sig,
            service_pre,
            node_public: node_pre.public().clone(),
            owner_rx: Mutex::new(Receiver::new(
                SecretKey::from_bytes(&[0x12; 32], &mut r).expect("owner PRE key"),
            )),
            service_rx: Mutex::new(Receiver::new(
                SecretKey::from_bytes(&[0x32; 32], &mut r).expect("service PRE key"),
            )),
            node_rx: Mutex::new(Receiver::new(node_pre)),
            node1_hpke,
            node2_hpke,
            trust,
            epochs: Mutex::new(epochs),
            state_key,
            registry,
            channel: ChannelId {
                job_hash: [7; 32],
                attempt: 1,
                from: 1,
                to: 2,
            },
        }
    })
}

/// Locks a fixture receiver (a finding that panicked while holding it does not poison the rest).
fn lock(m: &Mutex<Receiver>) -> std::sync::MutexGuard<'_, Receiver> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Splits a mode byte off `data` (mode 0 for empty input).
fn mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&m, rest)) => (m, rest),
        None => (0, data),
    }
}

/// A strictly decoded protobuf message re-encodes to the bytes it came from.
fn assert_canonical<M: Message>(m: &M, bytes: &[u8], what: &str) {
    assert_eq!(
        m.encode_to_vec(),
        bytes,
        "{what}: accepted bytes do not re-encode to themselves"
    );
}

/// The `Signed` record of accepted bytes re-encodes to them; returns its body.
fn signed_body(bytes: &[u8], limit: usize) -> Vec<u8> {
    let s = decode_signed(bytes, limit).expect("accepted record decodes as Signed");
    assert_canonical(&s, bytes, "Signed");
    s.body
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// `Policy::parse` on UTF-8 text. Infix text is not canonical by design, so the property is on the
/// canonical text: it parses back to the same tree and prints itself (encode∘decode is the identity
/// on canonical text).
pub fn policy(data: &[u8]) -> bool {
    let Ok(text) = core::str::from_utf8(data) else {
        return false;
    };
    let Ok(p) = Policy::parse(text) else {
        return false;
    };
    let again = Policy::parse(p.canonical()).expect("canonical policy text parses");
    assert_eq!(again, p, "canonical text parses to another policy");
    assert_eq!(again.canonical(), p.canonical());
    assert!(!p.leaves().is_empty());
    true
}

/// `decode_envelope` (what the cloud checks) and `Receiver::open_envelope` (the owner: capsule1,
/// AEAD, signature, writer checks) with the fixture's owner key.
pub fn envelope(data: &[u8]) -> bool {
    let f = fixture();
    let Ok((env, header, cap)) = decode_envelope(data) else {
        assert!(lock(&f.owner_rx)
            .open_envelope(data, &f.trust, NOW_MS)
            .is_err());
        return false;
    };
    assert_canonical(&env, data, "Envelope");
    assert_canonical(&header, &env.header, "EnvelopeHeader");
    assert_eq!(
        Some(cap.encode()),
        env.capsule1.as_ref().map(Message::encode_to_vec),
        "capsule1 re-encodes differently"
    );
    match lock(&f.owner_rx).open_envelope(data, &f.trust, NOW_MS) {
        Ok(sc) => {
            assert_eq!(sc.header_bytes, env.header);
            true
        }
        Err(_) => false,
    }
}

/// The payload of an envelope: `data` is a `StateChangeBody`, signed by the fixture's device and
/// sealed under its epoch key, then opened by the owner. Reaches the body decoder, the writer
/// checks and the signed-header comparison, which a mutated envelope never passes the AEAD to reach.
pub fn state_change(data: &[u8]) -> bool {
    let f = fixture();
    let (dek, cap) = &f.state_key;
    let hdr = cap.header();
    let header = v1::EnvelopeHeader {
        version: WIRE_VERSION,
        twin_id: hdr.twin_id.clone(),
        device_id: DEVICE.into(),
        writer_key_id: f.device_sig.key_id().0.to_vec(),
        seq: 1,
        epoch: hdr.epoch,
        attributes: hdr.attributes.as_slice().to_vec(),
        capsule_id: cap.cid().to_vec(),
        expires_at_ms: 0,
    }
    .encode_to_vec();
    let signed = f
        .device_sig
        .sign_to_vec(SigDomain::StateChange, data.to_vec());
    // What `seal_signed` does, with the fixed key (an `EpochKey` counts uses and would rotate).
    let nonce = [3u8; crate::sym::NONCE_BYTES];
    let sealed = v1::Envelope {
        version: WIRE_VERSION,
        ciphertext: crate::sym::seal(&dek.sym(), &nonce, &signed, &header),
        header,
        capsule1: Some(cap.to_proto()),
        nonce: nonce.to_vec(),
    }
    .encode_to_vec();
    match lock(&f.owner_rx).open_envelope(&sealed, &f.trust, NOW_MS) {
        Ok(sc) => {
            let body: v1::StateChangeBody =
                decode_strict("StateChangeBody", data, usize::MAX).expect("accepted body");
            assert_canonical(&body, data, "StateChangeBody");
            assert_eq!(sc.delta, body.delta);
            true
        }
        Err(_) => false,
    }
}

/// `Receiver::open_delivery` with the fixture's service key (capsule2, Dec^2, AEAD, signature).
pub fn delivery(data: &[u8]) -> bool {
    let f = fixture();
    let mut recv = lock(&f.service_rx);
    let Ok((d, header, c2)) = recv.decode_delivery(data) else {
        return false;
    };
    assert_canonical(&d, data, "Delivery");
    assert_canonical(&header, &d.envelope_header, "EnvelopeHeader");
    assert_eq!(
        Some(c2.encode()),
        d.capsule2.as_ref().map(Message::encode_to_vec),
        "capsule2 re-encodes differently"
    );
    recv.open_delivery(data, &f.trust, NOW_MS, &mut rng(3))
        .is_ok()
}

/// `Capsule1::decode`: every point validated; re-encodes byte for byte.
pub fn capsule1(data: &[u8]) -> bool {
    let Ok(c) = Capsule1::decode(data) else {
        return false;
    };
    assert_eq!(c.encode(), data, "capsule1 is not canonical");
    assert_eq!(c.header().encode(), c.hdr_bytes(), "capsule1 hdr");
    true
}

/// `Capsule2::decode`: re-encodes byte for byte.
pub fn capsule2(data: &[u8]) -> bool {
    let Ok(c) = Capsule2::decode(data) else {
        return false;
    };
    assert_eq!(c.encode(), data, "capsule2 is not canonical");
    assert_eq!(c.header().encode(), c.hdr_bytes(), "capsule2 hdr");
    true
}

/// `Header::decode` (the capsule header's tagged layout): re-encodes byte for byte.
pub fn capsule_header(data: &[u8]) -> bool {
    let Ok(h) = Header::decode(data) else {
        return false;
    };
    assert_eq!(h.encode(), data, "capsule header is not canonical");
    true
}

/// The group decoders under every capsule, re-key and key: byte 0 selects G1, G2, GT (as Z,
/// unchecked subgroup), GT (validated, as Y) or a scalar; each accepted encoding re-encodes to
/// itself.
pub fn points(data: &[u8]) -> bool {
    let (m, b) = mode(data);
    let back: Option<Vec<u8>> = match m % 5 {
        0 => G1::from_bytes(b, "fuzz")
            .ok()
            .map(|p| p.to_bytes().to_vec()),
        1 => G2::from_bytes(b, "fuzz")
            .ok()
            .map(|p| p.to_bytes().to_vec()),
        2 => Gt::from_bytes_unchecked_subgroup(b, "fuzz")
            .ok()
            .map(|p| p.to_bytes().to_vec()),
        3 => Gt::from_bytes_validated(b, "fuzz")
            .ok()
            .map(|p| p.to_bytes().to_vec()),
        _ => Scalar::from_bytes(b, "fuzz")
            .ok()
            .map(|s| s.to_bytes().to_vec()),
    };
    match back {
        Some(back) => {
            assert_eq!(back, b, "group element {} is not canonical", m % 5);
            true
        }
        None => false,
    }
}

/// `ReKey::decode`: every point validated, canonical policy; re-encodes byte for byte.
pub fn rekey(data: &[u8]) -> bool {
    let Ok(rk) = ReKey::decode(data) else {
        return false;
    };
    assert_eq!(rk.encode(), data, "re-key is not canonical");
    true
}

/// `verify_rekey_upload` under the fixture owner. Mode 0: `data` is the signed upload; mode 1:
/// `data` is the `ReKeyUpload` body, signed by the harness.
pub fn rekey_upload(data: &[u8]) -> bool {
    let f = fixture();
    let (m, rest) = mode(data);
    let bytes = if m % 2 == 0 {
        rest.to_vec()
    } else {
        f.owner_sig.sign_to_vec(SigDomain::ReKey, rest.to_vec())
    };
    let Ok(g) = verify_rekey_upload(
        &bytes,
        f.owner_sig.verifying_key(),
        f.owner_pre.key_id(),
        &RevocationSet::default(),
        NOW_MS,
    ) else {
        return false;
    };
    let body = signed_body(&bytes, MAX_REKEY_BYTES + 1024);
    let u: v1::ReKeyUpload = decode_strict("ReKeyUpload", &body, usize::MAX).expect("body");
    assert_canonical(&u, &body, "ReKeyUpload");
    assert_eq!(g.rk.encode(), u.rk, "uploaded re-key is not canonical");
    true
}

/// The owner-signed tokens: byte 0 selects the record (bit 0: 0 signed bytes, 1 a body the harness
/// signs; bits 1-2: write token, process token, revocation, replay request).
pub fn tokens(data: &[u8]) -> bool {
    let f = fixture();
    let (m, rest) = mode(data);
    let kind = (m >> 1) % 4;
    let domain = [
        SigDomain::WriteToken,
        SigDomain::ProcessToken,
        SigDomain::Revocation,
        SigDomain::Replay,
    ][usize::from(kind)];
    let bytes = if m % 2 == 0 {
        rest.to_vec()
    } else {
        f.owner_sig.sign_to_vec(domain, rest.to_vec())
    };
    owner_record(kind, &bytes)
}

/// Verifies an owner-signed control record of `kind` (see [`tokens`]) and checks that an accepted
/// one re-encodes to its bytes.
fn owner_record(kind: u8, bytes: &[u8]) -> bool {
    let f = fixture();
    let owner = f.owner_sig.verifying_key();
    let encoded = match kind {
        0 => verify_write_token(bytes, owner, &RevocationSet::default(), NOW_MS)
            .ok()
            .map(|t| t.into_inner().encode_to_vec()),
        1 => verify_process_token_content(bytes, owner)
            .ok()
            .map(|g| g.into_inner().token.encode_to_vec()),
        2 => verify_revocation(bytes, owner)
            .ok()
            .map(|r| r.into_inner().encode_to_vec()),
        _ => crate::history::verify_replay_request(bytes, owner)
            .ok()
            .map(|r| r.into_inner().encode_to_vec()),
    };
    match encoded {
        Some(e) => {
            assert_eq!(
                e,
                signed_body(bytes, MAX_CONTROL_BYTES),
                "control record {kind} is not canonical"
            );
            true
        }
        None => false,
    }
}

/// A `ControlRecord` of `at.tokens.v1` / `at.control.v1`: strict decoding, then the verifier of the
/// record it carries, under the fixture owner.
pub fn control_record(data: &[u8]) -> bool {
    let Ok(rec) = decode_strict::<v1::ControlRecord>("ControlRecord", data, MAX_CONTROL_BYTES)
    else {
        return false;
    };
    assert_canonical(&rec, data, "ControlRecord");
    use v1::control_record::Record;
    match rec.record {
        Some(Record::RekeyUpload(b)) => rekey_upload(&[[0].as_slice(), &b].concat()),
        Some(Record::WriteToken(b)) => owner_record(0, &b),
        Some(Record::ProcessToken(b)) => owner_record(1, &b),
        Some(Record::Revocation(b)) => owner_record(2, &b),
        Some(Record::ReplayRequest(b)) => owner_record(3, &b),
        None => false,
    }
}

/// `Registry::apply` on a registry holding the fixture's owner, device and service. Mode 0:
/// `data` is a `RegistryRecord`; modes 1 and 2: `data` is a `DeviceEnrollment` or `Revocation`
/// body, signed by the owner and wrapped by the harness.
pub fn registry(data: &[u8]) -> bool {
    let f = fixture();
    let (m, rest) = mode(data);
    use v1::registry_record::Record;
    let bytes = match m % 3 {
        0 => rest.to_vec(),
        1 => crate::registry::record(Record::Enrollment(
            f.owner_sig
                .sign_to_vec(SigDomain::Enrollment, rest.to_vec()),
        )),
        _ => crate::registry::record(Record::DeviceRevocation(
            f.owner_sig
                .sign_to_vec(SigDomain::Revocation, rest.to_vec()),
        )),
    };
    let mut reg = f.registry.clone();
    if reg.apply(&bytes).is_err() {
        return false;
    }
    let rec: v1::RegistryRecord =
        decode_strict("RegistryRecord", &bytes, usize::MAX).expect("accepted record");
    assert_canonical(&rec, &bytes, "RegistryRecord");
    // Folding the same record again changes nothing (redelivery).
    assert!(
        matches!(reg.apply(&bytes), Ok(crate::registry::Applied::Unchanged)),
        "a redelivered registry record is not Unchanged"
    );
    true
}

/// `Receiver::open_share_delivery` for node 1 with the fixture's node key and trust store.
pub fn share_bundle(data: &[u8]) -> bool {
    let f = fixture();
    let mut recv = lock(&f.node_rx);
    let Ok(item) = recv.open_share_delivery(data, &f.trust, NODE, &mut rng(4)) else {
        return false;
    };
    let d: v1::Delivery = decode_strict("Delivery", data, usize::MAX).expect("accepted delivery");
    assert_canonical(&d, data, "Delivery");
    assert_eq!(item.twin_id, TWIN);
    true
}

/// A `PeerMessage` of `at.mpc.peer.v1`: strict decoding (as the node's reader does), then the
/// channel's receiving end (node 2, from node 1, fixed HPKE keys) opened from it and the message
/// opened in it.
pub fn peer_message(data: &[u8]) -> bool {
    let f = fixture();
    let Ok(m) = decode_strict::<v1::PeerMessage>("PeerMessage", data, MAX_PEER_MESSAGE_BYTES)
    else {
        return false;
    };
    assert_canonical(&m, data, "PeerMessage");
    let Ok(mut r) = PeerReceiver::open(&f.node2_hpke, f.node1_hpke.public(), f.channel, &m) else {
        return false;
    };
    r.open_next(&m).is_ok()
}

/// MPC jobs: byte 0 selects mode 0, a `JobSubmission` (strict, then `peek_job` and `verify_job`
/// under the fixture service); mode 1, an `MpcJob` body signed by the harness; mode 2, a
/// `JobFailed` body signed by the harness as node 1 (mode 3: the signed `JobFailed` bytes).
pub fn mpc_job(data: &[u8]) -> bool {
    let f = fixture();
    let (m, rest) = mode(data);
    let service = f.service_sig.verifying_key();
    match m % 4 {
        0 => {
            let Ok(sub) =
                decode_strict::<v1::JobSubmission>("JobSubmission", rest, MAX_JOB_BYTES + 64)
            else {
                return false;
            };
            assert_canonical(&sub, rest, "JobSubmission");
            let peeked = crate::mpcjob::peek_job(&sub.job);
            match crate::mpcjob::verify_job(&sub.job, service) {
                Ok(j) => {
                    let j = j.into_inner();
                    assert_eq!(peeked.ok().as_ref(), Some(&j.job));
                    check_job(&j, &sub.job);
                    true
                }
                Err(_) => false,
            }
        }
        1 => {
            let signed = f.service_sig.sign_to_vec(SigDomain::MpcJob, rest.to_vec());
            match crate::mpcjob::verify_job(&signed, service) {
                Ok(j) => {
                    check_job(&j.into_inner(), &signed);
                    true
                }
                Err(_) => false,
            }
        }
        k => {
            let node = &f.device_sig;
            let signed = if k == 2 {
                node.sign_to_vec(SigDomain::JobFailed, rest.to_vec())
            } else {
                rest.to_vec()
            };
            match crate::mpcjob::verify_job_failed(&signed, node.verifying_key()) {
                Ok(jf) => {
                    let jf = jf.into_inner();
                    let body = signed_body(&signed, MAX_CONTROL_BYTES);
                    let again = v1::JobFailed {
                        version: WIRE_VERSION,
                        job_id: jf.job_id,
                        job_hash: jf.job_hash.to_vec(),
                        attempt: jf.attempt,
                        node_index: jf.node_index,
                        reason: jf.reason,
                        detail: jf.detail,
                    };
                    assert_canonical(&again, &body, "JobFailed");
                    true
                }
                Err(_) => false,
            }
        }
    }
}

fn check_job(j: &crate::mpcjob::SignedJob, signed: &[u8]) {
    let body = signed_body(signed, MAX_JOB_BYTES);
    assert_canonical(&j.job, &body, "MpcJob");
    let hash: [u8; 32] = Sha256::digest(&body).into();
    assert_eq!(
        j.job_hash, hash,
        "job hash is not the hash of the signed body"
    );
}

/// The persisted layouts read back at start-up (revocation set, duplicate guard): byte 0 selects
/// which. Both accept their entries in any order and a repeated entry collapses, so they are not
/// canonical; the property is the weaker one: decoding the re-encoding gives the same value, and
/// the re-encoding is a fixed point.
pub fn local_state(data: &[u8]) -> bool {
    let (m, rest) = mode(data);
    if m % 2 == 0 {
        let Ok(s) = RevocationSet::from_bytes(rest) else {
            return false;
        };
        let enc = s.to_bytes();
        let back = RevocationSet::from_bytes(&enc).expect("re-encoded revocation set decodes");
        assert_eq!(back, s, "revocation set changes through its encoding");
        assert_eq!(back.to_bytes(), enc);
    } else {
        let Ok(g) = crate::replay::ReplayGuard::from_bytes(rest) else {
            return false;
        };
        let enc = g.to_bytes();
        let back = crate::replay::ReplayGuard::from_bytes(&enc).expect("re-encoded guard decodes");
        assert_eq!(
            back.to_bytes(),
            enc,
            "duplicate guard changes through its encoding"
        );
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// Inputs per target name.
pub type Seeds = Vec<(&'static str, Vec<Vec<u8>>)>;

/// Small valid inputs for every target, made by the real encoders with the fixture's keys
/// (deterministic). `fuzz/corpus/<target>/` holds them; the ignored test `write_seed_corpus`
/// rewrites it.
pub fn seeds() -> Seeds {
    let f = fixture();
    let mut r = rng(5);
    let with = |m: u8, b: &[u8]| [&[m][..], b].concat();

    let policy_texts = [
        "sync AND (location OR node-2)",
        "2 of (a, b, c)",
        "or(and(sync,location),2of3(x,y,z))",
        "mpc-share AND location AND node-1",
    ];

    // A state change sealed by the device (epoch 5, sync + location), and its body.
    let (env_bytes, cap1) = {
        let mut epochs = f.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let key = epochs
            .key_for(5, &["sync", "location"], &mut r)
            .expect("epoch key");
        let input = StateChangeInput {
            device_id: DEVICE.into(),
            seq: 1,
            observed_at_ms: NOW_MS,
            delta: b"{\"t\":21.5}".to_vec(),
            write_token: None,
            expires_at_ms: 0,
        };
        let env = seal_state_change(key, &f.device_sig, &input, &mut r).expect("seal");
        (env, key.capsule().clone())
    };
    let (env, header, _) = decode_envelope(&env_bytes).expect("seed envelope");
    let body = v1::StateChangeBody {
        version: WIRE_VERSION,
        header: env.header.clone(),
        observed_at_ms: NOW_MS,
        delta: b"{\"t\":21.5}".to_vec(),
        write_token: Vec::new(),
    }
    .encode_to_vec();
    parse_header(&env.header).expect("seed header");
    let _ = header;

    // The service's re-key and the delivery it yields.
    let policy = Policy::parse("sync AND location").expect("policy");
    let rk = ReKey::generate(&f.owner_pre, &policy, f.service_pre.public(), &mut r).expect("rk");
    let c2 = reencrypt(&rk, &cap1.clone().check(&mut r).expect("check")).expect("reenc");
    let delivery_bytes = make_delivery(&env, &c2, None);

    // Node 1's share bundle and its delivery.
    let share_delivery = {
        let mut epochs = f.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let attrs = crate::shares::share_attributes(NODE).expect("attrs");
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        // The fixture made this key: no randomness is drawn here.
        let key = epochs.key_for(9, &attrs, &mut r).expect("share key");
        let input = ShareInput {
            device_id: DEVICE.into(),
            item_id: 3,
            slot: 9,
            node_index: NODE,
            values: vec![5, 7],
            seq: 2,
        };
        let env_bytes = seal_share_bundle(key, &f.device_sig, &input, &mut r).expect("share");
        let (env, _, cap) = decode_envelope(&env_bytes).expect("share envelope");
        let p = Policy::parse("mpc-share AND location AND node-1").expect("node policy");
        let rk = ReKey::generate(&f.owner_pre, &p, &f.node_public, &mut r).expect("rk");
        let c2 = reencrypt(&rk, &cap.check(&mut r).expect("check")).expect("reenc");
        make_delivery(&env, &c2, None)
    };

    // Control records.
    let upload = issue_rekey_upload(
        &f.owner_sig,
        &rk,
        &ReKeyUploadInput {
            receiver_kind: ReceiverKind::Service,
            receiver_id: SERVICE,
            not_after_ms: Some(NOW_MS + 1),
            history_from_epoch: None,
        },
    );
    let write_token = issue_write_token_for(
        &f.owner_sig,
        TWIN,
        f.service_sig.verifying_key(),
        0,
        NOW_MS + 1,
        &mut r,
    );
    let process_token = issue_process_token(
        &f.owner_sig,
        &ProcessTokenInput {
            policy: &Policy::parse("mpc-share AND location").expect("policy"),
            receiver_key_id: f.service_pre.key_id(),
            receiver_sig_key_id: f.service_sig.key_id(),
            receiver_hpke_key: f.node1_hpke.public(),
            grants: vec![v1::FunctionGrant {
                function: "contact-tracing/v1".into(),
                distance: 4,
                slot_len_ms: 60_000,
                window_alignment: 1,
                min_window_slots: 1,
                max_jobs_per_window: 2,
                reference_designator_key_id: f.service_sig.key_id().0.to_vec(),
            }],
            not_after_ms: NOW_MS + 1,
        },
        &mut r,
    );
    let revocation = issue_revocation(
        &f.owner_sig,
        RevocationKind::WriteToken,
        &[9; 16],
        NOW_MS,
        None,
    );
    let (_, replay) =
        crate::history::issue_replay_request(&f.owner_sig, rk.rk_id(), 3, NOW_MS, &mut r);
    let body_of = |signed: &[u8]| decode_signed(signed, usize::MAX).expect("signed").body;
    let control = |rec: v1::control_record::Record| {
        v1::ControlRecord {
            version: WIRE_VERSION,
            record: Some(rec),
        }
        .encode_to_vec()
    };
    use v1::control_record::Record as C;

    // Registry: a second device of the twin, and the revocation of the fixture's device.
    let device2 = SigningKey::from_bytes(&[0x23; 32]).expect("device 2");
    let device2_pre = SecretKey::from_bytes(&[0x24; 32], &mut r).expect("device 2 PRE");
    let enroll2 = enroll_device(
        &f.owner_sig,
        TWIN,
        "d2",
        device2_pre.public(),
        device2.verifying_key(),
        60_000,
    );
    let dev_revocation = issue_revocation(
        &f.owner_sig,
        RevocationKind::Device,
        f.device_sig.key_id().as_bytes(),
        NOW_MS,
        Some(10),
    );
    use v1::registry_record::Record as R;

    // Peer channel node 1 -> node 2.
    let mut sender =
        PeerSender::open(&f.node1_hpke, f.node2_hpke.public(), f.channel, &mut r).expect("hpke");
    let hello = sender.seal(u32::MAX, 0, 1, &[1; 16]).expect("seal");

    // An MPC job of the service, and a node's failure report.
    let job = v1::MpcJob {
        version: WIRE_VERSION,
        job_id: "job-1".into(),
        function: "contact-tracing/v1".into(),
        service_id: SERVICE.into(),
        reference: Some(v1::JobParticipant {
            twin_id: TWIN.into(),
            token_id: vec![1; 16],
        }),
        distance: 4,
        window_start_slot: 9,
        window_slots: 2,
        participants: vec![v1::JobParticipant {
            twin_id: "t2".into(),
            token_id: vec![2; 16],
        }],
        node_ids: vec!["n1".into(), "n2".into(), "n3".into()],
        designation: Vec::new(),
        designator_key_id: f.service_sig.key_id().0.to_vec(),
        submitted_at_ms: NOW_MS,
    };
    let signed_job = crate::mpcjob::sign_job(&f.service_sig, &job);
    let submission = v1::JobSubmission {
        version: WIRE_VERSION,
        job: signed_job,
        attempt: 1,
    }
    .encode_to_vec();
    let failed = crate::mpcjob::sign_job_failed(
        &f.device_sig,
        &crate::mpcjob::JobFailure {
            job_id: "job-1".into(),
            job_hash: [3; 32],
            attempt: 1,
            node_index: 2,
            reason: "timeout".into(),
            detail: "round 4".into(),
        },
    );

    // Persisted state.
    let mut guard = crate::replay::ReplayGuard::new();
    guard
        .check(TWIN, f.device_sig.key_id(), 7)
        .expect("fresh seq");
    let mut revs = RevocationSet::default();
    revs.apply(
        &verify_revocation(&dev_revocation, f.owner_sig.verifying_key()).expect("revocation"),
    );

    let cap1_bytes = cap1.encode();
    vec![
        (
            "policy",
            policy_texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
        ),
        ("envelope", vec![env_bytes.clone()]),
        ("state_change", vec![body]),
        ("delivery", vec![delivery_bytes.clone()]),
        ("capsule1", vec![cap1_bytes]),
        ("capsule2", vec![c2.encode()]),
        ("capsule_header", vec![cap1.hdr_bytes().to_vec()]),
        (
            "points",
            vec![
                with(0, &G1::generator().to_bytes()),
                with(1, &G2::generator().to_bytes()),
                with(2, &f.owner_pre.public().to_bytes()),
                with(3, &f.owner_pre.public().to_bytes()),
                with(4, &Scalar::from_u64(7).to_bytes()),
            ],
        ),
        ("rekey", vec![rk.encode()]),
        (
            "rekey_upload",
            vec![with(0, &upload), with(1, &body_of(&upload))],
        ),
        (
            "tokens",
            vec![
                with(0, &write_token),
                with(1, &body_of(&write_token)),
                with(2, &process_token),
                with(3, &body_of(&process_token)),
                with(4, &revocation),
                with(5, &body_of(&revocation)),
                with(6, &replay),
                with(7, &body_of(&replay)),
            ],
        ),
        (
            "control_record",
            vec![
                control(C::RekeyUpload(upload.clone())),
                control(C::WriteToken(write_token.clone())),
                control(C::ProcessToken(process_token.clone())),
                control(C::Revocation(revocation.clone())),
                control(C::ReplayRequest(replay.clone())),
            ],
        ),
        (
            "registry",
            vec![
                with(0, &crate::registry::record(R::Enrollment(enroll2.clone()))),
                with(
                    0,
                    &crate::registry::record(R::DeviceRevocation(dev_revocation.clone())),
                ),
                with(1, &body_of(&enroll2)),
                with(2, &body_of(&dev_revocation)),
            ],
        ),
        ("share_bundle", vec![share_delivery]),
        ("peer_message", vec![hello.encode_to_vec()]),
        (
            "mpc_job",
            vec![
                with(0, &submission),
                with(1, &job.encode_to_vec()),
                with(2, &body_of(&failed)),
                with(3, &failed),
            ],
        ),
        (
            "local_state",
            vec![with(0, &revs.to_bytes()), with(1, &guard.to_bytes())],
        ),
    ]
}

/// Inputs that once broke a target (regression seeds), kept next to the generated seeds.
pub fn regressions() -> Seeds {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn corpus_dir(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target)
    }

    fn target(name: &str) -> Target {
        *TARGETS
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no target {name}"))
    }

    /// Every generated seed is accepted (the harness reaches the deepest checks), and every target
    /// has seeds.
    #[test]
    fn fuzz_seeds_are_accepted() {
        let seeds = seeds();
        for t in TARGETS {
            let s = seeds
                .iter()
                .find(|(n, _)| *n == t.name)
                .unwrap_or_else(|| panic!("no seeds for {}", t.name));
            assert!(!s.1.is_empty());
            for (i, input) in s.1.iter().enumerate() {
                assert!((t.run)(input), "seed {i} of {} is refused", t.name);
            }
        }
    }

    /// Every committed corpus file of every target runs without a finding.
    #[test]
    fn fuzz_committed_corpus() {
        for t in TARGETS {
            let dir = corpus_dir(t.name);
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e} (run write_seed_corpus)", dir.display()));
            let mut n = 0;
            for e in entries {
                let bytes = std::fs::read(e.unwrap().path()).unwrap();
                (t.run)(&bytes);
                n += 1;
            }
            assert!(n > 0, "empty corpus for {}", t.name);
        }
        for (name, inputs) in regressions() {
            for input in inputs {
                (target(name).run)(&input);
            }
        }
    }

    /// Rewrites `fuzz/corpus/<target>/seed-<i>` from [`seeds`] and [`regressions`].
    #[test]
    #[ignore = "writes the seed corpus; run by hand after changing an encoder"]
    fn write_seed_corpus() {
        for (name, inputs) in seeds() {
            let dir = corpus_dir(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, input) in inputs.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), input).unwrap();
            }
        }
        for (name, inputs) in regressions() {
            let dir = corpus_dir(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, input) in inputs.iter().enumerate() {
                std::fs::write(dir.join(format!("regression-{i}")), input).unwrap();
            }
        }
    }

    /// One byte-level mutation: overwrite, flip, insert, delete or truncate at a position.
    fn mutate(mut v: Vec<u8>, ops: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(pos, byte, op) in ops {
            let at = if v.is_empty() { 0 } else { pos % v.len() };
            match op % 5 {
                0 if !v.is_empty() => v[at] = byte,
                1 if !v.is_empty() => v[at] ^= 1 << (byte % 8),
                2 => v.insert(at, byte),
                3 if !v.is_empty() => {
                    v.remove(at);
                }
                4 => v.truncate(at),
                _ => {}
            }
        }
        v
    }

    fn config() -> ProptestConfig {
        // Cases come from PROPTEST_CASES (CI: 64); no regression files in the source tree.
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Random bytes into every target (with a mode byte in front, where targets have modes).
        #[test]
        fn fuzz_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            for t in TARGETS {
                (t.run)(&data);
            }
        }

        /// Mutated seeds: each target's seeds, mutated a few bytes at a time.
        #[test]
        fn fuzz_mutated_seeds(
            pick in any::<usize>(),
            ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        ) {
            for (name, inputs) in seeds_cached() {
                let seed = inputs[pick % inputs.len()].clone();
                (target(name).run)(&mutate(seed, &ops));
            }
        }
    }

    fn seeds_cached() -> &'static [(&'static str, Vec<Vec<u8>>)] {
        static S: OnceLock<Seeds> = OnceLock::new();
        S.get_or_init(seeds)
    }
}
