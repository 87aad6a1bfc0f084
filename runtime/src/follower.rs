//! Folding a retained control topic (re-keys, registry, tokens) from its beginning and following it.
//!
//! A thread reads every partition from offset 0 (no consumer group, nothing committed) and applies
//! each record to the caller's state. It also asks the broker for the end offsets and publishes a
//! *sync point*: "every record appended before instant T has been applied". A worker that fetched a
//! data record at T waits for a sync point ≥ T before producing that record's outputs, so a
//! revocation appended before the record is processed always wins (envelope.md, "Tokens, re-keys,
//! revocations").
//!
//! End offsets are asked for when someone waits for a sync point newer than the last one (at most
//! every [`MIN_QUERY_INTERVAL`]), and otherwise every [`IDLE_QUERY_INTERVAL`]: an idle service
//! does not keep the broker busy (asking every 20 ms, three followers per node cost the broker
//! more CPU than the nodes' own work in the benchmark).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::config::KafkaConfig;
use crate::kafka::KafkaSetupError;
use crate::pipeline::Inbound;
use crate::reader::{groupless_config, Assignment, Start};
use armored_base::Shutdown;

/// Applies one control record to the caller's state.
pub type Apply = Box<dyn FnMut(&Inbound) + Send>;

/// Shortest gap between two end-offset queries while sync points are wanted. Each waiter's
/// query is shared by all who wait, so this bounds a follower to 200 queries/s under load (every
/// service runs one follower per control topic, and each query is a ListOffsets for the broker).
/// Every routed record waits for the next query after it was fetched: at 20 ms this was ~8 ms of
/// the ~26 ms a change spent between the bridge and its delivery in Kafka at 200 changes/s
/// (issue 17's sync bench); at 5 ms the broker's CPU per change did not measurably change.
pub const MIN_QUERY_INTERVAL: Duration = Duration::from_millis(5);
/// End offsets are asked for at least this often (a fresh sync point for readers of
/// [`Follower::synced_at`]).
pub const IDLE_QUERY_INTERVAL: Duration = Duration::from_millis(250);
/// How long the broker may hold a fetch with nothing new (control topics rarely change; a record
/// already there is returned at once).
const FETCH_WAIT_MS: &str = "50";

/// Handle on a running follower.
#[derive(Clone, Debug)]
pub struct Follower {
    synced: watch::Receiver<Option<Instant>>,
    /// The newest sync point someone waits for, as nanoseconds after `epoch`.
    wanted: Arc<AtomicU64>,
    epoch: Instant,
    topic: String,
}

impl Follower {
    /// Starts following `topic` (all partitions, from the beginning).
    pub fn start(
        kafka: &KafkaConfig,
        topic: &str,
        mut apply: Apply,
        shutdown: Shutdown,
    ) -> Result<Self, KafkaSetupError> {
        let consumer: BaseConsumer = groupless_config(kafka)
            .set("fetch.wait.max.ms", FETCH_WAIT_MS)
            .create()?;
        let mut assignment = Assignment::new();
        let partitions: Vec<i32> = assignment
            .add(
                &consumer,
                topic,
                None,
                Start::Beginning,
                Duration::from_millis(kafka.connect_timeout_ms),
            )?
            .iter()
            .map(|s| s.partition)
            .collect();
        if partitions.is_empty() {
            return Err(KafkaSetupError::Unreachable {
                brokers: kafka.brokers.clone(),
                timeout_ms: kafka.connect_timeout_ms,
                detail: format!("topic {topic} has no partitions (create it with infra/topics.sh)"),
            });
        }
        assignment.assign(&consumer)?;
        // End offsets are asked on a connection of their own: a broker answers a connection's
        // requests in order, so behind the follower's long-polling fetches each query would wait
        // up to fetch.wait.max.ms (measured: ~400 ms for a node's three followers, one request per
        // partition, which was most of a small job's latency).
        let probe: BaseConsumer = groupless_config(kafka).create()?;
        let (tx, rx) = watch::channel(None);
        let topic_name = topic.to_string();
        let epoch = Instant::now();
        let wanted = Arc::new(AtomicU64::new(0));
        let demand = wanted.clone();
        std::thread::Builder::new()
            .name(format!("follow-{topic}"))
            .spawn(move || {
                // Next offset to apply, per partition.
                let mut next: HashMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
                let mut pending: Option<(Instant, HashMap<i32, i64>)> = None;
                let mut last_query = Instant::now() - Duration::from_secs(1);
                while !shutdown.is_cancelled() {
                    let since_last = last_query.elapsed();
                    // Someone waits for a sync point newer than the last query's start.
                    let wanted = demand.load(Ordering::Acquire);
                    let asked_ns = last_query.saturating_duration_since(epoch).as_nanos() as u64;
                    let due = since_last >= IDLE_QUERY_INTERVAL
                        || (wanted > asked_ns && since_last >= MIN_QUERY_INTERVAL);
                    if pending.is_none() && due {
                        let asked = Instant::now();
                        last_query = asked;
                        match end_offsets(&probe, &topic_name, &partitions) {
                            Ok(ends) => pending = Some((asked, ends)),
                            Err(e) => {
                                tracing::warn!(topic = %topic_name, error = %e, "end offsets unavailable");
                                // A leader that moved or restarted answers with a stale-epoch or
                                // not-leader error until the client's metadata is refreshed.
                                let _ = probe.fetch_metadata(Some(&topic_name), Duration::from_secs(2));
                            }
                        }
                    }
                    if let Some((asked, ends)) = &pending {
                        if ends.iter().all(|(p, hi)| next.get(p).is_some_and(|n| n >= hi)) {
                            let asked = *asked;
                            tx.send_replace(Some(asked));
                            pending = None;
                            continue;
                        }
                    }
                    match consumer.poll(Duration::from_millis(5)) {
                        Some(Ok(m)) => {
                            let rec = Inbound::from_message(&m);
                            next.insert(rec.partition, rec.offset + 1);
                            apply(&rec);
                        }
                        Some(Err(e)) => tracing::warn!(topic = %topic_name, error = %e, "follower error"),
                        None => {}
                    }
                }
            })
            .map_err(|e| KafkaSetupError::Unreachable {
                brokers: kafka.brokers.clone(),
                timeout_ms: 0,
                detail: e.to_string(),
            })?;
        Ok(Self {
            synced: rx,
            wanted,
            epoch,
            topic: topic.to_string(),
        })
    }

    /// Asks the thread for a sync point at or after `since` without waiting for it: a caller
    /// that needs several followers asks them all first, so their queries overlap.
    pub fn request_sync(&self, since: Instant) {
        let ns = since.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.wanted.fetch_max(ns.max(1), Ordering::AcqRel);
    }

    /// Waits until every record appended to the topic before `since` has been applied.
    pub async fn synced_since(&self, since: Instant, timeout: Duration) -> Result<(), SyncTimeout> {
        if self.synced.borrow().is_some_and(|t| t >= since) {
            return Ok(());
        }
        self.request_sync(since);
        let mut rx = self.synced.clone();
        let ok = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| s.is_some_and(|t| t >= since)).await.is_ok()
        })
        .await;
        match ok {
            Ok(true) => Ok(()),
            Ok(false) => Err(SyncTimeout {
                topic: self.topic.clone(),
                why: "its follower stopped",
            }),
            Err(_) => Err(SyncTimeout {
                topic: self.topic.clone(),
                why: "not caught up in time",
            }),
        }
    }

    /// The latest sync point: every record appended before it has been applied.
    pub fn synced_at(&self) -> Option<Instant> {
        *self.synced.borrow()
    }

    /// Blocking variant for threads outside the runtime.
    pub fn wait_loaded_blocking(&self, timeout: Duration) -> Result<(), SyncTimeout> {
        let since = Instant::now();
        self.request_sync(since);
        let deadline = since + timeout;
        while Instant::now() < deadline {
            if self.synced.borrow().is_some_and(|t| t >= since) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(SyncTimeout {
            topic: self.topic.clone(),
            why: "not caught up in time",
        })
    }
}

/// Waits until every one of `followers` has applied what was appended before `since` (a record
/// fetched at `since` may depend on it). Each round waits up to `round` per follower, then warns
/// and waits again: the only error is a shutdown (`shutdown` cancelled) while not caught up, and
/// the caller then leaves its record unfinished so its offset is never committed.
pub async fn wait_all(
    followers: &[&Follower],
    since: Instant,
    round: Duration,
    shutdown: &Shutdown,
) -> Result<(), SyncTimeout> {
    // All queries first, so that they overlap.
    for f in followers {
        f.request_sync(since);
    }
    'round: loop {
        for f in followers {
            if let Err(e) = f.synced_since(since, round).await {
                if shutdown.is_cancelled() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "waiting for the control topics");
                continue 'round;
            }
        }
        return Ok(());
    }
}

/// The follower did not catch up in time, or stopped.
#[derive(Clone, Debug, thiserror::Error)]
#[error("control topic {topic}: {why}")]
pub struct SyncTimeout {
    topic: String,
    why: &'static str,
}

/// Shares a folded state between the follower thread and the service.
pub type Shared<S> = Arc<std::sync::RwLock<S>>;

/// Why end offsets were not had.
#[derive(Debug, thiserror::Error)]
enum EndOffsetsError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("partition {partition}: no end offset ({offset:?})")]
    NoOffset { partition: i32, offset: Offset },
    #[error("{answered} of {asked} partitions answered")]
    Partial { answered: usize, asked: usize },
}

/// The end offset of every partition of `topic`, in one ListOffsets request.
fn end_offsets(
    probe: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, i64>, EndOffsetsError> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        // A "timestamp" of -1 (Offset::End) asks for the latest offset.
        tpl.add_partition_offset(topic, *p, Offset::End)?;
    }
    let answer = probe.offsets_for_times(tpl, Duration::from_secs(5))?;
    let mut ends = HashMap::with_capacity(partitions.len());
    for e in answer.elements() {
        e.error()?;
        match e.offset() {
            Offset::Offset(hi) => ends.insert(e.partition(), hi),
            offset => {
                return Err(EndOffsetsError::NoOffset {
                    partition: e.partition(),
                    offset,
                })
            }
        };
    }
    if ends.len() != partitions.len() {
        return Err(EndOffsetsError::Partial {
            answered: ends.len(),
            asked: partitions.len(),
        });
    }
    Ok(ends)
}
