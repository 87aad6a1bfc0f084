//! Fuzz entry points: one function per decoder of wire input (and the policy parser), shared by the
//! cargo-fuzz targets of `fuzz/` (nightly, libFuzzer) and by the stable test at the bottom of this
//! file (every committed seed plus a bounded proptest over random and mutated bytes).
//!
//! Each entry point feeds `data` to the decoder and checks the property of issue 16: a typed error,
//! or a value that re-encodes to exactly the bytes it was decoded from. A panic (a failed assertion
//! included) is a finding. Each returns whether the input was accepted, which the seed test uses to
//! show that the seeds reach the deepest checks.
//!
//! Signature-checking verifiers use fixed test keys ([`Fixture`]). Where a signature would stop
//! every mutated input at the first check, the entry point has a second mode in which `data` is the
//! *body*: the harness signs it with the fixture's key, so the fuzzer explores the body's decoder
//! and the checks behind the signature. Byte 0 selects the mode where there are several.
//!
//! Compiled for tests and under the `fuzz` feature only; not part of the crate's API.

mod entry;
mod fixture;
mod seeds;
#[cfg(test)]
mod tests;

pub use entry::*;
pub use fixture::{fixture, Fixture, NOW_MS};
pub use seeds::{regressions, seeds, Seeds};

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`) and its
/// entry point.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Target name.
    pub name: &'static str,
    /// Entry point: runs the decoder, asserts the property, returns whether `data` was accepted.
    pub run: fn(&[u8]) -> bool,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "policy",
        run: policy,
    },
    Target {
        name: "envelope",
        run: envelope,
    },
    Target {
        name: "state_change",
        run: state_change,
    },
    Target {
        name: "delivery",
        run: delivery,
    },
    Target {
        name: "capsule1",
        run: capsule1,
    },
    Target {
        name: "capsule2",
        run: capsule2,
    },
    Target {
        name: "capsule_header",
        run: capsule_header,
    },
    Target {
        name: "points",
        run: points,
    },
    Target {
        name: "rekey",
        run: rekey,
    },
    Target {
        name: "rekey_upload",
        run: rekey_upload,
    },
    Target {
        name: "tokens",
        run: tokens,
    },
    Target {
        name: "control_record",
        run: control_record,
    },
    Target {
        name: "registry",
        run: registry,
    },
    Target {
        name: "share_bundle",
        run: share_bundle,
    },
    Target {
        name: "peer_message",
        run: peer_message,
    },
    Target {
        name: "mpc_job",
        run: mpc_job,
    },
    Target {
        name: "local_state",
        run: local_state,
    },
    Target {
        name: "audit_batch",
        run: audit_batch,
    },
];
