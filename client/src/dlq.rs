//! Dead letters for operators (`atctl dlq`): read `at.dlq.v1` with filters, show one with what can
//! be decoded without keys, count by reason, and re-drive chosen records to their source topic.
//!
//! A re-drive writes the dead letter's key and payload back to its source topic (header
//! `at-redrive-of: <partition>:<offset>`), then records it on the DLQ itself as a marker record
//! (header `at-kind: redrive`), which listings skip and use to mark the dead letter re-driven. A dead
//! letter already marked is not re-driven again. Two operators re-driving the same record at the same
//! moment can both write it: receivers de-duplicate by (twin, writer key, seq) anyway.

use std::time::Duration;

use armored_runtime::pipeline::Inbound;
use armored_runtime::reader::{ReadOptions, TopicReader};
use armored_schemas::Refusal;
use rdkafka::message::{Header, OwnedHeaders};
use serde::Serialize;

use crate::error::{ClientError, KafkaError, Result};
use crate::kafka::Ctl;

/// Header of a re-drive marker on the DLQ, and of a re-driven record on its source topic.
const REDRIVE_OF: &str = "at-redrive-of";
/// The kind header of a re-drive marker.
const KIND: &str = "at-kind";
/// The dead-letter writer keeps at most this much of a payload (runtime/src/dlq.rs): a payload of
/// exactly this size may be cut, and is never re-driven.
const KEPT_PAYLOAD: usize = 512 * 1024;

/// One dead letter as read from the DLQ.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// When it was dead-lettered (broker time, ms).
    pub time_ms: Option<i64>,
    /// Refusing service (`ingest`, `reencrypt`, `mpc-node`).
    pub service: String,
    /// Bounded reason label.
    pub reason: String,
    /// The error message.
    pub detail: String,
    /// Where it came from: a Kafka topic or an MQTT topic.
    pub source_topic: String,
    /// Source partition (-1: MQTT).
    pub source_partition: i32,
    /// Source offset (-1: MQTT).
    pub source_offset: i64,
    /// Source key (the twin id on the state-change topics), lossy UTF-8.
    pub key: String,
    /// Payload size.
    pub bytes: usize,
    /// Set when it was re-driven: the marker's DLQ `partition:offset`.
    pub redriven_by: Option<String>,
    /// The refused bytes (not printed in listings).
    #[serde(skip)]
    pub payload: Vec<u8>,
    #[serde(skip)]
    raw_key: Vec<u8>,
}

impl DeadLetter {
    /// `partition:offset`, how the commands name a dead letter.
    pub fn id(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }
}

/// Which dead letters to keep (all set conditions hold).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Reason label.
    pub reason: Option<String>,
    /// Refusing service.
    pub service: Option<String>,
    /// Dead-lettered at or after (ms).
    pub since_ms: Option<u64>,
    /// Dead-lettered before (ms).
    pub until_ms: Option<u64>,
    /// Twin: the record key or the decoded envelope header's twin.
    pub twin: Option<String>,
}

impl Filter {
    fn keeps(&self, d: &DeadLetter) -> bool {
        let time = d.time_ms.and_then(|t| u64::try_from(t).ok());
        self.reason.as_ref().is_none_or(|r| *r == d.reason)
            && self.service.as_ref().is_none_or(|s| *s == d.service)
            && self.since_ms.is_none_or(|s| time.is_some_and(|t| t >= s))
            && self.until_ms.is_none_or(|u| time.is_some_and(|t| t < u))
            && self.twin.as_ref().is_none_or(|t| {
                d.key == *t || decode(&d.payload).twin.as_deref() == Some(t.as_str())
            })
    }
}

fn header(m: &Inbound, name: &str) -> String {
    m.header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Reads the whole DLQ (to the end it has now), reporting `(read, total)` as it goes; returns the
/// dead letters `filter` keeps, oldest first per partition, each marked if it was re-driven.
pub fn read(
    ctl: &Ctl,
    filter: &Filter,
    mut progress: impl FnMut(u64, u64),
) -> Result<Vec<DeadLetter>> {
    let opts = ReadOptions {
        // A stall, not a deadline: a long DLQ takes as long as it takes, with progress.
        stall: Some(Duration::from_secs(30)),
        ..ReadOptions::default()
    };
    let reader =
        TopicReader::open(&ctl.kafka, &ctl.topics.dlq(), opts).map_err(KafkaError::from)?;
    let total = reader.total();
    let (mut letters, mut markers) = (Vec::new(), std::collections::HashMap::new());
    let mut n = 0u64;
    for r in reader {
        let m = match r {
            Ok(m) => m,
            Err(e) if e.is_final() => {
                return Err(ClientError::Dlq(format!(
                    "reading {}: {e}",
                    ctl.topics.dlq()
                )))
            }
            Err(_) => continue,
        };
        n += 1;
        if n % 256 == 0 || n == total {
            progress(n, total);
        }
        if header(&m, KIND) == "redrive" {
            markers.insert(
                header(&m, REDRIVE_OF),
                format!("{}:{}", m.partition, m.offset),
            );
            continue;
        }
        letters.push(DeadLetter {
            partition: m.partition,
            offset: m.offset,
            time_ms: m.timestamp_ms,
            service: header(&m, "at-service"),
            reason: header(&m, "at-reason"),
            detail: header(&m, "at-detail"),
            source_topic: header(&m, "at-source-topic"),
            source_partition: header(&m, "at-source-partition").parse().unwrap_or(-1),
            source_offset: header(&m, "at-source-offset").parse().unwrap_or(-1),
            key: String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned(),
            bytes: m.payload.len(),
            redriven_by: None,
            raw_key: m.key.unwrap_or_default(),
            payload: m.payload,
        });
    }
    progress(n, total);
    for d in &mut letters {
        d.redriven_by = markers.get(&d.id()).cloned();
    }
    letters.retain(|d| filter.keeps(d));
    Ok(letters)
}

/// Dead letters by (service, reason), most first.
pub fn count(letters: &[DeadLetter]) -> Vec<((String, String), usize)> {
    let mut by: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for d in letters {
        *by.entry((d.service.clone(), d.reason.clone())).or_default() += 1;
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// What can be read from a dead letter's payload without any key.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Decoded {
    /// What the payload is (`envelope`, or why it is not one).
    pub kind: String,
    /// Envelope header: twin.
    pub twin: Option<String>,
    /// Envelope header: device (the writer's id).
    pub device: Option<String>,
    /// Envelope header: writer key id (hex).
    pub writer_key_id: Option<String>,
    /// Envelope header: sequence number.
    pub seq: Option<u64>,
    /// Envelope header: epoch.
    pub epoch: Option<u64>,
    /// Envelope header: attributes.
    pub attributes: Vec<String>,
    /// Envelope header: request expiry (requests only).
    pub expires_at_ms: Option<u64>,
    /// The first bytes, hex (up to 64).
    pub head_hex: String,
}

/// Decodes what a cloud can see of `payload`: an envelope's header (never its ciphertext).
pub fn decode(payload: &[u8]) -> Decoded {
    let head_hex = hex::encode(&payload[..payload.len().min(64)]);
    match armored_crypto::envelope::decode_envelope(payload) {
        Ok((_, h, _)) => Decoded {
            kind: "envelope".into(),
            twin: Some(h.twin_id),
            device: Some(h.device_id),
            writer_key_id: Some(hex::encode(h.writer_key_id)),
            seq: Some(h.seq),
            epoch: Some(h.epoch),
            attributes: h.attributes,
            expires_at_ms: (h.expires_at_ms > 0).then_some(h.expires_at_ms),
            head_hex,
        },
        Err(e) => Decoded {
            kind: format!("not an envelope ({})", e.reason()),
            head_hex,
            ..Decoded::default()
        },
    }
}

/// Finds dead letter `id` (`partition:offset`) among `letters`.
pub fn find<'a>(letters: &'a [DeadLetter], id: &str) -> Result<&'a DeadLetter> {
    letters.iter().find(|d| d.id() == id).ok_or_else(|| {
        ClientError::Dlq(format!(
            "no dead letter {id} (name one as PARTITION:OFFSET, as `atctl dlq list` shows)"
        ))
    })
}

/// What a re-drive did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Redrive {
    /// Written back to its source topic and marked.
    Redriven {
        /// The dead letter.
        id: String,
        /// Where it went.
        topic: String,
    },
    /// Marked as re-driven already: not written again.
    AlreadyRedriven {
        /// The dead letter.
        id: String,
        /// The marker.
        by: String,
    },
}

/// Re-drives `d` to its source topic (one of this deployment's Kafka topics) and marks it.
pub async fn redrive(ctl: &Ctl, d: &DeadLetter) -> Result<Redrive> {
    if let Some(by) = &d.redriven_by {
        return Ok(Redrive::AlreadyRedriven {
            id: d.id(),
            by: by.clone(),
        });
    }
    if !ctl.topics.all().iter().any(|(t, _)| *t == d.source_topic) {
        return Err(ClientError::Dlq(format!(
            "dead letter {} came from {:?}, not from a Kafka topic of this deployment: only those \
             are re-driven (an MQTT uplink is sent again by its device)",
            d.id(),
            d.source_topic
        )));
    }
    if d.payload.len() >= KEPT_PAYLOAD {
        return Err(ClientError::Dlq(format!(
            "dead letter {} holds only the first {KEPT_PAYLOAD} bytes of its record: not re-driven",
            d.id()
        )));
    }
    let id = d.id();
    let tagged = || {
        OwnedHeaders::new().insert(Header {
            key: REDRIVE_OF,
            value: Some(id.as_str()),
        })
    };
    ctl.send_with_headers(&d.source_topic, &d.raw_key, &d.payload, Some(tagged()))
        .await?;
    let marker = tagged().insert(Header {
        key: KIND,
        value: Some("redrive"),
    });
    ctl.send_with_headers(&ctl.topics.dlq(), &d.raw_key, &[], Some(marker))
        .await?;
    Ok(Redrive::Redriven {
        id: d.id(),
        topic: d.source_topic.clone(),
    })
}
