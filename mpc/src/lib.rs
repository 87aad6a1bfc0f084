//! # armored-mpc
//!
//! A three-party Shamir MPC engine (n = 3, t = 1, semi-honest, honest majority) over
//! F_p, p = 2^61 - 1, and the privacy-preserving contact tracing of the paper's Section 6.2
//! (`contact-tracing/v1`), exactly as `shared/specs/mpc.md` specifies:
//!
//! - [`field`]: F_p; [`shamir`]: Split on the device (16-bit coordinates), Combine at the receiver
//!   with the third-share consistency check;
//! - [`prss`]: PRSS/PRZS and the GRR PRG from pairwise seeds, ChaCha20, domain-separated per
//!   label, job, attempt and batch;
//! - [`engine`]: GRR multiplication (one element sent per product), opening, random bits by the
//!   square-root method, LTZ as LSB(2a) with a log-depth carry tree; every call is one batch;
//! - [`functions::contact_tracing`]: the function, [`run_party`] (one entry point per node) and a
//!   cleartext reference; [`output`]: HPKE-sealed output shares and the receiver's Combine;
//! - [`transport`]: the [`Transport`] trait and an in-memory network with injectable delay;
//!   [`local`]: three parties on threads, for tests and benches.
//!
//! No error, log line or `Debug` output contains a share or a value; seeds and output shares are
//! zeroized on drop. Everything random comes from the seeds or an injected RNG.
//!
//! ```
//! use armored_mpc::functions::contact_tracing::{cleartext, share_inputs, ContactTracingResult, EngineConfig};
//! use armored_mpc::{local, shamir, ContactTracingParams, Function, InMemoryConfig, Job, PartySeeds, SlotWindow};
//! use rand_core::OsRng;
//! # fn main() -> Result<(), armored_mpc::Error> {
//! let reference = vec![Some((100, 100)), Some((500, 500)), None];
//! let users = vec![vec![Some((103, 104)), Some((900, 900)), Some((0, 0))]];
//! let job = Job {
//!     job_id: "job-1".into(),
//!     job_hash: [7; 32],
//!     attempt: 0,
//!     function: Function::ContactTracingV1(ContactTracingParams {
//!         reference: "patient".into(),
//!         distance: 10,
//!         window: SlotWindow { first_slot: 0, slots: 3 },
//!     }),
//!     participants: vec!["alice".into()],
//! };
//! let inputs = share_inputs(&reference, &users, &mut OsRng)?;       // the devices
//! let seeds = PartySeeds::deal(&mut OsRng);                         // per attempt, pairwise
//! let out = local::contact_tracing(&EngineConfig::default(), InMemoryConfig::default(), &job, &inputs, seeds)?;
//! let values = shamir::combine_all([out[0].shares.values(), out[1].shares.values(), out[2].shares.values()])?;
//! let result = ContactTracingResult::from_values(&values, 1, 3)?;  // the receiver
//! assert_eq!(result.counts, cleartext(10, &reference, &users));
//! assert_eq!(result.counts, vec![1]);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod field;
pub mod functions;
pub mod job;
pub mod local;
pub mod output;
pub mod prss;
pub mod shamir;
pub mod transport;

pub use engine::{Engine, RunStats};
pub use error::{Error, Result, TransportError};
pub use field::Fp;
pub use functions::contact_tracing::{run_party, PartyInputs, PartyOutput};
pub use job::{ContactTracingParams, Function, Job, SlotWindow};
pub use output::OutputShares;
pub use prss::{PartySeeds, Seed};
pub use shamir::Party;
pub use transport::{InMemoryConfig, InMemoryTransport, Transport};
