//! What a contact-tracing job of the demo or the bench must return: the simulator's paths,
//! counted in the clear.

use std::ops::Range;

use armored_device::sim::Sim;
use armored_mpc::functions::contact_tracing::cleartext;

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
