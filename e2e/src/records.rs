//! What a test reads back from its topics, each read from the beginning to the end it has now:
//! every record, the dead letters with their headers, and waits for either.

use std::time::{Duration, Instant};

use anyhow::bail;
use armored_runtime::config::KafkaConfig;
use armored_runtime::pipeline::Inbound;

use crate::env::Env;

/// A dead-letter record.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// `at-reason` header.
    pub reason: String,
    /// `at-service` header.
    pub service: String,
    /// `at-source-topic` header.
    pub source_topic: String,
    /// Record key.
    pub key: Vec<u8>,
    /// The refused bytes.
    pub payload: Vec<u8>,
}

impl Env {
    /// Dead letters written so far (reason, source key, payload), reading the DLQ topic to its end.
    pub fn dead_letters(&self) -> anyhow::Result<Vec<DeadLetter>> {
        read_all(&self.kafka, &self.topics.dlq())?
            .into_iter()
            .map(
                |Inbound {
                     key,
                     payload,
                     headers,
                     ..
                 }| {
                    let h = |n: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k == n)
                            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    };
                    Ok(DeadLetter {
                        reason: h("at-reason").unwrap_or_default(),
                        service: h("at-service").unwrap_or_default(),
                        source_topic: h("at-source-topic").unwrap_or_default(),
                        key: key.unwrap_or_default(),
                        payload,
                    })
                },
            )
            .collect()
    }

    /// Waits until `pred` holds for the dead letters, or fails after `timeout`.
    pub async fn wait_dead_letter(
        &self,
        timeout: Duration,
        pred: impl Fn(&DeadLetter) -> bool,
    ) -> anyhow::Result<DeadLetter> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(d) = self.dead_letters()?.into_iter().find(|d| pred(d)) {
                return Ok(d);
            }
            if Instant::now() > deadline {
                bail!(
                    "no matching dead letter within {timeout:?}; have {:?}",
                    self.dead_letters()?
                        .iter()
                        .map(|d| d.reason.clone())
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every record on `topic` (key, payload).
    pub fn records(&self, topic: &str) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(read_all(&self.kafka, topic)?
            .into_iter()
            .map(|r| (r.key.unwrap_or_default(), r.payload))
            .collect())
    }

    /// The records on `topic` once it holds at least `n`, or what it holds after `timeout`: the
    /// caller's assertions say what was missing.
    pub async fn wait_records(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let recs = self.records(topic)?;
            if recs.len() >= n || Instant::now() > deadline {
                return Ok(recs);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every record on `topic`, with where it is.
    pub fn located(&self, topic: &str) -> anyhow::Result<Vec<Inbound>> {
        read_all(&self.kafka, topic)
    }
}

fn read_all(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<Inbound>> {
    Ok(armored_runtime::reader::read_to_end(
        kafka,
        topic,
        Duration::from_secs(20),
    )?)
}
