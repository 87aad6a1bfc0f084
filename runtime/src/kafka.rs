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

/// The producer of every service and tool: a librdkafka producer that keeps the settings it was
/// made with, so that [`enqueue`] can replace it for everyone when it is wedged (see
/// [`MESSAGE_TIMEOUT_MS`]). Clones share it, and its replacement.
#[derive(Clone)]
pub struct AtProducer {
    shared: std::sync::Arc<ProducerShared>,
}

struct ProducerShared {
    cfg: KafkaConfig,
    active: std::sync::Mutex<Generation>,
    /// Replaced producers, kept until the process ends: dropping one would wait for (or cancel) the
    /// records it still holds, which time out and are sent again through the active one.
    retired: std::sync::Mutex<Vec<FutureProducer>>,
}

/// A producer and its number (0: the first, n: the n-th replacement).
#[derive(Clone)]
struct Generation {
    n: u32,
    producer: FutureProducer,
}

/// At most this many replacements per producer (then the last one stays).
const MAX_REPLACEMENTS: u32 = 8;

impl std::fmt::Debug for AtProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AtProducer({})", self.shared.cfg.brokers)
    }
}

impl AtProducer {
    fn generation(&self) -> Result<Generation, KafkaSetupError> {
        self.shared
            .active
            .lock()
            .map(|g| g.clone())
            .map_err(|_| KafkaSetupError::Client(KafkaError::Canceled))
    }

    /// The producer sends go through now: the first one, or the one that replaced it.
    pub fn active(&self) -> Result<FutureProducer, KafkaSetupError> {
        Ok(self.generation()?.producer)
    }

    /// Replaces generation `wedged` (a record timed out twice through it) for every later send,
    /// unless another record replaced it already; returns the generation to send through.
    fn replace(&self, wedged: u32) -> Result<Generation, KafkaSetupError> {
        let mut g = self
            .shared
            .active
            .lock()
            .map_err(|_| KafkaSetupError::Client(KafkaError::Canceled))?;
        if g.n != wedged || g.n >= MAX_REPLACEMENTS {
            return Ok(g.clone());
        }
        tracing::warn!(
            replacement = g.n + 1,
            "a record timed out twice in the client: the producer is replaced for every later record"
        );
        let new = Generation {
            n: g.n + 1,
            producer: raw_producer(&self.shared.cfg)?,
        };
        let old = std::mem::replace(&mut *g, new);
        if let Ok(mut r) = self.shared.retired.lock() {
            r.push(old.producer);
        }
        Ok(g.clone())
    }
}

/// An idempotent producer that acknowledges only after the broker has the write.
/// `AT_RDKAFKA_PRODUCER_DEBUG` (e.g. `eos,msg,broker`) turns on librdkafka's debug log for producers.
pub fn producer(cfg: &KafkaConfig) -> Result<AtProducer, KafkaSetupError> {
    Ok(AtProducer {
        shared: std::sync::Arc::new(ProducerShared {
            cfg: cfg.clone(),
            active: std::sync::Mutex::new(Generation {
                n: 0,
                producer: raw_producer(cfg)?,
            }),
            retired: std::sync::Mutex::new(Vec::new()),
        }),
    })
}

fn raw_producer(cfg: &KafkaConfig) -> Result<FutureProducer, KafkaSetupError> {
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
    Ok(c.create()?)
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
/// through it timed out again every 30 s. [`enqueue`] sends a timed-out record again; a record that
/// times out a second time replaces the producer for every later record (a new producer id and
/// partition state). Before, only the timed-out records went through a new producer, and every new
/// record still waited out two timeouts in the wedged one: a CI run delivered a few records a
/// minute for as long as it ran.
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
    let mut via = match producer.generation() {
        Ok(g) => g,
        Err(e) => return failed(e),
    };
    let first = match enqueue_once(&via.producer, topic, key, payload, &headers).await {
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
                    // Once (the broker may have been away): the same producer, or the one that
                    // replaced it meanwhile. Twice: this one is wedged.
                    via = if resends == 1 {
                        producer.generation()?
                    } else {
                        producer.replace(via.n)?
                    };
                    fut = enqueue_once(&via.producer, &topic, &key, &payload, &headers).await?;
                }
                Ok(Err((e, _))) => return Err(AckError::Kafka(e)),
                Err(_) => return Err(AckError::Unacknowledged("the Kafka producer")),
            }
        }
    })
}

/// One send, waiting while the local queue is full.
async fn enqueue_once(
    producer: &FutureProducer,
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
    if let Ok(p) = producer.active() {
        let _ = p.flush(Timeout::After(Duration::from_secs(10)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wedged_producer_is_replaced_once_for_everyone() -> Result<(), KafkaSetupError> {
        // librdkafka connects lazily: no broker is needed to make producers.
        let cfg = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            topic_prefix: String::new(),
            session_timeout_ms: 6000,
            linger_ms: 0,
            fetch_wait_max_ms: 10,
            connect_timeout_ms: 1000,
            sasl: None,
        };
        let p = producer(&cfg)?;
        let clone = p.clone();
        assert_eq!(p.generation()?.n, 0);
        assert_eq!(p.replace(0)?.n, 1);
        // A second record that timed out in generation 0 sends through 1, without replacing it.
        assert_eq!(clone.replace(0)?.n, 1);
        assert_eq!(
            clone.generation()?.n,
            1,
            "clones send through the replacement"
        );
        for _ in 0..2 * MAX_REPLACEMENTS {
            let n = p.generation()?.n;
            p.replace(n)?;
        }
        assert_eq!(
            p.generation()?.n,
            MAX_REPLACEMENTS,
            "replacements are bounded"
        );
        let retired = p.shared.retired.lock().map(|r| r.len()).unwrap_or(0);
        assert_eq!(retired as u32, MAX_REPLACEMENTS);
        Ok(())
    }
}
