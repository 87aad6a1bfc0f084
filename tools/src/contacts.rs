//! Contact tracing as the demo and the bench run it: their shared parameters, the process token
//! they grant, and what a job must return (the simulator's paths, counted in the clear).

use std::ops::Range;

use armored_base::time::now_ms;
use armored_client::owner::process_tokens::{ProcessTokenRequest, CONTACT_TRACING};
use armored_device::sim::Sim;
use armored_mpc::functions::contact_tracing::cleartext;

/// Slot length of the phones: one point per second.
pub const SLOT_MS: u64 = 1_000;
/// Contact distance (grid units of the simulator's map).
pub const DISTANCE: u32 = 20;
/// Seed of the simulated paths.
pub const SEED: u64 = 2026;

/// A process token for the health authority `ha_identity` (receiver and designator at once): one
/// job per window of exactly `window_slots` (windows start on multiples of it), valid for
/// `valid_ms`, scoped to `twins`.
pub fn token_request(
    ha_identity: &[u8],
    window_slots: u32,
    valid_ms: u64,
    twins: Vec<String>,
) -> ProcessTokenRequest {
    ProcessTokenRequest {
        receiver_identity: ha_identity.to_vec(),
        designator_identity: ha_identity.to_vec(),
        function: CONTACT_TRACING.to_string(),
        distance: DISTANCE,
        slot_len_ms: SLOT_MS,
        window_slots,
        max_jobs_per_window: 1,
        not_after_ms: now_ms() + valid_ms,
        policy: None,
        twins,
    }
}

/// Each participant's contacts with `reference` within `distance` over `slots`.
pub fn in_the_clear(
    sim: &Sim,
    distance: u32,
    reference: &str,
    participants: &[String],
    slots: Range<u64>,
) -> Vec<u64> {
    cleartext(
        distance,
        &sim.path(reference, slots.clone()),
        &participants
            .iter()
            .map(|t| sim.path(t, slots.clone()))
            .collect::<Vec<_>>(),
    )
}
