//! Dead letters: a record that cannot be processed goes to `at.dlq.v1` with a typed reason and its
//! source as headers, and the reason's counter is incremented; the service carries on.

use armored_schemas::Refusal;
use prometheus::IntCounterVec;
use rdkafka::message::{Header, OwnedHeaders};

use crate::kafka::{enqueue, Ack};
use armored_base::log_limit::LogLimit;

/// Where a dead letter came from.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// Topic (Kafka) or MQTT topic.
    pub topic: &'a str,
    /// Partition (-1 for MQTT).
    pub partition: i32,
    /// Offset (-1 for MQTT).
    pub offset: i64,
    /// Key of the dead letter record (the source key).
    pub key: &'a [u8],
}

/// Writer of dead letters.
#[derive(Clone)]
pub struct DeadLetters {
    producer: crate::kafka::AtProducer,
    topic: String,
    counter: IntCounterVec,
    service: &'static str,
    /// Dead letters come from hostile input: the log gets a few a second, the counter and the
    /// topic get every one.
    log_limit: std::sync::Arc<LogLimit>,
}

/// Dead letters logged per second and service.
const LOGGED_PER_SECOND: u32 = 10;

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadLetters({})", self.topic)
    }
}

impl DeadLetters {
    /// Dead letters of `service` to `topic`, counted in `counter` (label `reason`).
    pub fn new(
        producer: crate::kafka::AtProducer,
        topic: String,
        counter: IntCounterVec,
        service: &'static str,
    ) -> Self {
        Self {
            producer,
            topic,
            counter,
            service,
            log_limit: std::sync::Arc::new(LogLimit::new(LOGGED_PER_SECOND)),
        }
    }

    /// Writes `payload` as a dead letter refused for `why`: its bounded label goes to the counter and
    /// the `at-reason` header, its message to `at-detail`. Every service's dead-letter path goes
    /// through here.
    ///
    /// Not an `async fn`: the label and message are taken before the future starts, so the future
    /// does not hold `why` and stays `Send` (a `&dyn Refusal` is not).
    pub fn refuse<'a>(
        &'a self,
        why: &dyn Refusal,
        src: &'a Source<'a>,
        payload: &'a [u8],
    ) -> impl std::future::Future<Output = Ack> + Send + 'a {
        self.send(why.reason(), why.to_string(), src, payload)
    }

    /// Writes `payload` as a dead letter with `reason` (a bounded label) and `detail` (an error
    /// message: our errors never contain secrets or plaintext).
    async fn send(
        &self,
        reason: &'static str,
        detail: String,
        src: &Source<'_>,
        payload: &[u8],
    ) -> Ack {
        let detail = detail.as_str();
        self.counter.with_label_values(&[reason]).inc();
        if let Some(suppressed) = self.log_limit.admit(std::time::Instant::now()) {
            tracing::warn!(
                service = self.service,
                reason,
                detail,
                topic = src.topic,
                partition = src.partition,
                offset = src.offset,
                suppressed,
                "dead letter"
            );
        }
        let partition = src.partition.to_string();
        let offset = src.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "at-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "at-detail",
                value: Some(detail),
            })
            .insert(Header {
                key: "at-service",
                value: Some(self.service),
            })
            .insert(Header {
                key: "at-source-topic",
                value: Some(src.topic),
            })
            .insert(Header {
                key: "at-source-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "at-source-offset",
                value: Some(&offset),
            });
        // Cap what we copy: an oversized payload is itself a reason for dead-lettering.
        let body = &payload[..payload.len().min(512 * 1024)];
        enqueue(&self.producer, &self.topic, src.key, body, Some(headers)).await
    }
}
