//! Write tokens: an owner lets a writer key write one twin within a validity window.

use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};

use super::{check_signer, open_signed, random_id, RevocationKind, RevocationSet};
use crate::domain::SigDomain;
use crate::error::{check_version, Error, Result};
use crate::keyid::KeyId;
use crate::sig::{SigningKey, VerifyingKey};
use crate::verified::Verified;

/// Issues a write token: `writer_key_id` may write twin `twin_id` in [not_before, not_after].
pub fn issue_write_token<R: RngCore + CryptoRng>(
    owner: &SigningKey,
    twin_id: &str,
    writer_key_id: KeyId,
    not_before_ms: u64,
    not_after_ms: u64,
    rng: &mut R,
) -> Vec<u8> {
    let body = v1::WriteToken {
        version: WIRE_VERSION,
        token_id: random_id(rng),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        twin_id: twin_id.to_owned(),
        writer_key_id: writer_key_id.0.to_vec(),
        not_before_ms,
        not_after_ms,
        writer_sig_key: Vec::new(),
    };
    owner.sign_to_vec(SigDomain::WriteToken, body.encode_to_vec())
}

/// Issues a write token that also carries the writer's public key (`writer_sig_key`), so that a
/// device can verify the writer's state changes from the token alone.
pub fn issue_write_token_for<R: RngCore + CryptoRng>(
    owner: &SigningKey,
    twin_id: &str,
    writer: &VerifyingKey,
    not_before_ms: u64,
    not_after_ms: u64,
    rng: &mut R,
) -> Vec<u8> {
    let body = v1::WriteToken {
        version: WIRE_VERSION,
        token_id: random_id(rng),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        twin_id: twin_id.to_owned(),
        writer_key_id: writer.key_id().0.to_vec(),
        not_before_ms,
        not_after_ms,
        writer_sig_key: writer.to_sec1(),
    };
    owner.sign_to_vec(SigDomain::WriteToken, body.encode_to_vec())
}

/// The writer key a verified write token carries, if any (checked against `writer_key_id`).
pub fn write_token_writer_key(t: &v1::WriteToken) -> Result<Option<VerifyingKey>> {
    if t.writer_sig_key.is_empty() {
        return Ok(None);
    }
    let k = VerifyingKey::from_sec1(&t.writer_sig_key)?;
    if k.key_id().0.as_slice() != t.writer_key_id.as_slice() {
        return Err(Error::Mismatch(
            "write token's writer key differs from its writer_key_id",
        ));
    }
    Ok(Some(k))
}

/// Checks only the owner's signature and key id of a write token (no validity window, no
/// revocation): for consumers that index tokens, e.g. to route their revocations to devices.
pub fn verify_write_token_signature(
    bytes: &[u8],
    owner: &VerifyingKey,
) -> Result<Verified<v1::WriteToken>> {
    let t: v1::WriteToken = open_signed(
        bytes,
        MAX_CONTROL_BYTES,
        owner,
        SigDomain::WriteToken,
        "WriteToken",
    )?;
    check_version("WriteToken", t.version)?;
    check_signer(&t.owner_sig_key_id, owner, "write token")?;
    crate::ids::check_id(&t.twin_id, "write_token.twin_id")?;
    KeyId::from_slice(&t.writer_key_id, "write_token.writer_key_id")?;
    write_token_writer_key(&t)?;
    Ok(Verified::new(t))
}

/// Verifies a write token: everything [`verify_write_token_signature`] checks, then its validity
/// window and that it is not revoked.
pub fn verify_write_token(
    bytes: &[u8],
    owner: &VerifyingKey,
    revoked: &RevocationSet,
    now_ms: u64,
) -> Result<Verified<v1::WriteToken>> {
    let t = verify_write_token_signature(bytes, owner)?.into_inner();
    if now_ms < t.not_before_ms || now_ms > t.not_after_ms {
        return Err(Error::Expired {
            what: "write token",
            now_ms,
            not_before_ms: t.not_before_ms,
            not_after_ms: t.not_after_ms,
        });
    }
    if revoked.is_revoked(RevocationKind::WriteToken, &t.token_id) {
        return Err(Error::Revoked("write token"));
    }
    Ok(Verified::new(t))
}
