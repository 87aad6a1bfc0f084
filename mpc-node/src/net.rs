//! The Kafka peer channel under the engine: `at.mpc.peer.v1`, partition j-1 carries what is sent
//! to node j. A reader thread sorts incoming records into per-attempt inboxes; an
//! [`AttemptTransport`] implements the engine's blocking `Transport` for one attempt, sealing every
//! message in that attempt's HPKE auth-mode contexts (`armored_crypto::peer`) and splitting
//! payloads under the broker's message limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use armored_base::Shutdown;
use armored_crypto::hpke::{HpkePublicKey, HpkeSecretKey};
use armored_crypto::peer::{ChannelId, PeerReceiver, PeerSender};
use armored_mpc::error::TransportError;
use armored_mpc::prss::{PartySeeds, Seed};
use armored_mpc::shamir::Party;
use armored_mpc::transport::Transport;
use armored_runtime::config::KafkaConfig;
use armored_runtime::kafka::KafkaSetupError;
use armored_runtime::reader::{groupless_config, Assignment, Start};
use armored_schemas::limits::{MAX_PEER_MESSAGE_BYTES, PEER_CHUNK_BYTES};
use armored_schemas::{decode_strict, v1};
use prost::Message as _;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureRecord;
use rdkafka::Message as _;

use crate::metrics::Metrics;

/// The round number of the hello that opens an attempt's channels.
pub const HELLO_ROUND: u32 = u32::MAX;
/// Buffered peer records for attempts nobody runs are dropped after this long.
const STALE_AFTER: Duration = Duration::from_secs(600);
/// Upper bound on buffered peer bytes (a flood cannot exhaust memory).
const MAX_BUFFERED: usize = 1 << 30;

type AttemptKey = ([u8; 32], u32);

#[derive(Default)]
struct Inboxes {
    map: HashMap<AttemptKey, Inbox>,
    buffered: usize,
}

struct Inbox {
    queues: [VecDeque<v1::PeerMessage>; 3],
    touched: Instant,
}

/// This node's end of the peer topic.
pub struct PeerNet {
    me: u32,
    topic: String,
    producer: armored_runtime::kafka::AtProducer,
    inbox: Arc<(Mutex<Inboxes>, Condvar)>,
    metrics: Metrics,
}

impl std::fmt::Debug for PeerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerNet(node {} on {})", self.me, self.topic)
    }
}

impl PeerNet {
    /// Starts reading this node's partition from its current end: records sent before this node
    /// started belong to attempts it cannot join anyway.
    pub fn start(
        kafka: &KafkaConfig,
        topic: &str,
        me: u32,
        producer: armored_runtime::kafka::AtProducer,
        metrics: Metrics,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, KafkaSetupError> {
        // A tail from now on, not a read to an end: the reader of runtime::reader does not fit,
        // its group-less setup does.
        let consumer: BaseConsumer = groupless_config(kafka)
            .set("fetch.wait.max.ms", "5")
            .set(
                "fetch.message.max.bytes",
                (MAX_PEER_MESSAGE_BYTES + 65536).to_string(),
            )
            .create()?;
        let partition = (me - 1) as i32;
        let mut a = Assignment::new();
        a.add(
            &consumer,
            topic,
            Some(&[partition]),
            Start::End,
            Duration::from_millis(kafka.connect_timeout_ms),
        )?;
        a.assign(&consumer)?;
        let net = Arc::new(Self {
            me,
            topic: topic.to_string(),
            producer,
            inbox: Arc::default(),
            metrics,
        });
        let n = net.clone();
        std::thread::Builder::new()
            .name("mpc-peer".into())
            .spawn(move || {
                while !shutdown.is_cancelled() {
                    match consumer.poll(Duration::from_millis(20)) {
                        Some(Ok(m)) => n.accept(m.payload().unwrap_or_default()),
                        Some(Err(e)) => tracing::warn!(error = %e, "peer channel read error"),
                        None => {}
                    }
                }
            })
            .map_err(|e| KafkaSetupError::Unreachable {
                brokers: kafka.brokers.clone(),
                timeout_ms: 0,
                detail: e.to_string(),
            })?;
        Ok(net)
    }

    fn reject(&self, reason: &str) {
        self.metrics
            .peer_rejected
            .with_label_values(&[reason])
            .inc();
    }

    fn accept(&self, payload: &[u8]) {
        let m: v1::PeerMessage = match decode_strict("PeerMessage", payload, MAX_PEER_MESSAGE_BYTES)
        {
            Ok(m) => m,
            Err(_) => return self.reject("malformed"),
        };
        let Ok(job_hash) = <[u8; 32]>::try_from(m.job_hash.as_slice()) else {
            return self.reject("malformed");
        };
        if m.to != self.me || !(1..=3).contains(&m.from) || m.from == self.me {
            return self.reject("misaddressed");
        }
        self.metrics.bytes_received.inc_by(payload.len() as u64);
        let (lock, cv) = &*self.inbox;
        let Ok(mut inb) = lock.lock() else { return };
        let now = Instant::now();
        if inb.buffered + payload.len() > MAX_BUFFERED {
            drop(inb);
            return self.reject("overflow");
        }
        let stale: Vec<AttemptKey> = inb
            .map
            .iter()
            .filter(|(_, i)| now.duration_since(i.touched) > STALE_AFTER)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(i) = inb.map.remove(&k) {
                let freed: usize = i.queues.iter().flatten().map(|m| m.ciphertext.len()).sum();
                inb.buffered = inb.buffered.saturating_sub(freed);
            }
        }
        inb.buffered += m.ciphertext.len();
        let from = (m.from - 1) as usize;
        let entry = inb
            .map
            .entry((job_hash, m.attempt))
            .or_insert_with(|| Inbox {
                queues: Default::default(),
                touched: now,
            });
        entry.touched = now;
        entry.queues[from].push_back(m);
        cv.notify_all();
    }

    /// The transport of one attempt.
    pub fn attempt(
        self: &Arc<Self>,
        job_hash: [u8; 32],
        attempt: u32,
        me: &HpkeSecretKey,
        peers: [HpkePublicKey; 3],
        round_timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> AttemptTransport {
        AttemptTransport {
            net: self.clone(),
            key: (job_hash, attempt),
            hpke: me.clone(),
            peers,
            senders: Default::default(),
            receivers: Default::default(),
            opened: Default::default(),
            round_timeout,
            runtime,
            pending: Vec::new(),
            bytes_sent: 0,
            send_time: Duration::ZERO,
            wait_time: Duration::ZERO,
        }
    }
}

/// One attempt's channels to the two peers.
pub struct AttemptTransport {
    net: Arc<PeerNet>,
    key: AttemptKey,
    hpke: HpkeSecretKey,
    peers: [HpkePublicKey; 3],
    senders: [Option<PeerSender>; 3],
    receivers: [Option<PeerReceiver>; 3],
    /// (round, chunk) of every record opened from each peer. A second copy of a record already
    /// opened would not open under the channel's next nonce and would fail the attempt; such copies
    /// are skipped (counted as `duplicate`). The idempotent producer stops a retried produce from
    /// being stored twice, but not a resend after a producer restart: a reader of at-least-once
    /// records tolerates copies.
    opened: [std::collections::HashSet<(u32, u32)>; 3],
    round_timeout: Duration,
    runtime: tokio::runtime::Handle,
    /// The broker's acknowledgements of records sent and not yet confirmed: a send does not wait
    /// for its own (the peer cannot read the record sooner than the broker has it anyway); they
    /// are checked on every receive and awaited by [`AttemptTransport::flush`].
    pending: Vec<rdkafka::producer::DeliveryFuture>,
    /// Bytes this node sent in the attempt.
    pub bytes_sent: u64,
    /// Time spent sealing and queueing what this node sent.
    pub send_time: Duration,
    /// Time spent waiting for the peers' records.
    pub wait_time: Duration,
}

impl std::fmt::Debug for AttemptTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AttemptTransport(node {}, attempt {})",
            self.net.me, self.key.1
        )
    }
}

impl Drop for AttemptTransport {
    fn drop(&mut self) {
        let (lock, _) = &*self.net.inbox;
        if let Ok(mut inb) = lock.lock() {
            if let Some(i) = inb.map.remove(&self.key) {
                let freed: usize = i.queues.iter().flatten().map(|m| m.ciphertext.len()).sum();
                inb.buffered = inb.buffered.saturating_sub(freed);
            }
        }
    }
}

fn other(e: &'static str) -> TransportError {
    TransportError::Other(e)
}

impl AttemptTransport {
    fn channel(&self, from: u32, to: u32) -> ChannelId {
        ChannelId {
            job_hash: self.key.0,
            attempt: self.key.1,
            from,
            to,
        }
    }

    /// Opens both channels with a hello carrying `hello` (public: the presence pattern), returns
    /// the peers' hellos (indexed by party slot; this node's own is `hello`) and this attempt's
    /// PRSS seeds, exported from the fresh contexts.
    pub fn handshake(
        &mut self,
        hello: &[u8],
    ) -> Result<([Vec<u8>; 3], PartySeeds), TransportError> {
        let me = self.me();
        for p in [me.next(), me.prev()] {
            self.send(p, HELLO_ROUND, hello.to_vec())?;
        }
        let mut hellos: [Vec<u8>; 3] = Default::default();
        hellos[me.slot()] = hello.to_vec();
        for p in [me.next(), me.prev()] {
            hellos[p.slot()] = self.recv(p, HELLO_ROUND)?;
        }
        let seed = |s: &Self, p: Party| -> Result<Seed, TransportError> {
            // The pair's seed comes from the context whose sender has the lower index.
            let bytes = if me.index() < p.index() {
                s.senders[p.slot()].as_ref().map(PeerSender::export_seed)
            } else {
                s.receivers[p.slot()]
                    .as_ref()
                    .map(PeerReceiver::export_seed)
            };
            match bytes {
                Some(Ok(b)) => Ok(Seed::new(*b)),
                _ => Err(other("seed export failed")),
            }
        };
        let seeds = PartySeeds::new(me, seed(self, me.next())?, seed(self, me.prev())?);
        Ok((hellos, seeds))
    }

    fn me(&self) -> Party {
        Party::ALL[(self.net.me - 1) as usize]
    }

    /// Drops the acknowledgements that arrived; an error from the broker fails the attempt.
    fn check_pending(&mut self) -> Result<(), TransportError> {
        let mut failed = false;
        self.pending
            .retain_mut(|f| match futures::FutureExt::now_or_never(&mut *f) {
                None => true,
                Some(Ok(Ok(_))) => false,
                Some(_) => {
                    failed = true;
                    false
                }
            });
        if failed {
            return Err(other("peer message not acknowledged by the broker"));
        }
        Ok(())
    }

    fn send_chunks(&mut self, to: Party, round: u32, payload: &[u8]) -> Result<(), TransportError> {
        let from = self.net.me;
        if self.senders[to.slot()].is_none() {
            let id = self.channel(from, u32::from(to.index()));
            let s = PeerSender::open(
                &self.hpke,
                &self.peers[to.slot()],
                id,
                &mut rand_core::OsRng,
            )
            .map_err(|_| other("peer channel setup failed"))?;
            self.senders[to.slot()] = Some(s);
        }
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(PEER_CHUNK_BYTES).collect()
        };
        let n = chunks.len() as u32;
        for (i, c) in chunks.into_iter().enumerate() {
            let sender = self.senders[to.slot()].as_mut().ok_or(other("no sender"))?;
            let m = sender
                .seal(round, i as u32, n, c)
                .map_err(|_| other("peer seal failed"))?;
            let bytes = m.encode_to_vec();
            self.bytes_sent += bytes.len() as u64;
            self.net.metrics.bytes_sent.inc_by(bytes.len() as u64);
            let key = hex::encode(&self.key.0[..8]);
            let deadline = Instant::now() + self.round_timeout;
            let producer = self
                .net
                .producer
                .active()
                .map_err(|_| other("no Kafka producer"))?;
            let delivery = loop {
                let record = FutureRecord::to(&self.net.topic)
                    .partition(i32::from(to.index()) - 1)
                    .key(&key)
                    .payload(&bytes);
                match producer.send_result(record) {
                    Ok(d) => break d,
                    // The producer's queue is full: it drains as the broker acknowledges.
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        _,
                    )) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                    Err(_) => return Err(other("peer message not queued by the producer")),
                }
            };
            self.pending.push(delivery);
        }
        Ok(())
    }

    /// Waits until the broker acknowledged every record this attempt sent.
    pub fn flush(&mut self) -> Result<(), TransportError> {
        let pending = std::mem::take(&mut self.pending);
        let acked = self.runtime.block_on(async {
            tokio::time::timeout(self.round_timeout, futures::future::join_all(pending)).await
        });
        match acked {
            Ok(all) if all.iter().all(|r| matches!(r, Ok(Ok(_)))) => Ok(()),
            Ok(_) => Err(other("peer message not acknowledged by the broker")),
            Err(_) => Err(TransportError::Timeout),
        }
    }

    fn next_message(&mut self, from: Party) -> Result<v1::PeerMessage, TransportError> {
        let started = Instant::now();
        let m = self.wait_message(from);
        self.wait_time += started.elapsed();
        m
    }

    fn wait_message(&self, from: Party) -> Result<v1::PeerMessage, TransportError> {
        let deadline = Instant::now() + self.round_timeout;
        let (lock, cv) = &*self.net.inbox;
        let mut inb = lock.lock().map_err(|_| other("inbox lock poisoned"))?;
        loop {
            if let Some(i) = inb.map.get_mut(&self.key) {
                if let Some(m) = i.queues[from.slot()].pop_front() {
                    inb.buffered = inb.buffered.saturating_sub(m.ciphertext.len());
                    return Ok(m);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout);
            }
            inb = cv
                .wait_timeout(inb, left)
                .map_err(|_| other("inbox lock poisoned"))?
                .0;
        }
    }
}

impl Transport for AttemptTransport {
    fn send(&mut self, to: Party, round: u32, payload: Vec<u8>) -> Result<(), TransportError> {
        let started = Instant::now();
        let sent = self.send_chunks(to, round, &payload);
        self.send_time += started.elapsed();
        sent
    }
    fn recv(&mut self, from: Party, round: u32) -> Result<Vec<u8>, TransportError> {
        self.check_pending()?;
        let mut out = Vec::new();
        let mut expect_chunk = 0u32;
        loop {
            let m = self.next_message(from)?;
            if self.opened[from.slot()].contains(&(m.round, m.chunk)) {
                self.net.reject("duplicate");
                continue;
            }
            if self.receivers[from.slot()].is_none() {
                let id = self.channel(u32::from(from.index()), self.net.me);
                let r = PeerReceiver::open(&self.hpke, &self.peers[from.slot()], id, &m)
                    .map_err(|_| other("peer message does not open"))?;
                self.receivers[from.slot()] = Some(r);
            }
            let r = self.receivers[from.slot()]
                .as_mut()
                .ok_or(other("no receiver"))?;
            let pt = r
                .open_next(&m)
                .map_err(|_| other("peer message does not open"))?;
            self.opened[from.slot()].insert((m.round, m.chunk));
            if m.round != round {
                return Err(TransportError::OutOfOrder {
                    expected: round,
                    got: m.round,
                });
            }
            if m.chunk != expect_chunk || m.chunks == 0 || m.chunk >= m.chunks {
                return Err(other("peer message chunks out of order"));
            }
            out.extend_from_slice(&pt);
            expect_chunk += 1;
            if expect_chunk == m.chunks {
                return Ok(out);
            }
        }
    }
}
