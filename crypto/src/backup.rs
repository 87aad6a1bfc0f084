//! Owner key backup formats (paper 5.4): the owner's secrets (PRE and signing keys, with the
//! identity, the ledger of grants and the pinned parties they go with, a [`Bundle`]) sealed either
//!
//! - with a password ([`password`]): Argon2id (m = 64 MiB, t = 3, p = 1) derives an AES-256-GCM
//!   key; the header lines are the associated data, so an edited header fails like a wrong
//!   password; or
//! - for trustees, k-of-n ([`shares`]): a random 32-byte key seals the bundle (AES-256-GCM), the
//!   key is split over GF(2^8) with the `blahaj` crate (the maintained fork of `sharks`, which fixed
//!   its biased coefficients; `armored_mpc::shamir` is fixed to 3 parties and t = 1, so it does not
//!   fit k-of-n), and every share file carries the sealed bundle, its own index, k, n, the owner id,
//!   a set id and a checksum. A share is useless alone; k of them open the bundle, whose AEAD tag
//!   then proves the combination right.
//!
//! Both are text (a title line, then `name: value` lines with hex values), easy to print or copy.
//! This module only turns bundles into text and back; which files to read and write is the
//! client's (`armored_client::owner::backup`). Fixed vectors in `tests/vectors/backup/` pin the
//! format: an existing backup must keep restoring.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

mod bundle;
pub mod password;
pub mod shares;
mod text;

pub use bundle::Bundle;

/// Format version of backup and share files.
pub const BACKUP_VERSION: u32 = 1;
/// Argon2id cost written into new backups (OWASP's 2023 guidance is at least m = 19 MiB, t = 2).
pub const ARGON2_M_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const ARGON2_T: u32 = 3;
/// Argon2id lanes.
pub const ARGON2_P: u32 = 1;

/// Why a backup could not be sealed or opened. Never carries secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Not a backup or share file of this version, or a field is missing or malformed.
    #[error("{file}: not a valid ArmoredTwins backup: {reason}")]
    Format {
        /// Which file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A password too short to seal a backup with.
    #[error("a backup password has at least 8 characters")]
    WeakPassword,
    /// The password does not open the file (or the file was altered: both fail the AEAD tag).
    #[error("wrong password, or the backup file was altered")]
    WrongPassword,
    /// A share's checksum does not match its content.
    #[error("{file}: share corrupted (checksum mismatch)")]
    ShareCorrupted {
        /// Which file.
        file: String,
    },
    /// Fewer distinct shares than the threshold.
    #[error("too few shares: {have} distinct of the {need} needed")]
    TooFewShares {
        /// Distinct shares given.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// Shares of different backups (owner, set, threshold or sealed bundle differ).
    #[error("the shares belong to different backups ({0})")]
    MixedShares(&'static str),
    /// The shares combine to a key that does not open the bundle (a share was altered consistently
    /// with its checksum, or shares of another set).
    #[error("the shares do not combine to this backup's key")]
    BadCombination,
    /// The bundle opened but its keys do not match the owner identity in it.
    #[error("backup content inconsistent: {0}")]
    Inconsistent(String),
    /// k and n out of range.
    #[error("invalid share parameters: need 1 <= k <= n <= 255 and k >= 2 (got {k}-of-{n})")]
    BadThreshold {
        /// Threshold.
        k: u8,
        /// Number of shares.
        n: u8,
    },
    /// A key or the identity in the bundle does not parse or verify.
    #[error(transparent)]
    Crypto(#[from] crate::Error),
}

/// `nonce (12) || AES-256-GCM(key, aad, msg)`.
fn aes_seal<R: RngCore + CryptoRng>(
    key: &[u8; 32],
    aad: &[u8],
    msg: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(key.into());
    // Encryption fails only for messages over 64 GiB.
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .unwrap_or_default();
    [nonce.as_slice(), &ct].concat()
}

fn aes_open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ct) = sealed.split_at_checked(12)?;
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}
