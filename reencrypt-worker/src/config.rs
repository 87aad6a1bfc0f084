//! The worker's configuration: `[kafka]`, `[worker]` and `[requests]`.

use std::net::SocketAddr;

use armored_runtime::config::KafkaConfig;
use serde::{Deserialize, Serialize};

use crate::ratelimit::RequestConfig;

/// Configuration of a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Kafka.
    pub kafka: KafkaConfig,
    /// Worker settings.
    pub worker: WorkerConfig,
    /// The request path (phase 5): per-twin rate limit.
    #[serde(default)]
    pub requests: RequestConfig,
}

/// Worker settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// `/metrics` and `/healthz`.
    pub metrics_addr: SocketAddr,
    /// Consumer group (all replicas share it).
    pub group: String,
    /// Where revoked re-key ids are persisted (default `at-reencrypt-state`, relative to the working
    /// directory; empty: not persisted, which a warning at start says).
    pub state_dir: String,
    /// ReEnc cache entries.
    pub cache_entries: usize,
    /// `max_envelope_bytes`.
    pub max_envelope_bytes: usize,
    /// The name this worker gives itself in its audit batches (`A-Z a-z 0-9 . _ -`, at most 64);
    /// empty: one made on first start from the host name and a random suffix, kept in the state
    /// directory (`worker-instance`).
    #[serde(default)]
    pub instance: String,
}

/// Built-in defaults.
pub fn defaults() -> String {
    format!(
        r#"{kafka}
[worker]
metrics_addr = "127.0.0.1:9102"
group = "reencrypt"
state_dir = "at-reencrypt-state"
cache_entries = 100000
max_envelope_bytes = {max}
instance = ""

[requests]
rate_per_s = 1.0
burst = 10
max_twins = 100000
"#,
        kafka = armored_runtime::config::KAFKA_DEFAULTS,
        max = armored_schemas::limits::MAX_ENVELOPE_BYTES,
    )
}
