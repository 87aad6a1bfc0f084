//! What can go wrong on a device, with a bounded reason label for its metrics.

use armored_crypto::Error as CryptoError;
use armored_schemas::Refusal;

/// What can go wrong on a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A cryptographic or format check failed (the reason is typed).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// File system.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Keys exist already.
    #[error("{0} already holds device keys; refusing to overwrite them")]
    AlreadySetUp(String),
    /// No pinned owner identity.
    #[error("no owner identity pinned in {0} (at-device pin-owner)")]
    NoOwner(String),
    /// State file problems.
    #[error("device state: {0}")]
    State(String),
    /// A delta that is not a JSON object.
    #[error("a state change must be a JSON object of field updates")]
    BadDelta,
    /// Phase 3+: this slot was shared already (one point per slot, slots only go forward).
    #[error("slot {0} already shared")]
    SlotAlreadyShared(u64),
    /// Phase 3+: the point cannot be shared.
    #[error("share refused: {0}")]
    ShareRefused(&'static str),
    /// Phase 5: this request was answered already (a redelivery or a replay).
    #[error("request {0} answered already")]
    RequestSeen(String),
    /// Phase 5: the request's lifetime or issue time is out of bounds, or too many requests are
    /// open at once.
    #[error("request refused: {0}")]
    RequestRefused(&'static str),
}

impl Refusal for DeviceError {
    fn reason(&self) -> &'static str {
        match self {
            DeviceError::Crypto(e) => e.reason(),
            DeviceError::Io(..) => "io",
            DeviceError::AlreadySetUp(_) => "already_set_up",
            DeviceError::NoOwner(_) => "no_owner",
            DeviceError::State(_) => "state",
            DeviceError::BadDelta => "bad_delta",
            DeviceError::SlotAlreadyShared(_) => "slot_already_shared",
            DeviceError::ShareRefused(_) => "share_refused",
            DeviceError::RequestSeen(_) => "duplicate_request",
            DeviceError::RequestRefused(_) => "request_refused",
        }
    }
}
