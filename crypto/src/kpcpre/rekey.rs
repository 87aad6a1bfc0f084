//! RKGen: a re-encryption key from owner x to receiver Y_B under policy P.
//!
//! `t <-$ Zr*`, `σ = x - t` is GPSW-shared over P; each leaf gets `D_l = g1^q_l(0) · H1(a_l)^r_l`,
//! `R_l = g2^r_l`; t is sealed to B: `E = g2^u`, `T = AEAD(KDF(Y_B^u, "rk-t", bind), 0^12, t, bind)`.

use armored_schemas::{decode_strict, limits::MAX_REKEY_BYTES, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::attr::attr_point;
use super::capsule::{W_BYTES, ZERO_NONCE};
use super::keys::{PublicKey, SecretKey};
use super::policy::Policy;
use crate::domain::{tag, KDF_RK_T};
use crate::encoding::Writer;
use crate::error::{Error, Result};
use crate::group::{g1_table, g2_table, G2Prepared, Scalar, SecretScalar, G1, G2};
use crate::keyid::KeyId;
use crate::sym::{kdf, seal};

/// Length of the sealed t.
pub const T_BYTES: usize = W_BYTES;

/// One leaf of a re-key.
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    pub(crate) d: G1,
    pub(crate) r: G2,
    pub(crate) r_prepared: G2Prepared,
}

/// A re-encryption key, decoded and validated, with its G2 points prepared for pairings.
#[derive(Clone, Debug)]
pub struct ReKey {
    rk_id: [u8; 16],
    owner_key_id: KeyId,
    receiver_key_id: KeyId,
    policy: Policy,
    policy_hash: [u8; 32],
    pub(crate) leaves: Vec<Leaf>,
    e: G2,
    t: Vec<u8>,
}

/// bind = layout(rk_id, owner key id, receiver key id, E, SHA-256(canonical policy text)).
pub(crate) fn bind(
    rk_id: &[u8],
    owner: &KeyId,
    receiver: &KeyId,
    e: &G2,
    policy_hash: &[u8],
) -> Vec<u8> {
    Writer::new()
        .field(tag::RK_ID, rk_id)
        .field(tag::OWNER_KEY_ID, owner.as_bytes())
        .field(tag::RECEIVER_KEY_ID, receiver.as_bytes())
        .field(tag::E, &e.to_bytes())
        .field(tag::POLICY_HASH, policy_hash)
        .finish()
}

impl ReKey {
    /// RKGen(sk, P, pk_B).
    pub fn generate<R: RngCore + CryptoRng>(
        owner: &SecretKey,
        policy: &Policy,
        receiver: &PublicKey,
        rng: &mut R,
    ) -> Result<Self> {
        let t = SecretScalar::new(Scalar::random_nonzero(rng));
        let sigma = SecretScalar::new(owner.x().expose() - t.expose());
        let shares: Vec<SecretScalar> = policy
            .share(sigma.expose(), rng)
            .into_iter()
            .map(SecretScalar::new)
            .collect();
        let mut leaves = Vec::with_capacity(shares.len());
        for (share, a) in shares.iter().zip(policy.leaves()) {
            let r_l = SecretScalar::new(Scalar::random_nonzero(rng));
            let d =
                g1_table().mul_secret(share.expose(), rng) + attr_point(a)?.table.mul(r_l.expose());
            let r = g2_table().mul(r_l.expose());
            leaves.push(Leaf {
                d,
                r,
                r_prepared: r.prepare(),
            });
        }
        let u = SecretScalar::new(Scalar::random_nonzero(rng));
        let e = g2_table().mul(u.expose());
        let mut kb = receiver.pow(u.expose());
        let mut rk_id = [0u8; 16];
        rng.fill_bytes(&mut rk_id);
        let policy_hash = policy.hash();
        let b = bind(
            &rk_id,
            &owner.key_id(),
            &receiver.key_id(),
            &e,
            &policy_hash,
        );
        let key = kdf(&kb.to_bytes(), KDF_RK_T, &b);
        kb.zeroize();
        let mut t_bytes = t.expose().to_bytes();
        let sealed = seal(&key, &ZERO_NONCE, &t_bytes, &b);
        t_bytes.zeroize();
        Ok(Self {
            rk_id,
            owner_key_id: owner.key_id(),
            receiver_key_id: receiver.key_id(),
            policy: policy.clone(),
            policy_hash,
            leaves,
            e,
            t: sealed,
        })
    }

    /// Decodes and validates a re-key (every point checked, policy canonical, one leaf per policy leaf).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let m: v1::ReKey = decode_strict("ReKey", bytes, MAX_REKEY_BYTES)?;
        crate::error::check_version("ReKey", m.version)?;
        let rk_id: [u8; 16] = m
            .rk_id
            .as_slice()
            .try_into()
            .map_err(|_| Error::InvalidField {
                field: "rekey.rk_id",
                reason: "16 bytes",
            })?;
        let owner_key_id = KeyId::from_slice(&m.owner_key_id, "rekey.owner_key_id")?;
        let receiver_key_id = KeyId::from_slice(&m.receiver_key_id, "rekey.receiver_key_id")?;
        let policy = Policy::parse(&m.policy)?;
        if policy.canonical() != m.policy {
            return Err(Error::InvalidField {
                field: "rekey.policy",
                reason: "not canonical policy text",
            });
        }
        if m.leaves.len() != policy.leaves().len() {
            return Err(Error::InvalidField {
                field: "rekey.leaves",
                reason: "one leaf per policy leaf",
            });
        }
        let leaves = m
            .leaves
            .iter()
            .map(|l| {
                let r = G2::from_bytes(&l.r, "rekey.r")?;
                Ok(Leaf {
                    d: G1::from_bytes(&l.d, "rekey.d")?,
                    r,
                    r_prepared: r.prepare(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let e = G2::from_bytes(&m.e, "rekey.e")?;
        if m.t.len() != T_BYTES {
            return Err(Error::InvalidField {
                field: "rekey.t",
                reason: "48 bytes",
            });
        }
        let policy_hash = policy.hash();
        Ok(Self {
            rk_id,
            owner_key_id,
            receiver_key_id,
            policy,
            policy_hash,
            leaves,
            e,
            t: m.t,
        })
    }

    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        v1::ReKey {
            version: WIRE_VERSION,
            rk_id: self.rk_id.to_vec(),
            owner_key_id: self.owner_key_id.0.to_vec(),
            receiver_key_id: self.receiver_key_id.0.to_vec(),
            policy: self.policy.canonical().to_owned(),
            leaves: self
                .leaves
                .iter()
                .map(|l| v1::ReKeyLeaf {
                    d: l.d.to_bytes().to_vec(),
                    r: l.r.to_bytes().to_vec(),
                })
                .collect(),
            e: self.e.to_bytes().to_vec(),
            t: self.t.clone(),
        }
        .encode_to_vec()
    }

    /// The re-key id.
    pub fn rk_id(&self) -> &[u8; 16] {
        &self.rk_id
    }
    /// The owner's PRE key id.
    pub fn owner_key_id(&self) -> KeyId {
        self.owner_key_id
    }
    /// The receiver's PRE key id.
    pub fn receiver_key_id(&self) -> KeyId {
        self.receiver_key_id
    }
    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// SHA-256 of the canonical policy layout.
    pub fn policy_hash(&self) -> &[u8; 32] {
        &self.policy_hash
    }
    pub(crate) fn e(&self) -> &G2 {
        &self.e
    }
    pub(crate) fn t_sealed(&self) -> &[u8] {
        &self.t
    }
}
