//! Shamir sharing over F_p with n = 3, t = 1 (Definition 2): Split on the device, Combine at the
//! receiver, and the Lagrange coefficients the engine uses.

use rand_core::{CryptoRng, RngCore};

use crate::error::{Error, Result};
use crate::field::{Fp, P};

/// One of the three parties; its evaluation point is its index (1, 2 or 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Party(u8);

impl Party {
    /// All three parties, in order.
    pub const ALL: [Party; 3] = [Party(1), Party(2), Party(3)];

    /// Party `index` (1..=3).
    pub fn new(index: u8) -> Result<Party> {
        match index {
            1..=3 => Ok(Party(index)),
            _ => Err(Error::InvalidInput("party index must be 1, 2 or 3")),
        }
    }

    /// The index, 1..=3.
    pub const fn index(self) -> u8 {
        self.0
    }

    /// The evaluation point x_i = i.
    pub fn x(self) -> Fp {
        Fp::from(u32::from(self.0))
    }

    /// The next party (1 → 2 → 3 → 1).
    pub const fn next(self) -> Party {
        Party(self.0 % 3 + 1)
    }

    /// The previous party (1 → 3 → 2 → 1).
    pub const fn prev(self) -> Party {
        Party((self.0 + 1) % 3 + 1)
    }

    /// Position 0..=2, for arrays indexed by party.
    pub const fn slot(self) -> usize {
        self.0 as usize - 1
    }
}

/// Lagrange coefficients at 0 for the points {1, 2, 3}: (3, -3, 1). With them, all three shares
/// of a degree-2 sharing open its value.
pub fn lagrange3() -> [Fp; 3] {
    [Fp::from(3), -Fp::from(3), Fp::ONE]
}

/// Lagrange coefficients at 0 for the two points `a` and `b` (a ≠ b): f(0) = la·f(a) + lb·f(b).
pub fn lagrange2(a: Party, b: Party) -> (Fp, Fp) {
    // la = b / (b - a), lb = a / (a - b); the denominators are ±1 or ±2, never zero for a ≠ b.
    let (xa, xb) = (a.x(), b.x());
    let inv = (xb - xa).inverse().unwrap_or(Fp::ZERO);
    (xb * inv, -(xa * inv))
}

/// Largest coordinate a device may share (unsigned 16-bit grid).
pub const MAX_COORDINATE: u32 = u16::MAX as u32;

/// Split(M, t = 1, n = 3): f(X) = M + a·X with a uniform; share j is f(j).
pub fn split<R: RngCore + CryptoRng>(secret: Fp, rng: &mut R) -> [Fp; 3] {
    let a = random_element(rng);
    Party::ALL.map(|j| secret + a * j.x())
}

/// Split of one grid coordinate on the device: refuses values outside 0..=65535, so that squared
/// distances stay far inside (-p/2, p/2).
pub fn split_coordinate<R: RngCore + CryptoRng>(value: u32, rng: &mut R) -> Result<[Fp; 3]> {
    if value > MAX_COORDINATE {
        return Err(Error::InvalidInput("coordinate outside 0..=65535"));
    }
    Ok(split(Fp::from(value), rng))
}

/// A uniform element (61 random bits; the one value p maps to 0, a 2^-61 bias).
pub fn random_element<R: RngCore + ?Sized>(rng: &mut R) -> Fp {
    Fp::new(rng.next_u64() & P)
}

/// Combine at the receiver: interpolates the secret from shares 1 and 2 and checks that share 3
/// lies on the same line. A mismatch (one faulty node) is `InconsistentShares`.
pub fn combine(shares: [Fp; 3]) -> Result<Fp> {
    let [s1, s2, s3] = shares;
    let slope = s2 - s1;
    let secret = s1 - slope;
    // Public at this point (the receiver owns the result), so a plain comparison is fine.
    if secret + Fp::from(3) * slope != s3 {
        return Err(Error::InconsistentShares);
    }
    Ok(secret)
}

/// Combine for vectors of output shares (index i of each vector is one value).
pub fn combine_all(shares: [&[Fp]; 3]) -> Result<Vec<Fp>> {
    let n = shares[0].len();
    if shares.iter().any(|s| s.len() != n) {
        return Err(Error::InconsistentShares);
    }
    (0..n)
        .map(|k| combine([shares[0][k], shares[1][k], shares[2][k]]))
        .collect()
}
