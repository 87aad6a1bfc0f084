//! Process tokens and their revocations, folded from `at.tokens.v1` (envelope.md, "Tokens"). A
//! token's signature and content are verified once, when it is folded; at job time only what can
//! change is judged: that the owner's current signing key is the one that signed it, expiry and
//! revocation. Revocations are sticky per owner: only the
//! token's own owner can revoke it, and nothing re-admits a revoked id. (The topic is retained
//! forever and folded from offset 0 on every start, which is what makes the set persistent.)

use armored_schemas::Refusal;
use std::collections::HashMap;

use armored_crypto::registry::Registry;
use armored_crypto::tokens::{
    verify_process_token_content, verify_revocation, ProcessGrant, RevocationSet,
};
use armored_crypto::KeyId;
use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::v1::control_record::Record;
use armored_schemas::{decode_strict, v1};
use prost::Message;

/// Process tokens by id, and revocations by owner signing key.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: HashMap<Vec<u8>, ProcessGrant>,
    revoked: HashMap<KeyId, RevocationSet>,
}

/// Why a control record was not folded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a control record.
    #[error("malformed control record: {0}")]
    Malformed(String),
    /// Signed by no known owner.
    #[error("signed by an unknown owner")]
    UnknownOwner,
    /// Signature or content failed.
    #[error(transparent)]
    Crypto(#[from] armored_crypto::Error),
}

impl Refusal for TokenError {
    fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::UnknownOwner => "unknown_owner",
            TokenError::Crypto(e) => e.reason(),
        }
    }
}

/// The body of a signed record, read (unverified) only to find the signer's key.
fn peek<M: Message + Default>(bytes: &[u8]) -> Result<M, TokenError> {
    let signed = armored_crypto::sig::decode_signed(bytes, MAX_CONTROL_BYTES)?;
    M::decode(signed.body.as_slice()).map_err(|e| TokenError::Malformed(e.to_string()))
}

fn key(bytes: &[u8]) -> Result<KeyId, TokenError> {
    Ok(KeyId::from_slice(bytes, "owner_sig_key_id")?)
}

impl TokenStore {
    /// Folds one record of `at.tokens.v1`. Write tokens are not the nodes' business.
    pub fn apply(&mut self, bytes: &[u8], registry: &Registry) -> Result<(), TokenError> {
        let rec: v1::ControlRecord = decode_strict("ControlRecord", bytes, MAX_CONTROL_BYTES)
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        match rec.record {
            Some(Record::ProcessToken(t)) => {
                let body: v1::ProcessToken = peek(&t)?;
                let owner = registry
                    .owner_by_sig_key(&key(&body.owner_sig_key_id)?)
                    .ok_or(TokenError::UnknownOwner)?;
                // Expiry and revocation are judged at job time.
                let v = verify_process_token_content(&t, &owner.sig)?.into_inner();
                self.tokens.entry(v.token.token_id.clone()).or_insert(v);
                Ok(())
            }
            Some(Record::Revocation(r)) => {
                let body: v1::Revocation = peek(&r)?;
                let k = key(&body.owner_sig_key_id)?;
                let owner = registry
                    .owner_by_sig_key(&k)
                    .ok_or(TokenError::UnknownOwner)?;
                let v = verify_revocation(&r, &owner.sig)?;
                self.revoked.entry(k).or_default().apply(&v);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(TokenError::Malformed("empty control record".into())),
        }
    }

    /// A folded token (signature and content verified when folded; see
    /// [`ProcessGrant::check_valid`] for what must still be judged).
    pub fn token(&self, token_id: &[u8]) -> Option<&ProcessGrant> {
        self.tokens.get(token_id)
    }

    /// The revocations signed by `owner` (empty if none).
    pub fn revocations(&self, owner: &KeyId) -> &RevocationSet {
        static NONE: std::sync::LazyLock<RevocationSet> =
            std::sync::LazyLock::new(RevocationSet::default);
        self.revoked.get(owner).unwrap_or(&NONE)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}
