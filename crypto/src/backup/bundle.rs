//! What a backup holds, and its byte layout inside the seal.

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use super::BackupError;
use crate::envelope::check_id;
use crate::identity::verify_owner_identity;
use crate::kpcpre::SecretKey;
use crate::sig::SigningKey;

/// What a backup holds: the owner's secrets and the public files that go with them. Zeroized on
/// drop; never printed.
pub struct Bundle {
    owner_id: String,
    pre: [u8; 32],
    sig: [u8; 32],
    identity: Vec<u8>,
    ledger: Vec<u8>,
    trusted: Vec<(String, Vec<u8>)>,
}

impl Drop for Bundle {
    fn drop(&mut self) {
        self.pre.zeroize();
        self.sig.zeroize();
        // The ledger and party identities are public; only the keys are secret.
    }
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bundle({}, <redacted>)", self.owner_id)
    }
}

// The bundle's byte layout: fields `tag (1) || len (u32 BE) || bytes` in this order; trusted
// parties repeat tags 7 and 6.
const T_OWNER: u8 = 1;
const T_PRE: u8 = 2;
const T_SIG: u8 = 3;
const T_IDENTITY: u8 = 4;
const T_LEDGER: u8 = 5;
const T_PARTY: u8 = 6;
const T_PARTY_ID: u8 = 7;

impl Bundle {
    /// A bundle of an owner's keys, its signed identity (which names the owner id), its ledger of
    /// grants (file bytes, may be empty) and its pinned parties (party id, identity file bytes).
    pub fn new(
        identity: Vec<u8>,
        pre: &SecretKey,
        sig: &SigningKey,
        ledger: Vec<u8>,
        trusted: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, BackupError> {
        let id = verify_owner_identity(&identity, None)?.into_inner();
        Ok(Self {
            owner_id: id.owner_id,
            pre: *pre.to_bytes(),
            sig: *sig.to_bytes(),
            identity,
            ledger,
            trusted,
        })
    }

    /// The owner id.
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    /// The owner's signed identity file.
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    /// The ledger of grants (file bytes; empty if the owner had none).
    pub fn ledger(&self) -> &[u8] {
        &self.ledger
    }

    /// The pinned parties: (party id, identity file bytes).
    pub fn trusted(&self) -> &[(String, Vec<u8>)] {
        &self.trusted
    }

    /// The keys, after checking that they are the ones the signed identity names and that every
    /// pinned party id is a valid id (it becomes a file name).
    pub fn keys<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
    ) -> Result<(SecretKey, SigningKey), BackupError> {
        let id = verify_owner_identity(&self.identity, None)?.into_inner();
        let pre = SecretKey::from_bytes(&self.pre, rng)?;
        let sig = SigningKey::from_bytes(&self.sig)?;
        if id.owner_id != self.owner_id
            || id.pre.key_id() != pre.public().key_id()
            || id.sig.key_id() != sig.key_id()
        {
            return Err(BackupError::Inconsistent(
                "the keys are not the ones the owner identity names".into(),
            ));
        }
        for (party, _) in &self.trusted {
            check_id(party, "trusted party id")?;
        }
        Ok((pre, sig))
    }

    pub(super) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut fields: Vec<(u8, &[u8])> = vec![
            (T_OWNER, self.owner_id.as_bytes()),
            (T_PRE, &self.pre),
            (T_SIG, &self.sig),
            (T_IDENTITY, &self.identity),
            (T_LEDGER, &self.ledger),
        ];
        for (id, b) in &self.trusted {
            fields.push((T_PARTY_ID, id.as_bytes()));
            fields.push((T_PARTY, b));
        }
        // One allocation of the final size: no reallocation leaves copies of the keys behind.
        let len: usize = fields.iter().map(|(_, b)| 5 + b.len()).sum();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        for (tag, b) in fields {
            out.push(tag);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, BackupError> {
        let bad = |r: &str| BackupError::Inconsistent(format!("bundle layout: {r}"));
        let mut rest = bytes;
        let mut next = |want: u8| -> Result<Option<&[u8]>, BackupError> {
            let Some((&tag, after)) = rest.split_first() else {
                return Ok(None);
            };
            if tag != want {
                return Ok(None);
            }
            let (len, after) = after
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("truncated length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if after.len() < len {
                return Err(bad("truncated field"));
            }
            let (v, after) = after.split_at(len);
            rest = after;
            Ok(Some(v))
        };
        let owner_id = std::str::from_utf8(next(T_OWNER)?.ok_or_else(|| bad("no owner id"))?)
            .map_err(|_| bad("owner id not UTF-8"))?
            .to_string();
        let pre: [u8; 32] = next(T_PRE)?
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("PRE key"))?;
        let sig: [u8; 32] = next(T_SIG)?
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("signing key"))?;
        let identity = next(T_IDENTITY)?.ok_or_else(|| bad("identity"))?.to_vec();
        let ledger = next(T_LEDGER)?.ok_or_else(|| bad("ledger"))?.to_vec();
        let mut trusted = Vec::new();
        while let Some(id) = next(T_PARTY_ID)? {
            let id = std::str::from_utf8(id)
                .map_err(|_| bad("party id not UTF-8"))?
                .to_string();
            let b = next(T_PARTY)?
                .ok_or_else(|| bad("party identity"))?
                .to_vec();
            trusted.push((id, b));
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self {
            owner_id,
            pre,
            sig,
            identity,
            ledger,
            trusted,
        })
    }
}
