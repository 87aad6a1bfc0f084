//! Designations (envelope.md "Tokens"): the designator named in a `FunctionGrant` (e.g. a health
//! authority) states which twin is the reference of one slot window, so that a processing service
//! cannot pick the reference itself to locate someone. Signed with domain `at/v1/designation`.

use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;

use crate::domain::SigDomain;
use crate::error::{check_version, Error, Result};
use crate::ids::check_id;
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::verified::Verified;

/// Signs a designation of `reference_twin_id` for the window of `window_slots` slots starting at
/// global slot `window_start_slot`; returns the encoded `Signed` record.
pub fn sign_designation(
    designator: &SigningKey,
    reference_twin_id: &str,
    window_start_slot: u64,
    window_slots: u32,
    issued_at_ms: u64,
) -> Result<Vec<u8>> {
    check_id(reference_twin_id, "designation.reference_twin_id")?;
    check_window(window_start_slot, window_slots)?;
    let body = v1::Designation {
        version: WIRE_VERSION,
        reference_twin_id: reference_twin_id.to_owned(),
        window_start_slot,
        window_slots,
        issued_at_ms,
    };
    Ok(designator.sign_to_vec(SigDomain::Designation, body.encode_to_vec()))
}

/// Verifies a designation under the designator's key (the one a grant names by key id; the
/// caller checks that id).
pub fn verify_designation(
    bytes: &[u8],
    designator: &VerifyingKey,
) -> Result<Verified<v1::Designation>> {
    let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
    let body = designator.verify(SigDomain::Designation, &signed, "designation")?;
    let d: v1::Designation = decode_strict("Designation", body, MAX_CONTROL_BYTES)?;
    check_version("Designation", d.version)?;
    check_id(&d.reference_twin_id, "designation.reference_twin_id")?;
    check_window(d.window_start_slot, d.window_slots)?;
    Ok(Verified::new(d))
}

fn check_window(start: u64, slots: u32) -> Result<()> {
    if slots == 0 || start.checked_add(u64::from(slots)).is_none() {
        return Err(Error::InvalidField {
            field: "designation.window",
            reason: "at least one slot, end within u64",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn signs_verifies_and_refuses_others() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let ha = SigningKey::generate(&mut rng);
        let other = SigningKey::generate(&mut rng);
        let d = sign_designation(&ha, "patient-0", 100, 50, 7).unwrap();
        let v = verify_designation(&d, ha.verifying_key()).unwrap();
        assert_eq!(
            (
                v.reference_twin_id.as_str(),
                v.window_start_slot,
                v.window_slots
            ),
            ("patient-0", 100, 50)
        );
        assert!(matches!(
            verify_designation(&d, other.verifying_key()),
            Err(Error::BadSignature(_))
        ));
        // Another domain's signature over the same body is not a designation.
        let s = decode_signed(&d, 1024).unwrap();
        let wrong = ha.sign_to_vec(SigDomain::MpcJob, s.body);
        assert!(verify_designation(&wrong, ha.verifying_key()).is_err());
        assert!(sign_designation(&ha, "Bad", 0, 1, 0).is_err());
        assert!(sign_designation(&ha, "ok", 0, 0, 0).is_err());
        for i in 0..d.len() {
            let mut b = d.clone();
            b[i] ^= 1;
            assert!(verify_designation(&b, ha.verifying_key()).is_err(), "{i}");
        }
    }
}
