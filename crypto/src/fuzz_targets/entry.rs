//! The entry points: one per decoder, each asserting its property.

// The fixture is built from constants: a failure there is a broken harness, not input-derived.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use armored_schemas::limits::{
    MAX_CONTROL_BYTES, MAX_JOB_BYTES, MAX_PEER_MESSAGE_BYTES, MAX_REKEY_BYTES,
};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use sha2::{Digest, Sha256};

use super::fixture::*;
use crate::domain::SigDomain;
use crate::envelope::decode_envelope;
use crate::group::{Gt, Scalar, G1, G2};
use crate::kpcpre::{Capsule1, Capsule2, Header, Policy, ReKey};
use crate::peer::PeerReceiver;
use crate::tokens::{
    verify_process_token_content, verify_rekey_upload, verify_revocation, verify_write_token,
    RevocationSet,
};

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
    let Ok(item) = recv.open_share_delivery(data, &f.trust, NODE, 1, &mut rng(4)) else {
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

/// Audit batches of `at.audit.v1`: byte 0 selects mode 0, the signed record (`open_batch`, which
/// verifies under the key the body names); mode 1, an `AuditBatch` body signed by the harness with
/// the fixture's service key, named in the body or not (the body's decoder and the checks behind
/// the signature).
pub fn audit_batch(data: &[u8]) -> bool {
    let f = fixture();
    let (m, rest) = mode(data);
    let signed = if m % 2 == 0 {
        rest.to_vec()
    } else {
        f.service_sig.sign_to_vec(SigDomain::Audit, rest.to_vec())
    };
    let Ok(b) = crate::audit::open_batch(&signed) else {
        return false;
    };
    let s = crate::sig::decode_signed(&signed, usize::MAX).expect("accepted batch");
    assert_canonical(&s, &signed, "Signed");
    let body: v1::AuditBatch = decode_strict("AuditBatch", &s.body, usize::MAX).expect("body");
    assert_canonical(&body, &s.body, "AuditBatch");
    assert_eq!(body.entries, b.entries);
    assert_eq!(body.worker_key, b.worker_key.to_sec1());
    assert!(b.entries.len() <= armored_schemas::limits::MAX_AUDIT_ENTRIES);
    true
}
