//! Domain-separated ECDSA P-256/SHA-256 signatures (envelope.md): RFC 6979 deterministic, low-S,
//! over `domain || 0x00 || body`, 64-byte `r || s` encoding, carried in [`v1::Signed`].

use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey as P256SigningKey, VerifyingKey as P256VerifyingKey};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::domain::{SigDomain, KEYID_SIG};
use crate::error::{Error, Result};
use crate::keyid::KeyId;

/// Length of an encoded signature.
pub const SIGNATURE_BYTES: usize = 64;

fn message(domain: SigDomain, body: &[u8]) -> Vec<u8> {
    let d = domain.as_str().as_bytes();
    let mut m = Vec::with_capacity(d.len() + 1 + body.len());
    m.extend_from_slice(d);
    m.push(0);
    m.extend_from_slice(body);
    m
}

/// An ECDSA P-256 signing key. Zeroized on drop (by `p256`); `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey {
    inner: P256SigningKey,
    public: VerifyingKey,
}

impl ZeroizeOnDrop for SigningKey {}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.public.key_id)
    }
}

impl SigningKey {
    /// A fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_inner(P256SigningKey::random(rng))
    }

    fn from_inner(inner: P256SigningKey) -> Self {
        let public = VerifyingKey::from_inner(*inner.verifying_key());
        Self { inner, public }
    }

    /// Restores a key from its 32-byte secret scalar (a key file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        P256SigningKey::from_slice(bytes)
            .map(Self::from_inner)
            .map_err(|_| Error::InvalidKey("signing"))
    }

    /// The 32-byte secret scalar, for a key file.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.inner.to_bytes());
        out
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The key id of the verifying key.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id
    }

    /// Signs `body` under `domain` (low-S).
    pub fn sign_raw(&self, domain: SigDomain, body: &[u8]) -> [u8; SIGNATURE_BYTES] {
        let sig: Signature = self.inner.sign(&message(domain, body));
        let sig = sig.normalize_s().unwrap_or(sig);
        let mut out = [0u8; SIGNATURE_BYTES];
        out.copy_from_slice(&sig.to_bytes());
        out
    }

    /// Signs `body` and wraps it in a `Signed` record.
    pub fn sign(&self, domain: SigDomain, body: Vec<u8>) -> v1::Signed {
        let signature = self.sign_raw(domain, &body).to_vec();
        v1::Signed {
            version: WIRE_VERSION,
            body,
            signature,
        }
    }

    /// Signs `body` and returns the encoded `Signed` record.
    pub fn sign_to_vec(&self, domain: SigDomain, body: Vec<u8>) -> Vec<u8> {
        self.sign(domain, body).encode_to_vec()
    }
}

/// An ECDSA P-256 verifying key with its key id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: P256VerifyingKey,
    key_id: KeyId,
}

impl core::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VerifyingKey({})", self.key_id)
    }
}

impl VerifyingKey {
    fn from_inner(inner: P256VerifyingKey) -> Self {
        let key_id = KeyId::derive(KEYID_SIG, inner.to_encoded_point(true).as_bytes());
        Self { inner, key_id }
    }

    /// Parses a SEC1 compressed point (33 bytes; the only encoding we emit or accept).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 33 {
            return Err(Error::InvalidKey(
                "verifying (33-byte compressed SEC1 expected)",
            ));
        }
        P256VerifyingKey::from_sec1_bytes(bytes)
            .map(Self::from_inner)
            .map_err(|_| Error::InvalidKey("verifying"))
    }

    /// SEC1 compressed encoding.
    pub fn to_sec1(&self) -> Vec<u8> {
        self.inner.to_encoded_point(true).as_bytes().to_vec()
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Verifies a raw signature of `body` under `domain`. High-S signatures are refused.
    pub fn verify_raw(
        &self,
        domain: SigDomain,
        body: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<()> {
        let sig = Signature::from_slice(signature).map_err(|_| Error::BadSignature(what))?;
        if sig.normalize_s().is_some() {
            return Err(Error::BadSignature(what));
        }
        self.inner
            .verify(&message(domain, body), &sig)
            .map_err(|_| Error::BadSignature(what))
    }

    /// Verifies a `Signed` record and returns its body (still to be decoded by the caller).
    pub fn verify<'a>(
        &self,
        domain: SigDomain,
        signed: &'a v1::Signed,
        what: &'static str,
    ) -> Result<&'a [u8]> {
        crate::error::check_version(what, signed.version)?;
        self.verify_raw(domain, &signed.body, &signed.signature, what)?;
        Ok(&signed.body)
    }
}

/// Decodes a `Signed` record (strict, size-limited). The body is not trusted until verified.
pub fn decode_signed(bytes: &[u8], limit: usize) -> Result<v1::Signed> {
    let s: v1::Signed = decode_strict("Signed", bytes, limit)?;
    crate::error::check_version("Signed", s.version)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn domains_separate_and_high_s_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let k = SigningKey::generate(&mut rng);
        let vk = *k.verifying_key();
        let s = k.sign(SigDomain::WriteToken, b"body".to_vec());
        assert_eq!(vk.verify(SigDomain::WriteToken, &s, "t").unwrap(), b"body");
        for d in SigDomain::ALL {
            if d != SigDomain::WriteToken {
                assert!(
                    vk.verify(d, &s, "t").is_err(),
                    "{d:?} accepted a write-token signature"
                );
            }
        }
        // The high-S twin of a valid signature verifies mathematically but is refused.
        let sig = Signature::from_slice(&s.signature).unwrap();
        let (r, s_) = sig.split_scalars();
        let high = Signature::from_scalars(r, -*s_).unwrap();
        assert!(vk
            .verify_raw(SigDomain::WriteToken, b"body", &high.to_bytes(), "t")
            .is_err());
        // Deterministic (RFC 6979).
        assert_eq!(k.sign(SigDomain::WriteToken, b"body".to_vec()), s);
        let other = SigningKey::generate(&mut rng);
        assert!(other
            .verifying_key()
            .verify(SigDomain::WriteToken, &s, "t")
            .is_err());
        assert_eq!(
            SigningKey::from_bytes(&k.to_bytes()[..]).unwrap().key_id(),
            k.key_id()
        );
        assert_eq!(VerifyingKey::from_sec1(&vk.to_sec1()).unwrap(), vk);
    }
}
