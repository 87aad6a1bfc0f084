//! `at-reencrypt`, the re-encryption proxy of the cloud (phases 4, 6 and 6+): a consumer group on
//! `at.sync.v1`. It folds `at.registry.v1` (owners, twins) and `at.rekeys.v1` (owner-signed re-keys
//! and sticky revocations) to their ends before consuming data, keeps following them, and for each
//! stored envelope produces a delivery for every receiver whose re-key policy the plain attributes
//! satisfy. It holds only re-keys: it never sees a data key or a plaintext.
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
mod ctx;
pub mod history;
pub mod metrics;
pub mod ratelimit;
pub mod reencrypt;
pub mod rekeys;
pub mod replay;
pub mod replay_seen;
pub mod requests;
pub mod route;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_runtime::dlq::Source;
use armored_runtime::follower::{Follower, SyncTimeout};
use armored_runtime::kafka::{enqueue, failed, Ack, AckError};
use armored_runtime::latency;
use armored_runtime::pipeline::{GroupSpec, Handling, Inbound};
use armored_schemas::Refusal;
use rdkafka::message::Header;

pub use crate::config::{defaults, Config, WorkerConfig};
use crate::ctx::{wait_control, Ctx};
use crate::rekeys::{Change, ReKeyStore};
use crate::route::{route_batch, Cache, Dest, Output, RouteError};

/// Largest number of a partition's queued records routed together.
const MAX_BATCH: usize = 32;

/// Runs a worker until `shutdown`.
pub async fn run(cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(config = %armored_runtime::config::redacted_json(&cfg), "at-reencrypt starting");
    let metrics = metrics::Metrics::new()?;
    let base = armored_runtime::service::start(
        "reencrypt",
        &cfg.kafka,
        cfg.worker.metrics_addr,
        metrics.registry.clone(),
        metrics.dead_letters.clone(),
        &shutdown,
    )
    .await?;
    let (topics, producer, dlq) = (base.topics.clone(), base.producer.clone(), base.dlq.clone());
    let state_file = (!cfg.worker.state_dir.is_empty()).then(|| {
        let dir = PathBuf::from(&cfg.worker.state_dir);
        let _ = std::fs::create_dir_all(&dir);
        dir.join("revoked-rekeys.txt")
    });
    if state_file.is_none() {
        tracing::warn!("worker.state_dir is empty: revoked re-key ids are not persisted");
    }
    let replays_file = state_file
        .as_ref()
        .map(|f| f.with_file_name("replays-done.txt"));
    let replays = replay_seen::SeenReplays::open(replays_file)?;
    let auditor = Arc::new(audit::Auditor::open(
        &cfg.worker.state_dir,
        &cfg.worker.instance,
        metrics.audit_entries.clone(),
    )?);
    let pin = if cfg.worker.state_dir.is_empty() {
        "a key for this run only".to_string()
    } else {
        let public = PathBuf::from(&cfg.worker.state_dir).join(audit::PUB_FILE);
        format!(
            "owners pin it with `atctl owner trust-worker {}`",
            public.display()
        )
    };
    tracing::info!(
        instance = %auditor.instance,
        audit_key = %auditor.public_hex(),
        key_id = %auditor.key_id(),
        "the audit trail on at.audit.v1 is signed with this key: {pin}"
    );
    let store = Arc::new(RwLock::new(ReKeyStore::new(state_file)?));
    let cache = Arc::new(Cache::new(cfg.worker.cache_entries));
    let timeout = Duration::from_millis(cfg.kafka.connect_timeout_ms.max(10_000));

    // The registry first: re-keys are verified against the owners in it.
    let (reg_dlq_tx, mut reg_dlq_rx) = tokio::sync::mpsc::unbounded_channel::<(Inbound, Refused)>();
    let (registry, reg_follower) = armored_runtime::registry::follow(
        &cfg.kafka,
        &topics.registry(),
        shutdown.clone(),
        move |rec, outcome| {
            if let Err(e) = outcome {
                let _ = reg_dlq_tx.send((rec.clone(), Box::new(e)));
            }
        },
    )?;
    reg_follower.synced_since(Instant::now(), timeout).await?;

    let (rk_dlq_tx, mut rk_dlq_rx) = tokio::sync::mpsc::unbounded_channel::<(Inbound, Refused)>();
    let rk_follower = {
        let registry = registry.clone();
        let store = store.clone();
        let cache = cache.clone();
        let m = metrics.clone();
        Follower::start(
            &cfg.kafka,
            &topics.rekeys(),
            Box::new(move |rec| {
                let (Ok(reg), Ok(mut s)) = (registry.read(), store.write()) else {
                    return;
                };
                match s.apply(&rec.payload, &reg, now_ms(), Instant::now()) {
                    Ok(Change::Revoked) => {
                        cache.clear();
                        m.revocations.inc();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = rk_dlq_tx.send((rec.clone(), Box::new(e)));
                    }
                }
                m.rekeys.set(s.len() as i64);
                m.rekeys_pending.set(s.pending() as i64);
            }),
            shutdown.clone(),
        )?
    };
    rk_follower.synced_since(Instant::now(), timeout).await?;

    let request_metrics = ratelimit::RequestMetrics::new(&metrics.registry)?;
    let audit_rounds = audit::Rounds::start(auditor.clone(), producer.clone(), topics.audit());
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        topics,
        producer: producer.clone(),
        dlq,
        metrics,
        registry,
        store,
        cache,
        requests: ratelimit::Requests {
            limiter: ratelimit::RateLimiter::new(cfg.requests.clone()),
            metrics: request_metrics,
        },
        reg_follower,
        rk_follower,
        shutdown: shutdown.clone(),
        replays,
        audit_rounds,
        audit: auditor,
    });

    // Dead letters of the control topics, and re-keys whose owner appeared later.
    let c = ctx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = c.shutdown.cancelled() => break,
                Some((rec, why)) = reg_dlq_rx.recv() => dead_letter(&c, &rec, &*why).await,
                Some((rec, why)) = rk_dlq_rx.recv() => dead_letter(&c, &rec, &*why).await,
                _ = tick.tick() => retry_pending(&c).await,
            }
        }
    });

    // Records of a partition are routed together when they queue up (up to MAX_BATCH): their
    // capsules then share one well-formedness check (route::route_batch).
    let handler = Handling::Batch {
        max: MAX_BATCH,
        handler: {
            let ctx = ctx.clone();
            Arc::new(move |batch: Vec<Inbound>| {
                let ctx = ctx.clone();
                Box::pin(async move { handle_batch(ctx, batch).await })
            })
        },
    };
    let spec = GroupSpec {
        group: cfg.worker.group.clone(),
        // at.requests.v1 carries requests (requests.rs); at.control.v1 history replay requests
        // (replay.rs): one worker handles each.
        topics: vec![
            ctx.topics.sync(),
            ctx.topics.requests(),
            ctx.topics.control(),
        ],
        queue_depth: 256,
        drain_timeout: Duration::from_secs(10),
    };
    tracing::info!(
        rekeys = ctx.store.read().map(|s| s.len()).unwrap_or(0),
        "at-reencrypt ready"
    );
    let metrics = armored_runtime::pipeline::GroupMetrics {
        lag: ctx.metrics.consumer_lag.clone(),
        consumer_restarts: ctx.metrics.consumer_restarts.clone(),
    };
    armored_runtime::service::consume(
        "reencrypt",
        &base,
        &cfg.kafka,
        spec,
        metrics,
        handler,
        shutdown,
    )
    .await?;
    Ok(())
}

/// A refused control record, on its way to the dead letters.
type Refused = Box<dyn Refusal + Send + Sync>;

async fn dead_letter(ctx: &Ctx, rec: &Inbound, why: &(dyn Refusal + Sync)) {
    let src = Source {
        topic: &rec.topic,
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.as_deref().unwrap_or_default(),
    };
    if let Err(e) = ctx.dlq.refuse(why, &src, &rec.payload).await.await {
        tracing::error!(error = %e, "dead letter not written");
    }
}

async fn retry_pending(ctx: &Ctx) {
    let results = {
        let (Ok(reg), Ok(mut s)) = (ctx.registry.read(), ctx.store.write()) else {
            return;
        };
        if s.pending() == 0 {
            return;
        }
        s.retry_pending(&reg, ctx.reg_follower.synced_at(), now_ms())
    };
    for (bytes, r) in results {
        if let Err(e) = r {
            let rec = Inbound {
                topic: ctx.topics.rekeys(),
                partition: -1,
                offset: -1,
                key: None,
                payload: bytes,
                timestamp_ms: None,
                headers: Vec::new(),
                received: Instant::now(),
            };
            dead_letter(ctx, &rec, &e).await;
        }
    }
}

/// Records queued for one partition: requests and replay requests one by one; records of
/// `at.sync.v1` together (one capsule check for the batch).
async fn handle_batch(ctx: Arc<Ctx>, batch: Vec<Inbound>) -> Vec<Vec<Ack>> {
    let Some(first) = batch.first() else {
        return Vec::new();
    };
    if first.topic != ctx.topics.sync() {
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            out.push(handle(ctx.clone(), m).await);
        }
        return out;
    }
    ctx.metrics.messages_in.inc_by(batch.len() as u64);
    // The last record was fetched last: control topics applied up to then cover them all.
    let fetched = batch
        .iter()
        .map(|m| m.received)
        .max()
        .unwrap_or(first.received);
    if let Err(e) = wait_control(&ctx, fetched).await {
        return fail_all(&batch, || RecordError::Sync(e.clone()));
    }
    let c = ctx.clone();
    let payloads: Vec<Vec<u8>> = batch.iter().map(|m| m.payload.clone()).collect();
    let routed = tokio::task::spawn_blocking(move || {
        let reg = c.registry.read().map_err(|_| "registry")?;
        let store = c.store.read().map_err(|_| "re-key store")?;
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        Ok::<_, &'static str>(route_batch(&refs, c.routing(&reg, &store)))
    })
    .await;
    let results = match routed {
        Ok(Ok(r)) => r,
        Ok(Err(lock)) => return fail_all(&batch, || RecordError::Poisoned(lock)),
        Err(e) => {
            let e = Arc::new(e);
            return fail_all(&batch, || RecordError::Task(e.clone()));
        }
    };
    // The batch's audit entries first, signed in a round with other lanes' (audit.rs); each
    // covered record waits for them too before its offset is committed.
    let entries: Vec<_> = batch
        .iter()
        .zip(&results)
        .filter_map(|(m, r)| Some((m, r.as_ref().ok()?)))
        .flat_map(|(m, outputs)| {
            outputs
                .iter()
                .map(|o| audit::entry(o, m, &output_topic(&ctx, o)))
        })
        .collect();
    let audited = ctx.audit_rounds.submit(entries).await;
    let mut out = Vec::with_capacity(batch.len());
    for (m, r) in batch.iter().zip(results) {
        let covered = matches!(&r, Ok(o) if !o.is_empty());
        let mut acks = produce(&ctx, m, r).await;
        if let (true, Some(a)) = (covered, &audited) {
            acks.push(audit::ack_of(a));
        }
        out.push(acks);
    }
    out
}

/// The topic an output goes to.
fn output_topic(ctx: &Ctx, o: &Output) -> String {
    match o.dest {
        Dest::Deliver { .. } => ctx.topics.deliver(),
        Dest::Node(j) => ctx.topics.mpc_shares(j),
    }
}

/// Why a record of `at.sync.v1` or `at.requests.v1` was not handled (it is handled again later).
#[derive(Clone, Debug, thiserror::Error)]
enum RecordError {
    /// Shut down before the control topics were applied up to the record.
    #[error(transparent)]
    Sync(#[from] SyncTimeout),
    /// A lock was poisoned by a panic.
    #[error("{0} lock poisoned")]
    Poisoned(&'static str),
    /// The routing task panicked.
    #[error("routing task: {0}")]
    Task(Arc<tokio::task::JoinError>),
}

fn fail_all(batch: &[Inbound], e: impl Fn() -> RecordError) -> Vec<Vec<Ack>> {
    batch
        .iter()
        .map(|_| vec![failed(AckError::service(e()))])
        .collect()
}

/// One record of `at.requests.v1` or `at.control.v1`.
async fn handle(ctx: Arc<Ctx>, m: Inbound) -> Vec<Ack> {
    if m.topic == ctx.topics.control() {
        return replay::handle(ctx, m).await;
    }
    ctx.metrics.messages_in.inc();
    if let Err(e) = wait_control(&ctx, m.received).await {
        return vec![failed(AckError::service(RecordError::Sync(e)))];
    }
    requests::handle(ctx, m).await
}

/// Produces a routed record's outputs, or its dead letter.
async fn produce(ctx: &Ctx, m: &Inbound, routed: Result<Vec<Output>, RouteError>) -> Vec<Ack> {
    let src = Source {
        topic: &m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.key.as_deref().unwrap_or_default(),
    };
    let outputs = match routed {
        Ok(outputs) => outputs,
        Err(e) => return vec![ctx.dlq.refuse(&e, &src, &m.payload).await],
    };
    let stamp = latency::parse_stamp(m.header(latency::INGEST_MS_HEADER));
    let mut acks = Vec::with_capacity(outputs.len());
    for o in outputs {
        let topic = output_topic(ctx, &o);
        let key = match &o.dest {
            Dest::Deliver { receiver, .. } => receiver.clone(),
            Dest::Node(_) => {
                String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned()
            }
        };
        let mut headers = o.headers(None);
        if let Some(ms) = stamp {
            // Carried on, so that the bridge can measure a device's delivery end to end.
            headers = headers.insert(Header {
                key: latency::INGEST_MS_HEADER,
                value: Some(&ms.to_string()),
            });
        }
        ctx.metrics
            .deliveries
            .with_label_values(&[o.dest.kind()])
            .inc();
        ctx.metrics.bytes_out.inc_by(o.payload.len() as u64);
        let ack = enqueue(
            &ctx.producer,
            &topic,
            key.as_bytes(),
            &o.payload,
            Some(headers),
        )
        .await;
        acks.push(match stamp {
            Some(ms) => {
                let h = ctx.metrics.end_to_end.with_label_values(&[o.dest.kind()]);
                latency::observe_on_ack(ack, h, ms)
            }
            None => ack,
        });
    }
    acks
}
