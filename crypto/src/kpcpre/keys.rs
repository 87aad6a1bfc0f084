//! KeyGen: `x <-$ Zr*`, `sk = x` (with g1^x, which is secret), `pk = Y = e(g1,g2)^x`.

use std::sync::{Arc, OnceLock};

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::domain::KEYID_PRE;
use crate::error::{Error, Result};
use crate::group::{
    g1_table, gt_table, pairing, Gt, GtTable, Scalar, SecretScalar, G1, G2, GT_BYTES,
};
use crate::keyid::KeyId;

/// Window of the per-key GT table (54 windows of 63 entries, ~2 MB, built on first use).
const KEY_TABLE_WINDOW: usize = 6;

/// A KP-CPRE public key `Y = e(g1,g2)^x` with its key id and a lazily built exponentiation table.
#[derive(Clone)]
pub struct PublicKey {
    y: Gt,
    key_id: KeyId,
    table: Arc<OnceLock<GtTable>>,
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.y == other.y
    }
}
impl Eq for PublicKey {}

impl PublicKey {
    fn from_gt(y: Gt) -> Self {
        let key_id = KeyId::derive(KEYID_PRE, &y.to_bytes());
        Self {
            y,
            key_id,
            table: Arc::new(OnceLock::new()),
        }
    }

    /// Decodes and fully validates (canonical, order r, not 1). Done once, when an identity is
    /// registered or pinned.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Gt::from_bytes_validated(bytes, "pre_public_key").map(Self::from_gt)
    }

    /// The 576-byte encoding of Y.
    pub fn to_bytes(&self) -> [u8; GT_BYTES] {
        self.y.to_bytes()
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// `Y^k` for an ephemeral k, through the key's table (built on first use).
    pub(crate) fn pow(&self, k: &Scalar) -> Gt {
        self.table
            .get_or_init(|| GtTable::new(&self.y, KEY_TABLE_WINDOW))
            .pow(k)
    }
}

/// A KP-CPRE secret key: x and g1^x. Zeroized on drop; `Debug` shows only the key id.
pub struct SecretKey {
    x: SecretScalar,
    gx: G1,
    public: PublicKey,
}

impl Zeroize for SecretKey {
    fn zeroize(&mut self) {
        self.x.zeroize();
        self.gx.zeroize();
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretKey {}

impl core::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SecretKey({}, <redacted>)", self.public.key_id)
    }
}

impl SecretKey {
    /// KeyGen.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let x = SecretScalar::new(Scalar::random_nonzero(rng));
        Self::from_scalar(x, rng)
    }

    fn from_scalar<R: RngCore + CryptoRng>(x: SecretScalar, rng: &mut R) -> Self {
        let gx = g1_table().mul_secret(x.expose(), rng);
        let y = gt_table().pow_secret(x.expose(), rng);
        Self {
            x,
            gx,
            public: PublicKey::from_gt(y),
        }
    }

    /// Restores a key from its 32-byte secret (a key file). Zero and non-canonical values are refused.
    pub fn from_bytes<R: RngCore + CryptoRng>(bytes: &[u8], rng: &mut R) -> Result<Self> {
        let x = Scalar::from_bytes(bytes, "pre_secret_key")?;
        if x.is_zero() {
            return Err(Error::InvalidPoint {
                field: "pre_secret_key",
                reason: "zero scalar",
            });
        }
        Ok(Self::from_scalar(SecretScalar::new(x), rng))
    }

    /// The 32-byte secret, for a key file. The caller zeroizes it.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.x.expose().to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id
    }

    pub(crate) fn x(&self) -> &SecretScalar {
        &self.x
    }

    /// `e(g1^x, Q)`: the owner's and receiver's decryption pairing.
    pub(crate) fn pair_with(&self, q: &G2) -> Gt {
        pairing(&self.gx, q)
    }
}
