//! Phase 1 on the device: keys generated here and never exported; the public card the owner
//! receives out of band (file or QR code); the owner identity the device pins.

use std::path::{Path, PathBuf};

use armored_crypto::identity::{verify_owner_identity, ShareSlots};
use armored_crypto::keyfile::{save_pre_key, save_signing_key};
use armored_crypto::kpcpre::SecretKey;
use armored_crypto::shares::{DEFAULT_SLOTS_PER_SHARE_EPOCH, MAX_SLOTS_PER_SHARE_EPOCH};
use armored_crypto::sig::SigningKey;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::DeviceError;

/// The public card of a device: everything the owner needs to enroll it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Card {
    /// Twin id.
    pub twin_id: String,
    /// Device id.
    pub device_id: String,
    /// KP-CPRE public key, hex.
    pub pre_public_key: String,
    /// ECDSA P-256 public key (SEC1 compressed), hex.
    pub sig_key: String,
    /// Epoch length of the twin.
    pub epoch_len_ms: u64,
    /// Length of the global MPC location slots (phase 3+; 0 in cards made before share bundles:
    /// such a device uploads no shares).
    #[serde(default)]
    pub slot_len_ms: u64,
    /// Slots per share epoch: the shares of one share epoch travel under one capsule per node
    /// (0 in cards made before share epochs: one capsule per slot).
    #[serde(default)]
    pub slots_per_share_epoch: u64,
}

impl Card {
    /// What the owner enrolls for the device's shares (phase 3+).
    pub fn share_slots(&self) -> ShareSlots {
        ShareSlots {
            slot_len_ms: self.slot_len_ms,
            slots_per_share_epoch: self.slots_per_share_epoch.max(1),
        }
    }
}

/// Slot length of [`setup`]: one location point per second, so that a demo's 50-slot window
/// fits in the edge's clock-skew bound (deployments choose theirs with [`setup_with_slot_len`]).
pub const DEFAULT_SLOT_LEN_MS: u64 = 1_000;

pub(crate) struct Paths {
    pub pre: PathBuf,
    pub sig: PathBuf,
    pub card: PathBuf,
    pub owner: PathBuf,
    pub state: PathBuf,
    pub roster: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Self {
        Self {
            pre: dir.join("pre.key"),
            sig: dir.join("sig.key"),
            card: dir.join("device.json"),
            owner: dir.join("owner.identity"),
            state: dir.join("state.json"),
            roster: dir.join("roster.pb"),
        }
    }
}

/// Creates the device's keys in `dir` (0600) and writes its public card (`device.json`), which it
/// also returns. Refuses to overwrite existing keys. Slots of [`DEFAULT_SLOT_LEN_MS`], share
/// epochs of [`DEFAULT_SLOTS_PER_SHARE_EPOCH`] slots.
pub fn setup(
    dir: &Path,
    twin_id: &str,
    device_id: &str,
    epoch_len_ms: u64,
) -> Result<Card, DeviceError> {
    setup_with_slot_len(dir, twin_id, device_id, epoch_len_ms, DEFAULT_SLOT_LEN_MS)
}

/// [`setup`] with the MPC slot length the owner will enroll (all twins of a job share it) and
/// the default share epoch.
pub fn setup_with_slot_len(
    dir: &Path,
    twin_id: &str,
    device_id: &str,
    epoch_len_ms: u64,
    slot_len_ms: u64,
) -> Result<Card, DeviceError> {
    let slots = ShareSlots {
        slot_len_ms,
        slots_per_share_epoch: DEFAULT_SLOTS_PER_SHARE_EPOCH,
    };
    setup_with_slots(dir, twin_id, device_id, epoch_len_ms, slots)
}

/// [`setup`] with every MPC setting: the slot length and the slots per share epoch (1 for the
/// paper's one capsule per point).
pub fn setup_with_slots(
    dir: &Path,
    twin_id: &str,
    device_id: &str,
    epoch_len_ms: u64,
    slots: ShareSlots,
) -> Result<Card, DeviceError> {
    let ShareSlots {
        slot_len_ms,
        slots_per_share_epoch,
    } = slots;
    if slot_len_ms == 0 || epoch_len_ms == 0 {
        return Err(DeviceError::State(
            "epoch and slot lengths must be positive".into(),
        ));
    }
    if !(1..=MAX_SLOTS_PER_SHARE_EPOCH).contains(&slots_per_share_epoch) {
        return Err(DeviceError::State(format!(
            "slots per share epoch must be 1..={MAX_SLOTS_PER_SHARE_EPOCH}"
        )));
    }
    armored_crypto::envelope::check_id(twin_id, "twin_id")?;
    armored_crypto::envelope::check_id(device_id, "device_id")?;
    std::fs::create_dir_all(dir).map_err(|e| DeviceError::Io(dir.display().to_string(), e))?;
    let p = Paths::new(dir);
    if p.pre.exists() || p.sig.exists() {
        return Err(DeviceError::AlreadySetUp(dir.display().to_string()));
    }
    let pre = SecretKey::generate(&mut OsRng);
    let sig = SigningKey::generate(&mut OsRng);
    save_pre_key(&p.pre, &pre, &format!("device {twin_id}/{device_id} PRE"))?;
    save_signing_key(
        &p.sig,
        &sig,
        &format!("device {twin_id}/{device_id} signing"),
    )?;
    let card = Card {
        twin_id: twin_id.into(),
        device_id: device_id.into(),
        pre_public_key: hex::encode(pre.public().to_bytes()),
        sig_key: hex::encode(sig.verifying_key().to_sec1()),
        epoch_len_ms,
        slot_len_ms,
        slots_per_share_epoch,
    };
    write_json(&p.card, &card)?;
    Ok(card)
}

/// Pins the owner's identity (obtained out of band) after checking its signature and proof of
/// knowledge.
pub fn pin_owner(dir: &Path, identity: &[u8]) -> Result<String, DeviceError> {
    let id = verify_owner_identity(identity, None)?;
    let p = Paths::new(dir);
    std::fs::write(&p.owner, identity)
        .map_err(|e| DeviceError::Io(p.owner.display().to_string(), e))?;
    Ok(id.owner_id.clone())
}

pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), DeviceError> {
    let text = serde_json::to_vec_pretty(v).map_err(|e| DeviceError::State(e.to_string()))?;
    write_private(path, &text)
}

/// Replaces `path` with `bytes` durably and privately (`armored_base::files::write_private`): the
/// state holds the twin's plaintext, and a lost seq file would reuse a seq.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DeviceError> {
    armored_base::files::write_private(path, bytes)
        .map_err(|e| DeviceError::Io(path.display().to_string(), e))
}
