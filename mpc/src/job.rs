//! What a node is asked to compute: the engine's view of an `MpcJob` (mpc.md, "Job protocol").
//! Signature, token and budget checks happen in the node service before these types are built.

use crate::error::{Error, Result};

/// A job attempt as the engine needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job id (HPKE associated data of the output shares).
    pub job_id: String,
    /// SHA-256 of the signed job bytes; binds the PRF keys and the output shares.
    pub job_hash: [u8; 32],
    /// Attempt number; a retry is a new attempt with fresh seeds.
    pub attempt: u32,
    /// The function and its public parameters.
    pub function: Function,
    /// The participants (user twins), in output order.
    pub participants: Vec<String>,
}

/// The functions the engine computes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Function {
    /// `contact-tracing/v1`.
    ContactTracingV1(ContactTracingParams),
}

impl Function {
    /// Wire id of contact tracing.
    pub const CONTACT_TRACING_V1: &'static str = "contact-tracing/v1";

    /// The function's wire id.
    pub fn id(&self) -> &'static str {
        match self {
            Function::ContactTracingV1(_) => Self::CONTACT_TRACING_V1,
        }
    }
}

/// Largest contact distance d (exclusive): d < 2^16 keeps d^2 and the squared distances far inside
/// (-p/2, p/2).
pub const DISTANCE_LIMIT: u32 = 1 << 16;

/// Public parameters of `contact-tracing/v1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactTracingParams {
    /// The reference twin (e.g. an infected patient), named by the designator's statement.
    pub reference: String,
    /// Contact distance d in grid units; a contact is a squared distance < d^2.
    pub distance: u32,
    /// The slot window.
    pub window: SlotWindow,
}

impl ContactTracingParams {
    /// Checks d < 2^16 and a non-empty window.
    pub fn validate(&self) -> Result<()> {
        if self.distance >= DISTANCE_LIMIT {
            return Err(Error::InvalidInput("distance must be below 2^16"));
        }
        if self.window.slots == 0 {
            return Err(Error::InvalidInput("empty slot window"));
        }
        Ok(())
    }
}

/// A window of global time slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotWindow {
    /// First slot (global epoch of the MPC slot length).
    pub first_slot: u64,
    /// Number of slots (mpc.md default: 50).
    pub slots: u32,
}
