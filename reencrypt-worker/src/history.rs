//! The work of one history replay (replay.rs admits the requests): scan `at.sync.v1` up to the end
//! offsets of the moment it starts, keep the owner's envelopes from the epoch on, and re-encrypt
//! and produce them in ingest-time order, batch by batch, while the re-key stands.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use armored_base::time::now_ms;
use armored_crypto::envelope::parse_header;
use armored_crypto::tokens::ReceiverKind;
use armored_crypto::{Error as CryptoError, KeyId};
use armored_runtime::follower::SyncTimeout;
use armored_runtime::kafka::{enqueue, AckError};
use armored_runtime::reader::{ReadError, ReadOptions, TopicReader};
use armored_schemas::decode_strict;
use armored_schemas::limits::MAX_ENVELOPE_BYTES;
use armored_schemas::v1;

use crate::audit::{ack_of, entry_from};
use crate::ctx::Ctx;
use crate::reencrypt::{Cache, Dest, Opened, Output};
use crate::rekeys::Grant;

/// Deliveries re-encrypted and produced per batch (a revocation is checked between batches).
const BATCH: usize = 64;
/// Capsule2s a replay keeps (its own cache: a long history must not evict live routing's).
const CACHE_ENTRIES: usize = 10_000;
/// The scan fails when no record came for this long.
const STALL: Duration = Duration::from_secs(60);

/// Why a replay did not finish; it is redone (its request's offset is not committed).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The worker is shutting down.
    #[error("shut down during the replay")]
    ShutDown,
    /// The control topics were not applied up to the request.
    #[error(transparent)]
    Sync(#[from] SyncTimeout),
    /// `at.sync.v1` could not be opened.
    #[error(transparent)]
    Kafka(#[from] armored_runtime::kafka::KafkaSetupError),
    /// The scan of `at.sync.v1` ended early.
    #[error("the scan of at.sync.v1: {0}")]
    Scan(ReadError),
    /// A delivery was not acknowledged.
    #[error(transparent)]
    Ack(#[from] AckError),
    /// A blocking task panicked or was cancelled.
    #[error("replay task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The matching records are more than a replay holds in memory ([`MAX_REPLAY_BYTES`]): the
    /// replay fails with this reason instead of growing the worker without bound (ask for a later
    /// `from_epoch`).
    #[error("history over {MAX_REPLAY_BYTES} bytes after {matched} matching records")]
    TooLarge {
        /// Records matched when the budget ran out.
        matched: usize,
    },
}

/// The bytes of matching records one replay holds (they are sorted by time before delivery).
pub const MAX_REPLAY_BYTES: usize = 512 << 20;

/// An admitted request: what to replay.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub request_id: String,
    /// When the owner says it asked (bounds how long the worker remembers it).
    pub issued_at_ms: u64,
    pub rk_id: [u8; 16],
    pub from_epoch: u64,
    pub owner_pre: KeyId,
    pub grant: Arc<Grant>,
}

/// Counts of one replay, reported while it runs.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub total: AtomicU64,
    pub scanned: AtomicU64,
    pub matched: AtomicU64,
    pub delivered: AtomicU64,
    pub skipped: AtomicU64,
}

/// A stored record that matched.
struct Match {
    ts: i64,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// Scans and delivers: Ok(true) done, Ok(false) stopped by a revocation.
pub(crate) async fn scan_and_deliver(
    ctx: &Arc<Ctx>,
    a: &Job,
    p: &Arc<Progress>,
) -> Result<bool, ReplayError> {
    let matches = {
        let (ctx, p, a) = (ctx.clone(), p.clone(), a.clone());
        tokio::task::spawn_blocking(move || scan(&ctx, &p, &a)).await??
    };
    deliver(ctx, a, p, matches).await
}

/// Reads `at.sync.v1` up to its current end and keeps what may match (cheap checks on the plain
/// header only; the capsule is decoded and checked when it is re-encrypted).
fn scan(ctx: &Ctx, p: &Progress, a: &Job) -> Result<Vec<Match>, ReplayError> {
    let node_key = a.grant.grant.receiver_kind == ReceiverKind::MpcNode;
    let reader = TopicReader::open(
        &ctx.cfg.kafka,
        &ctx.topics.sync(),
        ReadOptions {
            stall: Some(STALL),
            max_payload: MAX_ENVELOPE_BYTES,
            stop: Some(ctx.shutdown.clone()),
            ..ReadOptions::default()
        },
    )?;
    p.total.fetch_add(reader.total(), Ordering::Relaxed);
    let mut out = Vec::new();
    let mut held = 0usize;
    for rec in reader {
        let rec = match rec {
            Ok(rec) => rec,
            Err(ReadError::Cancelled) => return Err(ReplayError::ShutDown),
            Err(e) if e.is_final() => return Err(ReplayError::Scan(e)),
            // Oversized: scanned, never admitted.
            Err(_) => {
                p.scanned.fetch_add(1, Ordering::Relaxed);
                ctx.metrics.replay.scanned.inc();
                continue;
            }
        };
        p.scanned.fetch_add(1, Ordering::Relaxed);
        ctx.metrics.replay.scanned.inc();
        if admits(ctx, &rec.payload, a.owner_pre, a.from_epoch, node_key) {
            p.matched.fetch_add(1, Ordering::Relaxed);
            held += rec.payload.len();
            if held > MAX_REPLAY_BYTES {
                return Err(ReplayError::TooLarge { matched: out.len() });
            }
            out.push(Match {
                ts: rec.timestamp_ms.unwrap_or_default(),
                partition: rec.partition,
                offset: rec.offset,
                key: rec.key.unwrap_or_default(),
                payload: rec.payload,
            });
        }
    }
    out.sort_by_key(|m| (m.ts, m.partition, m.offset));
    Ok(out)
}

fn admits(ctx: &Ctx, payload: &[u8], owner_pre: KeyId, from_epoch: u64, node_key: bool) -> bool {
    if payload.len() > MAX_ENVELOPE_BYTES {
        return false;
    }
    let Ok(env) = decode_strict::<v1::Envelope>("Envelope", payload, MAX_ENVELOPE_BYTES) else {
        return false;
    };
    let Ok(h) = parse_header(&env.header) else {
        return false;
    };
    let is_node = h.attributes.iter().any(|a| a.starts_with("node-"));
    let owner_ok = ctx.registry.read().is_ok_and(|r| {
        r.twin_owner(&h.twin_id)
            .is_some_and(|o| o.pre.key_id() == owner_pre)
    });
    owner_ok && h.epoch >= from_epoch && is_node == node_key
}

/// Re-encrypts and produces the matches in order, batch by batch, while the re-key stands.
async fn deliver(
    ctx: &Arc<Ctx>,
    a: &Job,
    p: &Arc<Progress>,
    matches: Vec<Match>,
) -> Result<bool, ReplayError> {
    let kind = match a.grant.grant.receiver_kind {
        ReceiverKind::Device => "device",
        ReceiverKind::MpcNode => "mpc-node",
        _ => "service",
    };
    let cache = Arc::new(Cache::new(CACHE_ENTRIES));
    let mut rest = matches;
    while !rest.is_empty() {
        if ctx.shutdown.is_cancelled() {
            return Err(ReplayError::ShutDown);
        }
        let still = ctx
            .store
            .read()
            .map(|s| s.get(&a.rk_id).is_some())
            .unwrap_or(false);
        if !still {
            return Ok(false);
        }
        let tail = rest.split_off(rest.len().min(BATCH));
        let batch = std::mem::replace(&mut rest, tail);
        let (c, g, cache2, p2) = (ctx.clone(), a.grant.clone(), cache.clone(), p.clone());
        let req = a.request_id.clone();
        let outs =
            tokio::task::spawn_blocking(move || reencrypt_batch(&c, &g, &req, &cache2, &p2, batch))
                .await?;
        let topic_of = |o: &Output| match o.dest {
            Dest::Node(j) => ctx.topics.mpc_shares(j),
            Dest::Deliver { .. } => ctx.topics.deliver(),
        };
        // The batch's audit entries first (audit.rs): the source is the stored record replayed.
        let sync = ctx.topics.sync();
        let entries = outs
            .iter()
            .map(|(_, src, o)| entry_from(o, &sync, src.0, src.1, &topic_of(o)))
            .collect();
        let audited = ctx
            .audit
            .enqueue(&ctx.producer, &ctx.topics.audit(), entries)
            .await;
        let mut acks = Vec::with_capacity(outs.len());
        for (key, _, o) in outs {
            let headers = o.headers(Some(&a.request_id));
            acks.push(
                enqueue(
                    &ctx.producer,
                    &topic_of(&o),
                    &key,
                    &o.payload,
                    Some(headers),
                )
                .await,
            );
        }
        if let Some(audited) = &audited {
            ack_of(audited).await?;
        }
        for ack in acks {
            ack.await?;
            p.delivered.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.replay.delivered.inc();
            ctx.metrics.deliveries.with_label_values(&[kind]).inc();
        }
    }
    Ok(true)
}

/// (record key, its (partition, offset) in the log, delivery) of each match the re-key admits.
fn reencrypt_batch(
    ctx: &Ctx,
    g: &Grant,
    request_id: &str,
    cache: &Cache,
    p: &Progress,
    batch: Vec<Match>,
) -> Vec<(Vec<u8>, (i32, i64), Output)> {
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        match reencrypt_one(ctx, g, request_id, cache, &m) {
            Ok(Some((key, o))) => out.push((key, (m.partition, m.offset), o)),
            Ok(None) => {}
            Err(e) => {
                p.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, partition = m.partition, offset = m.offset, "replay skips a stored record");
            }
        }
    }
    out
}

fn reencrypt_one(
    ctx: &Ctx,
    g: &Grant,
    request_id: &str,
    cache: &Cache,
    m: &Match,
) -> Result<Option<(Vec<u8>, Output)>, CryptoError> {
    let opened = Opened::decode(&m.payload)?;
    let c1 = opened.c1.header();
    // The policy decides on the capsule's attributes, as in live routing; a time-windowed grant
    // admits only its epochs, whatever epoch the replay request starts from.
    if !g.grant.rk.policy().is_satisfied(&c1.attributes)
        || !g.grant.admits_epoch(opened.header.epoch)
        || g.grant.not_after_ms.is_some_and(|na| now_ms() > na)
        || c1.owner_key_id != g.grant.rk.owner_key_id()
    {
        return Ok(None);
    }
    let o = opened.deliver(g, &mut None, cache, &ctx.metrics.route, Some(request_id))?;
    // A share bundle keeps its twin key; a delivery is keyed by its receiver.
    let key = match o.dest {
        Dest::Node(_) => m.key.clone(),
        Dest::Deliver { .. } => g.grant.receiver_id.clone().into_bytes(),
    };
    Ok(Some((key, o)))
}
