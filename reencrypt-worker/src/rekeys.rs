//! The re-key store, folded from `at.rekeys.v1` (phase 2): owner-signed uploads verified against the
//! owner's registered keys, and sticky revocations. A revocation counts only when signed by the
//! owner of the re-key it names, whichever arrives first; revoked ids are persisted.

use armored_schemas::Refusal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use armored_crypto::registry::Registry;
use armored_crypto::sig::decode_signed;
use armored_crypto::tokens::{verify_rekey_upload, verify_revocation, ReKeyGrant, RevocationSet};
use armored_crypto::{Error as CryptoError, KeyId};
use armored_schemas::decode_strict;
use armored_schemas::limits::{MAX_CONTROL_BYTES, MAX_REKEY_BYTES};
use armored_schemas::v1::{self, control_record::Record, RevocationKind};

/// A usable re-key and whose it is.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The owner that signed it.
    pub owner_id: String,
    /// The verified grant.
    pub grant: ReKeyGrant,
}

/// What folding a record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// A re-key became usable.
    Added,
    /// A re-key was revoked (purge caches).
    Revoked,
    /// Its owner is not in the registry yet; retried when the registry moves.
    Pending,
    /// Nothing new.
    Unchanged,
}

/// Why a control record was refused (dead-letter reasons).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Signature, key binding, expiry or format.
    #[error("re-key record rejected: {0}")]
    Invalid(#[from] CryptoError),
    /// Signed by a key no registered owner holds.
    #[error("re-key record signed by an unknown owner key")]
    UnknownOwner,
    /// A record type that does not belong on the re-key topic.
    #[error("record type not allowed on the re-key topic")]
    WrongTopic,
    /// A revocation for a re-key of another owner.
    #[error("revocation of another owner's re-key")]
    ForeignRevocation,
    /// [`MAX_PENDING`] uploads already wait for their owner: a flood of uploads naming unknown
    /// owners cannot grow the worker's memory (the owner uploads again once registered).
    #[error("too many re-key uploads wait for their owner")]
    PendingFull,
}

/// The revocation state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Not readable.
    #[error("reading {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// A line that is not `{rk id hex} {owner id}`.
    #[error("{0}, line {1}: not '<re-key id, 32 hex digits> <owner id>'; fix or remove the file (the re-key topic holds every revocation)")]
    Corrupt(PathBuf, usize),
}

/// Uploads kept while their owner is not in the registry yet.
pub const MAX_PENDING: usize = 4_096;

impl Refusal for Refused {
    fn reason(&self) -> &'static str {
        match self {
            Refused::Invalid(e) => e.reason(),
            Refused::UnknownOwner => "unknown_owner",
            Refused::WrongTopic => "wrong_topic",
            Refused::ForeignRevocation => "foreign_revocation",
            Refused::PendingFull => "pending_full",
        }
    }
}

/// The folded store.
#[derive(Debug, Default)]
pub struct ReKeyStore {
    grants: HashMap<[u8; 16], Arc<Grant>>,
    by_owner_pre: HashMap<KeyId, Vec<[u8; 16]>>,
    /// rk_id → owner id of the revoker (sticky).
    revoked: HashMap<[u8; 16], String>,
    pending: Vec<(Instant, Vec<u8>)>,
    state_file: Option<PathBuf>,
}

impl ReKeyStore {
    /// A store that persists revocations to `state_file` (and reloads them from it). A file that
    /// cannot be read or holds a line that is not `{rk id hex} {owner id}` is an error: starting
    /// without the revocations it holds would be worse than not starting.
    pub fn new(state_file: Option<PathBuf>) -> Result<Self, StateFileError> {
        let mut s = Self {
            state_file,
            ..Self::default()
        };
        let Some(path) = s.state_file.clone() else {
            return Ok(s);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(s),
            Err(e) => return Err(StateFileError::Read(path, e)),
        };
        for (i, line) in text.lines().enumerate() {
            let parsed = line.split_once(' ').and_then(|(id, owner)| {
                let k = <[u8; 16]>::try_from(hex::decode(id).ok()?.as_slice()).ok()?;
                (!owner.is_empty()).then(|| (k, owner.to_string()))
            });
            let Some((k, owner)) = parsed else {
                return Err(StateFileError::Corrupt(path, i + 1));
            };
            s.revoked.insert(k, owner);
        }
        Ok(s)
    }

    /// Usable re-keys whose delegator is the owner PRE key `owner_pre`.
    pub fn for_owner(&self, owner_pre: &KeyId) -> Vec<Arc<Grant>> {
        self.by_owner_pre
            .get(owner_pre)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| self.grants.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A usable re-key by id (history replay looks its re-key up).
    pub fn get(&self, rk_id: &[u8; 16]) -> Option<Arc<Grant>> {
        self.grants.get(rk_id).cloned()
    }

    /// Whether a re-key id was revoked (by anyone: a revoked id is never replayed).
    pub fn is_revoked(&self, rk_id: &[u8; 16]) -> bool {
        self.revoked.contains_key(rk_id)
    }

    /// Number of usable re-keys.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Number of uploads waiting for their owner's identity.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Folds one record of the topic.
    pub fn apply(
        &mut self,
        bytes: &[u8],
        registry: &Registry,
        now_ms: u64,
        received: Instant,
    ) -> Result<Change, Refused> {
        let rec: v1::ControlRecord =
            decode_strict("ControlRecord", bytes, MAX_REKEY_BYTES + MAX_CONTROL_BYTES)
                .map_err(CryptoError::from)?;
        armored_crypto::error::check_version("ControlRecord", rec.version)?;
        match rec.record {
            Some(Record::RekeyUpload(b)) => self.apply_upload(b, registry, now_ms, received),
            Some(Record::Revocation(b)) => self.apply_revocation(&b, registry),
            _ => Err(Refused::WrongTopic),
        }
    }

    fn apply_upload(
        &mut self,
        b: Vec<u8>,
        registry: &Registry,
        now_ms: u64,
        received: Instant,
    ) -> Result<Change, Refused> {
        let signed = decode_signed(&b, MAX_REKEY_BYTES + 1024)?;
        let claimed: v1::ReKeyUpload =
            decode_strict("ReKeyUpload", &signed.body, MAX_REKEY_BYTES + 1024)
                .map_err(CryptoError::from)?;
        let kid = KeyId::from_slice(&claimed.owner_sig_key_id, "owner_sig_key_id")?;
        let Some(owner) = registry.owner_by_sig_key(&kid) else {
            if self.pending.len() >= MAX_PENDING {
                return Err(Refused::PendingFull);
            }
            self.pending.push((received, b));
            return Ok(Change::Pending);
        };
        let g = verify_rekey_upload(
            &b,
            &owner.sig,
            owner.pre.key_id(),
            &RevocationSet::default(),
            now_ms,
        )?
        .into_inner();
        let rk_id = *g.rk.rk_id();
        if self.revoked.get(&rk_id) == Some(&owner.owner_id) {
            return Err(CryptoError::Revoked("re-key").into());
        }
        if self.grants.contains_key(&rk_id) {
            return Ok(Change::Unchanged);
        }
        self.by_owner_pre
            .entry(owner.pre.key_id())
            .or_default()
            .push(rk_id);
        self.grants.insert(
            rk_id,
            Arc::new(Grant {
                owner_id: owner.owner_id.clone(),
                grant: g,
            }),
        );
        Ok(Change::Added)
    }

    fn apply_revocation(&mut self, b: &[u8], registry: &Registry) -> Result<Change, Refused> {
        let signed = decode_signed(b, MAX_CONTROL_BYTES)?;
        let claimed: v1::Revocation = decode_strict("Revocation", &signed.body, MAX_CONTROL_BYTES)
            .map_err(CryptoError::from)?;
        let kid = KeyId::from_slice(&claimed.owner_sig_key_id, "owner_sig_key_id")?;
        let owner = registry
            .owner_by_sig_key(&kid)
            .ok_or(Refused::UnknownOwner)?;
        let r = verify_revocation(b, &owner.sig)?;
        if r.kind != RevocationKind::Rekey as i32 {
            return Err(Refused::WrongTopic);
        }
        let rk_id: [u8; 16] = r.id.as_slice().try_into().map_err(|_| {
            Refused::Invalid(CryptoError::InvalidField {
                field: "revocation.id",
                reason: "a re-key id is 16 bytes",
            })
        })?;
        if let Some(g) = self.grants.get(&rk_id) {
            if g.owner_id != owner.owner_id {
                return Err(Refused::ForeignRevocation);
            }
        }
        if self.revoked.get(&rk_id) == Some(&owner.owner_id) {
            return Ok(Change::Unchanged);
        }
        self.revoked.insert(rk_id, owner.owner_id.clone());
        self.persist();
        if self.grants.remove(&rk_id).is_some() {
            for ids in self.by_owner_pre.values_mut() {
                ids.retain(|i| *i != rk_id);
            }
        }
        Ok(Change::Revoked)
    }

    /// Retries uploads whose owner was unknown. Those still unknown after the registry has caught up
    /// past the moment they were read are refused (`UnknownOwner`).
    pub fn retry_pending(
        &mut self,
        registry: &Registry,
        registry_synced_at: Option<Instant>,
        now_ms: u64,
    ) -> Vec<(Vec<u8>, Result<Change, Refused>)> {
        let mut out = Vec::new();
        for (received, b) in std::mem::take(&mut self.pending) {
            let r = self.apply_upload(b.clone(), registry, now_ms, received);
            if matches!(r, Ok(Change::Pending)) {
                if registry_synced_at.is_some_and(|t| t >= received) {
                    self.pending.pop();
                    out.push((b, Err(Refused::UnknownOwner)));
                }
                continue;
            }
            out.push((b, r));
        }
        out
    }

    fn persist(&self) {
        let Some(path) = &self.state_file else { return };
        let mut lines: Vec<String> = self
            .revoked
            .iter()
            .map(|(k, o)| format!("{} {o}\n", hex::encode(k)))
            .collect();
        lines.sort();
        if let Err(e) = armored_base::files::write_private(path, lines.concat().as_bytes()) {
            tracing::warn!(error = %e, path = %path.display(), "could not persist revocations");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use armored_crypto::kpcpre::{Policy, ReKey, SecretKey};
    use armored_crypto::sig::SigningKey;
    use armored_crypto::tokens::{issue_rekey_upload, ReKeyUploadInput, ReceiverKind};
    use prost::Message;
    use rand_core::OsRng;

    /// A re-key upload record signed by an owner no registry knows.
    fn stranger_upload() -> Vec<u8> {
        let owner = SecretKey::generate(&mut OsRng);
        let rk = ReKey::generate(
            &owner,
            &Policy::parse("sync").unwrap_or_else(|e| panic!("{e}")),
            SecretKey::generate(&mut OsRng).public(),
            &mut OsRng,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let input = ReKeyUploadInput {
            receiver_kind: ReceiverKind::Service,
            receiver_id: "svc",
            not_after_ms: None,
            history_from_epoch: None,
            until_epoch: None,
        };
        let signed = issue_rekey_upload(&SigningKey::generate(&mut OsRng), &rk, &input);
        v1::ControlRecord {
            version: armored_schemas::WIRE_VERSION,
            record: Some(Record::RekeyUpload(signed)),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_corrupt_revocation_file_is_an_error_not_an_empty_set() {
        let dir = std::env::temp_dir().join(format!("at-rekeys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("revoked-rekeys.txt");
        let id = "00112233445566778899aabbccddeeff";
        std::fs::write(&path, format!("{id} alice\n")).unwrap_or_else(|e| panic!("{e}"));
        let s = ReKeyStore::new(Some(path.clone())).unwrap_or_else(|e| panic!("{e}"));
        let mut k = [0u8; 16];
        hex::decode_to_slice(id, &mut k).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.is_revoked(&k));
        std::fs::write(&path, format!("{id} alice\nnot a line\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let r = ReKeyStore::new(Some(path));
        assert!(matches!(r, Err(StateFileError::Corrupt(_, 2))), "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn uploads_of_unknown_owners_wait_in_bounded_numbers() {
        let mut store = ReKeyStore::default();
        let registry = Registry::default();
        let upload = stranger_upload();
        for _ in 0..MAX_PENDING {
            let r = store.apply(&upload, &registry, 0, Instant::now());
            assert!(matches!(r, Ok(Change::Pending)), "{r:?}");
        }
        let r = store.apply(&upload, &registry, 0, Instant::now());
        assert!(matches!(r, Err(Refused::PendingFull)), "{r:?}");
        assert_eq!(store.pending(), MAX_PENDING);
    }
}
