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
/// Signed MPC jobs (up to ~10,000 participants of ~60 bytes).
pub const MAX_JOB_BYTES: usize = 1024 * 1024;
/// Records of the MPC peer topic: below the broker's ~1 MiB message limit.
pub const MAX_PEER_MESSAGE_BYTES: usize = 900 * 1024;
/// Plaintext chunk of a peer message (room left for the header and the AEAD tag).
pub const PEER_CHUNK_BYTES: usize = 768 * 1024;
/// Responses of devices to requests (the sealed `ResponseEnvelope`).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Entries of one signed audit batch (`AuditBatch`): a worker splits a larger batch.
pub const MAX_AUDIT_ENTRIES: usize = 1024;
/// A signed audit batch on `at.audit.v1` (entries of ~300 bytes each, below the broker's ~1 MiB).
pub const MAX_AUDIT_BATCH_BYTES: usize = 768 * 1024;
