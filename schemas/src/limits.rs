//! Size limits applied before decoding anything from the wire.

/// An envelope over this many bytes is rejected at the bridge (`max_envelope_bytes`, envelope.md).
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;
/// Deliveries carry the envelope's ciphertext plus a capsule2 (~1.2 KiB).
pub const MAX_DELIVERY_BYTES: usize = MAX_ENVELOPE_BYTES + 4 * 1024;
/// A capsule carries at most 32 attribute points plus a few fixed fields.
pub const MAX_CAPSULE_BYTES: usize = 8 * 1024;
/// Re-keys: at most 64 leaves of (48 + 96) bytes plus the policy text.
pub const MAX_REKEY_BYTES: usize = 32 * 1024;
/// Control records: tokens, revocations, identities, enrollments.
pub const MAX_CONTROL_BYTES: usize = 64 * 1024;
/// Key files.
pub const MAX_KEY_FILE_BYTES: usize = 4 * 1024;
/// Output shares (HPKE sealed vectors of field elements).
pub const MAX_OUTPUT_SHARE_BYTES: usize = 512 * 1024;
/// Responses of devices to requests (the sealed `ResponseEnvelope`).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
