//! The client side of ArmoredTwins: everything an owner, a service or a requester does, as a
//! library (`atctl` is a thin command line over it; the demo, the benchmarks and the tests call it
//! in-process).
//!
//! - [`owner`]: the owner's management device: phase 1 (identity, device enrollment, pinning
//!   parties), phase 2 (grants: re-keys for devices, services and MPC nodes), M1 (revocations),
//!   process and write tokens, device replacement, key backup;
//! - [`replay`]: asking the workers to re-encrypt stored history for a new grant, and following it;
//! - [`service`]: a processing service (phase 6): its keys and identity, reading and opening its
//!   deliveries; [`service::write`]: writing to a twin with a write token;
//! - [`request`]: phase 5, a request to a twin's devices and its answer;
//! - [`mpc`]: Protocol 2 as a requester sees it: designations, jobs, output shares, results;
//! - [`kafka`]: the client's connection to the cluster ([`kafka::Ctl`]);
//! - [`dlq`]: dead letters for operators: list, show, count, re-drive;
//! - [`when`]: durations and points in time as people type them;
//! - [`error`]: what can go wrong ([`ClientError`], [`KafkaError`]).
#![forbid(unsafe_code)]

pub mod dlq;
pub mod error;
mod files;
pub mod kafka;
pub mod mpc;
pub mod owner;
pub mod replay;
pub mod request;
pub mod service;
pub mod twin;
pub mod when;

pub use error::{AclRefusal, ClientError, KafkaError};
