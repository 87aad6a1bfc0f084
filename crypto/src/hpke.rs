//! HPKE (RFC 9180) output shares of Protocol 2 step 7: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM, base mode, info = `armoredtwins/v1/output-share || job_hash || attempt || node_index`.
//! The encrypted share is signed by the node (domain `at/v1/output-share`).

use armored_schemas::limits::MAX_OUTPUT_SHARE_BYTES;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::domain::{SigDomain, HPKE_OUTPUT_SHARE_INFO, KEYID_HPKE};
use crate::error::{Error, Result};
use crate::keyid::KeyId;
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::verified::Verified;

pub(crate) type Kem = DhP256HkdfSha256;

/// An HPKE P-256 private key (zeroized on drop by `p256`; `Debug` redacted).
#[derive(Clone)]
pub struct HpkeSecretKey {
    sk: <Kem as KemTrait>::PrivateKey,
    pk: HpkePublicKey,
}

impl ZeroizeOnDrop for HpkeSecretKey {}

impl core::fmt::Debug for HpkeSecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HpkeSecretKey({}, <redacted>)", self.pk.key_id)
    }
}

/// An HPKE P-256 public key (SEC1 uncompressed, 65 bytes).
#[derive(Clone)]
pub struct HpkePublicKey {
    pk: <Kem as KemTrait>::PublicKey,
    key_id: KeyId,
}

impl core::fmt::Debug for HpkePublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HpkePublicKey({})", self.key_id)
    }
}

impl PartialEq for HpkePublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_id == other.key_id
    }
}
impl Eq for HpkePublicKey {}

impl HpkePublicKey {
    fn wrap(pk: <Kem as KemTrait>::PublicKey) -> Self {
        let key_id = KeyId::derive(KEYID_HPKE, &pk.to_bytes());
        Self { pk, key_id }
    }

    /// Parses a SEC1 uncompressed point (validated by `hpke`/`p256`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        <Kem as KemTrait>::PublicKey::from_bytes(bytes)
            .map(Self::wrap)
            .map_err(|_| Error::InvalidKey("hpke public"))
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.pk.to_bytes().to_vec()
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

impl HpkeSecretKey {
    /// A fresh key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let (sk, pk) = Kem::gen_keypair(rng);
        Self {
            sk,
            pk: HpkePublicKey::wrap(pk),
        }
    }

    /// Restores a key from its 32-byte secret (a key file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let sk = <Kem as KemTrait>::PrivateKey::from_bytes(bytes)
            .map_err(|_| Error::InvalidKey("hpke secret"))?;
        let pk = Kem::sk_to_pk(&sk);
        Ok(Self {
            sk,
            pk: HpkePublicKey::wrap(pk),
        })
    }

    /// The 32-byte secret, for a key file.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.sk.to_bytes().to_vec())
    }

    /// The public key.
    pub fn public(&self) -> &HpkePublicKey {
        &self.pk
    }

    pub(crate) fn inner(&self) -> &<Kem as KemTrait>::PrivateKey {
        &self.sk
    }
}

impl HpkePublicKey {
    pub(crate) fn inner(&self) -> &<Kem as KemTrait>::PublicKey {
        &self.pk
    }
}

fn info(job_hash: &[u8], attempt: u32, node_index: u32) -> Vec<u8> {
    let mut i = HPKE_OUTPUT_SHARE_INFO.to_vec();
    i.extend_from_slice(job_hash);
    i.extend_from_slice(&attempt.to_be_bytes());
    i.extend_from_slice(&node_index.to_be_bytes());
    i
}

/// One node's output share for a job attempt.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputShareInput<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// SHA-256 of the signed job.
    pub job_hash: [u8; 32],
    /// Attempt number.
    pub attempt: u32,
    /// This node's index (1-based).
    pub node_index: u32,
    /// Share values (F_p elements).
    pub values: &'a [u64],
}

// Shares never reach Debug output: one share plus another node's leaks the result.
impl core::fmt::Debug for OutputShareInput<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "OutputShareInput({} #{} node {}, {} values <redacted>)",
            self.job_id,
            self.attempt,
            self.node_index,
            self.values.len()
        )
    }
}

impl core::fmt::Debug for OutputShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "OutputShare({} #{} node {}, {} values <redacted>)",
            self.job_id,
            self.attempt,
            self.node_index,
            self.values.len()
        )
    }
}

/// Seals an output share for the receiver and signs it as node `node`.
pub fn seal_output_share<R: RngCore + CryptoRng>(
    receiver: &HpkePublicKey,
    node: &SigningKey,
    share: &OutputShareInput<'_>,
    rng: &mut R,
) -> Result<Vec<u8>> {
    let plaintext = Zeroizing::new(
        v1::OutputShare {
            version: WIRE_VERSION,
            job_hash: share.job_hash.to_vec(),
            attempt: share.attempt,
            node_index: share.node_index,
            values: share.values.to_vec(),
        }
        .encode_to_vec(),
    );
    let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, R>(
        &OpModeS::Base,
        &receiver.pk,
        &info(&share.job_hash, share.attempt, share.node_index),
        &plaintext,
        share.job_id.as_bytes(),
        rng,
    )
    .map_err(|_| Error::Hpke("seal"))?;
    let body = v1::EncryptedOutputShare {
        version: WIRE_VERSION,
        job_id: share.job_id.to_owned(),
        attempt: share.attempt,
        node_index: share.node_index,
        job_hash: share.job_hash.to_vec(),
        encapsulated_key: enc.to_bytes().to_vec(),
        ciphertext,
    };
    Ok(node.sign_to_vec(SigDomain::OutputShare, body.encode_to_vec()))
}

/// A decrypted output share.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputShare {
    /// Job id.
    pub job_id: String,
    /// Attempt.
    pub attempt: u32,
    /// Node index.
    pub node_index: u32,
    /// Values.
    pub values: Vec<u64>,
}

/// Verifies node `node`'s signature, checks the share is for `job_hash` and `attempt`, and opens it.
pub fn open_output_share(
    receiver: &HpkeSecretKey,
    node: &VerifyingKey,
    job_hash: &[u8; 32],
    attempt: u32,
    bytes: &[u8],
) -> Result<Verified<OutputShare>> {
    let signed = decode_signed(bytes, MAX_OUTPUT_SHARE_BYTES)?;
    let body = node.verify(SigDomain::OutputShare, &signed, "output share")?;
    let e: v1::EncryptedOutputShare =
        decode_strict("EncryptedOutputShare", body, MAX_OUTPUT_SHARE_BYTES)?;
    crate::error::check_version("EncryptedOutputShare", e.version)?;
    if e.job_hash.as_slice() != job_hash.as_slice() || e.attempt != attempt {
        return Err(Error::Mismatch(
            "output share is for another job or attempt",
        ));
    }
    let enc = <Kem as KemTrait>::EncappedKey::from_bytes(&e.encapsulated_key)
        .map_err(|_| Error::Hpke("encapsulated key"))?;
    let pt = Zeroizing::new(
        hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
            &OpModeR::Base,
            &receiver.sk,
            &enc,
            &info(job_hash, attempt, e.node_index),
            &e.ciphertext,
            e.job_id.as_bytes(),
        )
        .map_err(|_| Error::Hpke("open"))?,
    );
    let inner: v1::OutputShare = decode_strict("OutputShare", &pt, MAX_OUTPUT_SHARE_BYTES)?;
    if inner.version != WIRE_VERSION
        || inner.job_hash != e.job_hash
        || inner.attempt != e.attempt
        || inner.node_index != e.node_index
    {
        return Err(Error::Mismatch(
            "sealed output share disagrees with its envelope",
        ));
    }
    Ok(Verified::new(OutputShare {
        job_id: e.job_id,
        attempt: e.attempt,
        node_index: e.node_index,
        values: inner.values,
    }))
}
