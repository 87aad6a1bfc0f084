//! History replay (M3; envelope.md, "Re-encrypted delivery"): an owner-signed `ReplayRequest
//! { rk_id, from_epoch }` on `at.control.v1` makes one worker re-encrypt the twin's stored state
//! changes for that one re-key.
//!
//! - One worker per request: `at.control.v1` is consumed by the workers' group, so each request is
//!   handled by exactly one of them (the `history_from_epoch` of a re-key upload is informational:
//!   every worker folds `at.rekeys.v1`, and `atctl owner grant --from` appends a request as well).
//! - What: `at.sync.v1`, every partition, from its beginning up to the end offsets of the moment the
//!   request is handled; envelopes of the re-key owner's twins with `epoch >= from_epoch` whose
//!   attributes the re-key's policy admits (node re-keys only `node-*` envelopes, others never).
//!   Sent in ingest-time order (Kafka timestamp, then partition and offset), so a receiver rebuilds
//!   the state in the order the cloud saw it; deliveries carry `replay_request_id`.
//! - Revocation wins: the re-key is looked up again before every batch; once revoked, the replay
//!   stops (outcome `revoked`).
//! - Live traffic is not blocked: the replay runs on its own task (ReEnc on blocking threads); the
//!   request's offset is committed only when the replay has finished, so a worker that dies
//!   mid-replay leaves the request to be replayed again by another worker (receivers drop the
//!   duplicates by seq).
//! - Progress: metrics, and JSON status records on `at.control.v1` (key = request id, header
//!   `at-replay-status`), which `atctl owner replay` follows. They are informational and unsigned:
//!   workers skip them when they consume the topic.
//!
//! Matching records are held in memory until sent (the history of one owner's twins for one
//! receiver; a bound is future work).

use armored_schemas::Refusal;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_crypto::envelope::{decode_envelope, make_delivery, parse_header};
use armored_crypto::history::{claimed_signer, verify_replay_request};
use armored_crypto::kpcpre::{reencrypt, Capsule2};
use armored_crypto::tokens::ReceiverKind;
use armored_crypto::{Error as CryptoError, KeyId};
use armored_runtime::dlq::Source;
use armored_runtime::kafka::{base_config, enqueue, Ack};
use armored_runtime::pipeline::Inbound;
use armored_schemas::decode_strict;
use armored_schemas::limits::{MAX_CONTROL_BYTES, MAX_ENVELOPE_BYTES};
use armored_schemas::v1::{self, control_record::Record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rekeys::Grant;
use crate::Ctx;

/// Header marking a worker's progress record on `at.control.v1`.
pub const STATUS_HEADER: &str = "at-replay-status";
/// Header naming the replay request on its deliveries.
pub const REQUEST_HEADER: &str = "at-replay-request-id";
/// Deliveries re-encrypted and produced per batch (a revocation is checked between batches).
const BATCH: usize = 64;

/// Why a replay request was refused (dead-letter reasons).
#[derive(Debug, thiserror::Error)]
pub enum ReplayRefused {
    /// Malformed, bad signature, wrong version or field sizes.
    #[error("replay request rejected: {0}")]
    Invalid(#[from] CryptoError),
    /// Another record type on the control topic.
    #[error("record type not allowed on the control topic")]
    WrongTopic,
    /// Signed by a key no registered owner holds.
    #[error("replay request signed by an unknown owner key")]
    UnknownOwner,
    /// No such usable re-key.
    #[error("replay request for an unknown re-key")]
    UnknownRekey,
    /// The re-key was revoked.
    #[error("replay request for a revoked re-key")]
    Revoked,
    /// The re-key belongs to another owner.
    #[error("replay request for another owner's re-key")]
    ForeignRekey,
}

impl Refusal for ReplayRefused {
    fn reason(&self) -> &'static str {
        match self {
            ReplayRefused::Invalid(e) => e.reason(),
            ReplayRefused::WrongTopic => "wrong_topic",
            ReplayRefused::UnknownOwner => "unknown_owner",
            ReplayRefused::UnknownRekey => "unknown_rekey",
            ReplayRefused::Revoked => "revoked",
            ReplayRefused::ForeignRekey => "foreign_rekey",
        }
    }
}

/// A worker's progress report on one replay (JSON on `at.control.v1`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayStatus {
    /// Hex request id.
    pub request_id: String,
    /// Hex rk_id.
    pub rk_id: String,
    /// The re-key's receiver.
    pub receiver: String,
    /// First epoch replayed.
    pub from_epoch: u64,
    /// `running`, `done`, `revoked` or `failed`.
    pub state: String,
    /// Records of `at.sync.v1` up to the end offsets taken at the start.
    pub total: u64,
    /// Records read so far.
    pub scanned: u64,
    /// Records of the owner's twins from the epoch on (before the policy check).
    pub matched: u64,
    /// Deliveries produced and acknowledged.
    pub delivered: u64,
    /// Stored records that could not be re-encrypted (they were dead-lettered when first routed).
    pub skipped: u64,
    /// Failure detail, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

struct Accepted {
    request_id: String,
    rk_id: [u8; 16],
    from_epoch: u64,
    owner_pre: KeyId,
    grant: Arc<Grant>,
}

#[derive(Default)]
struct Progress {
    total: AtomicU64,
    scanned: AtomicU64,
    matched: AtomicU64,
    delivered: AtomicU64,
    skipped: AtomicU64,
}

/// One record of `at.control.v1`.
pub(crate) async fn handle(ctx: Arc<Ctx>, m: Inbound) -> Vec<Ack> {
    if m.header(STATUS_HEADER).is_some() {
        return Vec::new();
    }
    // A request names a re-key uploaded just before it: apply the control topics up to now first.
    if let Err(e) = synced(&ctx, m.received).await {
        return vec![Box::pin(async move { Err(e) })];
    }
    let accepted = {
        let r = check(&ctx, &m.payload);
        match r {
            Ok(a) => a,
            Err(e) => {
                let src = Source {
                    topic: &m.topic,
                    partition: m.partition,
                    offset: m.offset,
                    key: m.key.as_deref().unwrap_or_default(),
                };
                return vec![
                    ctx.dlq
                        .send(e.reason(), &e.to_string(), &src, &m.payload)
                        .await,
                ];
            }
        }
    };
    tracing::info!(
        request = %accepted.request_id,
        rk = %hex::encode(accepted.rk_id),
        from_epoch = accepted.from_epoch,
        "history replay starting"
    );
    // Its own task: the lane goes on; the request's offset waits for this acknowledgement.
    let task = tokio::spawn(run(ctx, accepted));
    vec![Box::pin(async move {
        match task.await {
            Ok(r) => r,
            Err(e) => Err(e.to_string()),
        }
    })]
}

async fn synced(ctx: &Ctx, fetched: Instant) -> Result<(), String> {
    loop {
        let wait = Duration::from_secs(5);
        ctx.rk_follower.request_sync(fetched);
        let both = async {
            ctx.reg_follower.synced_since(fetched, wait).await?;
            ctx.rk_follower.synced_since(fetched, wait).await
        };
        match both.await {
            Ok(()) => return Ok(()),
            Err(e) if ctx.shutdown.is_cancelled() => return Err(e.to_string()),
            Err(e) => tracing::warn!(error = %e, "waiting for control topics"),
        }
    }
}

fn check(ctx: &Ctx, payload: &[u8]) -> Result<Accepted, ReplayRefused> {
    let rec: v1::ControlRecord = decode_strict("ControlRecord", payload, 2 * MAX_CONTROL_BYTES)
        .map_err(CryptoError::from)?;
    armored_crypto::error::check_version("ControlRecord", rec.version)?;
    let Some(Record::ReplayRequest(b)) = rec.record else {
        return Err(ReplayRefused::WrongTopic);
    };
    let kid = claimed_signer(&b)?;
    let reg = ctx
        .registry
        .read()
        .map_err(|_| ReplayRefused::UnknownOwner)?;
    let owner = reg
        .owner_by_sig_key(&kid)
        .ok_or(ReplayRefused::UnknownOwner)?;
    let r = verify_replay_request(&b, &owner.sig)?.into_inner();
    let rk_id: [u8; 16] = r
        .rk_id
        .as_slice()
        .try_into()
        .map_err(|_| ReplayRefused::UnknownRekey)?;
    let store = ctx.store.read().map_err(|_| ReplayRefused::UnknownRekey)?;
    if store.is_revoked(&rk_id) {
        return Err(ReplayRefused::Revoked);
    }
    let grant = store.get(&rk_id).ok_or(ReplayRefused::UnknownRekey)?;
    if grant.owner_id != owner.owner_id {
        return Err(ReplayRefused::ForeignRekey);
    }
    Ok(Accepted {
        request_id: hex::encode(&r.request_id),
        rk_id,
        from_epoch: r.from_epoch,
        owner_pre: owner.pre.key_id(),
        grant,
    })
}

/// Runs one replay; `Ok` once it is final (done or revoked), `Err` if it must be redone.
async fn run(ctx: Arc<Ctx>, a: Accepted) -> Result<(), String> {
    let m = ctx.metrics.replay.clone();
    m.in_flight.inc();
    let progress = Arc::new(Progress::default());
    let r = replay(&ctx, &a, &progress).await;
    m.in_flight.dec();
    let (state, detail) = match &r {
        Ok(true) => ("done", String::new()),
        Ok(false) => ("revoked", String::new()),
        Err(e) => ("failed", e.clone()),
    };
    m.finished.with_label_values(&[state]).inc();
    tracing::info!(request = %a.request_id, state, delivered = progress.delivered.load(Ordering::Relaxed), "history replay finished");
    let ack = report(&ctx, &a, &progress, state, &detail).await;
    if let Err(e) = ack.await {
        tracing::warn!(error = %e, "replay status not written");
    }
    r.map(|_| ())
}

fn status(a: &Accepted, p: &Progress, state: &str, detail: &str) -> ReplayStatus {
    ReplayStatus {
        request_id: a.request_id.clone(),
        rk_id: hex::encode(a.rk_id),
        receiver: a.grant.grant.receiver_id.clone(),
        from_epoch: a.from_epoch,
        state: state.into(),
        total: p.total.load(Ordering::Relaxed),
        scanned: p.scanned.load(Ordering::Relaxed),
        matched: p.matched.load(Ordering::Relaxed),
        delivered: p.delivered.load(Ordering::Relaxed),
        skipped: p.skipped.load(Ordering::Relaxed),
        detail: detail.into(),
    }
}

async fn report(ctx: &Ctx, a: &Accepted, p: &Progress, state: &str, detail: &str) -> Ack {
    let body = serde_json::to_vec(&status(a, p, state, detail)).unwrap_or_default();
    let headers = OwnedHeaders::new().insert(Header {
        key: STATUS_HEADER,
        value: Some(state),
    });
    enqueue(
        &ctx.producer,
        &ctx.topics.control(),
        a.request_id.as_bytes(),
        &body,
        Some(headers),
    )
    .await
}

/// A stored record that matched.
struct Match {
    ts: i64,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// Ok(true) done, Ok(false) stopped by a revocation, Err to be redone.
async fn replay(ctx: &Arc<Ctx>, a: &Accepted, p: &Arc<Progress>) -> Result<bool, String> {
    // Progress records every second while it runs.
    let ticker = {
        let (ctx, p) = (ctx.clone(), p.clone());
        let a = Accepted {
            request_id: a.request_id.clone(),
            rk_id: a.rk_id,
            from_epoch: a.from_epoch,
            owner_pre: a.owner_pre,
            grant: a.grant.clone(),
        };
        tokio::spawn(async move {
            loop {
                if let Err(e) = report(&ctx, &a, &p, "running", "").await.await {
                    tracing::debug!(error = %e, "replay progress not written");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let r = async {
        let matches = {
            let (ctx, p) = (ctx.clone(), p.clone());
            let (owner_pre, from_epoch, node_key) = (
                a.owner_pre,
                a.from_epoch,
                a.grant.grant.receiver_kind == ReceiverKind::MpcNode,
            );
            tokio::task::spawn_blocking(move || scan(&ctx, &p, owner_pre, from_epoch, node_key))
                .await
                .map_err(|e| e.to_string())??
        };
        deliver(ctx, a, p, matches).await
    }
    .await;
    ticker.abort();
    r
}

/// Reads `at.sync.v1` up to its current end and keeps what may match (cheap checks on the plain
/// header only; the capsule is decoded and checked when it is re-encrypted).
fn scan(
    ctx: &Ctx,
    p: &Progress,
    owner_pre: KeyId,
    from_epoch: u64,
    node_key: bool,
) -> Result<Vec<Match>, String> {
    let topic = ctx.topics.sync();
    let c: BaseConsumer = base_config(&ctx.cfg.kafka)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for part in md.topics().iter().flat_map(|t| t.partitions()) {
        let (lo, hi) = c
            .fetch_watermarks(&topic, part.id(), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        if hi > lo {
            tpl.add_partition_offset(&topic, part.id(), Offset::Offset(lo))
                .map_err(|e| e.to_string())?;
            ends.insert(part.id(), hi);
            p.total.fetch_add((hi - lo) as u64, Ordering::Relaxed);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        if ctx.shutdown.is_cancelled() {
            return Err("shut down during the scan".into());
        }
        if last_progress.elapsed() > Duration::from_secs(60) {
            return Err("the scan of at.sync.v1 stalled for 60 s".into());
        }
        let rec = match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => Inbound::from_message(&m),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "replay scan");
                continue;
            }
            None => continue,
        };
        last_progress = Instant::now();
        let Some(hi) = ends.get(&rec.partition).copied() else {
            continue;
        };
        if rec.offset >= hi {
            ends.remove(&rec.partition);
            continue;
        }
        if rec.offset + 1 >= hi {
            ends.remove(&rec.partition);
        }
        p.scanned.fetch_add(1, Ordering::Relaxed);
        ctx.metrics.replay.scanned.inc();
        if admits(ctx, &rec.payload, owner_pre, from_epoch, node_key) {
            p.matched.fetch_add(1, Ordering::Relaxed);
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

struct Out {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// Re-encrypts and produces the matches in order, batch by batch, while the re-key stands.
async fn deliver(
    ctx: &Arc<Ctx>,
    a: &Accepted,
    p: &Arc<Progress>,
    matches: Vec<Match>,
) -> Result<bool, String> {
    let kind = match a.grant.grant.receiver_kind {
        ReceiverKind::Device => "device",
        ReceiverKind::MpcNode => "mpc-node",
        _ => "service",
    };
    let rk_hex = hex::encode(a.rk_id);
    let mut cache: Arc<std::sync::Mutex<HashMap<[u8; 32], Arc<Capsule2>>>> = Arc::default();
    let mut rest = matches;
    while !rest.is_empty() {
        if ctx.shutdown.is_cancelled() {
            return Err("shut down during the replay".into());
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
                .await
                .map_err(|e| e.to_string())?;
        let mut acks = Vec::with_capacity(outs.len());
        for o in outs {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "at-receiver-kind",
                    value: Some(kind),
                })
                .insert(Header {
                    key: "at-rk-id",
                    value: Some(&rk_hex),
                })
                .insert(Header {
                    key: REQUEST_HEADER,
                    value: Some(&a.request_id),
                });
            acks.push(enqueue(&ctx.producer, &o.topic, &o.key, &o.payload, Some(headers)).await);
        }
        for ack in acks {
            ack.await?;
            p.delivered.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.replay.delivered.inc();
            ctx.metrics.deliveries.with_label_values(&[kind]).inc();
        }
        if cache.lock().map(|c| c.len() > 10_000).unwrap_or(true) {
            cache = Arc::default();
        }
    }
    Ok(true)
}

fn reencrypt_batch(
    ctx: &Ctx,
    g: &Grant,
    request_id: &str,
    cache: &std::sync::Mutex<HashMap<[u8; 32], Arc<Capsule2>>>,
    p: &Progress,
    batch: Vec<Match>,
) -> Vec<Out> {
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        match reencrypt_one(ctx, g, request_id, cache, &m) {
            Ok(Some(o)) => out.push(o),
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
    cache: &std::sync::Mutex<HashMap<[u8; 32], Arc<Capsule2>>>,
    m: &Match,
) -> Result<Option<Out>, CryptoError> {
    let (env, header, c1) = decode_envelope(&m.payload)?;
    // The policy decides on the capsule's attributes, as in live routing.
    if !g.grant.rk.policy().is_satisfied(&c1.header().attributes)
        || g.grant.not_after_ms.is_some_and(|na| now_ms() > na)
        || c1.header().owner_key_id != g.grant.rk.owner_key_id()
    {
        return Ok(None);
    }
    let digest: [u8; 32] = Sha256::digest(c1.encode()).into();
    let cached = cache.lock().ok().and_then(|c| c.get(&digest).cloned());
    let c2 = match cached {
        Some(c2) => {
            ctx.metrics.route.cache_hits.inc();
            c2
        }
        None => {
            ctx.metrics.route.capsule_checks.inc();
            let checked = c1.check(&mut rand_core::OsRng)?;
            let t = Instant::now();
            let c2 = Arc::new(reencrypt(&g.grant.rk, &checked)?);
            ctx.metrics
                .route
                .reenc_seconds
                .observe(t.elapsed().as_secs_f64());
            ctx.metrics.route.reencryptions.inc();
            if let Ok(mut c) = cache.lock() {
                c.insert(digest, c2.clone());
            }
            c2
        }
    };
    let node = header
        .attributes
        .iter()
        .find_map(|a| a.strip_prefix("node-").and_then(|j| j.parse::<u32>().ok()));
    let (topic, key) = match (g.grant.receiver_kind, node) {
        (ReceiverKind::MpcNode, Some(j)) => (ctx.topics.mpc_shares(j), m.key.clone()),
        _ => (
            ctx.topics.deliver(),
            g.grant.receiver_id.clone().into_bytes(),
        ),
    };
    Ok(Some(Out {
        topic,
        key,
        payload: make_delivery(&env, &c2, Some(request_id)),
    }))
}
