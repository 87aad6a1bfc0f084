//! The prime field F_p with the Mersenne prime p = 2^61 - 1.
//!
//! Reduction of a 122-bit product is a shift and an add (2^61 ≡ 1 mod p). Elements are kept
//! canonical (< p) so that equality is equality of representatives. Signed integers in (-p/2, p/2)
//! map to `v` or `p - |v|`.

use core::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// The modulus, 2^61 - 1.
pub const P: u64 = (1 << 61) - 1;

/// An element of F_p, always canonical (< p).
///
/// `Debug` is redacted: the same type carries shares, and no log line may contain one.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Fp(u64);

impl zeroize::DefaultIsZeroes for Fp {}

impl core::fmt::Debug for Fp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Fp(<redacted>)")
    }
}

#[inline(always)]
const fn reduce_once(v: u64) -> u64 {
    // v < 2p: one conditional subtraction.
    if v >= P {
        v - P
    } else {
        v
    }
}

impl Fp {
    /// Zero.
    pub const ZERO: Fp = Fp(0);
    /// One.
    pub const ONE: Fp = Fp(1);

    /// Reduces any u64 (2^64 ≡ 8 mod p).
    #[inline]
    pub const fn new(v: u64) -> Fp {
        Fp(reduce_once((v & P) + (v >> 61)))
    }

    /// The element `v` if it is canonical (< p): wire decoding rejects anything else.
    #[inline]
    pub const fn from_canonical(v: u64) -> Option<Fp> {
        if v < P {
            Some(Fp(v))
        } else {
            None
        }
    }

    /// A signed integer with |v| < p.
    #[inline]
    pub const fn from_i64(v: i64) -> Fp {
        if v >= 0 {
            Fp::new(v as u64)
        } else {
            // |v| ≤ 2^63 < 2^64; reduce the magnitude first, then negate.
            Fp::new(v.unsigned_abs()).neg_const()
        }
    }

    /// The canonical representative in [0, p).
    #[inline]
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The representative in (-p/2, p/2).
    #[inline]
    pub const fn to_i64(self) -> i64 {
        if self.0 > P / 2 {
            self.0 as i64 - P as i64
        } else {
            self.0 as i64
        }
    }

    #[inline(always)]
    const fn neg_const(self) -> Fp {
        if self.0 == 0 {
            self
        } else {
            Fp(P - self.0)
        }
    }

    /// Reduces any u128 (2^122 ≡ 1 and 2^61 ≡ 1 mod p).
    #[inline]
    pub const fn from_u128(x: u128) -> Fp {
        let lo = (x as u64) & P;
        let mid = ((x >> 61) as u64) & P;
        let hi = (x >> 122) as u64;
        Fp::new(lo + mid + hi)
    }

    /// Reduces a product of two canonical elements (< 2^122).
    #[inline(always)]
    const fn reduce_wide(x: u128) -> Fp {
        // x = hi·2^61 + lo ≡ hi + lo; with x ≤ (p-1)^2, hi < p - 1 and lo ≤ p, so one subtraction.
        let lo = (x as u64) & P;
        let hi = (x >> 61) as u64;
        Fp(reduce_once(lo + hi))
    }

    /// self^2.
    #[inline(always)]
    pub fn square(self) -> Fp {
        self * self
    }

    /// self^e.
    pub fn pow(self, mut e: u64) -> Fp {
        let mut base = self;
        let mut acc = Fp::ONE;
        while e > 0 {
            if e & 1 == 1 {
                acc *= base;
            }
            base = base.square();
            e >>= 1;
        }
        acc
    }

    /// The inverse, or `None` for zero (Fermat: self^(p-2)).
    pub fn inverse(self) -> Option<Fp> {
        if self.0 == 0 {
            None
        } else {
            Some(self.pow(P - 2))
        }
    }

    /// A square root of a quadratic residue: self^((p+1)/4) = self^(2^59), 59 squarings (p ≡ 3 mod
    /// 4). For a non-residue the result squares to -self; callers that need to know check.
    pub fn sqrt(self) -> Fp {
        let mut s = self;
        for _ in 0..59 {
            s = s.square();
        }
        s
    }

    /// Whether this is the bit 0 or 1.
    #[inline]
    pub const fn is_bit(self) -> bool {
        self.0 <= 1
    }
}

/// Squaring without the final conditional subtraction: for x ≤ 2^61 the result is ≤ 2^61 again
/// (two folds of 2^61 ≡ 1), so chains of squarings stay in range and are made canonical once.
#[inline(always)]
fn square_lazy(x: u64) -> u64 {
    let p = x as u128 * x as u128;
    let r = (p as u64 & P) + (p >> 61) as u64;
    (r & P) + (r >> 61)
}

/// Square roots of many residues at once (see [`Fp::sqrt`]): four independent squaring chains
/// interleaved, so that the multiplier's latency is hidden (a single chain waits on each product).
pub fn sqrt_batch(values: &mut [Fp]) {
    let mut chunks = values.chunks_exact_mut(4);
    for c in &mut chunks {
        let mut s = [c[0].0, c[1].0, c[2].0, c[3].0];
        for _ in 0..59 {
            for v in &mut s {
                *v = square_lazy(*v);
            }
            // Keeps LLVM's SLP vectoriser from packing the four scalar chains into AVX2 lanes:
            // the lane shuffles around each 64x64 multiplication cost more than they save
            // (measured here: ~160 ns per root vectorised, ~100 ns scalar).
            s[0] = core::hint::black_box(s[0]);
        }
        for (v, r) in c.iter_mut().zip(s) {
            *v = Fp::new(r);
        }
    }
    for v in chunks.into_remainder() {
        *v = v.sqrt();
    }
}

/// Inverts every element in place with one field inversion (Montgomery's trick: prefix products,
/// invert the total, walk back). Returns `false`, changing nothing, if any element is zero.
pub fn batch_inverse(values: &mut [Fp]) -> bool {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = Fp::ONE;
    for v in values.iter() {
        prefix.push(acc);
        acc *= *v;
    }
    let Some(mut inv) = acc.inverse() else {
        return false;
    };
    for (v, before) in values.iter_mut().zip(prefix).rev() {
        let vi = inv * before;
        inv *= *v;
        *v = vi;
    }
    true
}

impl Add for Fp {
    type Output = Fp;
    #[inline(always)]
    fn add(self, rhs: Fp) -> Fp {
        Fp(reduce_once(self.0 + rhs.0))
    }
}

impl Sub for Fp {
    type Output = Fp;
    #[inline(always)]
    fn sub(self, rhs: Fp) -> Fp {
        Fp(reduce_once(self.0 + P - rhs.0))
    }
}

impl Mul for Fp {
    type Output = Fp;
    #[inline(always)]
    fn mul(self, rhs: Fp) -> Fp {
        Fp::reduce_wide(self.0 as u128 * rhs.0 as u128)
    }
}

impl Neg for Fp {
    type Output = Fp;
    #[inline(always)]
    fn neg(self) -> Fp {
        self.neg_const()
    }
}

impl AddAssign for Fp {
    #[inline(always)]
    fn add_assign(&mut self, rhs: Fp) {
        *self = *self + rhs;
    }
}

impl SubAssign for Fp {
    #[inline(always)]
    fn sub_assign(&mut self, rhs: Fp) {
        *self = *self - rhs;
    }
}

impl MulAssign for Fp {
    #[inline(always)]
    fn mul_assign(&mut self, rhs: Fp) {
        *self = *self * rhs;
    }
}

impl From<u32> for Fp {
    fn from(v: u32) -> Fp {
        Fp(u64::from(v))
    }
}

impl core::iter::Sum for Fp {
    fn sum<I: Iterator<Item = Fp>>(iter: I) -> Fp {
        iter.fold(Fp::ZERO, |a, b| a + b)
    }
}
