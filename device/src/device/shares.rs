//! Phase 3+ on the device: one location point per global slot, split into three Shamir shares
//! (`armored_mpc`'s `split_point`), each signed for and sealed to one MPC node
//! (`armored_crypto::shares`). The slot length is the one the owner enrolled (the card's).

use armored_crypto::shares::{seal_share_bundle, share_attributes, share_epoch, ShareInput, NODES};
use armored_mpc::functions::contact_tracing::split_point;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{Device, DeviceError};

/// Largest coordinate the contact-tracing function takes (u16 grid).
pub const MAX_COORDINATE: u32 = u16::MAX as u32;

/// Persisted share counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareState {
    /// Item id of the next point.
    pub next_item: u64,
    /// The last slot shared: slots only go forward, one point each.
    pub last_slot: Option<u64>,
}

impl Device {
    /// The MPC slot length from the enrollment card (0: this device shares nothing).
    pub fn slot_len_ms(&self) -> u64 {
        self.card.slot_len_ms
    }

    /// Phase 3+: splits the point (x, y) of global `slot` into three shares and returns the three
    /// envelopes to publish on the uplink, for nodes 1, 2, 3. Slots must increase (one point per
    /// slot); the item id and the sequence numbers are persisted before returning.
    pub fn share_point(&mut self, slot: u64, x: u32, y: u32) -> Result<[Vec<u8>; 3], DeviceError> {
        if self.card.slot_len_ms == 0 {
            return Err(DeviceError::ShareRefused(
                "no slot length in this device's card (set up before share bundles)",
            ));
        }
        if x > MAX_COORDINATE || y > MAX_COORDINATE {
            return Err(DeviceError::ShareRefused("coordinate outside 0..=65535"));
        }
        if self.state.shares.last_slot.is_some_and(|last| slot <= last) {
            return Err(DeviceError::SlotAlreadyShared(slot));
        }
        let mut shares = split_point(x, y, &mut OsRng)
            .map_err(|_| DeviceError::ShareRefused("coordinate outside 0..=65535"))?;
        let item_id = self.state.shares.next_item;
        // One capsule per (share epoch, node): the key manager keeps the epoch's key across slots.
        let spe = self.card.share_slots().slots_per_share_epoch;
        let epoch = share_epoch(slot, spe);
        let mut out: [Vec<u8>; 3] = Default::default();
        for (j, (share, env)) in (1..=NODES).zip(shares.iter().zip(out.iter_mut())) {
            let attrs = share_attributes(j)?;
            let a: Vec<&str> = attrs.iter().map(String::as_str).collect();
            let key = self.share_keys.key_for(epoch, &a, &mut OsRng)?;
            let mut input = ShareInput {
                device_id: self.card.device_id.clone(),
                item_id,
                slot,
                node_index: j,
                values: vec![share.x.value(), share.y.value()],
                seq: self.state.next_seq,
            };
            let sealed = seal_share_bundle(key, &self.sig, &input, spe, &mut OsRng);
            input.values.zeroize();
            *env = sealed?;
            self.state.next_seq += 1;
        }
        shares.zeroize();
        // Keys of earlier share epochs are never needed again (slots only go forward).
        self.share_keys.prune_before(epoch);
        self.state.shares.next_item = item_id + 1;
        self.state.shares.last_slot = Some(slot);
        self.persist()?;
        for env in &out {
            crate::outbox::keep(&self.dir, env)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use armored_crypto::envelope::decode_envelope;

    #[test]
    fn three_envelopes_per_slot_forward_only() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("at-dev-shares-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::setup(&dir, "phone-1", "d1", 3_600_000)?;
        let owner = armored_crypto::sig::SigningKey::generate(&mut OsRng);
        let pre = armored_crypto::kpcpre::SecretKey::generate(&mut OsRng);
        let id = armored_crypto::identity::create_owner_identity(
            "alice", &pre, &owner, 0, &owner, &mut OsRng,
        );
        crate::pin_owner(&dir, &id)?;
        let mut d = Device::open(&dir)?;
        let envs = d.share_point(100, 5, 6)?;
        let mut seqs = Vec::new();
        for (j, e) in envs.iter().enumerate() {
            let (_, h, _) = decode_envelope(e)?;
            // Share epochs of 50 slots by default.
            assert_eq!(h.epoch, 2);
            assert!(h.attributes.contains(&format!("node-{}", j + 1)));
            seqs.push(h.seq);
        }
        assert_eq!(seqs, [0, 1, 2]);
        assert!(matches!(
            d.share_point(100, 5, 6),
            Err(DeviceError::SlotAlreadyShared(100))
        ));
        assert!(matches!(
            d.share_point(101, 70_000, 6),
            Err(DeviceError::ShareRefused(_))
        ));
        drop(d);
        let mut d = Device::open(&dir)?;
        assert_eq!(d.state().shares.next_item, 1);
        let envs2 = d.share_point(101, 7, 8)?;
        assert_eq!(decode_envelope(&envs2[0])?.1.seq, 3);
        // Slot 102 is in the same share epoch: node j's capsule is reused (a restart, as here
        // before slot 101, starts a new one: epoch keys live in memory only).
        let envs = d.share_point(102, 7, 8)?;
        for (a, b) in envs.iter().zip(&envs2) {
            assert_eq!(
                decode_envelope(a)?.1.capsule_id,
                decode_envelope(b)?.1.capsule_id
            );
        }
        let envs3 = d.share_point(150, 7, 8)?;
        assert_eq!(decode_envelope(&envs3[0])?.1.epoch, 3);
        assert_ne!(
            decode_envelope(&envs3[0])?.1.capsule_id,
            decode_envelope(&envs[0])?.1.capsule_id
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
