//! History replay requests (envelope.md, "Re-encrypted delivery"; M3): the owner asks the workers
//! to re-encrypt a twin's stored state changes, from an epoch on, for one of its existing re-keys.
//! Signed under `at/v1/replay`; the worker checks the signer against the owner of the re-key.

use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};

use crate::domain::SigDomain;
use crate::error::{check_version, Error, Result};
use crate::keyid::KeyId;
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::verified::Verified;

/// Issues a replay request for `rk_id` from `from_epoch`; returns (request id, signed bytes).
pub fn issue_replay_request<R: RngCore + CryptoRng>(
    owner: &SigningKey,
    rk_id: &[u8; 16],
    from_epoch: u64,
    issued_at_ms: u64,
    rng: &mut R,
) -> ([u8; 16], Vec<u8>) {
    let mut request_id = [0u8; 16];
    rng.fill_bytes(&mut request_id);
    let body = v1::ReplayRequest {
        version: WIRE_VERSION,
        request_id: request_id.to_vec(),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        rk_id: rk_id.to_vec(),
        from_epoch,
        issued_at_ms,
    };
    (
        request_id,
        owner.sign_to_vec(SigDomain::Replay, body.encode_to_vec()),
    )
}

/// The signer a replay request names (to look the owner up before verifying).
pub fn claimed_signer(bytes: &[u8]) -> Result<KeyId> {
    let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
    let claimed: v1::ReplayRequest =
        decode_strict("ReplayRequest", &signed.body, MAX_CONTROL_BYTES)?;
    KeyId::from_slice(&claimed.owner_sig_key_id, "replay_request.owner_sig_key_id")
}

/// Verifies a replay request signed by `owner`: signature, signer key id, version, field sizes.
pub fn verify_replay_request(
    bytes: &[u8],
    owner: &VerifyingKey,
) -> Result<Verified<v1::ReplayRequest>> {
    let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
    let body = owner.verify(SigDomain::Replay, &signed, "ReplayRequest")?;
    let r: v1::ReplayRequest = decode_strict("ReplayRequest", body, MAX_CONTROL_BYTES)?;
    check_version("ReplayRequest", r.version)?;
    if r.owner_sig_key_id.as_slice() != owner.key_id().0.as_slice() {
        return Err(Error::UnknownSigner("replay request"));
    }
    if r.rk_id.len() != 16 || r.request_id.len() != 16 {
        return Err(Error::InvalidField {
            field: "replay_request.rk_id/request_id",
            reason: "16 bytes each",
        });
    }
    Ok(Verified::new(r))
}
