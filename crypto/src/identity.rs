//! Identities and trust (envelope.md): owner identities with a Schnorr proof of knowledge of x in GT,
//! owner-signed device enrollments, pinned service and node identities, and the registry's
//! first-writer-wins chain per party id.

use std::collections::HashMap;

use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256, Sha512};

use crate::domain::{tag, SigDomain, OWNER_POK};
use crate::encoding::Writer;
use crate::error::{Error, Result};
use crate::group::{gt_table, Gt, Scalar, SecretScalar};
use crate::hpke::HpkePublicKey;
use crate::kpcpre::{PublicKey, SecretKey};
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::verified::Verified;

pub use v1::PartyKind;

/// c = H(owner_id, Y, sig_key, R), 64 bytes of SHA-512 reduced mod r.
fn challenge(owner_id: &str, y: &[u8], sig_key: &[u8], r: &[u8]) -> Scalar {
    let layout = Writer::new()
        .field(tag::DOMAIN, OWNER_POK)
        .field(tag::PARTY_ID, owner_id.as_bytes())
        .field(tag::GT, y)
        .field(tag::SIG_KEY, sig_key)
        .field(tag::GT, r)
        .finish();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&Sha512::digest(layout));
    Scalar::from_wide(&wide)
}

/// A verified owner identity.
#[derive(Clone, Debug)]
pub struct OwnerIdentity {
    /// Owner id.
    pub owner_id: String,
    /// KP-CPRE public key Y (fully validated).
    pub pre: PublicKey,
    /// Signing key.
    pub sig: VerifyingKey,
    /// Key generation (rotation count).
    pub generation: u64,
}

/// Creates an owner identity record signed by `signer` (the identity's own key for generation 0,
/// the current key for a rotation), with a proof of knowledge of x for Y.
pub fn create_owner_identity<R: RngCore + CryptoRng>(
    owner_id: &str,
    pre: &SecretKey,
    sig: &SigningKey,
    generation: u64,
    signer: &SigningKey,
    rng: &mut R,
) -> Vec<u8> {
    let y = pre.public().to_bytes();
    let sig_key = sig.verifying_key().to_sec1();
    let k = SecretScalar::new(Scalar::random_nonzero(rng));
    let r = gt_table().pow_secret(k.expose(), rng).to_bytes();
    let c = challenge(owner_id, &y, &sig_key, &r);
    let z = k.expose() + &(&c * pre.x().expose());
    let body = v1::OwnerIdentity {
        version: WIRE_VERSION,
        owner_id: owner_id.to_owned(),
        pre_public_key: y.to_vec(),
        sig_key,
        generation,
        pok_commitment: r.to_vec(),
        pok_response: z.to_bytes().to_vec(),
    };
    signer.sign_to_vec(SigDomain::Identity, body.encode_to_vec())
}

/// Verifies an owner identity record: signed by its own key (`signer = None`) or by the given current
/// key (rotation); Y validated; the proof of knowledge checks `e(g1,g2)^z == R · Y^c`.
pub fn verify_owner_identity(
    bytes: &[u8],
    signer: Option<&VerifyingKey>,
) -> Result<Verified<OwnerIdentity>> {
    let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
    // The body names its own key; nothing of it is used until the signature verifies under it.
    let m: v1::OwnerIdentity = decode_strict("OwnerIdentity", &signed.body, MAX_CONTROL_BYTES)?;
    crate::error::check_version("OwnerIdentity", m.version)?;
    let sig = VerifyingKey::from_sec1(&m.sig_key)?;
    signer
        .unwrap_or(&sig)
        .verify(SigDomain::Identity, &signed, "owner identity")?;
    crate::ids::check_id(&m.owner_id, "owner_id")?;
    let pre = PublicKey::from_bytes(&m.pre_public_key)?;
    let r = Gt::from_bytes_unchecked_subgroup(&m.pok_commitment, "pok_commitment")?;
    let z = Scalar::from_bytes(&m.pok_response, "pok_response")?;
    let c = challenge(
        &m.owner_id,
        &m.pre_public_key,
        &m.sig_key,
        &m.pok_commitment,
    );
    let y = Gt::from_bytes_validated(&m.pre_public_key, "pre_public_key")?;
    if gt_table().pow(&z) != r * y.pow(&c) {
        return Err(Error::ProofOfKnowledge);
    }
    Ok(Verified::new(OwnerIdentity {
        owner_id: m.owner_id,
        pre,
        sig,
        generation: m.generation,
    }))
}

/// A verified device enrollment.
#[derive(Clone, Debug)]
pub struct DeviceEnrollment {
    /// Twin id.
    pub twin_id: String,
    /// Device id.
    pub device_id: String,
    /// The device's KP-CPRE key.
    pub pre: PublicKey,
    /// The device's signing key.
    pub sig: VerifyingKey,
    /// Epoch length of the twin.
    pub epoch_len_ms: u64,
    /// Length of the global MPC location slots the device shares points in (0: no shares).
    pub slot_len_ms: u64,
    /// Slots per share epoch (at least 1): the device seals the shares of slot s under the epoch
    /// key of epoch s / this ([`crate::shares::share_epoch`]).
    pub slots_per_share_epoch: u64,
}

/// How a device shares location points (phase 3+), as the owner enrolls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareSlots {
    /// Length of the global MPC location slots (0: the device uploads no shares).
    pub slot_len_ms: u64,
    /// Slots per share epoch (0 is read as 1, the paper's one capsule per point).
    pub slots_per_share_epoch: u64,
}

impl ShareSlots {
    /// No shares at all.
    pub const NONE: ShareSlots = ShareSlots {
        slot_len_ms: 0,
        slots_per_share_epoch: 1,
    };
}

/// The owner enrolls a device whose public keys it received out of band (phase 1). The device
/// uploads no MPC shares (slot length 0); see [`enroll_device_with_slots`].
pub fn enroll_device(
    owner: &SigningKey,
    twin_id: &str,
    device_id: &str,
    device_pre: &PublicKey,
    device_sig: &VerifyingKey,
    epoch_len_ms: u64,
) -> Vec<u8> {
    enroll_device_with_slots(
        owner,
        twin_id,
        device_id,
        device_pre,
        device_sig,
        epoch_len_ms,
        ShareSlots::NONE,
    )
}

/// [`enroll_device`] for a device that also shares location points (phase 3+) in global slots of
/// `slots.slot_len_ms` (one slot length for all twins of a job, so that slots line up), sealed per
/// share epoch of `slots.slots_per_share_epoch` slots.
pub fn enroll_device_with_slots(
    owner: &SigningKey,
    twin_id: &str,
    device_id: &str,
    device_pre: &PublicKey,
    device_sig: &VerifyingKey,
    epoch_len_ms: u64,
    slots: ShareSlots,
) -> Vec<u8> {
    let body = v1::DeviceEnrollment {
        version: WIRE_VERSION,
        twin_id: twin_id.to_owned(),
        device_id: device_id.to_owned(),
        pre_key_id: device_pre.key_id().0.to_vec(),
        pre_public_key: device_pre.to_bytes().to_vec(),
        sig_key: device_sig.to_sec1(),
        epoch_len_ms,
        owner_sig_key_id: owner.key_id().0.to_vec(),
        slot_len_ms: slots.slot_len_ms,
        slots_per_share_epoch: slots.slots_per_share_epoch,
    };
    owner.sign_to_vec(SigDomain::Enrollment, body.encode_to_vec())
}

/// Verifies an enrollment signed by `owner`.
pub fn verify_enrollment(bytes: &[u8], owner: &VerifyingKey) -> Result<Verified<DeviceEnrollment>> {
    let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
    let body = owner.verify(SigDomain::Enrollment, &signed, "device enrollment")?;
    let m: v1::DeviceEnrollment = decode_strict("DeviceEnrollment", body, MAX_CONTROL_BYTES)?;
    crate::error::check_version("DeviceEnrollment", m.version)?;
    if m.owner_sig_key_id.as_slice() != owner.key_id().0.as_slice() {
        return Err(Error::UnknownSigner("device enrollment"));
    }
    crate::ids::check_id(&m.twin_id, "enrollment.twin_id")?;
    crate::ids::check_id(&m.device_id, "enrollment.device_id")?;
    let pre = PublicKey::from_bytes(&m.pre_public_key)?;
    if m.pre_key_id.as_slice() != pre.key_id().0.as_slice() {
        return Err(Error::Mismatch(
            "enrollment pre_key_id differs from its key",
        ));
    }
    if m.epoch_len_ms == 0 {
        return Err(Error::InvalidField {
            field: "epoch_len_ms",
            reason: "must be positive",
        });
    }
    if m.slots_per_share_epoch > crate::shares::MAX_SLOTS_PER_SHARE_EPOCH {
        return Err(Error::InvalidField {
            field: "slots_per_share_epoch",
            reason: "at most 100000 slots",
        });
    }
    Ok(Verified::new(DeviceEnrollment {
        twin_id: m.twin_id,
        device_id: m.device_id,
        pre,
        sig: VerifyingKey::from_sec1(&m.sig_key)?,
        epoch_len_ms: m.epoch_len_ms,
        slot_len_ms: m.slot_len_ms,
        slots_per_share_epoch: m.slots_per_share_epoch.max(1),
    }))
}

/// A verified, pinned service or node identity.
#[derive(Clone, Debug)]
pub struct PartyIdentity {
    /// Service or MPC node.
    pub kind: PartyKind,
    /// Party id.
    pub party_id: String,
    /// KP-CPRE key.
    pub pre: PublicKey,
    /// Signing key.
    pub sig: VerifyingKey,
    /// HPKE key.
    pub hpke: HpkePublicKey,
    /// Generation.
    pub generation: u64,
}

/// A self-signed service or node identity file.
pub fn create_party_identity(
    kind: PartyKind,
    party_id: &str,
    pre: &PublicKey,
    sig: &SigningKey,
    hpke: &HpkePublicKey,
    generation: u64,
) -> Vec<u8> {
    let body = v1::PartyIdentity {
        version: WIRE_VERSION,
        kind: kind as i32,
        party_id: party_id.to_owned(),
        pre_public_key: pre.to_bytes().to_vec(),
        sig_key: sig.verifying_key().to_sec1(),
        hpke_public_key: hpke.to_bytes(),
        generation,
    };
    sig.sign_to_vec(SigDomain::Identity, body.encode_to_vec())
}

/// The fingerprint an owner compares when pinning an identity file: SHA-256 of its bytes.
pub fn fingerprint(identity_file: &[u8]) -> [u8; 32] {
    Sha256::digest(identity_file).into()
}

/// Verifies an identity file against the fingerprint the owner pinned, then its self-signature.
pub fn verify_pinned_identity(bytes: &[u8], pinned: &[u8; 32]) -> Result<Verified<PartyIdentity>> {
    if &fingerprint(bytes) != pinned {
        return Err(Error::Mismatch(
            "identity file does not match the pinned fingerprint",
        ));
    }
    let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
    let m: v1::PartyIdentity = decode_strict("PartyIdentity", &signed.body, MAX_CONTROL_BYTES)?;
    crate::error::check_version("PartyIdentity", m.version)?;
    let sig = VerifyingKey::from_sec1(&m.sig_key)?;
    sig.verify(SigDomain::Identity, &signed, "party identity")?;
    let kind = PartyKind::try_from(m.kind)
        .ok()
        .filter(|k| *k != PartyKind::Unspecified)
        .ok_or(Error::InvalidField {
            field: "party.kind",
            reason: "unknown party kind",
        })?;
    crate::ids::check_id(&m.party_id, "party_id")?;
    Ok(Verified::new(PartyIdentity {
        kind,
        party_id: m.party_id,
        pre: PublicKey::from_bytes(&m.pre_public_key)?,
        sig,
        hpke: HpkePublicKey::from_bytes(&m.hpke_public_key)?,
        generation: m.generation,
    }))
}

/// The outcome of folding one registry record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryChange {
    /// A new party.
    Added,
    /// A key rotation (generation + 1, signed by the previous key).
    Rotated,
}

/// Owner identities folded from the registry topic: first writer wins; later records for a known id
/// are accepted only as rotations signed by the current key.
#[derive(Clone, Debug, Default)]
pub struct OwnerRegistry {
    owners: HashMap<String, OwnerIdentity>,
}

impl OwnerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current identity of `owner_id`.
    pub fn get(&self, owner_id: &str) -> Option<&OwnerIdentity> {
        self.owners.get(owner_id)
    }

    /// Folds one record; an error for a known id is an alert (dead-letter it), never an overwrite.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<RegistryChange> {
        // Peek at the claimed id to pick the verifying key; nothing is trusted before verification.
        let signed = decode_signed(bytes, MAX_CONTROL_BYTES)?;
        let claimed: v1::OwnerIdentity =
            decode_strict("OwnerIdentity", &signed.body, MAX_CONTROL_BYTES)?;
        match self.owners.get(&claimed.owner_id) {
            None => {
                let id = verify_owner_identity(bytes, None)?.into_inner();
                self.owners.insert(id.owner_id.clone(), id);
                Ok(RegistryChange::Added)
            }
            Some(cur) => {
                let cur_sig = cur.sig;
                let next_gen = cur.generation + 1;
                let id = verify_owner_identity(bytes, Some(&cur_sig))
                    .map_err(|_| Error::UnknownSigner("registry record for a known owner"))?
                    .into_inner();
                if id.generation != next_gen {
                    return Err(Error::Mismatch("registry rotation must be generation + 1"));
                }
                self.owners.insert(id.owner_id.clone(), id);
                Ok(RegistryChange::Rotated)
            }
        }
    }
}
