//! The only module that touches a pairing library. The scheme (`crate::kpcpre`) sees these types and
//! nothing of arkworks or blst, so a backend can be swapped without touching it.
//!
//! Two backends produce the same bytes for the same inputs and RNG stream:
//! - arkworks (default): not constant-time (arkworks-rs/algebra#826). Long-lived secrets are multiplied
//!   with scalar blinding (`k + m·r` for a fresh 64-bit `m`), ephemeral scalars use fixed-base tables.
//! - blst (feature `blst`, via `blstrs`): constant-time scalar multiplication and faster pairings.
//!
//! Scalars are sampled byte-wise (64 uniform bytes reduced mod r, redrawn if zero), so both backends
//! draw exactly the same values from a seeded RNG; the known-answer vectors check it.

/// Operator impls shared by both backends: each type is a newtype over a library type whose own
/// operators do the work.
macro_rules! scalar_ops {
    ($t:ident) => {
        impl core::ops::Add<&$t> for &$t {
            type Output = $t;
            fn add(self, rhs: &$t) -> $t {
                $t(self.0 + rhs.0)
            }
        }
        impl core::ops::Sub<&$t> for &$t {
            type Output = $t;
            fn sub(self, rhs: &$t) -> $t {
                $t(self.0 - rhs.0)
            }
        }
        impl core::ops::Mul<&$t> for &$t {
            type Output = $t;
            fn mul(self, rhs: &$t) -> $t {
                $t(self.0 * rhs.0)
            }
        }
        impl core::ops::Neg for &$t {
            type Output = $t;
            fn neg(self) -> $t {
                $t(-self.0)
            }
        }
    };
}

/// Group-law impls of a point newtype (additive notation).
macro_rules! point_ops {
    ($t:ident) => {
        impl core::ops::Add for $t {
            type Output = $t;
            fn add(self, rhs: $t) -> $t {
                $t(self.0 + rhs.0)
            }
        }
        impl core::ops::AddAssign for $t {
            fn add_assign(&mut self, rhs: $t) {
                self.0 += rhs.0;
            }
        }
        impl core::ops::Neg for $t {
            type Output = $t;
            fn neg(self) -> $t {
                $t(-self.0)
            }
        }
    };
}

/// A `Debug` that prints only the type's name: group elements and scalars may be secret.
macro_rules! redacted_debug {
    ($t:ident) => {
        impl core::fmt::Debug for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
    };
}

#[cfg(not(feature = "blst"))]
mod ark;
#[cfg(not(feature = "blst"))]
pub use ark::*;

#[cfg(feature = "blst")]
mod blst;
#[cfg(feature = "blst")]
pub use self::blst::*;

mod secret;
pub use secret::SecretScalar;

/// Compressed G1 point size.
pub const G1_BYTES: usize = 48;
/// Compressed G2 point size.
pub const G2_BYTES: usize = 96;
/// GT element size (arkworks' Fq12 layout: 12 little-endian Fp coefficients).
pub const GT_BYTES: usize = 576;
/// Scalar size (little-endian, canonical).
pub const SCALAR_BYTES: usize = 32;

/// The group order r, little-endian 64-bit limbs.
#[cfg_attr(feature = "blst", allow(dead_code))] // blst multiplies in constant time, unblinded
pub(crate) const R_LIMBS: [u64; 4] = [
    0xffff_ffff_0000_0001,
    0x53bd_a402_fffe_5bfe,
    0x3339_d808_09a1_d805,
    0x73ed_a753_299d_7d48,
];

/// `k + m·r` as five little-endian limbs: the same group element as `k`, a fresh bit pattern.
#[cfg_attr(feature = "blst", allow(dead_code))]
pub(crate) fn blind_limbs(k: &[u64; 4], m: u64) -> [u64; 5] {
    let mut out = [0u64; 5];
    let mut carry: u128 = 0;
    for i in 0..4 {
        let v = (R_LIMBS[i] as u128) * (m as u128) + (k[i] as u128) + carry;
        out[i] = v as u64;
        carry = v >> 64;
    }
    out[4] = carry as u64;
    out
}

/// Draws the 64-bit blinding factor (nonzero high bit so the blinded scalar has a fixed length).
pub(crate) fn draw_blind<R: rand_core::RngCore + rand_core::CryptoRng>(rng: &mut R) -> u64 {
    rng.next_u64() | (1 << 63)
}

/// Draws 64 uniform bytes for a scalar reduced mod r.
pub(crate) fn draw_wide<R: rand_core::RngCore + rand_core::CryptoRng>(rng: &mut R) -> [u8; 64] {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    wide
}

#[cfg(test)]
mod tests;
