//! blst backend (feature `blst`): constant-time scalar multiplication, faster pairings.
//!
//! One file on purpose (~750 lines): a backend is one surface (G1, G2, GT, Z_r, pairings, encodings)
//! that a reviewer reads side by side with `ark.rs`; split by type it would hide what the two
//! backends must agree on.
//!
//! G1, G2 and Z_r come from `blstrs`; GT is blst's own `blst_fp12` (through the safe API of the `blst`
//! crate), because `blstrs` keeps the coefficients of its `Gt` private. Every encoding is the one of
//! the arkworks backend, byte for byte:
//! - points: compressed ZCash format (what blst writes);
//! - scalars: 32 bytes little-endian, canonical;
//! - GT: arkworks' `Fq12` layout, the 12 Fp coefficients in the order c0.c0.c0, c0.c0.c1, c0.c1.c0,
//!   ..., c1.c2.c1, each 48 bytes little-endian.
//!
//! blst's final exponentiation returns the same value as arkworks' (checked by `mod cross` below), so
//! pairings need no correction. Every multiplication or exponentiation by a scalar is constant-time:
//! - variable-base points: blst's constant-time multiplication (GLV with fixed windows);
//! - fixed-base tables: 64 windows of 4 bits, every entry read for each lookup, blst's complete
//!   (constant-time) mixed additions;
//! - GT: the same fixed-window scheme on blst's Fp12 product (blst's safe API has no GT
//!   exponentiation), with a precomputed table for `gt_table()`.
//!
//! The blinding factor of the arkworks backend is still drawn (and discarded) by every `*_secret`
//! operation so that a seeded RNG yields the same later values under both backends.
//!
//! `G2Prepared` holds the affine point: blst's safe API computes line functions inside the Miller
//! loop; `multi_pairing` runs the loops through blst's pairing context, which shares one squaring
//! chain per batch of eight pairs, single-threaded.

use std::sync::LazyLock;

use ::blst::{blst_fp, blst_fp12, blst_fp2, blst_fp6, limb_t};
use blstrs::{G1Affine, G1Projective, G2Affine, G2Projective, Scalar as Fr};
use ff::Field;
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use rand_core::{CryptoRng, RngCore};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

use super::{draw_blind, draw_wide, G1_BYTES, G2_BYTES, GT_BYTES, SCALAR_BYTES};
use crate::error::{Error, Result};

/// Name of this backend, for reports.
pub const BACKEND: &str = "blst";

// The raw Fp helpers below assume blst's 64-bit limbs (6 per Fp, Montgomery form with R = 2^384).
const _: () = assert!(size_of::<limb_t>() == 8);

// ---------------------------------------------------------------------------------------------
// Scalars

/// An element of Z_r. `Debug` does not print the value (scalars are often secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Scalar(Fr);

redacted_debug!(Scalar);

impl Zeroize for Scalar {
    fn zeroize(&mut self) {
        self.0 = Fr::ZERO;
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// 2^64 in Z_r.
fn two_pow_64() -> Fr {
    Fr::from(1u64 << 32).square()
}

impl Scalar {
    /// 0.
    pub fn zero() -> Self {
        Self(Fr::ZERO)
    }
    /// 1.
    pub fn one() -> Self {
        Self(Fr::ONE)
    }
    /// A small non-negative integer.
    pub fn from_u64(v: u64) -> Self {
        Self(Fr::from(v))
    }
    /// A small signed integer.
    pub fn from_i64(v: i64) -> Self {
        let s = Fr::from(v.unsigned_abs());
        Self(if v < 0 { -s } else { s })
    }
    /// 64 bytes reduced mod r (uniform up to 2^-256).
    pub fn from_wide(bytes: &[u8; 64]) -> Self {
        // Horner over the eight little-endian 64-bit limbs, most significant first: the integer
        // value of the bytes mod r, as arkworks' `from_le_bytes_mod_order`.
        let base = two_pow_64();
        let mut acc = Fr::ZERO;
        for chunk in bytes.chunks_exact(8).rev() {
            let mut limb = [0u8; 8];
            limb.copy_from_slice(chunk);
            let mut v = u64::from_le_bytes(limb);
            acc = acc * base + Fr::from(v);
            v.zeroize();
            limb.zeroize();
        }
        Self(acc)
    }
    /// Uniform in Z_r \ {0}.
    pub fn random_nonzero<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        loop {
            let mut wide = draw_wide(rng);
            let s = Self::from_wide(&wide);
            wide.zeroize();
            if !s.is_zero() {
                return s;
            }
        }
    }
    /// Whether this is 0.
    pub fn is_zero(&self) -> bool {
        bool::from(self.0.is_zero())
    }
    /// Multiplicative inverse (None for 0).
    pub fn inverse(&self) -> Option<Self> {
        Option::from(self.0.invert()).map(Self)
    }
    /// The value as an integer in (-64, 64), if it is one (Lagrange factors of small gates).
    pub fn small_int(&self) -> Option<i64> {
        let pos = self.limbs();
        if pos[1..].iter().all(|&l| l == 0) && pos[0] < 64 {
            return Some(pos[0] as i64);
        }
        let neg = (-self).limbs();
        if neg[1..].iter().all(|&l| l == 0) && neg[0] < 64 {
            return Some(-(neg[0] as i64));
        }
        None
    }
    /// Canonical little-endian bytes.
    pub fn to_bytes(&self) -> [u8; SCALAR_BYTES] {
        self.0.to_bytes_le()
    }
    /// Parses canonical little-endian bytes (< r). Zero is accepted here; callers that need a
    /// nonzero scalar check [`Scalar::is_zero`].
    pub fn from_bytes(bytes: &[u8], field: &'static str) -> Result<Self> {
        let arr: [u8; SCALAR_BYTES] = bytes.try_into().map_err(|_| Error::InvalidPoint {
            field,
            reason: "scalar length",
        })?;
        Option::from(Fr::from_bytes_le(&arr))
            .map(Self)
            .ok_or(Error::InvalidPoint {
                field,
                reason: "non-canonical scalar",
            })
    }
    pub(crate) fn limbs(&self) -> [u64; 4] {
        let mut b = self.0.to_bytes_le();
        let mut out = [0u64; 4];
        for (o, c) in out.iter_mut().zip(b.chunks_exact(8)) {
            let mut limb = [0u8; 8];
            limb.copy_from_slice(c);
            *o = u64::from_le_bytes(limb);
            limb.zeroize();
        }
        b.zeroize();
        out
    }
}

scalar_ops!(Scalar);

/// A 128-bit integer in Z_r (exact: r > 2^128).
fn fr_from_u128(k: u128) -> Fr {
    Fr::from((k >> 64) as u64) * two_pow_64() + Fr::from(k as u64)
}

// ---------------------------------------------------------------------------------------------
// Fixed-base tables: for each 4-bit window i of a 256-bit scalar, the 16 multiples j·16^i·B
// (j = 0..15). A multiplication is 64 constant-time lookups (every entry is read) and 64 additions
// with blst's constant-time complete addition: the operation sequence does not depend on the scalar.

/// Number of 4-bit windows in a 256-bit scalar.
const WINDOWS: usize = 64;

/// The `i`-th 4-bit digit of little-endian bytes (i < 2·len).
fn nibble(bytes: &[u8], i: usize) -> u8 {
    (bytes[i / 2] >> (4 * (i % 2))) & 0x0f
}

macro_rules! curve_table {
    ($name:ident, $point:ident, $proj:ty, $aff:ty) => {
        /// Precomputed multiples of one base point for fast constant-time fixed-base multiplication.
        pub struct $name {
            windows: Vec<[$aff; 16]>,
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(
                    f,
                    "{}(w=4, windows={})",
                    stringify!($name),
                    self.windows.len()
                )
            }
        }

        impl $name {
            /// Builds the table for `base` (this backend always uses 4-bit windows; `w` is
            /// ignored).
            pub fn new(base: &$point, _w: usize) -> Self {
                let mut flat = vec![<$proj>::identity(); WINDOWS * 16];
                let mut b = base.0;
                for win in flat.chunks_exact_mut(16) {
                    for j in 1..16 {
                        win[j] = win[j - 1] + b;
                    }
                    b = win[15] + b;
                }
                let mut affine = vec![<$aff>::identity(); flat.len()];
                <$proj>::batch_normalize(&flat, &mut affine);
                let windows = affine
                    .chunks_exact(16)
                    .map(|c| {
                        let mut w = [<$aff>::identity(); 16];
                        w.copy_from_slice(c);
                        w
                    })
                    .collect();
                Self { windows }
            }

            fn mul_bytes(&self, bytes: &[u8]) -> $point {
                let mut acc = <$proj>::identity();
                for (i, win) in self.windows.iter().enumerate().take(2 * bytes.len()) {
                    let d = nibble(bytes, i);
                    let mut sel = <$aff>::identity();
                    for (j, e) in win.iter().enumerate() {
                        sel.conditional_assign(e, (j as u8).ct_eq(&d));
                    }
                    // blst's complete mixed addition (handles the identity and doubling in
                    // constant time).
                    acc += sel;
                }
                $point(acc)
            }

            /// `k·B` for a public or ephemeral scalar (constant-time).
            pub fn mul(&self, k: &Scalar) -> $point {
                let mut b = k.0.to_bytes_le();
                let p = self.mul_bytes(&b);
                b.zeroize();
                p
            }

            /// `k·B` for a 128-bit integer.
            pub fn mul_u128(&self, k: u128) -> $point {
                self.mul_bytes(&k.to_le_bytes())
            }

            /// `k·B` for a long-lived secret (constant-time; the blinding factor of the arkworks
            /// backend is drawn and discarded to keep the RNG stream identical).
            pub fn mul_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> $point {
                let _ = draw_blind(rng);
                self.mul(k)
            }
        }
    };
}

curve_table!(G1Table, G1, G1Projective, G1Affine);
curve_table!(G2Table, G2, G2Projective, G2Affine);

/// Fixed-base table in GT (same layout as the curve tables, products instead of sums).
pub struct GtTable {
    windows: Vec<[blst_fp12; 16]>,
}

impl core::fmt::Debug for GtTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GtTable(w=4, windows={})", self.windows.len())
    }
}

impl GtTable {
    /// Builds the table for `base` (this backend always uses 4-bit windows; `w` is ignored).
    pub fn new(base: &Gt, _w: usize) -> Self {
        let mut windows = Vec::with_capacity(WINDOWS);
        let mut b = base.0;
        for _ in 0..WINDOWS {
            let mut win = [blst_fp12::default(); 16];
            for j in 1..16 {
                win[j] = win[j - 1] * b;
            }
            b = win[15] * b;
            windows.push(win);
        }
        Self { windows }
    }

    /// `B^k` for a public or ephemeral exponent (constant-time).
    pub fn pow(&self, k: &Scalar) -> Gt {
        let mut bytes = k.0.to_bytes_le();
        let mut acc = blst_fp12::default();
        for (i, win) in self.windows.iter().enumerate() {
            acc *= ct_select(win, nibble(&bytes, i));
        }
        bytes.zeroize();
        Gt(acc)
    }

    /// `B^k` for a long-lived secret exponent (constant-time; blinding factor drawn and discarded).
    pub fn pow_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> Gt {
        let _ = draw_blind(rng);
        self.pow(k)
    }
}

static G1_GEN: LazyLock<G1Table> = LazyLock::new(|| G1Table::new(&G1::generator(), 8));
static G2_GEN: LazyLock<G2Table> = LazyLock::new(|| G2Table::new(&G2::generator(), 8));
static GT_GEN_VALUE: LazyLock<Gt> = LazyLock::new(|| pairing(&G1::generator(), &G2::generator()));
static GT_GEN: LazyLock<GtTable> = LazyLock::new(|| GtTable::new(&GT_GEN_VALUE, 8));

/// The fixed-base table of g1.
pub fn g1_table() -> &'static G1Table {
    &G1_GEN
}
/// The fixed-base table of g2.
pub fn g2_table() -> &'static G2Table {
    &G2_GEN
}
/// The fixed-base table of e(g1, g2).
pub fn gt_table() -> &'static GtTable {
    &GT_GEN
}

// ---------------------------------------------------------------------------------------------
// G1 and G2

macro_rules! curve_point {
    ($point:ident, $proj:ty, $aff:ty, $bytes:expr) => {
        /// A group element. `Debug` prints nothing (some points, e.g. g1^x, are secret).
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $point($proj);

        redacted_debug!($point);

        impl Zeroize for $point {
            fn zeroize(&mut self) {
                self.0 = <$proj>::identity();
                core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
            }
        }

        impl $point {
            /// The standard generator.
            pub fn generator() -> Self {
                Self(<$proj>::generator())
            }
            /// Whether this is the identity.
            pub fn is_identity(&self) -> bool {
                bool::from(self.0.is_identity())
            }
            /// Variable-base multiplication by a scalar (blst: constant-time).
            pub fn mul(&self, k: &Scalar) -> Self {
                Self(self.0 * k.0)
            }
            /// Variable-base multiplication by a long-lived secret (constant-time; the blinding
            /// factor of the arkworks backend is drawn and discarded).
            pub fn mul_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> Self {
                let _ = draw_blind(rng);
                Self(self.0 * k.0)
            }
            /// Multiplication by a small signed integer (cheap: a few doublings).
            pub fn mul_small(&self, k: i64) -> Self {
                let m = k.unsigned_abs();
                let mut acc = <$proj>::identity();
                for i in (0..64 - m.leading_zeros()).rev() {
                    acc = acc.double();
                    if (m >> i) & 1 == 1 {
                        acc += self.0;
                    }
                }
                Self(if k < 0 { -acc } else { acc })
            }
            /// Multiplication by a 128-bit integer.
            pub fn mul_u128(&self, k: u128) -> Self {
                Self(self.0 * fr_from_u128(k))
            }
            /// Compressed encoding (ZCash/IETF format).
            pub fn to_bytes(&self) -> [u8; $bytes] {
                self.0.to_compressed()
            }
            /// Decodes a compressed point: on-curve, subgroup and non-identity checked.
            pub fn from_bytes(bytes: &[u8], field: &'static str) -> Result<Self> {
                let arr: [u8; $bytes] = bytes.try_into().map_err(|_| Error::InvalidPoint {
                    field,
                    reason: "point length",
                })?;
                // The canonical identity encoding (0xc0 then zeros) decodes, then is refused as
                // the identity, as in the arkworks backend.
                if arr[0] == 0xc0 && arr[1..].iter().all(|&b| b == 0) {
                    return Err(Error::InvalidPoint {
                        field,
                        reason: "identity",
                    });
                }
                // blst: compression flag, canonical x, on-curve and subgroup checks.
                let p: $aff =
                    Option::from(<$aff>::from_compressed(&arr)).ok_or(Error::InvalidPoint {
                        field,
                        reason: "not a valid compressed point in the subgroup",
                    })?;
                let p = <$proj>::from(p);
                if bool::from(p.is_identity()) {
                    return Err(Error::InvalidPoint {
                        field,
                        reason: "identity",
                    });
                }
                Ok(Self(p))
            }
        }

        point_ops!($point);
    };
}

curve_point!(G1, G1Projective, G1Affine, G1_BYTES);
curve_point!(G2, G2Projective, G2Affine, G2_BYTES);

impl G1 {
    /// Hash to G1 by the IETF suite BLS12381G1_XMD:SHA-256_SSWU_RO_ with domain tag `dst`.
    pub fn hash_to_curve(msg: &[u8], dst: &[u8]) -> Result<Self> {
        Ok(Self(G1Projective::hash_to_curve(msg, dst, &[])))
    }

    /// Σ k_i·P_i for 128-bit k_i (the well-formedness check's random linear combination; public
    /// values, so variable time is fine).
    pub fn msm_u128(points: &[G1], ks: &[u128]) -> G1 {
        // Interleaved 4-bit windows: one shared doubling chain.
        const W: usize = 4;
        let tables: Vec<Vec<G1Projective>> = points
            .iter()
            .map(|p| {
                let mut t = Vec::with_capacity(15);
                let mut acc = p.0;
                for _ in 0..15 {
                    t.push(acc);
                    acc += p.0;
                }
                t
            })
            .collect();
        let mut acc = G1Projective::identity();
        for win in (0..128 / W).rev() {
            for _ in 0..W {
                acc = acc.double();
            }
            for (t, k) in tables.iter().zip(ks) {
                let d = ((k >> (win * W)) & 0xf) as usize;
                if d != 0 {
                    acc += t[d - 1];
                }
            }
        }
        G1(acc)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw Fp12 helpers (blst's Montgomery form, R = 2^384, the same as arkworks')

/// The base field modulus p, little-endian limbs.
const P_LIMBS: [u64; 6] = [
    0xb9fe_ffff_ffff_aaab,
    0x1eab_fffe_b153_ffff,
    0x6730_d2a0_f6b0_f624,
    0x6477_4b84_f385_12bf,
    0x4b1b_a7b6_434b_acd7,
    0x1a01_11ea_397f_e69a,
];

/// R^2 mod p: the Montgomery form of R, so that multiplying raw limbs `a` (read as a·R^-1) by it
/// yields the Montgomery form of `a`.
const RR_LIMBS: [u64; 6] = [
    0xf4df_1f34_1c34_1746,
    0x0a76_e6a6_09d1_04f1,
    0x8de5_476c_4c95_b6d5,
    0x67eb_88a9_939d_83c0,
    0x9a79_3e85_b519_952d,
    0x1198_8fe5_92ca_e3aa,
];

const FP_ZERO: blst_fp = blst_fp { l: [0; 6] };
const FP2_ZERO: blst_fp2 = blst_fp2 {
    fp: [FP_ZERO, FP_ZERO],
};
const FP6_ZERO: blst_fp6 = blst_fp6 {
    fp2: [FP2_ZERO, FP2_ZERO, FP2_ZERO],
};

/// The Fp12 element whose constant coefficient has the raw limbs `l` (the others are zero).
fn fp12_with_raw_c0(l: [u64; 6]) -> blst_fp12 {
    let mut f = blst_fp12 {
        fp6: [FP6_ZERO, FP6_ZERO],
    };
    f.fp6[0].fp2[0].fp[0].l = l;
    f
}

/// The coefficient with arkworks index `i` (0..12): c{i/6}.c{(i/2)%3}.c{i%2}.
fn coeff(f: &blst_fp12, i: usize) -> &blst_fp {
    &f.fp6[i / 6].fp2[(i / 2) % 3].fp[i % 2]
}

fn coeff_mut(f: &mut blst_fp12, i: usize) -> &mut blst_fp {
    &mut f.fp6[i / 6].fp2[(i / 2) % 3].fp[i % 2]
}

/// Whether the little-endian limbs are < p (constant-time not needed: the input is public).
fn lt_p(l: &[u64; 6]) -> bool {
    for i in (0..6).rev() {
        if l[i] != P_LIMBS[i] {
            return l[i] < P_LIMBS[i];
        }
    }
    false
}

/// -x mod p on reduced limbs (Montgomery form commutes with negation). Constant-time.
fn fp_neg(x: &mut blst_fp) {
    let nonzero = x.l.iter().fold(0u64, |a, &l| a | l);
    // mask = all ones iff x != 0
    let mask = ((nonzero | nonzero.wrapping_neg()) >> 63).wrapping_neg();
    let mut borrow = 0u64;
    for (l, &p) in x.l.iter_mut().zip(P_LIMBS.iter()) {
        let (d1, b1) = p.overflowing_sub(*l);
        let (d2, b2) = d1.overflowing_sub(borrow);
        borrow = u64::from(b1 | b2);
        *l = d2 & mask;
    }
}

/// Constant-time selection of `table[idx]` (all entries are read).
fn ct_select(table: &[blst_fp12], idx: u8) -> blst_fp12 {
    let mut out = fp12_with_raw_c0([0; 6]);
    for (j, t) in table.iter().enumerate() {
        let c = (j as u8).ct_eq(&idx);
        for i in 0..12 {
            let src = coeff(t, i).l;
            let dst = coeff_mut(&mut out, i);
            for (d, s) in dst.l.iter_mut().zip(src.iter()) {
                d.conditional_assign(s, c);
            }
        }
    }
    out
}

/// `base^k` by fixed 4-bit windows over all 256 bits of `k`, constant-time lookups, always one
/// product per window: the sequence of operations does not depend on `k`.
fn fp12_pow_ct(base: &blst_fp12, k: &Fr) -> blst_fp12 {
    let mut table = [blst_fp12::default(); 16];
    for j in 1..16 {
        table[j] = table[j - 1] * *base;
    }
    let mut bytes = k.to_bytes_le();
    let mut acc = blst_fp12::default();
    for byte in bytes.iter().rev() {
        for nibble in [byte >> 4, byte & 0x0f] {
            for _ in 0..4 {
                acc = acc * acc;
            }
            acc *= ct_select(&table, nibble);
        }
    }
    bytes.zeroize();
    for t in table.iter_mut() {
        *t = blst_fp12::default();
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// GT

/// An element of the target group (written multiplicatively).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Gt(blst_fp12);

redacted_debug!(Gt);

impl Zeroize for Gt {
    fn zeroize(&mut self) {
        self.0 = blst_fp12::default();
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

impl Gt {
    /// e(g1, g2).
    pub fn generator() -> Self {
        *GT_GEN_VALUE
    }
    /// The identity.
    pub fn one() -> Self {
        Self(blst_fp12::default())
    }
    /// Whether this is the identity.
    pub fn is_one(&self) -> bool {
        self.0 == blst_fp12::default()
    }
    /// Exponentiation by a public exponent (constant-time all the same).
    pub fn pow(&self, k: &Scalar) -> Self {
        Self(fp12_pow_ct(&self.0, &k.0))
    }
    /// Exponentiation by a long-lived secret (constant-time; blinding factor drawn and discarded).
    pub fn pow_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> Self {
        let _ = draw_blind(rng);
        Self(fp12_pow_ct(&self.0, &k.0))
    }
    /// Inverse (conjugation: elements of GT are unitary).
    pub fn inverse(&self) -> Self {
        let mut f = self.0;
        for i in 6..12 {
            fp_neg(coeff_mut(&mut f, i));
        }
        Self(f)
    }
    /// The 576-byte encoding (arkworks' Fq12 layout).
    pub fn to_bytes(&self) -> [u8; GT_BYTES] {
        // blst writes big-endian coefficients in the order (fp6 index i, fp12 index j, fp index k)
        // with i outermost; arkworks' order has j outermost and little-endian coefficients.
        let be = self.0.to_bendian();
        let mut out = [0u8; GT_BYTES];
        for i in 0..3 {
            for j in 0..2 {
                for k in 0..2 {
                    let src = ((i * 2 + j) * 2 + k) * 48;
                    let dst = ((j * 3 + i) * 2 + k) * 48;
                    for (o, b) in out[dst..dst + 48]
                        .iter_mut()
                        .zip(be[src..src + 48].iter().rev())
                    {
                        *o = *b;
                    }
                }
            }
        }
        out
    }
    /// Decodes 12 canonical Fp coefficients without the subgroup check (kp-cpre.md: for values that
    /// are only multiplied and hashed, such as Z; a bad one only yields a wrong key, which the AEAD
    /// rejects).
    pub fn from_bytes_unchecked_subgroup(bytes: &[u8], field: &'static str) -> Result<Self> {
        if bytes.len() != GT_BYTES {
            return Err(Error::InvalidPoint {
                field,
                reason: "GT length",
            });
        }
        let mut raw = fp12_with_raw_c0([0; 6]);
        for (i, chunk) in bytes.chunks_exact(48).enumerate() {
            let mut l = [0u64; 6];
            for (limb, b) in l.iter_mut().zip(chunk.chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                *limb = u64::from_le_bytes(w);
            }
            if !lt_p(&l) {
                return Err(Error::InvalidPoint {
                    field,
                    reason: "non-canonical field element",
                });
            }
            coeff_mut(&mut raw, i).l = l;
        }
        // Raw limbs a read as Montgomery forms stand for a·R^-1; multiplying by R (the scalar
        // whose Montgomery form is R^2 mod p) gives the Montgomery forms of the coefficients a.
        Ok(Self(raw * fp12_with_raw_c0(RR_LIMBS)))
    }
    /// Fully validated decoding for public keys: canonical, in the order-r subgroup, not 1.
    pub fn from_bytes_validated(bytes: &[u8], field: &'static str) -> Result<Self> {
        let g = Self::from_bytes_unchecked_subgroup(bytes, field)?;
        if g.is_one() {
            return Err(Error::InvalidPoint {
                field,
                reason: "identity",
            });
        }
        // blst: nonzero, cyclotomic and g^p = g^z (z the curve parameter), which for BLS12-381
        // holds exactly on the order-r subgroup (the same set as arkworks' g^r = 1).
        if !g.0.in_group() {
            return Err(Error::InvalidPoint {
                field,
                reason: "not in the order-r subgroup",
            });
        }
        Ok(g)
    }
}

impl core::ops::Mul for Gt {
    type Output = Gt;
    fn mul(self, rhs: Gt) -> Gt {
        Gt(self.0 * rhs.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Pairings

/// A G2 point ready for pairings (this backend keeps the affine point: blst's safe API computes
/// the line functions inside the Miller loop).
#[derive(Clone)]
pub struct G2Prepared(G2Affine);

redacted_debug!(G2Prepared);

impl G2 {
    /// Precomputes what the pairing needs of this point (its affine form).
    pub fn prepare(&self) -> G2Prepared {
        G2Prepared(self.0.to_affine())
    }
}

/// Π e(P_i, Q_i): Miller loops sharing one squaring chain (blst's pairing context runs them in
/// batches of eight, single-threaded), one final exponentiation.
pub fn multi_pairing(pairs: &[(G1, &G2Prepared)]) -> Gt {
    let projs: Vec<G1Projective> = pairs.iter().map(|(p, _)| p.0).collect();
    let mut affs = vec![G1Affine::identity(); projs.len()];
    G1Projective::batch_normalize(&projs, &mut affs);
    let mut ctx = ::blst::Pairing::new(false, &[]);
    let mut live = false;
    for (p, (_, q)) in affs.iter().zip(pairs) {
        // e(O, Q) = e(P, O) = 1: skipped, as in the arkworks backend.
        if bool::from(p.is_identity()) || bool::from(q.0.is_identity()) {
            continue;
        }
        ctx.raw_aggregate(q.0.as_ref(), p.as_ref());
        live = true;
    }
    if !live {
        return Gt::one();
    }
    ctx.commit();
    Gt(ctx.as_fp12().final_exp())
}

static G2_GEN_PREPARED: LazyLock<G2Prepared> = LazyLock::new(|| G2::generator().prepare());

/// The prepared g2 (the well-formedness check pairs against it for every capsule).
pub fn g2_generator_prepared() -> &'static G2Prepared {
    &G2_GEN_PREPARED
}

/// e(P, Q).
pub fn pairing(p: &G1, q: &G2) -> Gt {
    multi_pairing(&[(*p, &q.prepare())])
}

#[cfg(test)]
mod cross;
