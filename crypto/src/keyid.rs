//! Key ids: the first 16 bytes of SHA-256(domain || 0x00 || encoded public key).

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A 16-byte key id. Public: safe to print, log and use as a label-free lookup key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// Derives the id of `encoded` under `domain`.
    pub fn derive(domain: &[u8], encoded: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(domain);
        h.update([0u8]);
        h.update(encoded);
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        Self(id)
    }

    /// Parses 16 bytes from the wire.
    pub fn from_slice(bytes: &[u8], field: &'static str) -> Result<Self> {
        bytes.try_into().map(Self).map_err(|_| Error::InvalidField {
            field,
            reason: "key id must be 16 bytes",
        })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl core::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl core::fmt::Display for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
