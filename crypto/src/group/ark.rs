//! arkworks backend (default). Not constant-time: see the module docs of `crate::group`.
//!
//! One file on purpose (~620 lines): a backend is one surface (G1, G2, GT, Z_r, pairings, encodings)
//! that a reviewer reads side by side with `blst.rs`.

use std::sync::LazyLock;

use ark_bls12_381::{
    g1, Bls12_381, Config as Bls, Fq12, Fr, G1Affine, G1Projective, G2Affine, G2Projective,
};
use ark_ec::bls12::{Bls12Config, G2Prepared as ArkG2Prepared, TwistType};
use ark_ec::hashing::curve_maps::wb::WBMap;
use ark_ec::hashing::map_to_curve_hasher::MapToCurveBasedHasher;
use ark_ec::hashing::HashToCurve;
use ark_ec::pairing::{MillerLoopOutput, Pairing};
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup, PrimeGroup};
use ark_ff::field_hashers::DefaultFieldHasher;
use ark_ff::{BigInteger, BitIteratorBE, CyclotomicMultSubgroup, Field, One, PrimeField, Zero};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroize;

use super::{blind_limbs, draw_blind, draw_wide, G1_BYTES, G2_BYTES, GT_BYTES, SCALAR_BYTES};
use crate::error::{Error, Result};

/// Name of this backend, for reports.
pub const BACKEND: &str = "arkworks";

// ---------------------------------------------------------------------------------------------
// Scalars

/// An element of Z_r. `Debug` does not print the value (scalars are often secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Scalar(Fr);

redacted_debug!(Scalar);

impl Zeroize for Scalar {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl Scalar {
    /// 0.
    pub fn zero() -> Self {
        Self(Fr::zero())
    }
    /// 1.
    pub fn one() -> Self {
        Self(Fr::one())
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
        Self(Fr::from_le_bytes_mod_order(bytes))
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
        self.0.is_zero()
    }
    /// Multiplicative inverse (None for 0).
    pub fn inverse(&self) -> Option<Self> {
        self.0.inverse().map(Self)
    }
    /// The value as an integer in (-64, 64), if it is one (Lagrange factors of small gates).
    pub fn small_int(&self) -> Option<i64> {
        let pos = self.0.into_bigint();
        if pos.0[1..].iter().all(|&l| l == 0) && pos.0[0] < 64 {
            return Some(pos.0[0] as i64);
        }
        let neg = (-self.0).into_bigint();
        if neg.0[1..].iter().all(|&l| l == 0) && neg.0[0] < 64 {
            return Some(-(neg.0[0] as i64));
        }
        None
    }
    /// Canonical little-endian bytes.
    pub fn to_bytes(&self) -> [u8; SCALAR_BYTES] {
        let mut out = [0u8; SCALAR_BYTES];
        let b = self.0.into_bigint().to_bytes_le();
        out.copy_from_slice(&b[..SCALAR_BYTES]);
        out
    }
    /// Parses canonical little-endian bytes (< r). Zero is accepted here; callers that need a
    /// nonzero scalar check [`Scalar::is_zero`].
    pub fn from_bytes(bytes: &[u8], field: &'static str) -> Result<Self> {
        if bytes.len() != SCALAR_BYTES {
            return Err(Error::InvalidPoint {
                field,
                reason: "scalar length",
            });
        }
        Fr::deserialize_with_mode(bytes, Compress::Yes, Validate::Yes)
            .map(Self)
            .map_err(|_| Error::InvalidPoint {
                field,
                reason: "non-canonical scalar",
            })
    }
    pub(crate) fn limbs(&self) -> [u64; 4] {
        self.0.into_bigint().0
    }
}

scalar_ops!(Scalar);

// ---------------------------------------------------------------------------------------------
// Fixed-base tables (windowed, 320-bit scalars so blinded secrets fit)

const TABLE_BITS: usize = 320;

fn window_digit(limbs: &[u64], bit: usize, w: usize) -> usize {
    let mut d = 0usize;
    for j in 0..w {
        let b = bit + j;
        let limb = b / 64;
        if limb < limbs.len() && (limbs[limb] >> (b % 64)) & 1 == 1 {
            d |= 1 << j;
        }
    }
    d
}

macro_rules! curve_table {
    ($name:ident, $point:ident, $proj:ty, $aff:ty) => {
        /// Precomputed multiples of one base point for fast fixed-base multiplication.
        pub struct $name {
            w: usize,
            windows: Vec<Vec<$aff>>,
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(
                    f,
                    "{}(w={}, windows={})",
                    stringify!($name),
                    self.w,
                    self.windows.len()
                )
            }
        }

        impl $name {
            /// Builds the table for `base` with `w`-bit windows.
            pub fn new(base: &$point, w: usize) -> Self {
                let n = TABLE_BITS.div_ceil(w);
                let mut flat: Vec<$proj> = Vec::with_capacity(n * ((1 << w) - 1));
                let mut b = base.0;
                for _ in 0..n {
                    let mut acc = b;
                    for _ in 1..(1usize << w) {
                        flat.push(acc);
                        acc += b;
                    }
                    // acc = 2^w · b
                    b = acc;
                }
                let affine = <$proj>::normalize_batch(&flat);
                let windows = affine.chunks((1 << w) - 1).map(|c| c.to_vec()).collect();
                Self { w, windows }
            }

            fn mul_limbs(&self, limbs: &[u64]) -> $point {
                let mut acc = <$proj>::zero();
                for (i, win) in self.windows.iter().enumerate() {
                    let d = window_digit(limbs, i * self.w, self.w);
                    if d != 0 {
                        acc += &win[d - 1];
                    }
                }
                $point(acc)
            }

            /// `k·B` for a public or ephemeral scalar.
            pub fn mul(&self, k: &Scalar) -> $point {
                self.mul_limbs(&k.limbs())
            }

            /// `k·B` for a 128-bit integer.
            pub fn mul_u128(&self, k: u128) -> $point {
                self.mul_limbs(&[k as u64, (k >> 64) as u64])
            }

            /// `k·B` for a long-lived secret: blinded with a fresh 64-bit multiple of r.
            pub fn mul_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> $point {
                let mut limbs = k.limbs();
                let mut blinded = blind_limbs(&limbs, draw_blind(rng));
                let p = self.mul_limbs(&blinded);
                limbs.zeroize();
                blinded.zeroize();
                p
            }
        }
    };
}

curve_table!(G1Table, G1, G1Projective, G1Affine);
curve_table!(G2Table, G2, G2Projective, G2Affine);

/// Fixed-base table in GT.
pub struct GtTable {
    w: usize,
    windows: Vec<Vec<Fq12>>,
}

impl core::fmt::Debug for GtTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GtTable(w={}, windows={})", self.w, self.windows.len())
    }
}

impl GtTable {
    /// Builds the table for `base` with `w`-bit windows.
    pub fn new(base: &Gt, w: usize) -> Self {
        let n = TABLE_BITS.div_ceil(w);
        let mut windows = Vec::with_capacity(n);
        let mut b = base.0;
        for _ in 0..n {
            let mut win = Vec::with_capacity((1 << w) - 1);
            let mut acc = b;
            for _ in 1..(1usize << w) {
                win.push(acc);
                acc *= b;
            }
            b = acc;
            windows.push(win);
        }
        Self { w, windows }
    }

    fn pow_limbs(&self, limbs: &[u64]) -> Gt {
        let mut acc = Fq12::one();
        for (i, win) in self.windows.iter().enumerate() {
            let d = window_digit(limbs, i * self.w, self.w);
            if d != 0 {
                acc *= &win[d - 1];
            }
        }
        Gt(acc)
    }

    /// `B^k` for a public or ephemeral exponent.
    pub fn pow(&self, k: &Scalar) -> Gt {
        self.pow_limbs(&k.limbs())
    }

    /// `B^k` for a long-lived secret exponent (blinded).
    pub fn pow_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> Gt {
        let mut limbs = k.limbs();
        let mut blinded = blind_limbs(&limbs, draw_blind(rng));
        let r = self.pow_limbs(&blinded);
        limbs.zeroize();
        blinded.zeroize();
        r
    }
}

static G1_GEN: LazyLock<G1Table> =
    LazyLock::new(|| G1Table::new(&G1(G1Projective::generator()), 8));
static G2_GEN: LazyLock<G2Table> =
    LazyLock::new(|| G2Table::new(&G2(G2Projective::generator()), 8));
static GT_GEN_VALUE: LazyLock<Gt> =
    LazyLock::new(|| Gt(Bls12_381::pairing(G1Affine::generator(), G2Affine::generator()).0));
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

fn decode_point<A: CanonicalDeserialize + AffineRepr>(
    bytes: &[u8],
    len: usize,
    field: &'static str,
) -> Result<A> {
    if bytes.len() != len {
        return Err(Error::InvalidPoint {
            field,
            reason: "point length",
        });
    }
    // Validate::Yes: on-curve and prime-order subgroup checks.
    let p = A::deserialize_with_mode(bytes, Compress::Yes, Validate::Yes).map_err(|_| {
        Error::InvalidPoint {
            field,
            reason: "not a valid compressed point in the subgroup",
        }
    })?;
    if p.is_zero() {
        return Err(Error::InvalidPoint {
            field,
            reason: "identity",
        });
    }
    Ok(p)
}

macro_rules! curve_point {
    ($point:ident, $proj:ty, $aff:ty, $bytes:expr) => {
        /// A group element. `Debug` prints nothing (some points, e.g. g1^x, are secret).
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $point($proj);

        redacted_debug!($point);

        impl Zeroize for $point {
            fn zeroize(&mut self) {
                self.0 = <$proj>::zero();
            }
        }

        impl $point {
            /// The standard generator.
            pub fn generator() -> Self {
                Self(<$proj>::generator())
            }
            /// Whether this is the identity.
            pub fn is_identity(&self) -> bool {
                self.0.is_zero()
            }
            /// Variable-base multiplication by a public or ephemeral scalar.
            pub fn mul(&self, k: &Scalar) -> Self {
                Self(self.0 * k.0)
            }
            /// Variable-base multiplication by a long-lived secret (blinded, no GLV).
            pub fn mul_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> Self {
                let mut limbs = k.limbs();
                let mut blinded = blind_limbs(&limbs, draw_blind(rng));
                let p = Self(ark_ec::scalar_mul::double_and_add(&self.0, blinded));
                limbs.zeroize();
                blinded.zeroize();
                p
            }
            /// Multiplication by a small signed integer (cheap: a few doublings).
            pub fn mul_small(&self, k: i64) -> Self {
                let p = ark_ec::scalar_mul::double_and_add(&self.0, [k.unsigned_abs()]);
                Self(if k < 0 { -p } else { p })
            }
            /// Multiplication by a 128-bit integer.
            pub fn mul_u128(&self, k: u128) -> Self {
                Self(self.0.mul_bigint([k as u64, (k >> 64) as u64]))
            }
            /// Compressed encoding (ZCash/IETF format).
            pub fn to_bytes(&self) -> [u8; $bytes] {
                let mut out = [0u8; $bytes];
                // Writing a valid point into a buffer of exactly its size cannot fail.
                let _ = self.0.into_affine().serialize_compressed(&mut out[..]);
                out
            }
            /// Decodes a compressed point: on-curve, subgroup and non-identity checked.
            pub fn from_bytes(bytes: &[u8], field: &'static str) -> Result<Self> {
                decode_point::<$aff>(bytes, $bytes, field).map(|p| Self(p.into()))
            }
        }

        point_ops!($point);
    };
}

curve_point!(G1, G1Projective, G1Affine, G1_BYTES);
curve_point!(G2, G2Projective, G2Affine, G2_BYTES);

type H1Hasher =
    MapToCurveBasedHasher<G1Projective, DefaultFieldHasher<Sha256, 128>, WBMap<g1::Config>>;

impl G1 {
    /// Hash to G1 by the IETF suite BLS12381G1_XMD:SHA-256_SSWU_RO_ with domain tag `dst`.
    pub fn hash_to_curve(msg: &[u8], dst: &[u8]) -> Result<Self> {
        let hasher = H1Hasher::new(dst).map_err(|_| Error::InvalidField {
            field: "dst",
            reason: "hash-to-curve setup",
        })?;
        let p = hasher.hash(msg).map_err(|_| Error::InvalidField {
            field: "attribute",
            reason: "hash-to-curve failed",
        })?;
        Ok(Self(p.into()))
    }

    /// Σ k_i·P_i for 128-bit k_i (the well-formedness check's random linear combination).
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
        let tables: Vec<Vec<G1Affine>> = tables
            .iter()
            .map(|t| G1Projective::normalize_batch(t))
            .collect();
        let mut acc = G1Projective::zero();
        for win in (0..128 / W).rev() {
            for _ in 0..W {
                acc.double_in_place();
            }
            for (t, k) in tables.iter().zip(ks) {
                let d = ((k >> (win * W)) & 0xf) as usize;
                if d != 0 {
                    acc += &t[d - 1];
                }
            }
        }
        G1(acc)
    }
}

// ---------------------------------------------------------------------------------------------
// GT

/// An element of the target group (written multiplicatively).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Gt(Fq12);

redacted_debug!(Gt);

impl Zeroize for Gt {
    fn zeroize(&mut self) {
        self.0 = Fq12::one();
    }
}

impl Gt {
    /// e(g1, g2).
    pub fn generator() -> Self {
        *GT_GEN_VALUE
    }
    /// The identity.
    pub fn one() -> Self {
        Self(Fq12::one())
    }
    /// Whether this is the identity.
    pub fn is_one(&self) -> bool {
        self.0.is_one()
    }
    /// Exponentiation by a public exponent.
    pub fn pow(&self, k: &Scalar) -> Self {
        Self(self.0.cyclotomic_exp(k.0.into_bigint()))
    }
    /// Exponentiation by a long-lived secret (blinded).
    pub fn pow_secret<R: RngCore + CryptoRng>(&self, k: &Scalar, rng: &mut R) -> Self {
        let mut limbs = k.limbs();
        let mut blinded = blind_limbs(&limbs, draw_blind(rng));
        let r = Self(self.0.cyclotomic_exp(blinded));
        limbs.zeroize();
        blinded.zeroize();
        r
    }
    /// Inverse (conjugation: elements of GT are unitary).
    pub fn inverse(&self) -> Self {
        let mut f = self.0;
        f.cyclotomic_inverse_in_place();
        Self(f)
    }
    /// The 576-byte encoding (arkworks' Fq12 layout).
    pub fn to_bytes(&self) -> [u8; GT_BYTES] {
        let mut out = [0u8; GT_BYTES];
        let _ = self.0.serialize_compressed(&mut out[..]);
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
        Fq12::deserialize_with_mode(bytes, Compress::Yes, Validate::Yes)
            .map(Self)
            .map_err(|_| Error::InvalidPoint {
                field,
                reason: "non-canonical field element",
            })
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
        if !g.0.pow(Fr::characteristic()).is_one() {
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

/// A G2 point with its Miller-loop line coefficients precomputed (re-key R_l, capsule C0, E).
#[derive(Clone)]
pub struct G2Prepared(ArkG2Prepared<Bls>);

redacted_debug!(G2Prepared);

impl G2 {
    /// Precomputes the line coefficients of this point.
    pub fn prepare(&self) -> G2Prepared {
        G2Prepared(self.0.into_affine().into())
    }
}

#[inline]
fn ell(
    f: &mut Fq12,
    coeffs: &(ark_bls12_381::Fq2, ark_bls12_381::Fq2, ark_bls12_381::Fq2),
    p: &G1Affine,
) {
    let (px, py) = (p.x, p.y);
    let (mut c0, mut c1, mut c2) = *coeffs;
    match <Bls as Bls12Config>::TWIST_TYPE {
        TwistType::M => {
            c2.mul_assign_by_fp(&py);
            c1.mul_assign_by_fp(&px);
            f.mul_by_014(&c0, &c1, &c2);
        }
        TwistType::D => {
            c0.mul_assign_by_fp(&py);
            c1.mul_assign_by_fp(&px);
            f.mul_by_034(&c0, &c1, &c2);
        }
    }
}

/// Π e(P_i, Q_i): one Miller loop with a single accumulator over all pairs (one squaring chain), one
/// final exponentiation.
pub fn multi_pairing(pairs: &[(G1, &G2Prepared)]) -> Gt {
    let projs: Vec<G1Projective> = pairs.iter().map(|(p, _)| p.0).collect();
    let affs = G1Projective::normalize_batch(&projs);
    let live: Vec<(&G1Affine, &ArkG2Prepared<Bls>)> = affs
        .iter()
        .zip(pairs)
        .filter(|(p, (_, q))| !p.is_zero() && !q.0.infinity)
        .map(|(p, (_, q))| (p, &q.0))
        .collect();
    let mut f = Fq12::one();
    let mut idx = 0usize;
    for bit in BitIteratorBE::without_leading_zeros(<Bls as Bls12Config>::X).skip(1) {
        f.square_in_place();
        for (p, q) in &live {
            ell(&mut f, &q.ell_coeffs[idx], p);
        }
        idx += 1;
        if bit {
            for (p, q) in &live {
                ell(&mut f, &q.ell_coeffs[idx], p);
            }
            idx += 1;
        }
    }
    if <Bls as Bls12Config>::X_IS_NEGATIVE {
        f.cyclotomic_inverse_in_place();
    }
    // The final exponentiation fails only for f = 0, which a Miller loop never outputs.
    Gt(Bls12_381::final_exponentiation(MillerLoopOutput(f)).map_or(Fq12::one(), |o| o.0))
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
