//! Group-less readers: consumers that assign partitions themselves (no group is joined, nothing
//! is committed), and [`TopicReader`], which reads a topic from its beginning to the end offsets
//! it had when the reader was opened (tools, tests, history replay).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use armored_base::Shutdown;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::kafka::{base_config, KafkaSetupError};
use crate::pipeline::Inbound;

/// Settings of a consumer that joins no group: librdkafka wants a `group.id`, but partitions are
/// assigned, not subscribed, and no offset is stored or committed.
pub fn groupless_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(cfg);
    c.set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// Where a group-less reader starts in each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still stored.
    Beginning,
    /// The current end: only what is written from now on.
    End,
    /// The first record with a timestamp at or after this one (unix ms).
    Time(i64),
}

/// One partition of an [`Assignment`]: its watermarks when it was added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Partition id.
    pub partition: i32,
    /// Oldest stored offset.
    pub low: i64,
    /// Next offset to be written.
    pub high: i64,
}

/// Partitions (of one or more topics) for a group-less consumer, each with where it starts.
#[derive(Debug, Default)]
pub struct Assignment {
    tpl: TopicPartitionList,
}

impl Assignment {
    /// An empty assignment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `partitions` of `topic` (every partition if `None`) at `start`; returns their
    /// watermarks now. A topic without partitions adds nothing.
    pub fn add<C: Consumer>(
        &mut self,
        consumer: &C,
        topic: &str,
        partitions: Option<&[i32]>,
        start: Start,
        timeout: Duration,
    ) -> Result<Vec<Span>, KafkaSetupError> {
        let ids: Vec<i32> = match partitions {
            Some(p) => p.to_vec(),
            None => {
                let md = consumer.fetch_metadata(Some(topic), timeout)?;
                // A topic this principal may not read shows no partitions: say so instead of
                // reading it as empty.
                if let Some(e) = md.topics().iter().find_map(|t| t.error()) {
                    let code = RDKafkaErrorCode::from(e);
                    if code == RDKafkaErrorCode::TopicAuthorizationFailed {
                        return Err(KafkaError::MetadataFetch(code).into());
                    }
                }
                md.topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect()
            }
        };
        let mut spans = Vec::with_capacity(ids.len());
        let mut times = TopicPartitionList::new();
        for id in ids {
            let (low, high) = watermarks(consumer, topic, id, timeout)?;
            spans.push(Span {
                partition: id,
                low,
                high,
            });
            match start {
                Start::Beginning => self
                    .tpl
                    .add_partition_offset(topic, id, Offset::Beginning)?,
                Start::End => self
                    .tpl
                    .add_partition_offset(topic, id, Offset::Offset(high))?,
                Start::Time(ms) => times.add_partition_offset(topic, id, Offset::Offset(ms))?,
            }
        }
        if times.count() > 0 {
            for e in consumer.offsets_for_times(times, timeout)?.elements() {
                self.tpl
                    .add_partition_offset(topic, e.partition(), e.offset())?;
            }
        }
        Ok(spans)
    }

    /// Number of partitions added.
    pub fn len(&self) -> usize {
        self.tpl.count()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.tpl.count() == 0
    }

    /// Starts `partition` of `topic` (already added) at `offset` instead.
    pub fn set_offset(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), KafkaSetupError> {
        self.tpl
            .set_partition_offset(topic, partition, Offset::Offset(offset))?;
        Ok(())
    }

    /// Assigns the partitions to `consumer`.
    pub fn assign<C: Consumer>(&self, consumer: &C) -> Result<(), KafkaSetupError> {
        consumer.assign(&self.tpl)?;
        Ok(())
    }
}

/// How a [`TopicReader`] reads.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Metadata and watermark requests wait this long.
    pub setup_timeout: Duration,
    /// Reading ends with [`ReadError::Deadline`] after this long in all.
    pub deadline: Option<Duration>,
    /// Reading ends with [`ReadError::Stalled`] when no record came for this long.
    pub stall: Option<Duration>,
    /// Records with a larger payload are not copied: they come as [`ReadError::Oversized`].
    pub max_payload: usize,
    /// Reading ends with [`ReadError::Cancelled`] once this is cancelled.
    pub stop: Option<Shutdown>,
    /// Where to start in the partitions listed (a checkpoint: the next offset to read); the others
    /// start at their beginning. An offset below the oldest stored one starts there.
    pub from_offsets: HashMap<i32, i64>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            setup_timeout: Duration::from_secs(10),
            deadline: None,
            stall: None,
            max_payload: usize::MAX,
            stop: None,
            from_offsets: HashMap::new(),
        }
    }
}

/// Why a [`TopicReader`] did not yield a record.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// [`ReadOptions::deadline`] passed before the end.
    #[error("the end of the topic was not reached in time")]
    Deadline,
    /// [`ReadOptions::stall`]: nothing came for that long.
    #[error("no record came for {0:?}")]
    Stalled(Duration),
    /// [`ReadOptions::stop`] was cancelled.
    #[error("shut down while reading")]
    Cancelled,
    /// A record over [`ReadOptions::max_payload`] (skipped; reading goes on).
    #[error("record {partition}@{offset} of {bytes} bytes over the limit")]
    Oversized {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Payload size.
        bytes: usize,
    },
}

impl ReadError {
    /// Whether reading goes on after this error.
    pub fn is_final(&self) -> bool {
        !matches!(self, ReadError::Oversized { .. })
    }
}

/// Reads every partition of a topic from its beginning to the end offsets captured when it was
/// opened, as an iterator: `Ok` records in each partition's order, an `Err` that
/// [`ReadError::is_final`] ends it.
pub struct TopicReader {
    consumer: BaseConsumer,
    /// End offset still to reach, per partition.
    ends: HashMap<i32, i64>,
    /// Every partition's end offset captured at the start (a checkpoint once read).
    captured: HashMap<i32, i64>,
    total: u64,
    opts: ReadOptions,
    started: Instant,
    last_record: Instant,
    done: bool,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicReader({} partitions left)", self.ends.len())
    }
}

impl TopicReader {
    /// Opens `topic` and captures its end offsets.
    pub fn open(
        cfg: &KafkaConfig,
        topic: &str,
        opts: ReadOptions,
    ) -> Result<Self, KafkaSetupError> {
        let consumer: BaseConsumer = groupless_config(cfg).create()?;
        let mut a = Assignment::new();
        let spans = a.add(&consumer, topic, None, Start::Beginning, opts.setup_timeout)?;
        let start = |s: &Span| {
            opts.from_offsets
                .get(&s.partition)
                .map_or(s.low, |&from| from.max(s.low))
        };
        let ends: HashMap<i32, i64> = spans
            .iter()
            .filter(|s| s.high > start(s))
            .map(|s| (s.partition, s.high))
            .collect();
        let captured = spans.iter().map(|s| (s.partition, s.high)).collect();
        let total = spans
            .iter()
            .map(|s| (s.high - start(s)).max(0) as u64)
            .sum();
        for s in &spans {
            if start(s) > s.low {
                a.set_offset(topic, s.partition, start(s))?;
            }
        }
        if !ends.is_empty() {
            a.assign(&consumer)?;
        }
        Ok(Self {
            consumer,
            ends,
            captured,
            total,
            opts,
            started: Instant::now(),
            last_record: Instant::now(),
            done: false,
        })
    }

    /// Records between the start and the end offsets captured at the start.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Every partition's end offset captured at the start: where a later read resumes once this
    /// one has read everything ([`ReadOptions::from_offsets`]).
    pub fn end_offsets(&self) -> &HashMap<i32, i64> {
        &self.captured
    }

    fn stop_reason(&self) -> Option<ReadError> {
        if self.opts.stop.as_ref().is_some_and(Shutdown::is_cancelled) {
            return Some(ReadError::Cancelled);
        }
        if self
            .opts
            .deadline
            .is_some_and(|d| self.started.elapsed() >= d)
        {
            return Some(ReadError::Deadline);
        }
        match self.opts.stall {
            Some(s) if self.last_record.elapsed() > s => Some(ReadError::Stalled(s)),
            _ => None,
        }
    }
}

impl Iterator for TopicReader {
    type Item = Result<Inbound, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        use rdkafka::Message;
        while !self.done && !self.ends.is_empty() {
            if let Some(e) = self.stop_reason() {
                self.done = true;
                return Some(Err(e));
            }
            let m = match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "group-less read");
                    continue;
                }
                None => continue,
            };
            self.last_record = Instant::now();
            let (partition, offset) = (m.partition(), m.offset());
            let Some(hi) = self.ends.get(&partition).copied() else {
                continue;
            };
            // Past the end captured at the start: this partition is done.
            if offset >= hi {
                self.ends.remove(&partition);
                continue;
            }
            if offset + 1 >= hi {
                self.ends.remove(&partition);
            }
            let bytes = m.payload().map_or(0, <[u8]>::len);
            if bytes > self.opts.max_payload {
                return Some(Err(ReadError::Oversized {
                    partition,
                    offset,
                    bytes,
                }));
            }
            return Some(Ok(Inbound::from_message(&m)));
        }
        None
    }
}

/// Reads every record of `topic` from its beginning to the end offsets it has now, or what came
/// within `timeout` (tools, tests, the demo's raw reader).
pub fn read_to_end(
    cfg: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Inbound>, KafkaSetupError> {
    let opts = ReadOptions {
        setup_timeout: Duration::from_secs(5),
        deadline: Some(timeout),
        ..ReadOptions::default()
    };
    Ok(TopicReader::open(cfg, topic, opts)?
        .map_while(Result::ok)
        .collect())
}

/// One partition's watermarks, asked again while its leader is not known yet (a topic just created,
/// a broker just started: seen as `NotLeaderForPartition` from a bridge started right after
/// `infra/start.sh --fresh`), until `timeout` has passed; any other error at once.
fn watermarks<C: Consumer>(
    consumer: &C,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::FencedLeaderEpoch
                | RDKafkaErrorCode::UnknownLeaderEpoch,
            )) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            result => return result,
        }
    }
}
