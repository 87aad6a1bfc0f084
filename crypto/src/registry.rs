//! The registry of owners, devices and parties, folded from `at.registry.v1` (envelope.md,
//! "Identities and trust"): the first identity for an id wins; later records for a known id are
//! accepted only when signed by the right key (the owner's current key for rotations, the twin's
//! owner for enrollments and device revocations); anything else is a conflict to dead-letter, never
//! an overwrite. A twin belongs to the owner that first enrolled a device for it.

use armored_schemas::Refusal;
use std::collections::{BTreeMap, HashMap};

use crate::identity::{
    fingerprint, verify_enrollment, verify_pinned_identity, DeviceEnrollment, OwnerIdentity,
    OwnerRegistry, PartyIdentity,
};
use crate::sig::VerifyingKey;
use crate::tokens::{verify_revocation, RevocationSet};
use crate::{Error as CryptoError, KeyId};
use armored_schemas::v1::{self, registry_record::Record, RevocationKind};
use armored_schemas::{decode_strict, limits::MAX_CONTROL_BYTES};
use prost::Message;

/// A device as enrolled by its owner.
#[derive(Clone, Debug)]
pub struct DeviceEntry {
    /// The verified enrollment.
    pub enrollment: DeviceEnrollment,
    /// Its signed bytes (pushed to the twin's devices).
    pub raw: Vec<u8>,
}

/// A twin: its owner and devices.
#[derive(Clone, Debug, Default)]
pub struct TwinEntry {
    /// The owner that enrolled its first device.
    pub owner_id: String,
    /// Devices by id.
    pub devices: BTreeMap<String, DeviceEntry>,
    /// Signed device revocations concerning this twin.
    pub revocations: Vec<Vec<u8>>,
}

/// What folding a record changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new owner identity or a rotation.
    Owner(String),
    /// A device enrolled (or re-enrolled by its owner).
    Enrolled {
        /// Twin.
        twin_id: String,
        /// Device.
        device_id: String,
    },
    /// A device revoked.
    DeviceRevoked {
        /// Twin.
        twin_id: String,
    },
    /// A service or node identity.
    Party(String),
    /// The same record again (redelivery): nothing changed.
    Unchanged,
}

/// Why a registry record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Not a registry record, or a signature/field check failed.
    #[error("registry record rejected: {0}")]
    Invalid(#[from] CryptoError),
    /// Signed by a key that is not a registered owner's current key.
    #[error("registry record signed by an unknown owner key")]
    UnknownOwner,
    /// A second record for a known id, not signed by the key that may change it.
    #[error("conflicting registry record: {0}")]
    Conflict(&'static str),
}

impl Refusal for RegistryError {
    fn reason(&self) -> &'static str {
        match self {
            RegistryError::Invalid(e) => e.reason(),
            RegistryError::UnknownOwner => "unknown_owner",
            RegistryError::Conflict(_) => "registry_conflict",
        }
    }
}

/// The folded registry.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    owners: OwnerRegistry,
    owner_by_sig: HashMap<KeyId, String>,
    twins: HashMap<String, TwinEntry>,
    parties: HashMap<String, (Vec<u8>, PartyIdentity)>,
    revocations: RevocationSet,
    seen: HashMap<String, Vec<u8>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The owner with this id.
    pub fn owner(&self, owner_id: &str) -> Option<&OwnerIdentity> {
        self.owners.get(owner_id)
    }

    /// The owner whose current signing key has this id.
    pub fn owner_by_sig_key(&self, key_id: &KeyId) -> Option<&OwnerIdentity> {
        self.owner_by_sig
            .get(key_id)
            .and_then(|id| self.owners.get(id))
    }

    /// A twin's entry.
    pub fn twin(&self, twin_id: &str) -> Option<&TwinEntry> {
        self.twins.get(twin_id)
    }

    /// The owner of a twin.
    pub fn twin_owner(&self, twin_id: &str) -> Option<&OwnerIdentity> {
        self.twins
            .get(twin_id)
            .and_then(|t| self.owners.get(&t.owner_id))
    }

    /// An enrolled, unrevoked device.
    pub fn device(&self, twin_id: &str, device_id: &str) -> Option<&DeviceEntry> {
        let d = self.twins.get(twin_id)?.devices.get(device_id)?;
        (!self
            .revocations
            .is_revoked(RevocationKind::Device, d.enrollment.sig.key_id().as_bytes()))
        .then_some(d)
    }

    /// A device's enrollment, revoked or not. A revoked (replaced) device's records up to its
    /// revocation's last valid seq stay valid: [`RevocationSet::device_revoked`] decides by seq.
    pub fn enrollment(&self, twin_id: &str, device_id: &str) -> Option<&DeviceEntry> {
        self.twins.get(twin_id)?.devices.get(device_id)
    }

    /// Device revocations seen so far (sticky).
    pub fn revocations(&self) -> &RevocationSet {
        &self.revocations
    }

    /// A registered service or node identity.
    pub fn party(&self, party_id: &str) -> Option<&PartyIdentity> {
        self.parties.get(party_id).map(|(_, p)| p)
    }

    /// The party whose signing key has id `key_id`.
    pub fn party_by_sig_key(&self, key_id: &KeyId) -> Option<&PartyIdentity> {
        self.parties
            .values()
            .map(|(_, p)| p)
            .find(|p| p.sig.key_id() == *key_id)
    }

    /// Who may write a twin's state: its owner and its owner-enrolled devices, with the
    /// registry's device revocations. `None` if the twin has no registered owner.
    pub fn trust_store(&self, twin_id: &str) -> Option<crate::envelope::TrustStore> {
        let owner = self.twin_owner(twin_id)?;
        let mut t = crate::envelope::TrustStore::new(owner.sig);
        if let Some(twin) = self.twin(twin_id) {
            for d in twin.devices.values() {
                t.add_device(twin_id, d.enrollment.sig);
            }
        }
        t.revocations = self.revocations().clone();
        Some(t)
    }

    /// Every twin id.
    pub fn twin_ids(&self) -> impl Iterator<Item = &String> {
        self.twins.keys()
    }

    /// Every owner id.
    pub fn owner_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.owner_by_sig.values().cloned().collect();
        v.sort();
        v
    }

    /// Every party id.
    pub fn party_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.parties.keys().cloned().collect();
        v.sort();
        v
    }

    /// Folds one record of the topic.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<Applied, RegistryError> {
        let rec: v1::RegistryRecord =
            decode_strict("RegistryRecord", bytes, MAX_CONTROL_BYTES).map_err(CryptoError::from)?;
        crate::error::check_version("RegistryRecord", rec.version)?;
        match rec.record {
            None => Err(CryptoError::InvalidField {
                field: "registry.record",
                reason: "empty",
            }
            .into()),
            Some(Record::OwnerIdentity(b)) => self.apply_owner(&b),
            Some(Record::Enrollment(b)) => self.apply_enrollment(b),
            Some(Record::DeviceRevocation(b)) => self.apply_device_revocation(b),
            Some(Record::PartyIdentity(b)) => self.apply_party(b),
        }
    }

    fn apply_owner(&mut self, b: &[u8]) -> Result<Applied, RegistryError> {
        let signed = crate::sig::decode_signed(b, MAX_CONTROL_BYTES)?;
        let claimed: v1::OwnerIdentity =
            decode_strict("OwnerIdentity", &signed.body, MAX_CONTROL_BYTES)
                .map_err(CryptoError::from)?;
        let key = format!("owner:{}", claimed.owner_id);
        if self.seen.get(&key).is_some_and(|s| s == b) {
            return Ok(Applied::Unchanged);
        }
        let known = self.owners.get(&claimed.owner_id).map(|o| o.sig.key_id());
        self.owners
            .apply(b)
            .map_err(|e| match (known.is_some(), e) {
                (true, CryptoError::UnknownSigner(_) | CryptoError::Mismatch(_)) => {
                    RegistryError::Conflict(
                        "second identity for a known owner id, not a rotation by its key",
                    )
                }
                (_, e) => RegistryError::Invalid(e),
            })?;
        if let Some(old) = known {
            self.owner_by_sig.remove(&old);
        }
        if let Some(o) = self.owners.get(&claimed.owner_id) {
            self.owner_by_sig.insert(o.sig.key_id(), o.owner_id.clone());
        }
        self.seen.insert(key, b.to_vec());
        Ok(Applied::Owner(claimed.owner_id))
    }

    fn signer_of(&self, owner_sig_key_id: &[u8]) -> Result<(String, VerifyingKey), RegistryError> {
        let kid = KeyId::from_slice(owner_sig_key_id, "owner_sig_key_id")?;
        let o = self
            .owner_by_sig_key(&kid)
            .ok_or(RegistryError::UnknownOwner)?;
        Ok((o.owner_id.clone(), o.sig))
    }

    fn apply_enrollment(&mut self, b: Vec<u8>) -> Result<Applied, RegistryError> {
        let signed = crate::sig::decode_signed(&b, MAX_CONTROL_BYTES)?;
        let claimed: v1::DeviceEnrollment =
            decode_strict("DeviceEnrollment", &signed.body, MAX_CONTROL_BYTES)
                .map_err(CryptoError::from)?;
        let (owner_id, vk) = self.signer_of(&claimed.owner_sig_key_id)?;
        let e = verify_enrollment(&b, &vk)?.into_inner();
        let twin = self
            .twins
            .entry(e.twin_id.clone())
            .or_insert_with(|| TwinEntry {
                owner_id: owner_id.clone(),
                ..TwinEntry::default()
            });
        if twin.owner_id != owner_id {
            return Err(RegistryError::Conflict("twin belongs to another owner"));
        }
        if twin.devices.get(&e.device_id).is_some_and(|d| d.raw == b) {
            return Ok(Applied::Unchanged);
        }
        let applied = Applied::Enrolled {
            twin_id: e.twin_id.clone(),
            device_id: e.device_id.clone(),
        };
        twin.devices.insert(
            e.device_id.clone(),
            DeviceEntry {
                enrollment: e,
                raw: b,
            },
        );
        Ok(applied)
    }

    fn apply_device_revocation(&mut self, b: Vec<u8>) -> Result<Applied, RegistryError> {
        let signed = crate::sig::decode_signed(&b, MAX_CONTROL_BYTES)?;
        let claimed: v1::Revocation = decode_strict("Revocation", &signed.body, MAX_CONTROL_BYTES)
            .map_err(CryptoError::from)?;
        let (owner_id, vk) = self.signer_of(&claimed.owner_sig_key_id)?;
        let r = verify_revocation(&b, &vk)?;
        if r.kind != RevocationKind::Device as i32 {
            return Err(CryptoError::InvalidField {
                field: "revocation.kind",
                reason: "only device revocations belong in the registry",
            }
            .into());
        }
        // The revoked key must be a device of one of this owner's twins.
        let twin_id = self
            .twins
            .iter()
            .find(|(_, t)| {
                t.owner_id == owner_id
                    && t.devices
                        .values()
                        .any(|d| d.enrollment.sig.key_id().as_bytes() == r.id.as_slice())
            })
            .map(|(id, _)| id.clone())
            .ok_or(RegistryError::Conflict(
                "device revocation for a device the owner did not enroll",
            ))?;
        if let Some(t) = self.twins.get_mut(&twin_id) {
            if t.revocations.contains(&b) {
                return Ok(Applied::Unchanged);
            }
            t.revocations.push(b);
        }
        self.revocations.apply(&r);
        Ok(Applied::DeviceRevoked { twin_id })
    }

    fn apply_party(&mut self, b: Vec<u8>) -> Result<Applied, RegistryError> {
        let p = verify_pinned_identity(&b, &fingerprint(&b))?.into_inner();
        match self.parties.get(&p.party_id) {
            Some((raw, _)) if *raw == b => Ok(Applied::Unchanged),
            // Owners pin parties by fingerprint; the registry only ever keeps the first record.
            Some(_) => Err(RegistryError::Conflict(
                "second identity for a known party id",
            )),
            None => {
                let id = p.party_id.clone();
                self.parties.insert(id.clone(), (b, p));
                Ok(Applied::Party(id))
            }
        }
    }
}

/// Wraps a signed record for the registry topic.
pub fn record(r: Record) -> Vec<u8> {
    v1::RegistryRecord {
        version: armored_schemas::WIRE_VERSION,
        record: Some(r),
    }
    .encode_to_vec()
}
