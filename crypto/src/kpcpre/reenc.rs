//! ReEnc (the proxy's transformation) and Dec^2 (the receiver's decryption), with the level-2
//! capsule they exchange.

use std::collections::HashMap;

use armored_schemas::{decode_strict, limits::MAX_CAPSULE_BYTES, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::capsule::{open_w, CheckedCapsule, Dek, Header, W_BYTES, ZERO_NONCE};
use super::keys::SecretKey;
use super::rekey::{bind, ReKey, T_BYTES};
use crate::domain::{KDF_KEK, KDF_RK_T};
use crate::error::{Error, Result};
use crate::group::{g1_table, multi_pairing, G2Prepared, Gt, Scalar, SecretScalar, G1, G2};
use crate::keyid::KeyId;
use crate::sym::{kdf, open};

/// A level-2 capsule: `(hdr, cid, rk_id, owner key id, receiver key id, SHA-256(P), C0, Z, E, T, W)`.
#[derive(Clone, Debug)]
pub struct Capsule2 {
    hdr_bytes: Vec<u8>,
    header: Header,
    cid: [u8; 32],
    rk_id: [u8; 16],
    owner_key_id: KeyId,
    receiver_key_id: KeyId,
    policy_hash: [u8; 32],
    c0: G2,
    z: Gt,
    e: G2,
    t: Vec<u8>,
    w: Vec<u8>,
}

/// ReEnc(rk, capsule1) -> capsule2. The capsule must have passed [`super::Capsule1::check`].
pub fn reencrypt(rk: &ReKey, capsule: &CheckedCapsule) -> Result<Capsule2> {
    let c = capsule.capsule();
    if c.header().owner_key_id != rk.owner_key_id() {
        return Err(Error::KeyMismatch("re-key is for another owner key"));
    }
    // P(A) = 0: no pairing is computed.
    let set = rk
        .policy()
        .minimal_satisfying_set(&c.header().attributes)
        .ok_or(Error::PolicyNotSatisfied)?;
    // Z = e(Π D_l^Δ_l, C0) · Π e(Ca_l^(-Δ_l), R_l)
    let mut d_sum: Option<G1> = None;
    let mut pairs: Vec<(G1, &G2Prepared)> = Vec::with_capacity(set.len() + 1);
    for lf in &set {
        let leaf = rk.leaves.get(lf.leaf).ok_or(Error::MalformedCapsule)?;
        let attr = &rk.policy().leaves()[lf.leaf];
        let ca = c.ca_for(attr).ok_or(Error::PolicyNotSatisfied)?;
        let (d_term, ca_term) = match lf.delta.small_int() {
            Some(k) => (leaf.d.mul_small(k), ca.mul_small(-k)),
            None => (leaf.d.mul(&lf.delta), ca.mul(&-&lf.delta)),
        };
        d_sum = Some(match d_sum {
            Some(acc) => acc + d_term,
            None => d_term,
        });
        pairs.push((ca_term, &leaf.r_prepared));
    }
    let d_sum = d_sum.ok_or(Error::PolicyNotSatisfied)?;
    pairs.push((d_sum, capsule.c0_prepared()));
    let z = multi_pairing(&pairs);
    Ok(Capsule2 {
        hdr_bytes: c.hdr_bytes().to_vec(),
        header: c.header().clone(),
        cid: *c.cid(),
        rk_id: *rk.rk_id(),
        owner_key_id: rk.owner_key_id(),
        receiver_key_id: rk.receiver_key_id(),
        policy_hash: *rk.policy_hash(),
        c0: *c.c0(),
        z,
        e: *rk.e(),
        t: rk.t_sealed().to_vec(),
        w: c.w().to_vec(),
    })
}

/// E is the same in every capsule2 of one re-key: a receiver sees the same bytes again and again.
/// Validated points are remembered by their exact bytes (bounded), so each distinct E pays its
/// subgroup check once; bytes never seen, or invalid, go through the full decoding.
fn decode_e(bytes: &[u8]) -> Result<G2> {
    use std::sync::{LazyLock, Mutex};
    const CAPACITY: usize = 4096;
    static SEEN: LazyLock<Mutex<HashMap<Vec<u8>, G2>>> = LazyLock::new(Mutex::default);
    if let Some(e) = SEEN.lock().ok().and_then(|m| m.get(bytes).copied()) {
        return Ok(e);
    }
    let e = G2::from_bytes(bytes, "capsule2.e")?;
    if let Ok(mut m) = SEEN.lock() {
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert(bytes.to_vec(), e);
    }
    Ok(e)
}

fn fixed<const N: usize>(b: &[u8], field: &'static str, reason: &'static str) -> Result<[u8; N]> {
    b.try_into()
        .map_err(|_| Error::InvalidField { field, reason })
}

impl Capsule2 {
    /// Decodes and validates a level-2 capsule (G2 points fully checked; Z decoded as field
    /// elements only, see kp-cpre.md "Decoding rules").
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let m: v1::Capsule2 = decode_strict("Capsule2", bytes, MAX_CAPSULE_BYTES)?;
        Self::from_proto(&m)
    }

    /// Decodes and validates `m`, at most once per distinct message (`kpcpre/memo.rs`).
    pub(crate) fn from_proto(m: &v1::Capsule2) -> Result<Self> {
        static MEMO: super::memo::Memo<Capsule2> = super::memo::Memo::new();
        MEMO.get_or_decode(m, Self::decode_points)
    }

    fn decode_points(m: &v1::Capsule2) -> Result<Self> {
        crate::error::check_version("Capsule2", m.version)?;
        let header = Header::decode(&m.hdr)?;
        if m.t.len() != T_BYTES || m.w.len() != W_BYTES {
            return Err(Error::InvalidField {
                field: "capsule2.t/w",
                reason: "48 bytes each",
            });
        }
        Ok(Self {
            hdr_bytes: m.hdr.clone(),
            header,
            cid: fixed(&m.cid, "capsule2.cid", "32 bytes")?,
            rk_id: fixed(&m.rk_id, "capsule2.rk_id", "16 bytes")?,
            owner_key_id: KeyId::from_slice(&m.owner_key_id, "capsule2.owner_key_id")?,
            receiver_key_id: KeyId::from_slice(&m.receiver_key_id, "capsule2.receiver_key_id")?,
            policy_hash: fixed(&m.policy_hash, "capsule2.policy_hash", "32 bytes")?,
            c0: G2::from_bytes(&m.c0, "capsule2.c0")?,
            z: Gt::from_bytes_unchecked_subgroup(&m.z, "capsule2.z")?,
            e: decode_e(&m.e)?,
            t: m.t.clone(),
            w: m.w.clone(),
        })
    }

    pub(crate) fn to_proto(&self) -> v1::Capsule2 {
        v1::Capsule2 {
            version: WIRE_VERSION,
            hdr: self.hdr_bytes.clone(),
            cid: self.cid.to_vec(),
            rk_id: self.rk_id.to_vec(),
            owner_key_id: self.owner_key_id.0.to_vec(),
            receiver_key_id: self.receiver_key_id.0.to_vec(),
            policy_hash: self.policy_hash.to_vec(),
            c0: self.c0.to_bytes().to_vec(),
            z: self.z.to_bytes().to_vec(),
            e: self.e.to_bytes().to_vec(),
            t: self.t.clone(),
            w: self.w.clone(),
        }
    }

    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// The exact header bytes.
    pub fn hdr_bytes(&self) -> &[u8] {
        &self.hdr_bytes
    }
    /// The capsule id it was made from.
    pub fn cid(&self) -> &[u8; 32] {
        &self.cid
    }
    /// The re-key id that made it.
    pub fn rk_id(&self) -> &[u8; 16] {
        &self.rk_id
    }
    /// The receiver's PRE key id.
    pub fn receiver_key_id(&self) -> KeyId {
        self.receiver_key_id
    }
    /// The owner's PRE key id.
    pub fn owner_key_id(&self) -> KeyId {
        self.owner_key_id
    }

    fn bind(&self) -> Vec<u8> {
        bind(
            &self.rk_id,
            &self.owner_key_id,
            &self.receiver_key_id,
            &self.e,
            &self.policy_hash,
        )
    }

    /// Dec^2 without a cache (2 pairings).
    pub fn decrypt<R: RngCore + CryptoRng>(
        &self,
        receiver: &SecretKey,
        rng: &mut R,
    ) -> Result<Dek> {
        TCache::new(1).decrypt(receiver, self, rng)
    }
}

/// g1^t for a re-key, cached by the receiver: secret key material, zeroized on drop.
struct CachedT(G1);

impl Drop for CachedT {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The receiver's per-re-key cache of t (as g1^t), keyed by SHA-256(bind || T): a changed T, E, key
/// id or policy hash misses the cache and must open afresh. Bounded; zeroized on drop.
pub struct TCache {
    capacity: usize,
    entries: HashMap<[u8; 32], CachedT>,
}

impl core::fmt::Debug for TCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TCache({} entries, <redacted>)", self.entries.len())
    }
}

impl Zeroize for TCache {
    fn zeroize(&mut self) {
        // Dropping each entry zeroizes it.
        self.entries.clear();
    }
}

impl ZeroizeOnDrop for TCache {}

impl Drop for TCache {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl TCache {
    /// A cache holding up to `capacity` re-keys' t.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// Number of cached re-keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Dec^2(sk_B, capsule2): `K = Z · e(g1^t, C0)`; one pairing once t is cached, two otherwise.
    pub fn decrypt<R: RngCore + CryptoRng>(
        &mut self,
        receiver: &SecretKey,
        c: &Capsule2,
        rng: &mut R,
    ) -> Result<Dek> {
        if c.receiver_key_id != receiver.key_id() {
            return Err(Error::KeyMismatch("capsule2 is for another receiver key"));
        }
        let b = c.bind();
        let mut h = Sha256::new();
        h.update(&b);
        h.update(&c.t);
        let cache_key: [u8; 32] = h.finalize().into();
        if !self.entries.contains_key(&cache_key) {
            let gt = self.open_t(receiver, c, &b, rng)?;
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
            self.entries.insert(cache_key, gt);
        }
        let gt = self.entries.get(&cache_key).ok_or(Error::ReKeyAuth)?;
        let c0p = c.c0.prepare();
        let mut k = c.z * multi_pairing(&[(gt.0, &c0p)]);
        let kek = kdf(&k.to_bytes(), KDF_KEK, &c.cid);
        k.zeroize();
        open_w(&kek, &c.w, &c.hdr_bytes)
    }

    fn open_t<R: RngCore + CryptoRng>(
        &self,
        receiver: &SecretKey,
        c: &Capsule2,
        b: &[u8],
        rng: &mut R,
    ) -> Result<CachedT> {
        let mut kb = receiver.pair_with(&c.e);
        let key = kdf(&kb.to_bytes(), KDF_RK_T, b);
        kb.zeroize();
        let pt = open(&key, &ZERO_NONCE, &c.t, b).ok_or(Error::ReKeyAuth)?;
        let t = Scalar::from_bytes(&pt, "t").map_err(|_| Error::ReKeyAuth)?;
        if t.is_zero() {
            return Err(Error::ReKeyAuth);
        }
        let t = SecretScalar::new(t);
        Ok(CachedT(g1_table().mul_secret(t.expose(), rng)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpcpre::{AttributeSet, Capsule1, Policy};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A capsule2 whose T seals t = 0 under the right key: refused, never used.
    #[test]
    fn zero_t_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let owner = SecretKey::generate(&mut rng);
        let bob = SecretKey::generate(&mut rng);
        let dek = Dek::generate(&mut rng);
        let attrs = AttributeSet::new(["sync"]).unwrap();
        let c1 = Capsule1::encrypt(owner.public(), "t1", 1, &attrs, &dek, &mut rng).unwrap();
        let rk = ReKey::generate(
            &owner,
            &Policy::parse("sync").unwrap(),
            bob.public(),
            &mut rng,
        )
        .unwrap();
        let mut c2 = reencrypt(&rk, &c1.clone().check(&mut rng).unwrap()).unwrap();
        let b = c2.bind();
        let key = kdf(&bob.pair_with(&c2.e).to_bytes(), KDF_RK_T, &b);
        c2.t = crate::sym::seal(&key, &ZERO_NONCE, &[0u8; 32], &b);
        assert_eq!(c2.decrypt(&bob, &mut rng).unwrap_err(), Error::ReKeyAuth);
        // And the honest t still works.
        let good = reencrypt(
            &rk,
            &Capsule1::decode(&c1.encode())
                .unwrap()
                .check(&mut rng)
                .unwrap(),
        )
        .unwrap();
        assert!(good.decrypt(&bob, &mut rng).unwrap() == dek);
    }
}
