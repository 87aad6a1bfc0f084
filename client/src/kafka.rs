//! The Kafka side of `atctl`: configuration from `AT__KAFKA__…` (or flags), a producer, and folding
//! the registry once.

use std::time::{Duration, Instant};

use armored_base::Shutdown;
use armored_crypto::registry::Registry;
use armored_runtime::config::{KafkaConfig, KAFKA_DEFAULTS};
use armored_runtime::kafka::{self, Topics};
use serde::Deserialize;

use crate::error::{KafkaError, Result};

#[derive(Deserialize)]
struct Wrapper {
    kafka: KafkaConfig,
}

/// The local brokers' principal (infra/) of an owner's tool.
pub const OWNER_PRINCIPAL: &str = "at-owner";

/// The local brokers' principal of an operator's tool (`atctl dlq`): reads the dead letters, and
/// re-drives them to the topics records come from (never deliveries, shares or peer messages).
pub const OPERATOR_PRINCIPAL: &str = "at-operator";

/// The local brokers' principal of service `id` (`infra/kafka-acl.sh --service ID PREFIX` signs it
/// up): only its own consumer group `svc-<id>`, no registry, re-key or token writes.
pub fn service_principal(id: &str) -> String {
    format!("at-service-{id}")
}

/// Whether the brokers refused this client by its ACLs or its credentials (final, unlike the
/// transient errors a consumer logs and retries).
pub fn is_refusal(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::GroupAuthorizationFailed
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
        )
    )
}

/// The principal `kafka` signs in as, for messages.
pub fn principal_of(kafka: &KafkaConfig) -> String {
    kafka
        .sasl
        .as_ref()
        .map_or_else(|| "no principal".into(), |s| s.username.clone())
}

/// A connected `atctl`: configuration, topics, producer.
#[derive(Clone)]
pub struct Ctl {
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: Topics,
    /// Producer (acks=all, idempotent).
    pub producer: kafka::AtProducer,
}

impl std::fmt::Debug for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ctl({})", self.kafka.brokers)
    }
}

impl Ctl {
    /// Loads `[kafka]` from defaults, `AT_CONFIG` and the environment, applies the overrides, and
    /// checks that the broker answers. Unless `[kafka.sasl]` is configured, signs in as `principal`
    /// of the local brokers ([`OWNER_PRINCIPAL`] or [`service_principal`]).
    pub fn connect(
        brokers: Option<&str>,
        topic_prefix: Option<&str>,
        principal: &str,
    ) -> Result<Self> {
        let mut kafka = armored_runtime::config::load::<Wrapper>(KAFKA_DEFAULTS, None)
            .map_err(KafkaError::from)?
            .kafka;
        if let Some(b) = brokers {
            kafka.brokers = b.to_string();
        }
        if let Some(p) = topic_prefix {
            kafka.topic_prefix = p.to_string();
        }
        if kafka.sasl.is_none() {
            match kafka.as_local_principal(principal) {
                Ok(signed_in) => kafka = signed_in,
                // Plaintext, for a cluster without authentication; infra/'s brokers refuse it.
                Err(e) => tracing::warn!(
                    "{e}; connecting without authentication (a service's principal is signed up by \
                     infra/kafka-acl.sh --service ID PREFIX)"
                ),
            }
        }
        Self::with_config(kafka)
    }

    /// A client for an explicit configuration.
    pub fn with_config(kafka: KafkaConfig) -> Result<Self> {
        kafka::wait_for_broker(&kafka)?;
        Ok(Self {
            topics: Topics::new(&kafka.topic_prefix),
            producer: kafka::producer(&kafka)?,
            kafka,
        })
    }

    /// Writes one record and waits for the broker's acknowledgement.
    pub async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<()> {
        self.send_with_headers(topic, key.as_bytes(), payload, None)
            .await
    }

    /// Writes one record with `headers` and waits for the broker's acknowledgement.
    pub async fn send_with_headers(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: Option<rdkafka::message::OwnedHeaders>,
    ) -> Result<()> {
        kafka::enqueue(&self.producer, topic, key, payload, headers)
            .await
            .await
            .map_err(|reason| {
                KafkaError::NotAcknowledged {
                    topic: topic.to_string(),
                    reason,
                }
                .into()
            })
    }

    /// Folds the registry up to its current end.
    pub async fn registry(&self) -> Result<Registry> {
        let stop = Shutdown::new();
        let (shared, f) = armored_runtime::registry::follow(
            &self.kafka,
            &self.topics.registry(),
            stop.clone(),
            |_, _| {},
        )?;
        f.synced_since(Instant::now(), Duration::from_secs(30))
            .await
            .map_err(KafkaError::Registry)?;
        stop.cancel();
        let r = shared.read().map_err(|_| KafkaError::Poisoned)?.clone();
        Ok(r)
    }
}

/// Payloads of every record on `topic` (the demo's raw reader).
pub fn read_topic(ctl: &Ctl, topic: &str) -> Result<Vec<Vec<u8>>> {
    Ok(
        armored_runtime::reader::read_to_end(&ctl.kafka, topic, Duration::from_secs(20))?
            .into_iter()
            .map(|r| r.payload)
            .collect(),
    )
}

/// Follows every partition of a topic from its beginning, without a consumer group: each
/// [`Tail::poll`] returns the payloads that arrived since the last one (collecting results as they
/// come, instead of re-reading the whole topic).
pub struct Tail {
    consumer: rdkafka::consumer::BaseConsumer,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tail")
    }
}

impl Tail {
    /// Starts at the beginning of `topic`, or at its current end (`from_end`: only what is
    /// written from now on).
    pub fn new(ctl: &Ctl, topic: &str, from_end: bool) -> Result<Self> {
        use armored_runtime::reader::{groupless_config, Assignment, Start};
        let consumer: rdkafka::consumer::BaseConsumer = groupless_config(&ctl.kafka)
            .set("fetch.wait.max.ms", "5")
            .create()?;
        let start = if from_end {
            Start::End
        } else {
            Start::Beginning
        };
        let timeout = Duration::from_millis(ctl.kafka.connect_timeout_ms);
        let mut a = Assignment::new();
        a.add(&consumer, topic, None, start, timeout)?;
        if a.is_empty() {
            return Err(KafkaError::NoPartitions {
                topic: topic.to_string(),
                hint: "",
            }
            .into());
        }
        a.assign(&consumer)?;
        Ok(Self { consumer })
    }

    /// The payloads that arrive within `wait` (returns as soon as something came, with what is
    /// already there; `Duration::ZERO` never blocks).
    pub fn poll(&self, wait: Duration) -> Vec<Vec<u8>> {
        use rdkafka::Message;
        let mut out = Vec::new();
        let mut timeout = wait;
        // Bounded: a topic written faster than it is read still returns.
        while out.len() < 10_000 {
            let Some(r) = self.consumer.poll(timeout) else {
                break;
            };
            if let Ok(m) = r {
                out.push(m.payload().unwrap_or_default().to_vec());
            }
            timeout = Duration::ZERO;
        }
        out
    }
}
