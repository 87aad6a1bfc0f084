//! The crate's one error type. Variants are precise enough to act on (and to name a dead-letter
//! reason) and never carry secret values.

use armored_schemas::DecodeError;
use armored_schemas::Refusal;

/// Everything that can go wrong in `armored-crypto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A protobuf message failed strict decoding.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A tagged length-prefixed layout (hdr, bind, ...) is malformed.
    #[error("malformed {what} layout: {reason}")]
    Layout {
        /// Which layout.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A message carries a version this build does not implement.
    #[error("unsupported {what} version {got}")]
    UnsupportedVersion {
        /// Which message.
        what: &'static str,
        /// Version received.
        got: u32,
    },
    /// A group element or scalar from the wire failed validation.
    #[error("invalid {field}: {reason}")]
    InvalidPoint {
        /// Field name, e.g. `capsule1.c0`.
        field: &'static str,
        /// Not on the curve, not in the subgroup, identity, zero, non-canonical, wrong length.
        reason: &'static str,
    },
    /// A field has the wrong length or shape.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Policy text does not parse; `column` is 1-based.
    #[error("policy syntax error at column {column}: {reason}")]
    PolicySyntax {
        /// 1-based column of the offending character.
        column: usize,
        /// What was expected.
        reason: String,
    },
    /// The policy breaks a structural limit (leaves, fan-in, depth, threshold).
    #[error("policy limit exceeded: {0}")]
    PolicyLimit(String),
    /// An attribute name is not in the attribute language.
    #[error("invalid attribute {0:?}")]
    InvalidAttribute(String),
    /// Too many attributes on one capsule.
    #[error("too many attributes: {0} (at most 32)")]
    TooManyAttributes(usize),
    /// The ciphertext's attributes do not satisfy the re-key's policy.
    #[error("policy not satisfied by the ciphertext's attributes")]
    PolicyNotSatisfied,
    /// The capsule or re-key belongs to another owner or receiver key.
    #[error("key mismatch: {0}")]
    KeyMismatch(&'static str),
    /// The capsule failed the well-formedness check of ReEnc.
    #[error("malformed capsule (well-formedness check failed)")]
    MalformedCapsule,
    /// The capsule's AEAD did not open: wrong key, rewritten header, or a flipped bit.
    #[error("capsule authentication failed")]
    CapsuleAuth,
    /// The sealed t of a re-key did not open for this receiver.
    #[error("re-key blinding did not open for this receiver")]
    ReKeyAuth,
    /// The envelope payload's AEAD did not open.
    #[error("payload authentication failed")]
    PayloadAuth,
    /// A signature did not verify (wrong key, wrong domain, altered body, high-S).
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// A key could not be parsed.
    #[error("invalid {0} key")]
    InvalidKey(&'static str),
    /// A signer is not the key a record must be signed by.
    #[error("unknown or unauthorized signer for {0}")]
    UnknownSigner(&'static str),
    /// A header, capsule or token fields disagree.
    #[error("binding mismatch: {0}")]
    Mismatch(&'static str),
    /// Outside its validity window.
    #[error(
        "{what} expired or not yet valid (now {now_ms}, valid {not_before_ms}..{not_after_ms})"
    )]
    Expired {
        /// What expired.
        what: &'static str,
        /// The check's clock.
        now_ms: u64,
        /// Start of validity.
        not_before_ms: u64,
        /// End of validity.
        not_after_ms: u64,
    },
    /// Revoked by its owner.
    #[error("{0} revoked")]
    Revoked(&'static str),
    /// A proof of knowledge did not verify.
    #[error("proof of knowledge failed for owner identity")]
    ProofOfKnowledge,
    /// A sequence number seen before for this writer (at-least-once redelivery).
    #[error("duplicate seq {seq}")]
    Duplicate {
        /// The repeated sequence number.
        seq: u64,
    },
    /// A sequence number too far behind the window to decide (treated as a replay).
    #[error("seq {seq} is older than the replay window (high-water mark {high})")]
    TooOld {
        /// Sequence number.
        seq: u64,
        /// Highest seen.
        high: u64,
    },
    /// DEK budget of an epoch key is spent (2^24 messages).
    #[error("epoch key exhausted")]
    KeyExhausted,
    /// HPKE failure (seal/open/key parsing).
    #[error("hpke: {0}")]
    Hpke(&'static str),
    /// A share bundle for another node than the one opening it (or naming none or several).
    #[error("share bundle for node {got}, not node {expected}")]
    WrongNode {
        /// The node index expected (0: none valid).
        expected: u8,
        /// The node index found (0: none).
        got: u32,
    },
    /// Not a share bundle: its attributes break the share-bundle rule.
    #[error("not a share bundle: {0}")]
    NotAShareBundle(&'static str),
    /// Key file problems.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// Path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Refuses any wire version but the one this build implements (no downgrade).
pub fn check_version(what: &'static str, got: u32) -> Result<()> {
    if got == armored_schemas::WIRE_VERSION {
        Ok(())
    } else {
        Err(Error::UnsupportedVersion { what, got })
    }
}

impl Refusal for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Decode(_) | Error::Layout { .. } => "malformed",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::InvalidPoint { .. } => "invalid_point",
            Error::InvalidField { .. } => "invalid_field",
            Error::PolicySyntax { .. } | Error::PolicyLimit(_) => "bad_policy",
            Error::InvalidAttribute(_) | Error::TooManyAttributes(_) => "bad_attributes",
            Error::PolicyNotSatisfied => "policy_not_satisfied",
            Error::KeyMismatch(_) => "key_mismatch",
            Error::MalformedCapsule => "malformed_capsule",
            Error::CapsuleAuth => "capsule_auth",
            Error::ReKeyAuth => "rekey_auth",
            Error::PayloadAuth => "payload_auth",
            Error::BadSignature(_) => "bad_signature",
            Error::InvalidKey(_) => "invalid_key",
            Error::UnknownSigner(_) => "unknown_signer",
            Error::Mismatch(_) => "mismatch",
            Error::Expired { .. } => "expired",
            Error::Revoked(_) => "revoked",
            Error::ProofOfKnowledge => "proof_of_knowledge",
            Error::Duplicate { .. } => "duplicate",
            Error::TooOld { .. } => "too_old",
            Error::KeyExhausted => "key_exhausted",
            Error::Hpke(_) => "hpke",
            Error::KeyFile { .. } => "key_file",
            Error::WrongNode { .. } => "wrong_node",
            Error::NotAShareBundle(_) => "not_share_bundle",
        }
    }
}
