//! The re-encryption workers' audit trail (issue 19): for every delivery it produces, a worker
//! records an [`v1::AuditEntry`] (re-key, receiver, twin, epoch, attribute-set digest, capsule id,
//! time, source record, SHA-256 of the delivery) and signs the entries of a routed batch together
//! as one [`v1::AuditBatch`] with its own P-256 key, under the domain `at/v1/audit`
//! (`Signed { body, signature }` on `at.audit.v1`). One signature per batch rather than per
//! delivery: signing costs ~130 µs, as much as the rest of a cached delivery, and the hot path
//! has no per-message asymmetric crypto (envelope.md).
//!
//! A batch names the key that signed it; [`open_batch`] checks that the signature verifies under
//! that key. Whether the key is one the reader trusts (a worker key the owner pinned) is the
//! reader's decision: a batch that verifies under a key nobody pinned is an "unknown signer".
//! Entries never carry a key, a capsule or a plaintext.

use armored_schemas::limits::{MAX_AUDIT_BATCH_BYTES, MAX_AUDIT_ENTRIES};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::domain::{tag, SigDomain, AUDIT_ATTRIBUTES};
use crate::encoding::Writer;
use crate::error::{check_version, Error, Result};
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::tokens::ReceiverKind;

/// SHA-256 of an attribute set, independent of order: the layout of the domain
/// `at/v1/audit-attributes` and each attribute (tag, u32 BE length, bytes) in sorted order.
pub fn attributes_digest(attributes: &[String]) -> [u8; 32] {
    let mut sorted: Vec<&str> = attributes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut w = Writer::new().field(tag::DOMAIN, AUDIT_ATTRIBUTES);
    for a in sorted {
        w.push(tag::ATTRIBUTE, a.as_bytes());
    }
    Sha256::digest(w.finish()).into()
}

/// SHA-256 of a delivery's payload bytes, as an entry names it.
pub fn delivery_digest(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// Signs `entries` (at most [`MAX_AUDIT_ENTRIES`]; the caller splits larger sets with
/// [`split_entries`]) as one batch of worker `instance`; the encoded `Signed` record.
pub fn seal_batch(
    key: &SigningKey,
    instance: &str,
    sealed_at_ms: u64,
    entries: Vec<v1::AuditEntry>,
) -> Vec<u8> {
    let body = v1::AuditBatch {
        version: WIRE_VERSION,
        worker_instance: instance.to_string(),
        worker_key: key.verifying_key().to_sec1(),
        sealed_at_ms,
        entries,
    };
    key.sign_to_vec(SigDomain::Audit, body.encode_to_vec())
}

/// Bytes of entries a sealed batch holds at most (room left for the batch's own fields and the
/// signature under [`MAX_AUDIT_BATCH_BYTES`]).
const BATCH_ENTRY_BYTES: usize = MAX_AUDIT_BATCH_BYTES - 4 * 1024;

/// Splits `entries` into groups that each seal within the limits (count and bytes), in order.
pub fn split_entries(entries: Vec<v1::AuditEntry>) -> Vec<Vec<v1::AuditEntry>> {
    let mut out = Vec::new();
    let (mut cur, mut bytes) = (Vec::new(), 0usize);
    for e in entries {
        // Field tag + length prefix + the entry.
        let n = e.encoded_len() + 6;
        if !cur.is_empty() && (cur.len() >= MAX_AUDIT_ENTRIES || bytes + n > BATCH_ENTRY_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push(e);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// An audit batch whose signature verified under the key it names.
#[derive(Clone, Debug)]
pub struct AuditBatch {
    /// The worker instance that says it wrote it.
    pub worker_instance: String,
    /// The key that signed it (trusted only if the reader pinned it).
    pub worker_key: VerifyingKey,
    /// When the worker signed it.
    pub sealed_at_ms: u64,
    /// Its entries, each checked for shape.
    pub entries: Vec<v1::AuditEntry>,
}

/// Decodes a record of `at.audit.v1` (strict, bounded) and verifies its signature under the key
/// it names; checks every entry's shape (ids and digests of their lengths, a known receiver kind).
pub fn open_batch(bytes: &[u8]) -> Result<AuditBatch> {
    let signed = decode_signed(bytes, MAX_AUDIT_BATCH_BYTES)?;
    let body: v1::AuditBatch = decode_strict("AuditBatch", &signed.body, MAX_AUDIT_BATCH_BYTES)?;
    check_version("AuditBatch", body.version)?;
    if body.entries.len() > MAX_AUDIT_ENTRIES {
        return Err(Error::InvalidField {
            field: "audit_batch.entries",
            reason: "more entries than a batch may hold",
        });
    }
    let worker_key = VerifyingKey::from_sec1(&body.worker_key)?;
    worker_key.verify(SigDomain::Audit, &signed, "audit batch")?;
    for e in &body.entries {
        check_entry(e)?;
    }
    Ok(AuditBatch {
        worker_instance: body.worker_instance,
        worker_key,
        sealed_at_ms: body.sealed_at_ms,
        entries: body.entries,
    })
}

fn check_entry(e: &v1::AuditEntry) -> Result<()> {
    let len = |field: &'static str, got: usize, want: usize| {
        if got == want {
            Ok(())
        } else {
            Err(Error::InvalidField {
                field,
                reason: "wrong length",
            })
        }
    };
    len("audit_entry.rk_id", e.rk_id.len(), 16)?;
    len(
        "audit_entry.attributes_digest",
        e.attributes_digest.len(),
        32,
    )?;
    len("audit_entry.capsule_id", e.capsule_id.len(), 32)?;
    len("audit_entry.delivery_sha256", e.delivery_sha256.len(), 32)?;
    match ReceiverKind::try_from(e.receiver_kind) {
        Ok(ReceiverKind::Device | ReceiverKind::Service | ReceiverKind::MpcNode) => Ok(()),
        _ => Err(Error::InvalidField {
            field: "audit_entry.receiver_kind",
            reason: "unknown receiver kind",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn entry(i: u8) -> v1::AuditEntry {
        v1::AuditEntry {
            rk_id: vec![i; 16],
            receiver_kind: ReceiverKind::Service as i32,
            receiver_id: "insurer".into(),
            twin_id: "bike-7".into(),
            epoch: 7,
            attributes_digest: attributes_digest(&["sync".into(), "twin:bike-7".into()]).to_vec(),
            capsule_id: vec![2; 32],
            at_ms: 1_000,
            source_topic: "at.sync.v1".into(),
            source_partition: 3,
            source_offset: 42,
            delivery_topic: "at.deliver.v1".into(),
            delivery_sha256: delivery_digest(&[i]).to_vec(),
            replay_request_id: String::new(),
        }
    }

    #[test]
    fn a_sealed_batch_opens_under_its_key_and_a_tampered_one_does_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(19);
        let k = SigningKey::generate(&mut rng);
        let bytes = seal_batch(&k, "w1", 5, vec![entry(1), entry(2)]);
        let b = open_batch(&bytes).expect("opens");
        assert_eq!(b.worker_key, *k.verifying_key());
        assert_eq!(b.worker_instance, "w1");
        assert_eq!(b.entries, vec![entry(1), entry(2)]);

        // A flipped bit anywhere: refused (bad signature, or not even decodable).
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            assert!(open_batch(&t).is_err(), "flipped byte {i} accepted");
        }
        // Another key claimed in the body: the signature does not verify under it.
        let other = SigningKey::generate(&mut rng);
        let mut signed = decode_signed(&bytes, MAX_AUDIT_BATCH_BYTES).expect("signed");
        let mut body: v1::AuditBatch =
            decode_strict("AuditBatch", &signed.body, MAX_AUDIT_BATCH_BYTES).expect("body");
        body.worker_key = other.verifying_key().to_sec1();
        signed.body = body.encode_to_vec();
        assert!(matches!(
            open_batch(&signed.encode_to_vec()),
            Err(Error::BadSignature(_))
        ));
        // Signed under another domain by the right key: refused.
        let wrong = k.sign_to_vec(SigDomain::Replay, signed.body.clone());
        assert!(open_batch(&wrong).is_err());
    }

    #[test]
    fn bounds_and_shapes_are_checked() {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let k = SigningKey::generate(&mut rng);
        let too_many = seal_batch(&k, "w", 0, vec![entry(1); MAX_AUDIT_ENTRIES + 1]);
        assert!(matches!(
            open_batch(&too_many),
            Err(Error::InvalidField { .. })
        ));
        let mut short = entry(1);
        short.rk_id.pop();
        assert!(open_batch(&seal_batch(&k, "w", 0, vec![short])).is_err());
        let mut kind = entry(1);
        kind.receiver_kind = 0;
        assert!(open_batch(&seal_batch(&k, "w", 0, vec![kind])).is_err());
        assert!(open_batch(&vec![0x0a; MAX_AUDIT_BATCH_BYTES + 1]).is_err());
        assert!(open_batch(b"\x08\x01garbage").is_err());

        // Splitting keeps order and every group within the count.
        let groups = split_entries(vec![entry(3); 2 * MAX_AUDIT_ENTRIES + 5]);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_AUDIT_ENTRIES, MAX_AUDIT_ENTRIES, 5]
        );
        for g in groups {
            assert!(open_batch(&seal_batch(&k, "w", 0, g)).is_ok());
        }
    }

    #[test]
    fn the_attribute_digest_ignores_order_and_separates_names() {
        let d =
            |a: &[&str]| attributes_digest(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(d(&["a", "b"]), d(&["b", "a"]));
        assert_ne!(d(&["ab"]), d(&["a", "b"]));
        assert_ne!(d(&["a"]), d(&[]));
    }
}
