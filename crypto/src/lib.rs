//! # armored-crypto
//!
//! The cryptographic core of ArmoredTwins: key-policy conditional proxy re-encryption (KP-CPRE) on
//! BLS12-381 ([`kpcpre`], `shared/specs/kp-cpre.md`), and the wire-level pieces of
//! `shared/specs/envelope.md`: domain-separated ECDSA P-256 signatures ([`sig`]), sealed state-change
//! envelopes and deliveries ([`envelope`]), the epoch key manager ([`epoch`]), owner-signed tokens,
//! re-key uploads and revocations ([`tokens`]), MPC share bundles ([`shares`]), designations
//! ([`designation`]), identities ([`identity`]), HPKE output shares
//! ([`hpke`]), the duplicate guard ([`replay`]), key files ([`keyfile`]) and the owner's key
//! backups, sealed with a password or split k-of-n ([`backup`]). No I/O but key files;
//! every random choice comes from an injected `CryptoRng`.
//!
//! ## Protocol 1 in a few lines
//! ```
//! use armored_crypto::kpcpre::*;
//! # fn main() -> Result<(), armored_crypto::Error> {
//! let mut rng = rand_core::OsRng;
//! let owner = SecretKey::generate(&mut rng);              // phase 1 (owner)
//! let service = SecretKey::generate(&mut rng);            // a processing service
//! // Phase 2: the owner grants `sync AND location` to the service; the cloud gets the re-key.
//! let policy = Policy::parse("sync AND location")?;
//! let rk = ReKey::generate(&owner, &policy, service.public(), &mut rng)?;
//! // Phase 3: a device encapsulates the epoch's DEK for the owner under its attributes.
//! let dek = Dek::generate(&mut rng);
//! let attrs = AttributeSet::new(["sync", "location", "twin:t1"])?;
//! let c1 = Capsule1::encrypt(owner.public(), "t1", 0, &attrs, &dek, &mut rng)?;
//! // Phases 4/6: the cloud checks the capsule once and re-encrypts it; it never sees the DEK.
//! let c2 = reencrypt(&rk, &c1.clone().check(&mut rng)?)?;
//! assert!(c2.decrypt(&service, &mut rng)? == dek);
//! assert!(c1.decrypt(&owner)? == dek);
//! # Ok(()) }
//! ```
//!
//! ## Security notes
//! - **No public value yields K.** Computing `Y^s` from `Y`, `g2^s` and the `Ca` is a co-BDH problem;
//!   `g1^x` stays inside the secret key.
//! - **The proxy learns nothing of x.** It holds blinded GPSW shares of `x - t`; `t` is sealed to the
//!   receiver. The proxy and a receiver *colluding* hold a GPSW key for P under x: they can open every
//!   capsule of that owner that satisfies P, past or future. Revocation (deleting a re-key) therefore
//!   relies on the cloud following the protocol (the paper's honest-but-curious cloud). Epoch-bounded
//!   grants (`not_after_ms`) and DEK rotation per epoch limit the damage.
//! - **Anyone holding Y can create capsules for the owner.** Sender authenticity comes from the
//!   envelope's signatures and the writer checks of [`envelope`], never from the capsule.
//! - **Every ciphertext field is authenticated.** The capsule id hashes the header and every point;
//!   the KEK is derived from it; the header is the AEAD's associated data; wire messages are decoded
//!   strictly (a re-encoding must reproduce the input byte for byte). A flipped bit is a typed error.
//! - **Points from the wire are validated** (on curve, in the subgroup, not the identity); scalars are
//!   canonical and nonzero. GT elements that are only multiplied and hashed (capsule2's Z) skip the
//!   subgroup check: a bad one only yields a wrong key, which the AEAD rejects.
//! - **Security argument:** large-universe GPSW with H1 (the IETF hash-to-curve map, never `g^H(a)`)
//!   as a random oracle, in the asymmetric (Type-3) setting.
//!
//! ## What is and is not constant-time
//! The default backend (arkworks) is **not** constant-time (arkworks-rs/algebra#826). Long-lived
//! secrets (x, a receiver's t, the RKGen shares) are therefore multiplied with scalar blinding
//! (`k + m·r`, fresh 64-bit m per call), which randomises the bit pattern an observer could time;
//! ephemeral per-capsule scalars use fixed-base tables (a table lookup indexed by secret bits is not
//! cache-timing safe). There are no secret-dependent branches in our code; AEAD tags are compared in
//! constant time by `aes-gcm`, and ECDSA/HPKE come from RustCrypto (`p256`, constant-time). The
//! optional `blst` backend (`--features blst`) uses blst's constant-time scalar multiplication for
//! all scalars and produces the same bytes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod backup;
pub mod designation;
pub mod domain;
pub mod encoding;
pub mod envelope;
pub mod epoch;
pub mod error;
// Fuzz entry points (issue 16): for `fuzz/` and the crate's own tests only.
#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz_targets;
pub mod group;
pub mod history;
pub mod hpke;
pub mod identity;
pub mod ids;
pub mod keyfile;
pub mod keyid;
pub mod kpcpre;
pub mod mpcjob;
pub mod peer;
pub mod registry;
pub mod replay;
pub mod request;
pub mod shares;
pub mod sig;
pub mod sym;
pub mod tokens;
pub mod verified;

pub use error::{Error, Result};
pub use keyid::KeyId;
pub use verified::Verified;
