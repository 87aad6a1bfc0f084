//! The symmetric layer: HKDF-SHA256 (`KDF(ikm, label, ctx)` of kp-cpre.md) and AES-256-GCM.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::domain::KDF_SALT_PREFIX;

/// AES-GCM tag length.
pub const TAG_BYTES: usize = 16;
/// AES-GCM nonce length.
pub const NONCE_BYTES: usize = 12;

/// A 32-byte symmetric key (KEK, the key sealing t, ...). Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SymKey(pub(crate) [u8; 32]);

impl core::fmt::Debug for SymKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SymKey(<redacted>)")
    }
}

impl SymKey {
    /// Wraps 32 key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// KDF(ikm, label, ctx) = HKDF-SHA256(salt = "armoredtwins/v1/" || label, ikm, info = ctx), 32 bytes.
pub fn kdf(ikm: &[u8], label: &str, ctx: &[u8]) -> SymKey {
    let mut salt = Vec::with_capacity(KDF_SALT_PREFIX.len() + label.len());
    salt.extend_from_slice(KDF_SALT_PREFIX);
    salt.extend_from_slice(label.as_bytes());
    let hk = Hkdf::<Sha256>::new(Some(&salt), ikm);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = hk.expand(ctx, &mut out);
    SymKey(out)
}

/// AES-256-GCM seal.
pub fn seal(key: &SymKey, nonce: &[u8; NONCE_BYTES], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new((&key.0).into());
    // Encryption fails only for plaintexts over 64 GiB, which nothing here produces.
    cipher
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default()
}

/// AES-256-GCM open; None when the tag does not verify (compared in constant time by `aes-gcm`).
pub fn open(
    key: &SymKey,
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != NONCE_BYTES || ciphertext.len() < TAG_BYTES {
        return None;
    }
    let cipher = Aes256Gcm::new((&key.0).into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_separates_labels_and_contexts() {
        let a = kdf(b"ikm", "kek", b"ctx");
        assert_ne!(a.0, kdf(b"ikm", "rk-t", b"ctx").0);
        assert_ne!(a.0, kdf(b"ikm", "kek", b"ctx2").0);
        assert_eq!(a.0, kdf(b"ikm", "kek", b"ctx").0);
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let k = kdf(b"ikm", "kek", b"");
        let ct = seal(&k, &[0; 12], b"hello", b"aad");
        assert_eq!(&open(&k, &[0; 12], &ct, b"aad").unwrap()[..], b"hello");
        assert!(open(&k, &[0; 12], &ct, b"aaD").is_none());
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(open(&k, &[0; 12], &bad, b"aad").is_none());
        assert!(open(&k, &[0; 11], &ct, b"aad").is_none());
    }
}
