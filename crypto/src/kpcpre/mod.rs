//! KP-CPRE (shared/specs/kp-cpre.md): key-policy conditional proxy re-encryption on BLS12-381.
//!
//! | paper (Definition 1) | here |
//! |---|---|
//! | KeyGen | [`SecretKey::generate`] |
//! | RKGen(sk_A, P, pk_B) | [`ReKey::generate`] |
//! | Enc^1(pk, A, M) | [`Capsule1::encrypt`] (M is a 32-byte DEK) |
//! | Dec^1 (owner) | [`Capsule1::decrypt`] |
//! | ReEnc(rk, C^1) | [`Capsule1::check`] once per capsule, then [`reencrypt`] per re-key |
//! | Dec^2(sk_B, C^2) | [`TCache::decrypt`] (t cached per re-key) or [`Capsule2::decrypt`] |

pub mod attr;
pub mod capsule;
pub mod keys;
mod memo;
pub mod policy;
pub mod reenc;
pub mod rekey;

pub use attr::AttributeSet;
pub use capsule::{Capsule1, CheckedCapsule, Dek, Header};
pub use keys::{PublicKey, SecretKey};
pub use policy::Policy;
pub use reenc::{reencrypt, Capsule2, TCache};
pub use rekey::ReKey;
