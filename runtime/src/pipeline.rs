//! At-least-once consumption for a consumer group.
//!
//! A dedicated thread polls librdkafka (so a rebalance callback that waits never blocks a tokio
//! worker) and hands each message to the task of its partition. That task runs the handler on one
//! message at a time (or, for a [`Handling::Batch`] handler, on the messages already queued for the
//! partition, in order), so outputs keep the partition's order, and passes the outputs'
//! acknowledgements to the partition's committer, which awaits them in order and only then marks
//! the offset done. The poll thread commits done offsets every second, explicitly (topic,
//! partition, offset): only the committer knows which offsets are done (a record's outputs may be
//! acknowledged after later records were polled), and a group resumes exactly at the offset
//! committed (e2e/tests/broker.rs checks that on the broker). On revoke and on shutdown the affected partitions are drained and
//! committed synchronously before they are given up. If an output is never
//! acknowledged the pipeline stops without storing its offset, so the message is processed again
//! after a restart: receivers de-duplicate by (twin, writer key, seq).
//!
//! A consumer whose group coordinator stays lost is replaced (see [`coordinator_lost`]): seen on a
//! broker restart, librdkafka (2.12) kept one request to the coordinator queued for minutes and
//! never reconnected, so no commit went through and the group stood still.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::{ConsumerGroup, Statistics};
use rdkafka::ClientContext;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::close::BoundedClose;
use crate::config::KafkaConfig;
use crate::kafka::{base_config, failed, Ack, AckError, KafkaSetupError};
use armored_base::Shutdown;

/// A consumed record, copied out of librdkafka's buffer.
#[derive(Clone)]
pub struct Inbound {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Vec<u8>,
    /// Broker or producer timestamp (ms).
    pub timestamp_ms: Option<i64>,
    /// Headers (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// When it was polled from the client: control topics must be applied up to here before its
    /// outputs are produced.
    pub received: std::time::Instant,
}

impl std::fmt::Debug for Inbound {
    // Payloads are ciphertext or control records; print only where they came from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Inbound({}/{}@{}, {} bytes)",
            self.topic,
            self.partition,
            self.offset,
            self.payload.len()
        )
    }
}

impl Inbound {
    /// Copies a borrowed message.
    pub fn from_message<M: Message>(m: &M) -> Self {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_string(),
                            x.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis(),
            headers,
            received: std::time::Instant::now(),
        }
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Processes one record and returns the acknowledgements of everything it produced (outputs and
/// dead letters), in production order.
pub type Handler = Arc<dyn Fn(Inbound) -> BoxFuture<'static, Vec<Ack>> + Send + Sync>;

/// Processes records of one partition, in order, and returns each record's acknowledgements (one
/// entry per record, in the same order).
pub type BatchHandler =
    Arc<dyn Fn(Vec<Inbound>) -> BoxFuture<'static, Vec<Vec<Ack>>> + Send + Sync>;

/// How a partition's records reach the service.
#[derive(Clone)]
pub enum Handling {
    /// One record at a time.
    One(Handler),
    /// Up to `max` records at a time: the first one waiting and those queued behind it (never
    /// waiting for more, so a lone record is not delayed).
    Batch {
        /// Largest batch.
        max: usize,
        /// The handler.
        handler: BatchHandler,
    },
}

impl std::fmt::Debug for Handling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handling::One(_) => f.write_str("Handling::One"),
            Handling::Batch { max, .. } => write!(f, "Handling::Batch({max})"),
        }
    }
}

impl From<Handler> for Handling {
    fn from(h: Handler) -> Self {
        Handling::One(h)
    }
}

/// Group consumer settings.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    /// Consumer group id.
    pub group: String,
    /// Topics to subscribe.
    pub topics: Vec<String>,
    /// Queue depth per partition before polling pauses (backpressure).
    pub queue_depth: usize,
    /// How long a revoke or shutdown waits for a partition to drain.
    pub drain_timeout: Duration,
}

struct Lane {
    tx: mpsc::Sender<Inbound>,
    /// Signalled when the lane has finished its queue and marked its last offset.
    drained: std::sync::mpsc::Receiver<()>,
    /// The lane's handling and acknowledging tasks, aborted when it does not drain in time.
    tasks: [tokio::task::AbortHandle; 2],
}

type Lanes = Arc<Mutex<HashMap<(String, i32), Lane>>>;
/// The first reason a lane stopped the pipeline (an unacknowledged output, a panicking handler).
type Failure = Arc<Mutex<Option<PipelineError>>>;
/// Next offset to commit per partition (everything before it is done), and whether it is committed.
type Done = Arc<Mutex<HashMap<(String, i32), (i64, bool)>>>;

/// Commits the done offsets of the listed partitions (all if `None`) that are not committed yet.
fn commit_done<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    done: &Done,
    which: Option<&[(String, i32)]>,
    mode: CommitMode,
    forget: bool,
) {
    let mut tpl = rdkafka::TopicPartitionList::new();
    if let Ok(mut map) = done.lock() {
        for ((t, p), (next, committed)) in map.iter_mut() {
            let listed = which.is_none_or(|w| w.iter().any(|(wt, wp)| wt == t && wp == p));
            if listed
                && !*committed
                && tpl
                    .add_partition_offset(t, *p, rdkafka::Offset::Offset(*next))
                    .is_ok()
            {
                *committed = true;
            }
        }
        if forget {
            match which {
                None => map.clear(),
                Some(w) => map.retain(|k, _| !w.contains(k)),
            }
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "offset commit failed; records will be redelivered");
        }
    }
}

/// A group's metrics.
#[derive(Clone, Debug)]
pub struct GroupMetrics {
    /// Records behind the group's end offsets (librdkafka's statistics, every 5 s).
    pub lag: IntGauge,
    /// Consumers replaced because their group coordinator stayed lost ([`coordinator_lost`]).
    pub consumer_restarts: IntCounter,
}

/// Whether a consumer group's state says its coordinator is lost for good: not `up` for at least
/// `timeout_ms`. A group is `up` in normal work and through rebalances; it is in `query-coord` /
/// `wait-coord` only while it looks for its coordinator, which takes a second when brokers answer.
pub fn coordinator_lost(cgrp: Option<&ConsumerGroup>, timeout_ms: i64) -> bool {
    cgrp.is_some_and(|g| g.state != "up" && g.stateage >= timeout_ms)
}

/// Consumer context: drains revoked partitions, reports lag, watches the coordinator. One per
/// consumer: a replaced consumer's close drains and commits only its own lanes.
pub struct GroupContext {
    lanes: Lanes,
    done: Done,
    lag: IntGauge,
    drain_timeout: Duration,
    coordinator_timeout_ms: i64,
    coordinator_lost: AtomicBool,
}

impl std::fmt::Debug for GroupContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupContext")
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, s: Statistics) {
        let lag: i64 = s
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag > 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.lag.set(lag);
        let lost = coordinator_lost(s.cgrp.as_ref(), self.coordinator_timeout_ms);
        self.coordinator_lost.store(lost, Ordering::Relaxed);
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if tracing::enabled!(tracing::Level::TRACE) {
                let committed = consumer.committed_offsets((*tpl).clone(), Duration::from_secs(5));
                tracing::trace!(?committed, "assigned");
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let revoked: Vec<(String, i32)> = match rebalance {
            Rebalance::Revoke(tpl) => tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect(),
            _ => return,
        };
        tracing::debug!(?revoked, "revoking");
        drain(&self.lanes, Some(&revoked), self.drain_timeout);
        commit_done(consumer, &self.done, Some(&revoked), CommitMode::Sync, true);
        tracing::info!(partitions = revoked.len(), "partitions revoked and drained");
    }
}

/// Closes the lanes (all, or those listed) and waits until each has stored its last offset.
fn drain(lanes: &Lanes, which: Option<&[(String, i32)]>, timeout: Duration) {
    let taken: Vec<Lane> = {
        let Ok(mut map) = lanes.lock() else { return };
        match which {
            None => map.drain().map(|(_, l)| l).collect(),
            Some(list) => list.iter().filter_map(|k| map.remove(k)).collect(),
        }
    };
    // One deadline for all: lanes drain in parallel, and a rebalance (which waits for this) is held
    // up at most `timeout`, not `timeout` per partition. Seen on a broker restart: lanes waiting for
    // the control topics held a revocation of 11 partitions ~110 s, and the group stalled with it.
    let deadline = std::time::Instant::now() + timeout;
    let mut late = 0;
    let waiting: Vec<_> = taken
        .into_iter()
        .map(|lane| {
            drop(lane.tx);
            (lane.drained, lane.tasks)
        })
        .collect();
    for (drained, tasks) in waiting {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = drained.recv_timeout(left) {
            // A late lane must not go on producing or marking offsets for a partition that another
            // member now owns: its outputs would interleave with the new owner's (out of order) and
            // its marks could be committed over the new owner's progress. Its unfinished records
            // are redelivered to the new owner, as if this member had crashed.
            for t in tasks {
                t.abort();
            }
            late += 1;
        }
    }
    if late > 0 {
        tracing::warn!(
            partitions = late,
            "partitions did not drain in time: their lanes were stopped, and their unfinished records will be redelivered"
        );
    }
}

/// How long a group may be without its coordinator before its consumer is replaced: three
/// session timeouts, and at least 30 s (a broker restart takes ~10 s to settle).
fn coordinator_timeout(kafka: &KafkaConfig) -> Duration {
    Duration::from_millis(u64::from(kafka.session_timeout_ms) * 3).max(Duration::from_secs(30))
}

type GroupConsumer = Arc<BoundedClose<BaseConsumer<GroupContext>>>;

/// A subscribed consumer with lanes and marks of its own.
fn group_consumer(
    kafka: &KafkaConfig,
    spec: &GroupSpec,
    lag: &IntGauge,
) -> Result<GroupConsumer, KafkaSetupError> {
    let ctx = GroupContext {
        lanes: Lanes::default(),
        done: Done::default(),
        lag: lag.clone(),
        drain_timeout: spec.drain_timeout,
        coordinator_timeout_ms: i64::try_from(coordinator_timeout(kafka).as_millis())
            .unwrap_or(i64::MAX),
        coordinator_lost: AtomicBool::new(false),
    };
    let consumer: BaseConsumer<GroupContext> = base_config(kafka)
        .set("group.id", &spec.group)
        // KIP-848's consumer group protocol (Kafka 4): the broker assigns partitions and paces
        // heartbeats (group.consumer.* in server.properties), and rebalances are incremental.
        .set("group.protocol", "consumer")
        // Each topic's partitions split evenly over the members: the broker's default ("uniform")
        // balances the total count only, and a worker (at.sync.v1, at.requests.v1, at.control.v1)
        // was measured taking 17,200 of 20,000 changes beside one taking 2,800 (issue 17).
        .set("group.remote.assignor", "range")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string())
        .set("statistics.interval.ms", "5000")
        .create_with_context(ctx)?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    // Closed on a thread of its own, waited for at most `close::CLOSE_WAIT` (see `close`).
    Ok(Arc::new(BoundedClose::new(consumer)))
}

/// Runs the group consumer until `shutdown`; returns an error if an output could not be
/// acknowledged (the service should exit and be restarted: nothing was committed past it).
pub async fn run_group(
    kafka: &KafkaConfig,
    spec: GroupSpec,
    metrics: GroupMetrics,
    handler: impl Into<Handling>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let handler: Handling = handler.into();
    let mut consumer = group_consumer(kafka, &spec, &metrics.lag)?;
    let failure: Failure = Arc::default();
    let stop = shutdown.child_token();
    let rt = tokio::runtime::Handle::current();
    let (finished, poller_done) = tokio::sync::oneshot::channel::<()>();
    let close_bound = spec.drain_timeout + crate::close::CLOSE_WAIT;

    let poller = {
        let failure = failure.clone();
        let stop = stop.clone();
        let kafka = kafka.clone();
        std::thread::Builder::new()
            .name(format!("poll-{}", spec.group))
            .spawn(move || {
                let mut last_commit = std::time::Instant::now();
                while !stop.is_cancelled() {
                    if consumer.context().coordinator_lost.load(Ordering::Relaxed) {
                        consumer = replace(consumer, &kafka, &spec, &metrics);
                        continue;
                    }
                    let ctx = consumer.context().clone();
                    if last_commit.elapsed() >= Duration::from_secs(1) {
                        commit_done(&**consumer, &ctx.done, None, CommitMode::Async, false);
                        last_commit = std::time::Instant::now();
                    }
                    let Some(r) = consumer.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let m = match r {
                        Ok(m) => Inbound::from_message(&m),
                        Err(e) => {
                            tracing::warn!(error = %e, "consumer error");
                            continue;
                        }
                    };
                    tracing::trace!(partition = m.partition, offset = m.offset, "polled");
                    let key = (m.topic.clone(), m.partition);
                    let tx = {
                        let Ok(mut map) = ctx.lanes.lock() else { break };
                        map.entry(key.clone())
                            .or_insert_with(|| {
                                spawn_lane(&rt, &ctx.done, &key, &spec, &handler, &failure, &stop)
                            })
                            .tx
                            .clone()
                    };
                    if tx.blocking_send(m).is_err() {
                        // The lane failed (its output was not acknowledged): stop consuming.
                        break;
                    }
                }
                let ctx = consumer.context().clone();
                drain(&ctx.lanes, None, spec.drain_timeout);
                commit_done(&**consumer, &ctx.done, None, CommitMode::Sync, true);
                consumer.unsubscribe();
                // Stopped by itself (a lane failed): the service must stop too, not wait with
                // `/healthz` still saying ready.
                stop.cancel();
                let _ = finished.send(());
            })
            .map_err(PipelineError::Thread)?
    };
    stop.cancelled().await;
    // The last commit goes to a group coordinator that may not answer (a broker just restarted).
    // Not joined on a blocking task: that would hold this service, and its runtime's shutdown,
    // for as long (a fault test's process outlived its tests by an hour so).
    if tokio::time::timeout(close_bound, poller_done)
        .await
        .is_err()
    {
        tracing::warn!(
            wait_ms = close_bound.as_millis() as u64,
            "the consumer's last commit did not finish in time; records after the last commit are redelivered"
        );
    }
    drop(poller);
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    match failed {
        // A shutdown that interrupted work is not a failure: the unfinished records were not committed.
        Some(failed) if !shutdown.is_cancelled() => Err(failed),
        _ => Ok(()),
    }
}

/// Replaces a consumer whose coordinator is lost: its lanes finish what they hold (their outputs
/// are acknowledged), its marks are dropped (no commit can reach a lost coordinator; the records
/// after the group's last commit are redelivered, and receivers de-duplicate), and a new consumer
/// joins the group. Keeps the old one if no new one can be made (it is tried again at the next
/// statistics report).
fn replace(
    old: GroupConsumer,
    kafka: &KafkaConfig,
    spec: &GroupSpec,
    metrics: &GroupMetrics,
) -> GroupConsumer {
    let ctx = old.context().clone();
    ctx.coordinator_lost.store(false, Ordering::Relaxed);
    let new = match group_consumer(kafka, spec, &metrics.lag) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(group = %spec.group, error = %e, "cannot replace the consumer whose coordinator is lost");
            return old;
        }
    };
    tracing::warn!(
        group = %spec.group,
        timeout_s = coordinator_timeout(kafka).as_secs(),
        "the group coordinator has been lost for longer than the timeout: replacing the consumer (records after the last commit are redelivered)"
    );
    drain(&ctx.lanes, None, spec.drain_timeout);
    if let Ok(mut marks) = ctx.done.lock() {
        marks.clear();
    }
    metrics.consumer_restarts.inc();
    // Dropped here: closed on a thread of its own (its revocation drains only its own, empty, lanes).
    drop(old);
    new
}

fn spawn_lane(
    rt: &tokio::runtime::Handle,
    marks: &Done,
    key: &(String, i32),
    spec: &GroupSpec,
    handler: &Handling,
    failure: &Failure,
    stop: &Shutdown,
) -> Lane {
    let (panic_failure, panic_stop) = (failure.clone(), stop.clone());
    let (tx, mut rx) = mpsc::channel::<Inbound>(spec.queue_depth);
    let (acks_tx, mut acks_rx) = mpsc::channel::<(i64, Vec<Ack>)>(spec.queue_depth * 4);
    let (drained_tx, drained) = std::sync::mpsc::channel();
    let handler = handler.clone();
    let handling = rt.spawn(async move {
        while let Some(m) = rx.recv().await {
            let results: Vec<(i64, Vec<Ack>)> = match &handler {
                Handling::One(h) => {
                    let offset = m.offset;
                    // Whatever the handler logs (a refusal's reason) names its record.
                    let span = tracing::info_span!(
                        "record",
                        topic = %m.topic,
                        partition = m.partition,
                        offset
                    );
                    vec![(offset, h(m).instrument(span).await)]
                }
                Handling::Batch { max, handler: h } => {
                    let mut batch = vec![m];
                    while batch.len() < *max {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    let offsets: Vec<i64> = batch.iter().map(|m| m.offset).collect();
                    let span = tracing::info_span!(
                        "records",
                        topic = %batch[0].topic,
                        partition = batch[0].partition,
                        first = offsets.first().copied().unwrap_or(-1),
                        last = offsets.last().copied().unwrap_or(-1)
                    );
                    let mut acks = h(batch).instrument(span).await.into_iter();
                    offsets
                        .into_iter()
                        .map(|o| {
                            // A handler that returned too few entries: the record is not done.
                            let a = acks
                                .next()
                                .unwrap_or_else(|| vec![failed(AckError::NotHandled)]);
                            (o, a)
                        })
                        .collect()
                }
            };
            for r in results {
                if acks_tx.send(r).await.is_err() {
                    return;
                }
            }
        }
    });
    let marks = marks.clone();
    let (topic, partition) = key.clone();
    let failure = failure.clone();
    let stop = stop.clone();
    let acknowledging = rt.spawn(async move {
        while let Some((offset, acks)) = acks_rx.recv().await {
            for ack in acks {
                if let Err(e) = ack.await {
                    tracing::error!(%topic, partition, offset, error = %e, "output not acknowledged; stopping without committing past it");
                    if let Ok(mut f) = failure.lock() {
                        f.get_or_insert(PipelineError::OutputNotAcknowledged(Box::new(
                            Unacknowledged {
                                topic: topic.clone(),
                                partition,
                                offset,
                                error: e,
                            },
                        )));
                    }
                    stop.cancel();
                    let _ = drained_tx.send(());
                    return;
                }
            }
            tracing::trace!(partition, offset, "done");
            if let Ok(mut m) = marks.lock() {
                m.insert((topic.clone(), partition), (offset + 1, false));
            }
        }
        let _ = drained_tx.send(());
    });
    let tasks = [handling.abort_handle(), acknowledging.abort_handle()];
    // A handler that panics ends its lane: the pipeline stops with an error (the service exits
    // and is restarted; the record was not committed), instead of waiting for ever.
    let (topic, partition) = key.clone();
    rt.spawn(async move {
        if let Err(e) = handling.await {
            if e.is_panic() {
                tracing::error!(%topic, partition, "a record handler panicked; stopping");
                if let Ok(mut f) = panic_failure.lock() {
                    f.get_or_insert(PipelineError::HandlerPanicked { topic, partition });
                }
                panic_stop.cancel();
            }
        }
    });
    Lane { tx, drained, tasks }
}

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The consumer could not be set up.
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    /// An output was never acknowledged by the broker.
    #[error(transparent)]
    OutputNotAcknowledged(Box<Unacknowledged>),
    /// The polling thread could not start.
    #[error("cannot start the polling thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A record handler panicked (a bug): the record was not committed.
    #[error("a record handler of {topic}[{partition}] panicked")]
    HandlerPanicked {
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
    },
}

/// The first record whose output was never acknowledged: the pipeline stopped before committing it.
#[derive(Debug, thiserror::Error)]
#[error("an output of {topic}[{partition}]@{offset} was not acknowledged: {error}")]
pub struct Unacknowledged {
    /// The record's topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Why its output failed.
    #[source]
    pub error: AckError,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(state: &str, age_ms: i64) -> ConsumerGroup {
        ConsumerGroup {
            state: state.into(),
            stateage: age_ms,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_group_that_stays_without_its_coordinator_is_lost() {
        let t = 30_000;
        // Working (also for hours, and through rebalances): never replaced.
        assert!(!coordinator_lost(Some(&group("up", 10 * t)), t));
        // Looking for its coordinator: replaced only after the timeout.
        assert!(!coordinator_lost(Some(&group("wait-coord", t - 1)), t));
        assert!(coordinator_lost(Some(&group("wait-coord", t)), t));
        assert!(coordinator_lost(Some(&group("query-coord", 3 * t)), t));
        // No group statistics (a consumer before its first report).
        assert!(!coordinator_lost(None, t));
    }

    #[test]
    fn the_timeout_is_three_sessions_and_at_least_30_s() {
        let kafka = |ms| KafkaConfig {
            brokers: String::new(),
            topic_prefix: String::new(),
            session_timeout_ms: ms,
            linger_ms: 0,
            fetch_wait_max_ms: 0,
            connect_timeout_ms: 0,
            sasl: None,
        };
        assert_eq!(coordinator_timeout(&kafka(6_000)), Duration::from_secs(30));
        assert_eq!(
            coordinator_timeout(&kafka(45_000)),
            Duration::from_secs(135)
        );
    }
}
