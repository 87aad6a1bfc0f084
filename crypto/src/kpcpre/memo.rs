//! Memos of validated capsule decodings. Decoding a capsule checks every curve point (on the
//! curve, in the order-r subgroup): ~0.45 ms for a share bundle's capsule1 (one G2 and four G1
//! points), measured here in release. A capsule repeats for every message of its (epoch,
//! attribute set), or of its (device, node, share epoch), so the bridge, the workers, the nodes and
//! the receivers would repeat that check per message. The memo keys a decoding by SHA-256 of the
//! capsule message's encoding: the same bytes always decode to the same validated value, so a hit
//! is exactly what a fresh decoding would return, and an attacker's bytes can only add entries.
//! Bounded: cleared when full (as the ReEnc and DEK caches are).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::Result;

/// Entries per memo (~2 KiB each).
const CAPACITY: usize = 8192;

/// A bounded map from the digest of a capsule message to its validated decoding.
pub(crate) struct Memo<T> {
    map: LazyLock<Mutex<HashMap<[u8; 32], T>>>,
}

impl<T: Clone> Memo<T> {
    pub(crate) const fn new() -> Self {
        Self {
            map: LazyLock::new(|| Mutex::new(HashMap::new())),
        }
    }

    /// `decode(m)`, or the value a previous call returned for the same message.
    pub(crate) fn get_or_decode<M: Message>(
        &self,
        m: &M,
        decode: impl FnOnce(&M) -> Result<T>,
    ) -> Result<T> {
        let key: [u8; 32] = Sha256::digest(m.encode_to_vec()).into();
        // A poisoned lock only means another thread panicked mid-insert of a complete value.
        if let Some(v) = self.map.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(v.clone());
        }
        let v = decode(m)?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use armored_schemas::v1;

    #[test]
    fn a_hit_returns_the_first_decoding_and_errors_are_not_kept() {
        let memo: Memo<u32> = Memo::new();
        let m = v1::Capsule1 {
            version: 1,
            ..Default::default()
        };
        assert_eq!(memo.get_or_decode(&m, |_| Ok(7)).ok(), Some(7));
        assert_eq!(memo.get_or_decode(&m, |_| Ok(8)).ok(), Some(7));
        let other = v1::Capsule1 {
            version: 2,
            ..Default::default()
        };
        assert!(memo
            .get_or_decode(&other, |_| Err(crate::Error::Mismatch("x")))
            .is_err());
        assert_eq!(memo.get_or_decode(&other, |_| Ok(9)).ok(), Some(9));
    }
}
