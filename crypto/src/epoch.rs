//! The epoch key manager (phase 3 step 5): one DEK and capsule per (epoch, attribute set), reused
//! for every message of that epoch and set, rotated early after 2^24 messages.

use std::collections::HashMap;

use rand_core::{CryptoRng, RngCore};

use crate::error::{Error, Result};
use crate::ids::twin_attribute;
use crate::kpcpre::{AttributeSet, Capsule1, Dek, PublicKey};

/// Messages one DEK may encrypt (random 96-bit nonces: 2^24 keeps the collision risk below 2^-48).
pub const MAX_MESSAGES_PER_DEK: u64 = 1 << 24;

/// `floor(unix_ms / epoch_len_ms)`.
pub fn epoch_of(unix_ms: u64, epoch_len_ms: u64) -> u64 {
    unix_ms / epoch_len_ms.max(1)
}

/// A DEK with its capsule, and how often it has been used.
#[derive(Debug)]
pub struct EpochKey {
    dek: Dek,
    capsule: Capsule1,
    uses: u64,
}

impl EpochKey {
    /// The DEK.
    pub fn dek(&self) -> &Dek {
        &self.dek
    }
    /// The capsule that carries it.
    pub fn capsule(&self) -> &Capsule1 {
        &self.capsule
    }
    /// Messages sealed under it so far.
    pub fn uses(&self) -> u64 {
        self.uses
    }
}

/// Hands out the epoch key for (epoch, attributes), creating and rotating as needed.
#[derive(Debug)]
pub struct EpochKeyManager {
    owner: PublicKey,
    twin_id: String,
    limit: u64,
    keys: HashMap<(u64, AttributeSet), EpochKey>,
    capsules_made: u64,
}

impl EpochKeyManager {
    /// Keys for `twin_id`, encapsulated for `owner`.
    pub fn new(owner: PublicKey, twin_id: &str) -> Result<Self> {
        crate::ids::check_id(twin_id, "twin_id")?;
        Ok(Self {
            owner,
            twin_id: twin_id.to_owned(),
            limit: MAX_MESSAGES_PER_DEK,
            keys: HashMap::new(),
            capsules_made: 0,
        })
    }

    /// Rotates after `limit` messages instead of 2^24 (tests).
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit.clamp(1, MAX_MESSAGES_PER_DEK);
        self
    }

    /// Capsules created so far (each is one Enc^1).
    pub fn capsules_made(&self) -> u64 {
        self.capsules_made
    }

    /// The key for one more message in `epoch` under `attributes` (`twin:<id>` is added).
    pub fn key_for<R: RngCore + CryptoRng>(
        &mut self,
        epoch: u64,
        attributes: &[&str],
        rng: &mut R,
    ) -> Result<&EpochKey> {
        let twin = twin_attribute(&self.twin_id);
        let set = AttributeSet::new(attributes.iter().map(|s| s.to_string()).chain([twin]))?;
        let slot = (epoch, set);
        let fresh = match self.keys.get(&slot) {
            Some(k) => k.uses >= self.limit,
            None => true,
        };
        if fresh {
            let dek = Dek::generate(rng);
            let capsule = Capsule1::encrypt(&self.owner, &self.twin_id, epoch, &slot.1, &dek, rng)?;
            self.capsules_made += 1;
            self.keys.insert(
                slot.clone(),
                EpochKey {
                    dek,
                    capsule,
                    uses: 0,
                },
            );
        }
        let key = self.keys.get_mut(&slot).ok_or(Error::KeyExhausted)?;
        key.uses += 1;
        Ok(key)
    }

    /// Forgets keys of epochs before `epoch` (their DEKs are zeroized on drop).
    pub fn prune_before(&mut self, epoch: u64) {
        self.keys.retain(|(e, _), _| *e >= epoch);
    }
}
