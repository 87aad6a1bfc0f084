//! Opening shared values to all three parties. Only masked values are ever opened by the
//! protocols of this crate.

use super::Engine;
use crate::error::Result;
use crate::field::Fp;
use crate::shamir::{lagrange2, lagrange3};
use crate::transport::Transport;

impl<T: Transport> Engine<T> {
    /// Opens degree-1 sharings (1 round): each party sends its share to the next one and
    /// interpolates from its own and the previous party's share.
    pub fn open(&mut self, shares: &[Fp]) -> Result<Vec<Fp>> {
        let n = shares.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let (from_next, from_prev) = self.exchange(shares, &[], 0, n)?;
        debug_assert!(from_next.is_empty());
        let (l_own, l_prev) = lagrange2(self.party, self.party.prev());
        Ok(shares
            .iter()
            .zip(from_prev)
            .map(|(&s, p)| l_own * s + l_prev * p)
            .collect())
    }

    /// Opens sharings of degree up to 2 (1 round, two elements sent per value): all three shares
    /// are needed. Callers re-randomise a product sharing with a zero-sharing first.
    pub fn open2(&mut self, shares: &[Fp]) -> Result<Vec<Fp>> {
        let n = shares.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let (from_next, from_prev) = self.exchange(shares, shares, n, n)?;
        let l = lagrange3();
        let (l_own, l_next, l_prev) = (
            l[self.party.slot()],
            l[self.party.next().slot()],
            l[self.party.prev().slot()],
        );
        Ok(shares
            .iter()
            .zip(from_next.iter().zip(&from_prev))
            .map(|(&s, (&a, &b))| l_own * s + l_next * a + l_prev * b)
            .collect())
    }
}
