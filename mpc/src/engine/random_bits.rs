//! Random shared bits by the square-root method (Damgård et al.): `[r]` random, open
//! w = r^2 (+ a degree-2 zero-sharing, so the opened shares say nothing about r's polynomial),
//! s = sqrt(w); then r/s = ±1 with equal probability and `[b] = ([r]·s^-1 + 1)/2`. One round.

use super::Engine;
use crate::error::{Error, Result};
use crate::field::{batch_inverse, sqrt_batch, Fp};
use crate::transport::Transport;

impl<T: Transport> Engine<T> {
    /// This party's shares of n uniformly random bits (1 round; a slot whose w is 0, probability
    /// 1/p, is redrawn in one more round).
    pub fn random_bits(&mut self, n: usize) -> Result<Vec<Fp>> {
        let (mut bits, mut retry) = self.random_bits_once(n)?;
        // Each retry round redraws the slots whose w was 0 (all parties see the same w).
        while !retry.is_empty() {
            let (again, still) = self.random_bits_once(retry.len())?;
            for (&slot, b) in retry.iter().zip(again) {
                bits[slot] = b;
            }
            retry = still.into_iter().map(|k| retry[k]).collect();
        }
        Ok(bits)
    }

    /// One round of n bit candidates: the bits, and the positions whose w was 0 (left as 0).
    fn random_bits_once(&mut self, n: usize) -> Result<(Vec<Fp>, Vec<usize>)> {
        let inv2 = Fp::from(2).inverse().unwrap_or(Fp::ZERO);
        let r = self.random(n);
        let mut w: Vec<Fp> = r.iter().map(|&x| x * x).collect();
        let batch = self.next_batch();
        self.prf.add_zero2(batch, &mut w);
        let w = self.open2(&w)?;
        let retry: Vec<usize> = (0..n).filter(|&k| w[k] == Fp::ZERO).collect();
        // A zero stands in as 1 only to keep the batch inversion defined; its slot is redrawn.
        let mut s: Vec<Fp> = w
            .iter()
            .map(|&v| if v == Fp::ZERO { Fp::ONE } else { v })
            .collect();
        sqrt_batch(&mut s);
        // A residue's root squares back; anything else means a peer sent garbage.
        if s.iter()
            .zip(&w)
            .any(|(&root, &v)| v != Fp::ZERO && root * root != v)
        {
            return Err(Error::ProtocolViolation("opened value is not a square"));
        }
        drop(w);
        if !batch_inverse(&mut s) {
            return Err(Error::ProtocolViolation("zero root"));
        }
        // b = (r/s + 1)/2, computed in place of 1/s.
        for (si, &ri) in s.iter_mut().zip(&r) {
            *si = (ri * *si + Fp::ONE) * inv2;
        }
        for &k in &retry {
            s[k] = Fp::ZERO;
        }
        Ok((s, retry))
    }
}
