//! Write-token revocations for devices (envelope.md: "Revocations that concern devices … are also
//! pushed to devices over MQTT"). The bridge follows `at.tokens.v1`, learns which twin each write
//! token is for (verified against that twin's owner), and keeps each twin's owner-signed
//! write-token revocations; they travel in the twin's retained roster, beside the device
//! revocations, and every device verifies them against the owner key it pinned.

use std::collections::{HashMap, HashSet};

use armored_crypto::registry::Registry;
use armored_crypto::tokens::{verify_revocation, verify_write_token_signature, RevocationKind};
use armored_schemas::decode_strict;
use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::v1::{control_record::Record, ControlRecord};

/// Token records kept while their twin's owner is unknown: a flood of tokens for twins nobody owns
/// cannot grow the bridge's memory. Beyond it a new one is dropped (with a warning): its twin's
/// devices then learn its revocation only from the owner's next roster push after a restart.
const MAX_PENDING: usize = 4_096;

/// What the bridge knows of write tokens.
#[derive(Debug, Default)]
pub(crate) struct WriteTokens {
    twin_of: HashMap<Vec<u8>, String>,
    /// Token records whose twin had no known owner yet (retried when needed).
    pending: Vec<Vec<u8>>,
    revoked: HashSet<Vec<u8>>,
    by_twin: HashMap<String, Vec<Vec<u8>>>,
}

impl WriteTokens {
    /// Applies one record of `at.tokens.v1`; returns the twin whose roster must be pushed again.
    pub fn apply(&mut self, bytes: &[u8], registry: &Registry) -> Option<String> {
        let rec: ControlRecord = decode_strict("ControlRecord", bytes, MAX_CONTROL_BYTES).ok()?;
        match rec.record? {
            Record::WriteToken(t) => {
                if !self.learn(&t, registry) {
                    if self.pending.len() < MAX_PENDING {
                        self.pending.push(t);
                    } else {
                        tracing::warn!(
                            max = MAX_PENDING,
                            "write token of an unknown twin dropped: too many wait already"
                        );
                    }
                }
                None
            }
            Record::Revocation(r) => {
                if !self.pending.is_empty() {
                    let pending = std::mem::take(&mut self.pending);
                    for t in pending {
                        if !self.learn(&t, registry) {
                            self.pending.push(t);
                        }
                    }
                }
                self.revoke(&r, registry)
            }
            _ => None,
        }
    }

    fn learn(&mut self, token: &[u8], registry: &Registry) -> bool {
        // The twin named inside is only a claim until the twin's owner's signature verifies.
        let Some(twin) = peek_twin(token) else {
            return true; // undecodable: nothing to learn, nothing to retry
        };
        let Some(owner) = registry.twin_owner(&twin) else {
            return false;
        };
        if let Ok(t) = verify_write_token_signature(token, &owner.sig) {
            self.twin_of.insert(t.token_id.clone(), twin);
        }
        true
    }

    fn revoke(&mut self, bytes: &[u8], registry: &Registry) -> Option<String> {
        // Find the revoked token's twin without trusting the record, then verify under its owner.
        let signed = armored_crypto::sig::decode_signed(bytes, MAX_CONTROL_BYTES).ok()?;
        let claimed: armored_schemas::v1::Revocation =
            decode_strict("Revocation", &signed.body, MAX_CONTROL_BYTES).ok()?;
        let twin = self.twin_of.get(&claimed.id)?.clone();
        let owner = registry.twin_owner(&twin)?;
        let r = verify_revocation(bytes, &owner.sig).ok()?;
        if r.kind != RevocationKind::WriteToken as i32 || !self.revoked.insert(r.id.clone()) {
            return None;
        }
        self.by_twin
            .entry(twin.clone())
            .or_default()
            .push(bytes.to_vec());
        Some(twin)
    }

    /// The owner-signed write-token revocations of `twin`.
    pub fn revocations(&self, twin: &str) -> &[Vec<u8>] {
        self.by_twin
            .get(twin)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

fn peek_twin(token: &[u8]) -> Option<String> {
    let signed = armored_crypto::sig::decode_signed(token, MAX_CONTROL_BYTES).ok()?;
    let t: armored_schemas::v1::WriteToken =
        decode_strict("WriteToken", &signed.body, MAX_CONTROL_BYTES).ok()?;
    Some(t.twin_id)
}
