//! Every domain-separation tag, KDF label and hash-to-curve DST of the crate, in one place.

/// Hash-to-curve DST for attributes (kp-cpre.md, `H1`).
pub const H1_DST: &[u8] = b"ARMOREDTWINS-V1-ATTR-BLS12381G1_XMD:SHA-256_SSWU_RO_";
/// HKDF salt prefix: salt = prefix || label.
pub const KDF_SALT_PREFIX: &[u8] = b"armoredtwins/v1/";
/// KDF label of the key-encryption key of a capsule.
pub const KDF_KEK: &str = "kek";
/// KDF label of the key that seals t in a re-key.
pub const KDF_RK_T: &str = "rk-t";

/// Key id domains: key id = SHA-256(domain || 0x00 || encoded public key)[..16].
pub const KEYID_PRE: &[u8] = b"at/v1/pre-key";
/// Key id domain of ECDSA P-256 verifying keys (SEC1 compressed).
pub const KEYID_SIG: &[u8] = b"at/v1/sig-key";
/// Key id domain of HPKE P-256 public keys (SEC1 uncompressed).
pub const KEYID_HPKE: &[u8] = b"at/v1/hpke-key";

/// Hash of canonical policy text: SHA-256(layout(domain, text)).
pub const POLICY_HASH: &[u8] = b"at/v1/policy";
/// Capsule id: SHA-256(layout(domain, hdr, C0, Ca...)).
pub const CAPSULE_ID: &[u8] = b"at/v1/capsule-id";
/// Attribute-set digest of an audit entry: SHA-256(layout(domain, attribute...)), sorted.
pub const AUDIT_ATTRIBUTES: &[u8] = b"at/v1/audit-attributes";
/// Owner proof-of-knowledge challenge.
pub const OWNER_POK: &[u8] = b"at/v1/owner-pok";

/// Signature domains (envelope.md): one per signed message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigDomain {
    /// Signed state changes.
    StateChange,
    /// Owner and party identities.
    Identity,
    /// Device enrollments.
    Enrollment,
    /// Re-key uploads.
    ReKey,
    /// Revocations.
    Revocation,
    /// Write tokens.
    WriteToken,
    /// Process tokens.
    ProcessToken,
    /// MPC share bodies.
    MpcShare,
    /// MPC jobs.
    MpcJob,
    /// MPC job failures.
    JobFailed,
    /// Encrypted output shares.
    OutputShare,
    /// Replay requests.
    Replay,
    /// Reference-twin designations.
    Designation,
    /// Requests to devices.
    Request,
    /// Device responses.
    Response,
    /// The re-encryption workers' audit batches.
    Audit,
}

impl SigDomain {
    /// All domains.
    pub const ALL: [SigDomain; 16] = [
        SigDomain::StateChange,
        SigDomain::Identity,
        SigDomain::Enrollment,
        SigDomain::ReKey,
        SigDomain::Revocation,
        SigDomain::WriteToken,
        SigDomain::ProcessToken,
        SigDomain::MpcShare,
        SigDomain::MpcJob,
        SigDomain::JobFailed,
        SigDomain::OutputShare,
        SigDomain::Replay,
        SigDomain::Designation,
        SigDomain::Request,
        SigDomain::Response,
        SigDomain::Audit,
    ];

    /// The domain string signed before the body.
    pub const fn as_str(self) -> &'static str {
        match self {
            SigDomain::StateChange => "at/v1/state-change",
            SigDomain::Identity => "at/v1/identity",
            SigDomain::Enrollment => "at/v1/enrollment",
            SigDomain::ReKey => "at/v1/rekey",
            SigDomain::Revocation => "at/v1/revocation",
            SigDomain::WriteToken => "at/v1/write-token",
            SigDomain::ProcessToken => "at/v1/process-token",
            SigDomain::MpcShare => "at/v1/mpc-share",
            SigDomain::MpcJob => "at/v1/mpc-job",
            SigDomain::JobFailed => "at/v1/job-failed",
            SigDomain::OutputShare => "at/v1/output-share",
            SigDomain::Replay => "at/v1/replay",
            SigDomain::Designation => "at/v1/designation",
            SigDomain::Request => "at/v1/request",
            SigDomain::Response => "at/v1/response",
            SigDomain::Audit => "at/v1/audit",
        }
    }
}

/// Associated data of a password-sealed owner backup: this prefix, then the file's header text.
pub const BACKUP_PASSWORD_AAD: &[u8] = b"at/v1/owner-backup\0";
/// Associated data of a share-sealed owner backup: this prefix, then
/// `owner id || 0x00 || set id || k || n`.
pub const BACKUP_SHARES_AAD: &[u8] = b"at/v1/owner-shares\0";

/// HPKE info prefix for output shares.
pub const HPKE_OUTPUT_SHARE_INFO: &[u8] = b"armoredtwins/v1/output-share";
/// HPKE info prefix for the MPC peer channel.
pub const HPKE_MPC_PEER_INFO: &[u8] = b"armoredtwins/v1/mpc-peer";

/// Tags of the tagged length-prefixed layouts (crypto::encoding). One byte each; a layout lists its
/// fields in a fixed order.
pub mod tag {
    /// A domain string opening a hashed layout.
    pub const DOMAIN: u8 = 0x01;
    /// Format version (u32 BE).
    pub const VERSION: u8 = 0x02;
    /// Twin id (UTF-8).
    pub const TWIN_ID: u8 = 0x03;
    /// Epoch (u64 BE).
    pub const EPOCH: u8 = 0x04;
    /// One attribute (UTF-8), repeated in sorted order.
    pub const ATTRIBUTE: u8 = 0x05;
    /// A key id (16 B).
    pub const KEY_ID: u8 = 0x06;
    /// Capsule header bytes.
    pub const HDR: u8 = 0x07;
    /// C0 (compressed G2).
    pub const C0: u8 = 0x08;
    /// One Ca (compressed G1), repeated in attribute order.
    pub const CA: u8 = 0x09;
    /// Re-key id (16 B).
    pub const RK_ID: u8 = 0x0a;
    /// Owner key id.
    pub const OWNER_KEY_ID: u8 = 0x0b;
    /// Receiver key id.
    pub const RECEIVER_KEY_ID: u8 = 0x0c;
    /// E (compressed G2).
    pub const E: u8 = 0x0d;
    /// SHA-256 of the canonical policy text.
    pub const POLICY_HASH: u8 = 0x0e;
    /// Canonical policy text.
    pub const POLICY_TEXT: u8 = 0x0f;
    /// An owner or party id.
    pub const PARTY_ID: u8 = 0x10;
    /// A GT element (576 B).
    pub const GT: u8 = 0x11;
    /// A SEC1 public key.
    pub const SIG_KEY: u8 = 0x12;
    /// A job hash.
    pub const JOB_HASH: u8 = 0x13;
    /// An attempt (u32 BE).
    pub const ATTEMPT: u8 = 0x14;
    /// A node index (u32 BE).
    pub const NODE_INDEX: u8 = 0x15;
}
