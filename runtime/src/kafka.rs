//! Kafka clients configured the way this system needs them (at-least-once, idempotent producer,
//! short fetch waits), topic names with the configured prefix, and broker/topic administration.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;

pub use armored_schemas::topics as names;

/// Errors talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// The broker did not answer a metadata request in time.
    #[error("Kafka broker at {brokers} unreachable within {timeout_ms} ms ({detail}); is it running? (infra/start.sh)")]
    Unreachable {
        /// Bootstrap servers.
        brokers: String,
        /// How long we waited.
        timeout_ms: u64,
        /// librdkafka's reason.
        detail: String,
    },
    /// A client could not be created or an admin call failed.
    #[error("Kafka: {0}")]
    Client(#[from] KafkaError),
}

/// Topic names with the configured prefix.
#[derive(Clone, Debug, Default)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (empty in production).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }
    /// `prefix + base`.
    pub fn name(&self, base: &str) -> String {
        format!("{}{}", self.prefix, base)
    }
    /// State changes.
    pub fn sync(&self) -> String {
        self.name(names::SYNC)
    }
    /// Deliveries.
    pub fn deliver(&self) -> String {
        self.name(names::DELIVER)
    }
    /// Re-key uploads and revocations.
    pub fn rekeys(&self) -> String {
        self.name(names::REKEYS)
    }
    /// Registry.
    pub fn registry(&self) -> String {
        self.name(names::REGISTRY)
    }
    /// Tokens.
    pub fn tokens(&self) -> String {
        self.name(names::TOKENS)
    }
    /// Dead letters.
    pub fn dlq(&self) -> String {
        self.name(names::DLQ)
    }
    /// Requests.
    pub fn requests(&self) -> String {
        self.name(names::REQUESTS)
    }
    /// Responses.
    pub fn responses(&self) -> String {
        self.name(names::RESPONSES)
    }
    /// Control records.
    pub fn control(&self) -> String {
        self.name(names::CONTROL)
    }
    /// Share topic of MPC node `j`.
    pub fn mpc_shares(&self, j: u32) -> String {
        self.name(&names::mpc_shares(j))
    }
    /// Every topic of DESIGN's table with its partition count (one source with `infra/topics.tsv`).
    pub fn all(&self) -> Vec<(String, i32)> {
        let mut v = vec![
            (self.sync(), 12),
            (self.requests(), 6),
            (self.responses(), 6),
            (self.deliver(), 12),
            (self.name(names::MPC_JOBS), 1),
            (self.name(names::MPC_PEER), 3),
            (self.name(names::MPC_RESULTS), 3),
            (self.rekeys(), 1),
            (self.registry(), 1),
            (self.tokens(), 1),
            (self.control(), 3),
            (self.dlq(), 3),
        ];
        for j in 1..=3 {
            v.push((self.mpc_shares(j), 6));
        }
        v
    }
}

/// Settings common to every client.
pub fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    c
}

/// An idempotent producer that acknowledges only after the broker has the write.
pub fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, KafkaSetupError> {
    Ok(base_config(cfg)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("message.max.bytes", "1000000")
        .create()?)
}

/// Fails fast with a clear message when the broker does not answer.
pub fn wait_for_broker(cfg: &KafkaConfig) -> Result<(), KafkaSetupError> {
    let p: FutureProducer = base_config(cfg).create()?;
    p.client()
        .fetch_metadata(None, Duration::from_millis(cfg.connect_timeout_ms))
        .map(|_| ())
        .map_err(|e| KafkaSetupError::Unreachable {
            brokers: cfg.brokers.clone(),
            timeout_ms: cfg.connect_timeout_ms,
            detail: e.to_string(),
        })
}

/// Creates `topics` (name, partitions); an existing topic is fine.
pub async fn create_topics(cfg: &KafkaConfig, topics: &[(String, i32)]) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = base_config(cfg).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics(new.iter(), &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaSetupError::Client(KafkaError::AdminOp(code))).map_err(|e| {
                    tracing::error!(topic = %name, "topic creation failed");
                    e
                })
            }
        }
    }
    Ok(())
}

/// An output waiting for its broker's acknowledgement (Kafka or MQTT); the error says why it failed.
pub type Ack = futures::future::BoxFuture<'static, Result<(), String>>;

/// Enqueues one record (waiting while the local queue is full) and returns its acknowledgement.
pub async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Ack {
    loop {
        let mut rec = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(h) = headers.clone() {
            rec = rec.headers(h);
        }
        match producer.send_result(rec) {
            Ok(fut) => {
                return Box::pin(async move {
                    match fut.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e.to_string()),
                        Err(_) => Err("producer dropped the record".to_string()),
                    }
                })
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                let e = e.to_string();
                return Box::pin(async move { Err(e) });
            }
        }
    }
}

/// Produces one record and waits for its acknowledgement.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> Result<(), String> {
    enqueue(producer, topic, key, payload, None).await.await
}

/// Flushes a producer before exit.
pub fn flush(producer: &FutureProducer) {
    let _ = producer.flush(Timeout::After(Duration::from_secs(10)));
}
