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
    /// `at.mpc.jobs.v1`.
    pub fn mpc_jobs(&self) -> String {
        self.name(names::MPC_JOBS)
    }
    /// `at.mpc.peer.v1`.
    pub fn mpc_peer(&self) -> String {
        self.name(names::MPC_PEER)
    }
    /// `at.mpc.results.v1`.
    pub fn mpc_results(&self) -> String {
        self.name(names::MPC_RESULTS)
    }
    /// Every topic of DESIGN's table with its partition count, from `infra/topics.tsv` (the one
    /// list the scripts use too).
    pub fn all(&self) -> Vec<(String, i32)> {
        TOPICS_TSV
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut cols = l.split('\t');
                let name = cols.next()?;
                let partitions = cols.next()?.trim().parse().ok()?;
                Some((self.name(name), partitions))
            })
            .collect()
    }
}

const TOPICS_TSV: &str = include_str!("../../infra/topics.tsv");

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
pub async fn create_topics(
    cfg: &KafkaConfig,
    topics: &[(String, i32)],
) -> Result<(), KafkaSetupError> {
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
                tracing::error!(topic = %name, "topic creation failed");
                return Err(KafkaSetupError::Client(KafkaError::AdminOp(code)));
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

/// Reads every record of `topic` from its beginning to the end offsets it has now (tools, tests,
/// the demo's raw reader). No consumer group is joined and nothing is committed.
pub fn read_to_end(
    cfg: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<crate::pipeline::Inbound>, KafkaSetupError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = base_config(cfg)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
        if hi > lo {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))?;
            ends.insert(p.id(), hi);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    while !ends.is_empty() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let rec = crate::pipeline::Inbound::from_message(&m);
            if ends
                .get(&rec.partition)
                .is_some_and(|hi| rec.offset + 1 >= *hi)
            {
                ends.remove(&rec.partition);
            }
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_from_the_table_with_the_prefix() {
        let all = Topics::new("t1.").all();
        assert_eq!(all.len(), 15);
        assert!(all.contains(&("t1.at.sync.v1".to_string(), 12)));
        assert!(all.contains(&("t1.at.mpc.jobs.v1".to_string(), 1)));
        assert!(all.contains(&(Topics::new("t1.").mpc_shares(3), 6)));
    }
}
