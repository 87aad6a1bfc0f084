//! GRR multiplication (Gennaro-Rabin-Rabin) with one element sent per product.
//!
//! Party i holds h_i, its point of a degree-≤2 sharing (e.g. the local product x_i·y_i), and
//! λ_i·h_i sums to the value over the three parties. It reshares λ_i·h_i with a fresh degree-1
//! polynomial g_i whose value at next(i) is drawn from the PRG it shares with next(i), so the
//! polynomial is uniform given its constant term and only g_i(prev(i)) must be sent. Its new share
//! is g_i(i) + g_prev(i) (from the PRG shared with prev) + g_next(i) (received from next).

use super::Engine;
use crate::error::{Error, Result};
use crate::field::Fp;
use crate::shamir::lagrange3;
use crate::transport::Transport;

impl<T: Transport> Engine<T> {
    /// Shares of x·y, elementwise (1 round, one element sent per product).
    pub fn mul(&mut self, x: &[Fp], y: &[Fp]) -> Result<Vec<Fp>> {
        if x.len() != y.len() {
            return Err(Error::InvalidInput("mul: operand lengths differ"));
        }
        let h: Vec<Fp> = x.iter().zip(y).map(|(&a, &b)| a * b).collect();
        self.reshare(h)
    }

    /// Turns this party's points of degree-≤2 sharings (local products, or sums of them: a sum of
    /// products is reduced once) into fresh, uniformly random degree-1 sharings (1 round).
    pub fn reshare(&mut self, mut h: Vec<Fp>) -> Result<Vec<Fp>> {
        let n = h.len();
        if n == 0 {
            return Ok(h);
        }
        let (xi, xn, xp) = (self.party.x(), self.party.next().x(), self.party.prev().x());
        let lambda = lagrange3()[self.party.slot()];
        let inv_xn = xn.inverse().unwrap_or(Fp::ZERO);
        // g(X) = λh + (r - λh)·X/x_next, so g(x) = λh·(1 - x/x_next) + r·x/x_next.
        let (alpha, beta) = (xi * inv_xn, xp * inv_xn);
        let (own_h, own_r) = (lambda * (Fp::ONE - alpha), alpha);
        let (out_h, out_r) = (lambda * (Fp::ONE - beta), beta);

        let batch = self.next_batch();
        let mut r = vec![Fp::ZERO; n];
        self.prf.grr_to_next(batch, &mut r);
        let to_prev: Vec<Fp> = h
            .iter()
            .zip(&r)
            .map(|(&hk, &rk)| hk * out_h + rk * out_r)
            .collect();
        for (hk, &rk) in h.iter_mut().zip(&r) {
            *hk = *hk * own_h + rk * own_r;
        }
        drop(r);
        self.prf.add_grr_from_prev(batch, &mut h);
        let (from_next, _) = self.exchange(&[], &to_prev, n, 0)?;
        for (hk, v) in h.iter_mut().zip(from_next) {
            *hk += v;
        }
        Ok(h)
    }
}
