//! Level-1 capsules: Enc^1, owner decryption, the capsule id, and the well-formedness check that
//! ReEnc requires (once per capsule).

use armored_schemas::{decode_strict, limits::MAX_CAPSULE_BYTES, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::attr::{attr_point, AttributeSet};
use super::keys::{PublicKey, SecretKey};
use crate::domain::{tag, CAPSULE_ID, KDF_KEK};
use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};
use crate::group::{g2_generator_prepared, g2_table, multi_pairing, G2Prepared, Gt, G1, G2};
use crate::keyid::KeyId;
use crate::sym::{kdf, open, seal, SymKey, TAG_BYTES};

/// Version of the hdr layout.
pub const HDR_VERSION: u32 = 1;
/// Length of W: the sealed 32-byte DEK and its tag.
pub const W_BYTES: usize = 32 + TAG_BYTES;
/// The zero nonce: every KEK is fresh per capsule (derived from its cid), so it seals once.
pub(crate) const ZERO_NONCE: [u8; 12] = [0; 12];

/// A 32-byte data-encryption key. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Dek([u8; 32]);

impl Dek {
    /// A fresh random DEK.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// Wraps key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The DEK as an AES-256-GCM key.
    pub fn sym(&self) -> SymKey {
        SymKey(self.0)
    }

    fn from_plaintext(p: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = p.try_into().map_err(|_| Error::CapsuleAuth)?;
        Ok(Self(arr))
    }
}

impl core::fmt::Debug for Dek {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

/// The capsule header `hdr = (version, twin_id, epoch, sorted A, key id of pk)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Twin id.
    pub twin_id: String,
    /// Epoch.
    pub epoch: u64,
    /// Attributes.
    pub attributes: AttributeSet,
    /// The owner's PRE key id.
    pub owner_key_id: KeyId,
}

impl Header {
    /// The tagged length-prefixed layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new()
            .u32(tag::VERSION, HDR_VERSION)
            .field(tag::TWIN_ID, self.twin_id.as_bytes())
            .u64(tag::EPOCH, self.epoch);
        for a in self.attributes.as_slice() {
            w.push(tag::ATTRIBUTE, a.as_bytes());
        }
        w.field(tag::KEY_ID, self.owner_key_id.as_bytes()).finish()
    }

    /// Parses and validates a header layout.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new("hdr", bytes);
        let version = r.u32(tag::VERSION)?;
        if version != HDR_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "hdr",
                got: version,
            });
        }
        let twin_id = r.str(tag::TWIN_ID)?.to_owned();
        crate::ids::check_id(&twin_id, "hdr.twin_id")?;
        let epoch = r.u64(tag::EPOCH)?;
        let mut attrs = Vec::new();
        while r.peek_tag() == Some(tag::ATTRIBUTE) {
            attrs.push(r.str(tag::ATTRIBUTE)?.to_owned());
            if attrs.len() > super::attr::MAX_ATTRIBUTES {
                return Err(Error::TooManyAttributes(attrs.len()));
            }
        }
        let attributes = AttributeSet::from_sorted(attrs)?;
        let owner_key_id = KeyId::from_slice(r.field(tag::KEY_ID)?, "hdr.key_id")?;
        r.finish()?;
        Ok(Self {
            twin_id,
            epoch,
            attributes,
            owner_key_id,
        })
    }
}

/// cid = SHA-256(layout(domain, hdr, C0, Ca for each a in sorted A)).
fn capsule_id(hdr: &[u8], c0: &G2, ca: &[G1]) -> [u8; 32] {
    let mut w = Writer::new()
        .field(tag::DOMAIN, CAPSULE_ID)
        .field(tag::HDR, hdr)
        .field(tag::C0, &c0.to_bytes());
    for p in ca {
        w.push(tag::CA, &p.to_bytes());
    }
    Sha256::digest(w.finish()).into()
}

/// A level-1 capsule, decoded and validated (points checked; not yet well-formedness checked).
#[derive(Clone, Debug)]
pub struct Capsule1 {
    hdr_bytes: Vec<u8>,
    header: Header,
    c0: G2,
    ca: Vec<G1>,
    w: Vec<u8>,
    cid: [u8; 32],
}

impl Capsule1 {
    /// Enc^1: encapsulates `dek` for `owner` under `attributes` (for twin `twin_id`, epoch `epoch`).
    pub fn encrypt<R: RngCore + CryptoRng>(
        owner: &PublicKey,
        twin_id: &str,
        epoch: u64,
        attributes: &AttributeSet,
        dek: &Dek,
        rng: &mut R,
    ) -> Result<Self> {
        crate::ids::check_id(twin_id, "twin_id")?;
        let header = Header {
            twin_id: twin_id.to_owned(),
            epoch,
            attributes: attributes.clone(),
            owner_key_id: owner.key_id(),
        };
        let hdr_bytes = header.encode();
        let s = crate::group::SecretScalar::new(crate::group::Scalar::random_nonzero(rng));
        let c0 = g2_table().mul(s.expose());
        let mut ca = Vec::with_capacity(attributes.len());
        for a in attributes.as_slice() {
            ca.push(attr_point(a)?.table.mul(s.expose()));
        }
        let mut k = owner.pow(s.expose());
        let cid = capsule_id(&hdr_bytes, &c0, &ca);
        let kek = kdf(&k.to_bytes(), KDF_KEK, &cid);
        k.zeroize();
        let w = seal(&kek, &ZERO_NONCE, dek.as_bytes(), &hdr_bytes);
        Ok(Self {
            hdr_bytes,
            header,
            c0,
            ca,
            w,
            cid,
        })
    }

    /// Decodes a capsule from its protobuf bytes, validating every point.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let m: v1::Capsule1 = decode_strict("Capsule1", bytes, MAX_CAPSULE_BYTES)?;
        Self::from_proto(&m)
    }

    /// Decodes and validates `m`, at most once per distinct message (`kpcpre/memo.rs`).
    pub(crate) fn from_proto(m: &v1::Capsule1) -> Result<Self> {
        static MEMO: super::memo::Memo<Capsule1> = super::memo::Memo::new();
        MEMO.get_or_decode(m, Self::decode_points)
    }

    fn decode_points(m: &v1::Capsule1) -> Result<Self> {
        crate::error::check_version("Capsule1", m.version)?;
        let header = Header::decode(&m.hdr)?;
        if m.ca.len() != header.attributes.len() {
            return Err(Error::InvalidField {
                field: "capsule1.ca",
                reason: "one point per attribute",
            });
        }
        let c0 = G2::from_bytes(&m.c0, "capsule1.c0")?;
        let ca =
            m.ca.iter()
                .map(|b| G1::from_bytes(b, "capsule1.ca"))
                .collect::<Result<Vec<_>>>()?;
        if m.w.len() != W_BYTES {
            return Err(Error::InvalidField {
                field: "capsule1.w",
                reason: "48 bytes",
            });
        }
        let cid = capsule_id(&m.hdr, &c0, &ca);
        Ok(Self {
            hdr_bytes: m.hdr.clone(),
            header,
            c0,
            ca,
            w: m.w.clone(),
            cid,
        })
    }

    pub(crate) fn to_proto(&self) -> v1::Capsule1 {
        v1::Capsule1 {
            version: WIRE_VERSION,
            hdr: self.hdr_bytes.clone(),
            c0: self.c0.to_bytes().to_vec(),
            ca: self.ca.iter().map(|p| p.to_bytes().to_vec()).collect(),
            w: self.w.clone(),
        }
    }

    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The exact header bytes (the AEAD's associated data).
    pub fn hdr_bytes(&self) -> &[u8] {
        &self.hdr_bytes
    }

    /// The capsule id.
    pub fn cid(&self) -> &[u8; 32] {
        &self.cid
    }

    /// Owner decryption: `K = e(g1^x, C0)`, then KEK and W.
    pub fn decrypt(&self, owner: &SecretKey) -> Result<Dek> {
        if self.header.owner_key_id != owner.key_id() {
            return Err(Error::KeyMismatch("capsule is for another owner key"));
        }
        let mut k = owner.pair_with(&self.c0);
        let kek = kdf(&k.to_bytes(), KDF_KEK, &self.cid);
        k.zeroize();
        open_w(&kek, &self.w, &self.hdr_bytes)
    }

    /// The mandatory well-formedness check of ReEnc: with fresh 128-bit ρ_a,
    /// `e(Π Ca^ρ_a, g2) == e(Π H1(a)^ρ_a, C0)`, one multi-pairing of two pairs.
    pub fn check<R: RngCore + CryptoRng>(self, rng: &mut R) -> Result<CheckedCapsule> {
        let terms = self.check_terms(rng)?;
        // e(lhs, g2) · e(-rhs, C0) == 1
        if multi_pairing(&[
            (terms.lhs, g2_generator_prepared()),
            (-terms.rhs, &terms.c0_prepared),
        ]) != Gt::one()
        {
            return Err(Error::MalformedCapsule);
        }
        Ok(CheckedCapsule {
            capsule: self,
            c0_prepared: terms.c0_prepared,
        })
    }

    /// The well-formedness check of many capsules at once, with the same guarantee as
    /// [`Capsule1::check`] on each (kp-cpre.md's check with fresh 128-bit ρ for every attribute
    /// of every capsule): `e(Σ_k Σ_a ρ_ka·Ca_ka, g2) · Π_k e(-Σ_a ρ_ka·H1(a), C0_k) == 1`. The
    /// g2 side of every capsule shares one Miller loop and all share one final exponentiation,
    /// which is what a capsule's own check costs beyond its C0 pairing. If the product is not 1,
    /// each capsule is checked on its own, so a malformed one fails alone: the result is per
    /// capsule, in order. A malformed capsule among honest ones slips through only if its error
    /// cancels against the fresh ρ, with probability at most 2^-128, as for the single check.
    pub fn check_batch<R: RngCore + CryptoRng>(
        capsules: Vec<Capsule1>,
        rng: &mut R,
    ) -> Vec<Result<CheckedCapsule>> {
        if capsules.len() < 2 {
            return capsules.into_iter().map(|c| c.check(rng)).collect();
        }
        let terms: Vec<Result<CheckTerms>> = capsules.iter().map(|c| c.check_terms(rng)).collect();
        let mut lhs: Option<G1> = None;
        let mut rhs: Vec<G1> = Vec::with_capacity(capsules.len());
        let mut ok = true;
        for t in &terms {
            match t {
                Ok(t) => {
                    lhs = Some(lhs.map_or(t.lhs, |acc| acc + t.lhs));
                    rhs.push(-t.rhs);
                }
                Err(_) => ok = false,
            }
        }
        if ok {
            if let Some(lhs) = lhs {
                let mut pairs: Vec<(G1, &G2Prepared)> = Vec::with_capacity(rhs.len() + 1);
                pairs.push((lhs, g2_generator_prepared()));
                for (r, t) in rhs.iter().zip(terms.iter().flatten()) {
                    pairs.push((*r, &t.c0_prepared));
                }
                if multi_pairing(&pairs) == Gt::one() {
                    return capsules
                        .into_iter()
                        .zip(terms)
                        .map(|(capsule, t)| {
                            t.map(|t| CheckedCapsule {
                                capsule,
                                c0_prepared: t.c0_prepared,
                            })
                        })
                        .collect();
                }
            }
        }
        // Some capsule is malformed: find which, each with fresh ρ.
        capsules.into_iter().map(|c| c.check(rng)).collect()
    }

    /// The check's two G1 sides with fresh ρ, and C0 prepared (for the check and ReEnc).
    fn check_terms<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<CheckTerms> {
        let rhos: Vec<u128> = (0..self.ca.len())
            .map(|_| {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                u128::from_le_bytes(b)
            })
            .collect();
        let lhs = G1::msm_u128(&self.ca, &rhos);
        let mut rhs: Option<G1> = None;
        for (a, rho) in self.header.attributes.as_slice().iter().zip(&rhos) {
            let p = attr_point(a)?.table.mul_u128(*rho);
            rhs = Some(match rhs {
                Some(acc) => acc + p,
                None => p,
            });
        }
        let rhs = rhs.ok_or(Error::MalformedCapsule)?;
        Ok(CheckTerms {
            lhs,
            rhs,
            c0_prepared: self.c0.prepare(),
        })
    }

    pub(crate) fn c0(&self) -> &G2 {
        &self.c0
    }

    pub(crate) fn w(&self) -> &[u8] {
        &self.w
    }

    pub(crate) fn ca_for(&self, attribute: &str) -> Option<&G1> {
        self.header
            .attributes
            .position(attribute)
            .and_then(|i| self.ca.get(i))
    }
}

/// One capsule's part of the well-formedness check.
struct CheckTerms {
    /// Σ_a ρ_a·Ca.
    lhs: G1,
    /// Σ_a ρ_a·H1(a).
    rhs: G1,
    c0_prepared: G2Prepared,
}

/// A capsule that passed the well-formedness check, with C0 prepared for pairings. Only this type
/// can be re-encrypted; the check's result is cached with it for every re-key.
#[derive(Clone, Debug)]
pub struct CheckedCapsule {
    capsule: Capsule1,
    c0_prepared: G2Prepared,
}

impl CheckedCapsule {
    /// The capsule.
    pub fn capsule(&self) -> &Capsule1 {
        &self.capsule
    }

    pub(crate) fn c0_prepared(&self) -> &G2Prepared {
        &self.c0_prepared
    }
}

pub(crate) fn open_w(kek: &SymKey, w: &[u8], hdr: &[u8]) -> Result<Dek> {
    let pt = open(kek, &ZERO_NONCE, w, hdr).ok_or(Error::CapsuleAuth)?;
    Dek::from_plaintext(&pt)
}
