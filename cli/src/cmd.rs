//! One module per command group; each owns its arguments and its `run`.

pub mod history;
pub mod owner;
pub mod registry;
pub mod request;
pub mod service;

use armored_client::kafka::Ctl;

/// How to reach the cluster (the global flags); commands connect only when they need to.
#[derive(Debug)]
pub struct Connect {
    /// Kafka bootstrap servers (`None`: the configured default).
    pub brokers: Option<String>,
    /// Topic name prefix (tests).
    pub topic_prefix: Option<String>,
}

impl Connect {
    /// Connects to the cluster.
    pub fn ctl(&self) -> anyhow::Result<Ctl> {
        Ok(Ctl::connect(
            self.brokers.as_deref(),
            self.topic_prefix.as_deref(),
        )?)
    }
}
