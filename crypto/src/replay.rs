//! The duplicate/replay guard of envelope.md: per (twin, writer key id), a high-water mark plus a
//! bitmap window of seen sequence numbers. A seq seen before is a duplicate (at-least-once
//! redelivery: drop silently, count it); one older than the window cannot be decided and is refused.
//! The state serialises to bytes so receivers can persist it.

use std::collections::HashMap;

use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};
use crate::keyid::KeyId;

/// Sequence numbers remembered behind the high-water mark.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Window {
    /// Highest seq seen.
    high: u64,
    /// Bit i set: seq `high - i` seen (bit 0 is `high` itself).
    bits: [u64; WORDS],
}

impl Window {
    fn new(seq: u64) -> Self {
        let mut bits = [0u64; WORDS];
        bits[0] = 1;
        Self { high: seq, bits }
    }

    fn test_and_set(&mut self, seq: u64) -> Result<()> {
        if seq > self.high {
            let shift = seq - self.high;
            self.shift(shift);
            self.high = seq;
            self.bits[0] |= 1;
            return Ok(());
        }
        let age = self.high - seq;
        if age >= WINDOW {
            return Err(Error::TooOld {
                seq,
                high: self.high,
            });
        }
        let (w, b) = ((age / 64) as usize, age % 64);
        if self.bits[w] >> b & 1 == 1 {
            return Err(Error::Duplicate { seq });
        }
        self.bits[w] |= 1 << b;
        Ok(())
    }

    /// Ages every remembered seq by `n`.
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let lo = src.map_or(0, |s| self.bits[s]);
            let carry = src.and_then(|s| s.checked_sub(1)).map_or(0, |s| {
                if bits == 0 {
                    0
                } else {
                    self.bits[s] >> (64 - bits)
                }
            });
            self.bits[i] = if bits == 0 { lo } else { (lo << bits) | carry };
        }
    }
}

/// Seen sequence numbers per (twin, writer key id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    windows: HashMap<(String, KeyId), Window>,
}

const T_TWIN: u8 = 1;
const T_KEY: u8 = 2;
const T_HIGH: u8 = 3;
const T_BITS: u8 = 4;

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `seq` for (twin, writer); errs with `Duplicate` if seen, `TooOld` if out of the window.
    pub fn check(&mut self, twin_id: &str, writer: KeyId, seq: u64) -> Result<()> {
        match self.windows.get_mut(&(twin_id.to_owned(), writer)) {
            Some(w) => w.test_and_set(seq),
            None => {
                self.windows
                    .insert((twin_id.to_owned(), writer), Window::new(seq));
                Ok(())
            }
        }
    }

    /// Serialises the state (tagged length-prefixed layout, sorted for determinism).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.windows.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut w = Writer::new();
        for ((twin, key), win) in entries {
            w.push(T_TWIN, twin.as_bytes());
            w.push(T_KEY, key.as_bytes());
            w.push(T_HIGH, &win.high.to_be_bytes());
            let bits: Vec<u8> = win.bits.iter().flat_map(|b| b.to_be_bytes()).collect();
            w.push(T_BITS, &bits);
        }
        w.finish()
    }

    /// Restores persisted state.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new("replay state", bytes);
        let mut windows = HashMap::new();
        while r.peek_tag().is_some() {
            let twin = r.str(T_TWIN)?.to_owned();
            let key = KeyId::from_slice(r.field(T_KEY)?, "replay.key")?;
            let high = r.u64(T_HIGH)?;
            let raw = r.field(T_BITS)?;
            if raw.len() != WORDS * 8 {
                return Err(Error::Layout {
                    what: "replay state",
                    reason: "bitmap length",
                });
            }
            let mut bits = [0u64; WORDS];
            for (i, c) in raw.chunks_exact(8).enumerate() {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                bits[i] = u64::from_be_bytes(a);
            }
            windows.insert((twin, key), Window { high, bits });
        }
        r.finish()?;
        Ok(Self { windows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_window() {
        let k = KeyId([1; 16]);
        let mut g = ReplayGuard::new();
        g.check("t", k, 5).unwrap();
        assert_eq!(g.check("t", k, 5), Err(Error::Duplicate { seq: 5 }));
        g.check("t", k, 3).unwrap();
        assert_eq!(g.check("t", k, 3), Err(Error::Duplicate { seq: 3 }));
        g.check("t", k, 200).unwrap();
        assert_eq!(g.check("t", k, 5), Err(Error::Duplicate { seq: 5 }));
        g.check("t", k, 4).unwrap();
        g.check("u", k, 5).unwrap(); // another twin
        g.check("t", KeyId([2; 16]), 5).unwrap(); // another writer
        g.check("t", k, 200 + WINDOW).unwrap();
        assert!(matches!(g.check("t", k, 200), Err(Error::TooOld { .. })));
        let back = ReplayGuard::from_bytes(&g.to_bytes()).unwrap();
        assert_eq!(back, g);
        assert!(ReplayGuard::from_bytes(&g.to_bytes()[..10]).is_err());
    }

    #[test]
    fn shift_matches_a_set_model() {
        use std::collections::BTreeSet;
        let k = KeyId([9; 16]);
        let mut g = ReplayGuard::new();
        let mut seen = BTreeSet::new();
        let mut high = 0u64;
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let seq = (x >> 33) % 3000;
            let res = g.check("t", k, seq);
            let expect =
                if seen.is_empty() || seq > high || (high - seq < WINDOW && !seen.contains(&seq)) {
                    Ok(())
                } else if high - seq >= WINDOW {
                    Err(Error::TooOld { seq, high })
                } else {
                    Err(Error::Duplicate { seq })
                };
            assert_eq!(res, expect, "seq {seq} high {high}");
            if res.is_ok() {
                seen.insert(seq);
                high = high.max(seq);
            }
        }
    }
}
