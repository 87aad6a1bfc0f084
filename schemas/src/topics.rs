//! Topic names (DESIGN.md, "Topics").

/// Device state changes, retained forever (the twin store).
pub const SYNC: &str = "at.sync.v1";
/// Requests to devices.
pub const REQUESTS: &str = "at.requests.v1";
/// Device responses.
pub const RESPONSES: &str = "at.responses.v1";
/// Re-encrypted deliveries, keyed by receiver.
pub const DELIVER: &str = "at.deliver.v1";
/// MPC jobs (one partition).
pub const MPC_JOBS: &str = "at.mpc.jobs.v1";
/// MPC peer channel.
pub const MPC_PEER: &str = "at.mpc.peer.v1";
/// MPC results.
pub const MPC_RESULTS: &str = "at.mpc.results.v1";
/// Signed re-key uploads and their revocations.
pub const REKEYS: &str = "at.rekeys.v1";
/// Identities, enrollments, device revocations.
pub const REGISTRY: &str = "at.registry.v1";
/// Write and process tokens and their revocations.
pub const TOKENS: &str = "at.tokens.v1";
/// Owner control records (replay requests).
pub const CONTROL: &str = "at.control.v1";
/// The re-encryption workers' signed audit batches (one entry per delivery).
pub const AUDIT: &str = "at.audit.v1";
/// Dead letters.
pub const DLQ: &str = "at.dlq.v1";

/// Share topic of MPC node `j` (1-based).
pub fn mpc_shares(node: u32) -> String {
    format!("at.mpc.shares.node-{node}.v1")
}
