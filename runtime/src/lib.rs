//! Service plumbing shared by `at-ingest`, `at-reencrypt`, `at-mpc-node` and `atctl`: layered
//! configuration, tracing, a `/metrics` + `/healthz` server, at-least-once Kafka consumption, control
//! topic folding, dead letters, MQTT with backoff, and the registry of owners and devices.
//!
//! Nothing here knows about a particular service; services are libraries with `run(config, shutdown)`.
#![forbid(unsafe_code)]

pub mod config;
pub mod dlq;
pub mod follower;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod pipeline;
pub mod registry;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod time;

pub use shutdown::Shutdown;
