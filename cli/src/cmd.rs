//! One module per command group; each owns its arguments and its `run`.

pub mod audit;
pub mod dlq;
pub mod history;
pub mod owner;
pub mod registry;
pub mod request;
pub mod service;
pub mod twin;

use std::path::Path;

use armored_client::kafka::{service_principal, Ctl, OPERATOR_PRINCIPAL, OWNER_PRINCIPAL};

/// How to reach the cluster (the global flags); commands connect only when they need to.
#[derive(Debug)]
pub struct Connect {
    /// Kafka bootstrap servers (`None`: the configured default).
    pub brokers: Option<String>,
    /// Topic name prefix (tests).
    pub topic_prefix: Option<String>,
}

impl Connect {
    /// Connects to the cluster as an owner's tool.
    pub fn owner(&self) -> anyhow::Result<Ctl> {
        self.as_principal(OWNER_PRINCIPAL)
    }

    /// Connects to the cluster as an operator's tool (the dead letters).
    pub fn operator(&self) -> anyhow::Result<Ctl> {
        self.as_principal(OPERATOR_PRINCIPAL)
    }

    /// Connects to the cluster as the service of directory `dir` (its own principal).
    pub fn service(&self, dir: &Path) -> anyhow::Result<Ctl> {
        let id = armored_client::service::Service::open(dir)?.id;
        self.as_principal(&service_principal(&id))
    }

    /// Connects to the cluster as `principal` (unless `[kafka.sasl]` says otherwise).
    pub fn as_principal(&self, principal: &str) -> anyhow::Result<Ctl> {
        Ok(Ctl::connect(
            self.brokers.as_deref(),
            self.topic_prefix.as_deref(),
            principal,
        )?)
    }
}
