//! Random shared bits by the square-root method (Damgård et al.): [r] random, open
//! w = r^2 (+ a degree-2 zero-sharing, so the opened shares say nothing about r's polynomial),
//! s = sqrt(w); then r/s = ±1 with equal probability and [b] = ([r]·s^-1 + 1)/2. One round.

use super::Engine;
use crate::error::{Error, Result};
use crate::field::{batch_inverse, sqrt_batch, Fp};
use crate::transport::Transport;

impl<T: Transport> Engine<T> {
    /// This party's shares of n uniformly random bits (1 round; a slot whose w is 0, probability
    /// 1/p, is redrawn in one more round).
    pub fn random_bits(&mut self, n: usize) -> Result<Vec<Fp>> {
        let mut bits = vec![Fp::ZERO; n];
        let mut todo: Vec<usize> = (0..n).collect();
        let inv2 = Fp::from(2).inverse().unwrap_or(Fp::ZERO);
        while !todo.is_empty() {
            let m = todo.len();
            let r = self.random(m);
            let mut w = r.iter().map(|&x| x * x).collect::<Vec<_>>();
            let batch = self.next_batch();
            self.prf.add_zero2(batch, &mut w);
            let w = self.open2(&w)?;
            // Every party sees the same opened w, so all redraw the same slots. A zero stands in
            // as 1 below only to keep the batch inversion defined; its slot is skipped.
            let retry: Vec<usize> = (0..m).filter(|&k| w[k] == Fp::ZERO).collect();
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
            if !batch_inverse(&mut s) {
                return Err(Error::ProtocolViolation("zero root"));
            }
            for k in 0..m {
                if w[k] != Fp::ZERO {
                    bits[todo[k]] = (r[k] * s[k] + Fp::ONE) * inv2;
                }
            }
            todo = retry.into_iter().map(|k| todo[k]).collect();
        }
        Ok(bits)
    }
}
