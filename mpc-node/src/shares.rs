//! The node's share store (Protocol 2 phase 6+ step 2): every share delivery of
//! `at.mpc.shares.node-j.v1`, verified (the twin's enrolled device signed it, for node j) and
//! decrypted, kept in memory and rebuilt from the topic on restart (the topic is retained).

use armored_schemas::Refusal;
use std::collections::HashMap;

use armored_crypto::envelope::{parse_header, Receiver};
use armored_crypto::registry::Registry;
use armored_crypto::KeyId;
use armored_mpc::field::Fp;
use armored_mpc::functions::contact_tracing::PointShare;
use armored_schemas::limits::MAX_DELIVERY_BYTES;
use armored_schemas::{decode_strict, v1};
use zeroize::Zeroize;

/// One stored share of one (twin, slot).
#[derive(Clone)]
pub struct StoredShare {
    /// The device that shared the point (a twin may have several).
    pub device_id: String,
    /// The device's item id. When a slot was shared twice (two devices of one twin, or a device
    /// that shared it again), the lowest (item id, device id) wins, on every node alike.
    pub item_id: u64,
    /// The slot length the signing device was enrolled with: slot numbers mean time only under
    /// it, so a job admits the share only when its grant names the same length.
    pub slot_len_ms: u64,
    /// This node's share of the point.
    pub point: PointShare,
    /// The envelope's plain attributes (checked against the process token's policy).
    pub attributes: Vec<String>,
    /// Signing key id of the twin's owner when the share was stored.
    pub owner_sig_key_id: KeyId,
    /// When the share reached this node's topic (cut-off).
    pub received_ms: u64,
}

impl std::fmt::Debug for StoredShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredShare(item {}, <redacted>)", self.item_id)
    }
}

impl Drop for StoredShare {
    fn drop(&mut self) {
        self.point.zeroize();
    }
}

/// Why a share delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// Not a delivery.
    #[error("malformed delivery: {0}")]
    Malformed(String),
    /// The twin has no registered owner.
    #[error("twin {0} has no registered owner")]
    UnknownTwin(String),
    /// Decryption or verification failed.
    #[error(transparent)]
    Crypto(#[from] armored_crypto::Error),
    /// Re-encrypted for another node's key (the node this one replaced): skipped, not an alert.
    #[error("delivery for another node's key")]
    NotForThisNode,
    /// Sealed under another owner's key than the twin's.
    #[error("share sealed for another owner than the twin's")]
    WrongOwner,
    /// A value is not a field element or the shape is wrong.
    #[error("invalid share values")]
    Values,
    /// The signing key is enrolled for another device of the twin than the header names.
    #[error("share signed by another device than the one it names")]
    DeviceMismatch,
    /// The signing device was enrolled without an MPC slot length.
    #[error("the signing device has no MPC slot length in its enrollment")]
    NoSlotLength,
}

impl Refusal for ShareError {
    fn reason(&self) -> &'static str {
        match self {
            ShareError::Malformed(_) => "malformed",
            ShareError::UnknownTwin(_) => "unknown_twin",
            ShareError::Crypto(e) => e.reason(),
            ShareError::Values => "invalid_share_values",
            ShareError::WrongOwner => "wrong_owner",
            ShareError::NotForThisNode => "not_for_this_node",
            ShareError::DeviceMismatch => "device_mismatch",
            ShareError::NoSlotLength => "no_slot_length",
        }
    }
}

impl StoredShare {
    /// Which of two shares of one (twin, slot) a node keeps: the lower.
    fn rank(&self) -> (u64, &str) {
        (self.item_id, &self.device_id)
    }

    /// Names the point this share belongs to (device and item), never its value: the three nodes
    /// compare these in the hello, so that they compute only on slots where they hold shares of
    /// the same point. Never 0 (0 marks an absent slot).
    pub fn fingerprint(&self, twin_id: &str, slot: u64) -> u64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [twin_id.as_bytes(), self.device_id.as_bytes()] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part);
        }
        h.update(slot.to_be_bytes());
        h.update(self.item_id.to_be_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_be_bytes(b).max(1)
    }
}

/// Shares by twin and slot.
#[derive(Debug, Default)]
pub struct ShareStore {
    by_twin: HashMap<String, HashMap<u64, StoredShare>>,
    count: usize,
}

impl ShareStore {
    /// Opens, verifies and stores one delivery (node `j`'s Receiver). Returns whether it was new.
    pub fn apply(
        &mut self,
        receiver: &mut Receiver,
        registry: &Registry,
        node_index: u32,
        payload: &[u8],
        received_ms: u64,
    ) -> Result<bool, ShareError> {
        let d: v1::Delivery = decode_strict("Delivery", payload, MAX_DELIVERY_BYTES)
            .map_err(|e| ShareError::Malformed(e.to_string()))?;
        // After a node replacement (M2) the topic also holds deliveries for the previous node.
        if d.receiver_key_id != receiver.secret_key().key_id().0.as_slice() {
            return Err(ShareError::NotForThisNode);
        }
        let header = parse_header(&d.envelope_header)?;
        let (trust, owner) = registry
            .trust_store(&header.twin_id)
            .zip(registry.twin_owner(&header.twin_id))
            .ok_or_else(|| ShareError::UnknownTwin(header.twin_id.clone()))?;
        // The enrollment of the key that signed (checked before any pairing): it must be the
        // device the header names, and it fixes what the slot numbers mean and which slots a
        // share epoch holds. The signature itself is checked by open_share_delivery. A revoked
        // (replaced) device's enrollment still counts: the trust store's revocation keeps its
        // shares up to the revocation's last valid seq, on every node whenever it folds them.
        let enrollment = &registry
            .enrollment(&header.twin_id, &header.device_id)
            .filter(|d| d.enrollment.sig.key_id().as_bytes().as_slice() == header.writer_key_id)
            .ok_or(ShareError::DeviceMismatch)?
            .enrollment;
        if enrollment.slot_len_ms == 0 {
            return Err(ShareError::NoSlotLength);
        }
        let slot_len_ms = enrollment.slot_len_ms;
        let item = receiver
            .open_share_delivery(
                payload,
                &trust,
                node_index as u8,
                enrollment.slots_per_share_epoch,
                &mut rand_core::OsRng,
            )?
            .into_inner();
        // The DEK came from a capsule of the twin's owner (envelope.md: "comes from capsules of
        // that owner").
        if item.owner_key_id != owner.pre.key_id() {
            return Err(ShareError::WrongOwner);
        }
        let owner = owner.sig.key_id();
        let [x, y] = item.values[..] else {
            return Err(ShareError::Values);
        };
        let point = PointShare {
            x: Fp::from_canonical(x).ok_or(ShareError::Values)?,
            y: Fp::from_canonical(y).ok_or(ShareError::Values)?,
        };
        let slots = self.by_twin.entry(item.twin_id.clone()).or_default();
        let new = StoredShare {
            device_id: item.device_id.clone(),
            item_id: item.item_id,
            slot_len_ms,
            point,
            attributes: item.attributes.clone(),
            owner_sig_key_id: owner,
            received_ms,
        };
        match slots.get(&item.slot) {
            Some(old) if old.rank() <= new.rank() => Ok(false),
            Some(_) => {
                slots.insert(item.slot, new);
                Ok(false)
            }
            None => {
                slots.insert(item.slot, new);
                self.count += 1;
                Ok(true)
            }
        }
    }

    /// The share of `twin` at `slot`, if stored.
    pub fn get(&self, twin: &str, slot: u64) -> Option<&StoredShare> {
        self.by_twin.get(twin)?.get(&slot)
    }

    /// Stored (twin, slot) pairs.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}
