//! Service plumbing shared by `at-ingest`, `at-reencrypt`, `at-mpc-node` and the clients: layered
//! configuration, a `/metrics` + `/healthz` server and its client (`scrape`), at-least-once Kafka
//! consumption, control topic folding, dead letters, and the registry followed from Kafka.
//! Device-safe parts (shutdown, clock, MQTT settings, logging) are in `armored-base`.
//!
//! Nothing here knows about a particular service; services are libraries with `run(config, shutdown)`.
#![forbid(unsafe_code)]

pub mod close;
pub mod config;
pub mod dlq;
pub mod follower;
pub mod http;
pub mod kafka;
pub mod latency;
pub mod pipeline;
pub mod reader;
pub mod registry;
pub mod scrape;
pub mod service;
pub mod topics;
