//! Revocations: sticky, signed by the owner, written under the key of what they revoke.

use std::collections::{HashMap, HashSet};

use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;

use super::{check_signer, open_signed, RevocationKind};
use crate::domain::SigDomain;
use crate::encoding::{Reader, Writer};
use crate::error::{check_version, Error, Result};
use crate::keyid::KeyId;
use crate::sig::{SigningKey, VerifyingKey};
use crate::verified::Verified;

/// Sticky revocations: once an id is revoked it is never re-admitted, whatever arrives later.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationSet {
    ids: HashSet<(i32, Vec<u8>)>,
    devices: HashMap<KeyId, u64>,
}

impl RevocationSet {
    /// Applies a verified revocation.
    pub fn apply(&mut self, r: &Verified<v1::Revocation>) {
        if r.kind == RevocationKind::Device as i32 {
            if let Ok(kid) = KeyId::from_slice(&r.id, "revocation.id") {
                let last = r.last_valid_seq.unwrap_or(0);
                // Sticky and monotone: a later revocation can only lower the bound.
                let e = self.devices.entry(kid).or_insert(last);
                *e = (*e).min(last);
            }
        }
        self.ids.insert((r.kind, r.id.clone()));
    }

    /// Whether (kind, id) is revoked.
    pub fn is_revoked(&self, kind: RevocationKind, id: &[u8]) -> bool {
        self.ids.contains(&(kind as i32, id.to_vec()))
    }

    /// Whether a device's state change with `seq` is past its revocation.
    pub fn device_revoked(&self, device_key: &KeyId, seq: u64) -> bool {
        self.devices.get(device_key).is_some_and(|last| seq > *last)
    }

    /// Serialises the set (for persistence; sorted, deterministic).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut ids: Vec<_> = self.ids.iter().collect();
        ids.sort();
        let mut w = Writer::new();
        for (kind, id) in ids {
            w.push(1, &kind.to_be_bytes());
            w.push(2, id);
        }
        let mut devs: Vec<_> = self.devices.iter().collect();
        devs.sort();
        for (k, seq) in devs {
            w.push(3, k.as_bytes());
            w.push(4, &seq.to_be_bytes());
        }
        w.finish()
    }

    /// Restores a persisted set.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new("revocation set", bytes);
        let mut s = Self::default();
        while r.peek_tag() == Some(1) {
            let kind = r.u32(1)? as i32;
            s.ids.insert((kind, r.field(2)?.to_vec()));
        }
        while r.peek_tag() == Some(3) {
            let k = KeyId::from_slice(r.field(3)?, "revocation.device")?;
            s.devices.insert(k, r.u64(4)?);
        }
        r.finish()?;
        Ok(s)
    }
}

/// Issues a revocation (written to the same topic, under the same key, as what it revokes).
pub fn issue_revocation(
    owner: &SigningKey,
    kind: RevocationKind,
    id: &[u8],
    revoked_at_ms: u64,
    last_valid_seq: Option<u64>,
) -> Vec<u8> {
    let body = v1::Revocation {
        version: WIRE_VERSION,
        owner_sig_key_id: owner.key_id().0.to_vec(),
        kind: kind as i32,
        id: id.to_vec(),
        revoked_at_ms,
        last_valid_seq,
    };
    owner.sign_to_vec(SigDomain::Revocation, body.encode_to_vec())
}

/// Verifies a revocation signed by `owner`.
pub fn verify_revocation(bytes: &[u8], owner: &VerifyingKey) -> Result<Verified<v1::Revocation>> {
    let r: v1::Revocation = open_signed(
        bytes,
        MAX_CONTROL_BYTES,
        owner,
        SigDomain::Revocation,
        "Revocation",
    )?;
    check_version("Revocation", r.version)?;
    check_signer(&r.owner_sig_key_id, owner, "revocation")?;
    if RevocationKind::try_from(r.kind).map_or(true, |k| k == RevocationKind::Unspecified)
        || r.id.is_empty()
    {
        return Err(Error::InvalidField {
            field: "revocation.kind/id",
            reason: "unknown kind or empty id",
        });
    }
    Ok(Verified::new(r))
}
