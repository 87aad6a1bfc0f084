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

use crate::topics::table_retention;
pub use crate::topics::Topics;
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

/// Settings common to every client.
pub fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("socket.timeout.ms", "10000")
        // Metadata (leaders and their epochs) refreshed every 10 s instead of 5 min: after a broker
        // restart a client holding a stale leader epoch was refused (FENCED_LEADER_EPOCH) and some
        // partitions of a group stopped being fetched until the next refresh.
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("log_level", "4");
    if let Some(s) = &cfg.sasl {
        c.set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", &s.password)
            .set("ssl.ca.location", &s.ca_file);
    }
    c
}

/// The producer of every service and tool: a librdkafka producer (it derefs to one) that keeps
/// the settings it was made with, so that [`enqueue`] can send through a fresh producer when this
/// one is wedged (see [`MESSAGE_TIMEOUT_MS`]).
#[derive(Clone)]
pub struct AtProducer {
    inner: FutureProducer,
    shared: std::sync::Arc<ProducerShared>,
}

struct ProducerShared {
    cfg: KafkaConfig,
    replacement: std::sync::Mutex<Option<AtProducer>>,
}

impl std::fmt::Debug for AtProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AtProducer({})", self.shared.cfg.brokers)
    }
}

impl std::ops::Deref for AtProducer {
    type Target = FutureProducer;
    fn deref(&self) -> &FutureProducer {
        &self.inner
    }
}

impl AtProducer {
    /// The producer that takes over records this one could not deliver in time (made once).
    fn replacement(&self) -> Result<AtProducer, KafkaSetupError> {
        let mut r = self
            .shared
            .replacement
            .lock()
            .map_err(|_| KafkaSetupError::Client(KafkaError::Canceled))?;
        if let Some(p) = r.as_ref() {
            return Ok(p.clone());
        }
        tracing::warn!("a record timed out twice in the client: sending through a new producer");
        let p = producer(&self.shared.cfg)?;
        *r = Some(p.clone());
        Ok(p)
    }
}

/// An idempotent producer that acknowledges only after the broker has the write.
/// `AT_RDKAFKA_PRODUCER_DEBUG` (e.g. `eos,msg,broker`) turns on librdkafka's debug log for producers.
pub fn producer(cfg: &KafkaConfig) -> Result<AtProducer, KafkaSetupError> {
    let mut c = base_config(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string())
        .set("max.in.flight.requests.per.connection", "1")
        .set("message.max.bytes", "1000000");
    if let Ok(debug) = std::env::var("AT_RDKAFKA_PRODUCER_DEBUG") {
        c.set("debug", debug).set("log_level", "7");
    }
    Ok(AtProducer {
        inner: c.create()?,
        shared: std::sync::Arc::new(ProducerShared {
            cfg: cfg.clone(),
            replacement: std::sync::Mutex::new(None),
        }),
    })
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

/// Creates `topics` (name, partitions); an existing topic is fine. Like `infra/topics.sh`: the
/// broker's default replication factor (1 on one node, 3 on the three-node cluster, where
/// `min.insync.replicas=2`), `cleanup.policy=delete` (the folded control topics must keep every
/// record: compaction would drop what first-writer-wins and sticky revocations depend on), and the
/// table's `retention.ms` for the topics of `infra/topics.tsv` (others: the broker's default).
pub async fn create_topics(
    cfg: &KafkaConfig,
    topics: &[(String, i32)],
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = base_config(cfg).create()?;
    let retention: Vec<Option<String>> = topics
        .iter()
        .map(|(n, _)| table_retention(n).map(|r| r.to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&retention)
        .map(|((n, p), r)| {
            // -1: the broker's default.replication.factor (KIP-464).
            let t =
                NewTopic::new(n, *p, TopicReplication::Fixed(-1)).set("cleanup.policy", "delete");
            match r {
                Some(r) => t.set("retention.ms", r),
                None => t,
            }
        })
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
    wait_for_leaders(&admin, cfg, topics).await
}

/// Waits until the metadata lists every partition of `topics` with a leader. Kafka answers
/// CreateTopics once the controller has the topic, before every broker's metadata has it: a
/// client that looks a partition up at once may not find it.
async fn wait_for_leaders(
    admin: &AdminClient<DefaultClientContext>,
    cfg: &KafkaConfig,
    topics: &[(String, i32)],
) -> Result<(), KafkaSetupError> {
    let deadline = std::time::Instant::now() + Duration::from_millis(cfg.connect_timeout_ms);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(None, Duration::from_millis(cfg.connect_timeout_ms))?;
        let missing = topics.iter().find(|(name, partitions)| {
            !md.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && t.partitions().len() == *partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        });
        let Some((name, _)) = missing.or_else(|| not_served(cfg, topics)) else {
            return Ok(());
        };
        if std::time::Instant::now() >= deadline {
            return Err(KafkaSetupError::Unreachable {
                brokers: cfg.brokers.clone(),
                timeout_ms: cfg.connect_timeout_ms,
                detail: format!("topic {name} created but its partitions have no leader yet"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first of `topics` whose leader does not answer a ListOffsets for every partition yet (the
/// metadata may name a leader a little before that broker serves the partition: a consumer that
/// asks it then gets NOT_LEADER_FOR_PARTITION).
fn not_served<'a>(cfg: &KafkaConfig, topics: &'a [(String, i32)]) -> Option<&'a (String, i32)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let probe: BaseConsumer = base_config(cfg).create().ok()?;
    topics.iter().find(|(name, partitions)| {
        let mut tpl = TopicPartitionList::new();
        for p in 0..*partitions {
            if tpl.add_partition_offset(name, p, Offset::End).is_err() {
                return true;
            }
        }
        match probe.offsets_for_times(tpl, Duration::from_secs(5)) {
            Ok(answer) => answer.elements().iter().any(|e| e.error().is_err()),
            Err(_) => true,
        }
    })
}

/// Deletes every topic whose name starts with `prefix` (a test's or a benchmark run's topics: a Kafka
/// broker keeps files and memory for every partition). An empty prefix is refused.
pub async fn delete_topics_with_prefix(
    cfg: &KafkaConfig,
    prefix: &str,
) -> Result<usize, KafkaSetupError> {
    if prefix.is_empty() {
        return Err(KafkaSetupError::Client(KafkaError::AdminOpCreation(
            "refusing to delete every topic (empty prefix)".into(),
        )));
    }
    let admin: AdminClient<DefaultClientContext> = base_config(cfg).create()?;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_millis(cfg.connect_timeout_ms))?;
    let names: Vec<&str> = md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| n.starts_with(prefix))
        .collect();
    if names.is_empty() {
        return Ok(0);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(&names, &opts).await? {
        if let Err((name, code)) = r {
            tracing::warn!(topic = %name, %code, "topic deletion failed");
            if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                return Err(KafkaSetupError::Client(KafkaError::AdminOp(code)));
            }
        }
    }
    Ok(names.len())
}

/// An output waiting for its broker's acknowledgement (Kafka or MQTT); the error says why it failed.
pub type Ack = futures::future::BoxFuture<'static, Result<(), AckError>>;

/// Why an output (or the handling of a record) was not acknowledged: the record is not done and
/// its offset is never committed.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The broker refused the write, or it timed out after every resend.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The producer that takes over timed-out records could not be made.
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    /// The client dropped the write before its broker answered.
    #[error("{0} did not acknowledge the write")]
    Unacknowledged(&'static str),
    /// A batch handler returned no outputs for this record.
    #[error("record not handled")]
    NotHandled,
    /// The service could not handle the record (e.g. it shut down while waiting for the control
    /// topics): its own typed error.
    #[error(transparent)]
    Service(Box<dyn std::error::Error + Send + Sync>),
}

impl AckError {
    /// A service's own reason for not finishing a record.
    pub fn service(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        AckError::Service(Box::new(e))
    }
}

/// An acknowledgement that has already failed with `e`.
pub fn failed(e: impl Into<AckError>) -> Ack {
    let e = e.into();
    Box::pin(async move { Err(e) })
}

/// How long librdkafka may hold a record before it gives up on it (librdkafka's default is 5 min).
/// Seen on a single broker's restart (librdkafka 2.12.1, Kafka 4.1.1, about one run in four): an
/// idempotent producer never completed the records of some partitions, and records sent again
/// through it timed out again every 30 s. [`enqueue`] sends a timed-out record again, from the
/// second time through a fresh producer (a new producer id and partition state).
pub const MESSAGE_TIMEOUT_MS: u32 = 30_000;
/// How often [`enqueue`] sends a timed-out record again before its acknowledgement fails.
const RESENDS: u32 = 20;

/// Enqueues one record (waiting while the local queue is full) and returns its acknowledgement.
/// A record that times out in the client (`message.timeout.ms`, e.g. while the broker is away) is
/// sent again, up to 20 times (`RESENDS`): at least once, so a copy may be stored, and receivers
/// de-duplicate; a record sent again may land after records sent later.
pub async fn enqueue(
    producer: &AtProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Ack {
    let first = match enqueue_once(producer, topic, key, payload, &headers).await {
        Ok(fut) => fut,
        Err(e) => return failed(e),
    };
    let (producer, topic, key, payload) = (
        producer.clone(),
        topic.to_string(),
        key.to_vec(),
        payload.to_vec(),
    );
    Box::pin(async move {
        let mut fut = first;
        let mut resends = 0;
        loop {
            match fut.await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)))
                    if resends < RESENDS =>
                {
                    resends += 1;
                    tracing::warn!(%topic, resends, "record timed out in the client; sending it again");
                    let via = if resends == 1 {
                        producer.clone()
                    } else {
                        producer.replacement()?
                    };
                    fut = enqueue_once(&via, &topic, &key, &payload, &headers).await?;
                }
                Ok(Err((e, _))) => return Err(AckError::Kafka(e)),
                Err(_) => return Err(AckError::Unacknowledged("the Kafka producer")),
            }
        }
    })
}

/// One send, waiting while the local queue is full.
async fn enqueue_once(
    producer: &AtProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: &Option<OwnedHeaders>,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    loop {
        let mut rec = FutureRecord::to(topic).key(key).payload(payload);
        if let Some(h) = headers.clone() {
            rec = rec.headers(h);
        }
        match producer.send_result(rec) {
            Ok(fut) => return Ok(fut),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Produces one record and waits for its acknowledgement.
pub async fn send(
    producer: &AtProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> Result<(), AckError> {
    enqueue(producer, topic, key, payload, None).await.await
}

/// Flushes a producer before exit.
pub fn flush(producer: &AtProducer) {
    let _ = producer.flush(Timeout::After(Duration::from_secs(10)));
}
