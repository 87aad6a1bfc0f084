//! Process tokens: an owner lets a service run one function with exact parameters over its
//! twins' MPC shares.

use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};

use super::{check_signer, open_signed, random_id, RevocationKind, RevocationSet};
use crate::domain::SigDomain;
use crate::error::{check_version, Error, Result};
use crate::hpke::HpkePublicKey;
use crate::keyid::KeyId;
use crate::kpcpre::Policy;
use crate::sig::{SigningKey, VerifyingKey};
use crate::verified::Verified;

/// What a verified process token grants.
#[derive(Clone, Debug)]
pub struct ProcessGrant {
    /// The token as signed.
    pub token: v1::ProcessToken,
    /// Its policy, parsed.
    pub policy: Policy,
    /// The receiver's HPKE key for output shares.
    pub receiver_hpke_key: HpkePublicKey,
}

/// What the owner grants in a process token.
#[derive(Clone, Debug)]
pub struct ProcessTokenInput<'a> {
    /// Inputs the nodes may use.
    pub policy: &'a Policy,
    /// The receiver's PRE key id.
    pub receiver_key_id: KeyId,
    /// The receiver's signing key id (it signs jobs).
    pub receiver_sig_key_id: KeyId,
    /// Where output shares go.
    pub receiver_hpke_key: &'a HpkePublicKey,
    /// Admissible functions with their exact parameters.
    pub grants: Vec<v1::FunctionGrant>,
    /// Expiry.
    pub not_after_ms: u64,
}

/// Issues a process token.
pub fn issue_process_token<R: RngCore + CryptoRng>(
    owner: &SigningKey,
    input: &ProcessTokenInput<'_>,
    rng: &mut R,
) -> Vec<u8> {
    let body = v1::ProcessToken {
        version: WIRE_VERSION,
        token_id: random_id(rng),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        policy: input.policy.canonical().to_owned(),
        receiver_key_id: input.receiver_key_id.0.to_vec(),
        receiver_sig_key_id: input.receiver_sig_key_id.0.to_vec(),
        receiver_hpke_key: input.receiver_hpke_key.to_bytes(),
        grants: input.grants.clone(),
        not_after_ms: input.not_after_ms,
    };
    owner.sign_to_vec(SigDomain::ProcessToken, body.encode_to_vec())
}

/// Verifies a process token under `owner` at `now_ms`: signature, content, expiry and revocation
/// ([`verify_process_token_content`], then [`ProcessGrant::check_valid`]).
pub fn verify_process_token(
    bytes: &[u8],
    owner: &VerifyingKey,
    revoked: &RevocationSet,
    now_ms: u64,
) -> Result<Verified<ProcessGrant>> {
    let g = verify_process_token_content(bytes, owner)?.into_inner();
    g.check_valid(owner, revoked, now_ms)?;
    Ok(Verified::new(g))
}

/// The time-independent part of [`verify_process_token`]: the signature under `owner` and the
/// content (canonical policy, key ids, the receiver's HPKE key, grants). A node does this once per
/// token when it folds the token topic and [`ProcessGrant::check_valid`] at every job.
pub fn verify_process_token_content(
    bytes: &[u8],
    owner: &VerifyingKey,
) -> Result<Verified<ProcessGrant>> {
    let t: v1::ProcessToken = open_signed(
        bytes,
        MAX_CONTROL_BYTES,
        owner,
        SigDomain::ProcessToken,
        "ProcessToken",
    )?;
    check_version("ProcessToken", t.version)?;
    check_signer(&t.owner_sig_key_id, owner, "process token")?;
    let policy = Policy::parse(&t.policy)?;
    if policy.canonical() != t.policy {
        return Err(Error::InvalidField {
            field: "process_token.policy",
            reason: "not canonical policy text",
        });
    }
    KeyId::from_slice(&t.receiver_key_id, "process_token.receiver_key_id")?;
    KeyId::from_slice(&t.receiver_sig_key_id, "process_token.receiver_sig_key_id")?;
    let receiver_hpke_key = HpkePublicKey::from_bytes(&t.receiver_hpke_key)?;
    if t.grants
        .iter()
        .any(|g| g.distance >= 1 << 16 || g.function.is_empty())
    {
        return Err(Error::InvalidField {
            field: "process_token.grants",
            reason: "function named and distance below 2^16",
        });
    }
    Ok(Verified::new(ProcessGrant {
        token: t,
        policy,
        receiver_hpke_key,
    }))
}

impl ProcessGrant {
    /// Whether the token is still good at `now_ms`: signed by `owner`'s current key (a rotated
    /// owner key no longer vouches for it), unexpired and unrevoked.
    pub fn check_valid(
        &self,
        owner: &VerifyingKey,
        revoked: &RevocationSet,
        now_ms: u64,
    ) -> Result<()> {
        check_signer(&self.token.owner_sig_key_id, owner, "process token")?;
        if now_ms > self.token.not_after_ms {
            return Err(Error::Expired {
                what: "process token",
                now_ms,
                not_before_ms: 0,
                not_after_ms: self.token.not_after_ms,
            });
        }
        if revoked.is_revoked(RevocationKind::ProcessToken, &self.token.token_id) {
            return Err(Error::Revoked("process token"));
        }
        Ok(())
    }
}
