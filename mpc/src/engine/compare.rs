//! Less-than-zero, as MP-SPDZ's `KnownPrime.ltz`: for |a| < p/2, `[a < 0] = LSB(2a mod p)`, because
//! 2a mod p is even for a ≥ 0 and odd (p + 2a) for a < 0.
//!
//! With a random r = Σ 2^l b_l from 61 shared bits, open c = 2a + r mod p. As integers c and
//! 2a mod p + r differ by p exactly when c < r, so `LSB(2a) = c_0 ⊕ r_0 ⊕ [c < r]` (also for r ≥ p).
//! `[c < r]` compares a public and a shared bit string with a generate/propagate tree of depth
//! ⌈log2 61⌉ = 6. r is uniform on [0, 2^61) ≡ F_p up to one doubled value, so c is uniform: no
//! statistical slack is needed.

use super::Engine;
use crate::error::{Error, Result};
use crate::field::Fp;
use crate::transport::Transport;

/// Bits of the mask (bit length of p).
pub(crate) const BITS: usize = 61;

/// Rounds of one `ltz` call: random bits, masked opening, carry tree, final XOR.
pub const LTZ_ROUNDS: u32 = 1 + 1 + 6 + 1;

impl<T: Transport> Engine<T> {
    /// Shares of `[a_k < 0]` for sharings a_k of degree up to 2 (e.g. a sum of local products) with
    /// |a_k| < p/2 (9 rounds). The masked value is re-randomised by a fresh degree-2
    /// zero-sharing before it is opened: the points of an unrandomised product polynomial leak.
    pub fn ltz(&mut self, a: &[Fp]) -> Result<Vec<Fp>> {
        let n = a.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let bits = self.random_bits(n * BITS)?;
        let mut c = vec![Fp::ZERO; n];
        let batch = self.next_batch();
        self.prf.add_zero2(batch, &mut c);
        for (ck, (bk, &ak)) in c.iter_mut().zip(bits.chunks_exact(BITS).zip(a)) {
            // r = Σ 2^l b_l, summed without reduction (< 2^122) and reduced once.
            let r = bk
                .iter()
                .enumerate()
                .fold(0u128, |acc, (l, b)| acc + (u128::from(b.value()) << l));
            *ck += ak + ak + Fp::from_u128(r);
        }
        let c = self.open2(&c)?;
        let c: Vec<u64> = c.iter().map(|v| v.value()).collect();
        // t = c_0 ⊕ r_0 is linear in r_0 since c_0 is public.
        let t: Vec<Fp> = c
            .iter()
            .zip(bits.chunks_exact(BITS))
            .map(|(&ck, bk)| xor_public(ck & 1 == 1, bk[0]))
            .collect();
        let (g, e) = leaves(&c, bits);
        let carry = self.carry_tree(g, e, n)?;
        // t ⊕ carry = t + carry - 2·t·carry.
        let tc = self.mul(&t, &carry)?;
        Ok(t.iter()
            .zip(&carry)
            .zip(&tc)
            .map(|((&t, &g), &p)| t + g - p - p)
            .collect())
    }

    /// Shares of `[c_k < r_k]` for public c_k < 2^61 and r_k given by 61 shared bits each
    /// (`bits[k·61 + l]` is bit l of r_k), 6 rounds.
    ///
    /// Per bit, g_l = r_l ∧ ¬c_l (r is larger here) and e_l = ¬(r_l ⊕ c_l) (equal here), both
    /// linear because c is public. Adjacent segments combine as (G, E) = (G_hi + E_hi·G_lo,
    /// E_hi·E_lo); the lowest segment's E is never used and is not computed.
    pub fn lt_public_bits(&mut self, c: &[u64], bits: &[Fp]) -> Result<Vec<Fp>> {
        let n = c.len();
        if bits.len() != n * BITS {
            return Err(Error::InvalidInput("lt_public_bits: 61 bits per value"));
        }
        let (g, e) = leaves(c, bits.to_vec());
        self.carry_tree(g, e, n)
    }

    /// Combines (G, E) segments, 61 per value, level by level up to one G per value.
    fn carry_tree(&mut self, mut g: Vec<Fp>, mut e: Vec<Fp>, n: usize) -> Result<Vec<Fp>> {
        let mut width = BITS;
        while width > 1 {
            let pairs = width / 2;
            let next_width = width - pairs;
            // Per value: pairs products E_hi·G_lo, then pairs - 1 products E_hi·E_lo.
            let per = 2 * pairs - 1;
            let mut x = Vec::with_capacity(n * per);
            let mut y = Vec::with_capacity(n * per);
            for k in 0..n {
                let base = k * width;
                for j in 0..pairs {
                    x.push(e[base + 2 * j + 1]);
                    y.push(g[base + 2 * j]);
                }
                for j in 1..pairs {
                    x.push(e[base + 2 * j + 1]);
                    y.push(e[base + 2 * j]);
                }
            }
            let prod = self.mul(&x, &y)?;
            drop((x, y));
            let mut g2 = Vec::with_capacity(n * next_width);
            let mut e2 = Vec::with_capacity(n * next_width);
            for k in 0..n {
                let base = k * width;
                let p = &prod[k * per..(k + 1) * per];
                for j in 0..pairs {
                    g2.push(g[base + 2 * j + 1] + p[j]);
                    // Segment 0 stays the lowest: its E is never read.
                    e2.push(if j == 0 { Fp::ZERO } else { p[pairs + j - 1] });
                }
                if width % 2 == 1 {
                    g2.push(g[base + width - 1]);
                    e2.push(e[base + width - 1]);
                }
            }
            g = g2;
            e = e2;
            width = next_width;
        }
        Ok(g)
    }
}

/// Leaves of the tree: g_l = r_l ∧ ¬c_l, e_l = ¬(r_l ⊕ c_l). `bits` becomes g in place.
fn leaves(c: &[u64], mut bits: Vec<Fp>) -> (Vec<Fp>, Vec<Fp>) {
    let mut e = Vec::with_capacity(bits.len());
    for (&ck, bk) in c.iter().zip(bits.chunks_exact_mut(BITS)) {
        for (l, b) in bk.iter_mut().enumerate() {
            if (ck >> l) & 1 == 1 {
                e.push(*b);
                *b = Fp::ZERO;
            } else {
                e.push(Fp::ONE - *b);
            }
        }
    }
    (bits, e)
}

/// Shares of c ⊕ b for a public bit c and a shared bit b.
fn xor_public(c: bool, b: Fp) -> Fp {
    if c {
        Fp::ONE - b
    } else {
        b
    }
}
