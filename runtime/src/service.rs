//! The start-up every service shares: broker reachable (or a clear error), `/metrics` and `/healthz`
//! served, topic names, an idempotent producer, the dead-letter writer.

use std::net::SocketAddr;

use prometheus::{IntCounterVec, Registry};

use crate::config::KafkaConfig;
use crate::dlq::DeadLetters;
use crate::http::Health;
use crate::kafka::{self, Topics};
use armored_base::Shutdown;

/// What a started service holds.
#[derive(Clone)]
pub struct Base {
    /// Topic names.
    pub topics: Topics,
    /// Producer (acks=all, idempotent).
    pub producer: kafka::AtProducer,
    /// Dead-letter writer.
    pub dlq: DeadLetters,
    /// Set once the service is ready.
    pub health: Health,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base(metrics at {})", self.metrics_addr)
    }
}

/// Starts the common parts of service `name`.
pub async fn start(
    name: &'static str,
    kafka: &KafkaConfig,
    metrics_addr: SocketAddr,
    registry: Registry,
    dead_letters: IntCounterVec,
    shutdown: &Shutdown,
) -> Result<Base, StartError> {
    kafka::wait_for_broker(kafka)?;
    let health = Health::default();
    let addr = crate::http::serve(metrics_addr, registry, health.clone(), shutdown.clone()).await?;
    tracing::info!(service = name, %addr, "metrics at /metrics");
    let topics = Topics::new(&kafka.topic_prefix);
    let producer = kafka::producer(kafka)?;
    let dlq = DeadLetters::new(producer.clone(), topics.dlq(), dead_letters, name);
    Ok(Base {
        topics,
        producer,
        dlq,
        health,
        metrics_addr: addr,
    })
}

/// Runs a service's consumer group until `shutdown`, then flushes the producer. An output that
/// could not be acknowledged ends the service with an error (nothing was committed past it).
pub async fn consume(
    name: &'static str,
    base: &Base,
    kafka: &KafkaConfig,
    spec: crate::pipeline::GroupSpec,
    metrics: crate::pipeline::GroupMetrics,
    handler: impl Into<crate::pipeline::Handling>,
    shutdown: Shutdown,
) -> Result<(), crate::pipeline::PipelineError> {
    base.health.set(true);
    let r = crate::pipeline::run_group(kafka, spec, metrics, handler, shutdown).await;
    kafka::flush(&base.producer);
    r?;
    tracing::info!(service = name, "stopped");
    Ok(())
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The broker is unreachable or a client could not be made.
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSetupError),
    /// The metrics address could not be bound.
    #[error("cannot serve /metrics: {0}")]
    Http(#[from] std::io::Error),
}
