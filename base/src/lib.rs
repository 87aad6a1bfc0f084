//! The small, device-safe base every ArmoredTwins binary shares: cooperative shutdown, the wall
//! clock, MQTT connection settings with reconnect backoff, and logging set-up. It depends on none of
//! Kafka, HTTP servers, metrics or layered configuration, so the device library can embed it;
//! service plumbing lives in `armored-runtime`.
#![forbid(unsafe_code)]

pub mod files;
pub mod log_limit;
pub mod mqtt;
pub mod shutdown;
pub mod telemetry;
pub mod time;

pub use shutdown::Shutdown;
