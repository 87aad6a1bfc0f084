//! `at-mpc-node`, MPC node j of Protocol 2 (phase 6+): it follows the registry, the process tokens
//! (`at.tokens.v1`) and its share topic (`at.mpc.shares.node-j.v1`, folded from the beginning into
//! a verified, decrypted share store), and consumes `at.mpc.jobs.v1` as consumer group
//! `mpc-node-j`. For each job attempt it checks the service's signature and every participant's
//! process token, charges the persisted job budgets, computes with its two peers over the HPKE
//! peer channel on `at.mpc.peer.v1`, and publishes an output share sealed for the receiver, or a
//! signed `JobFailed`, on `at.mpc.results.v1`.
//!
//! Modules: `checks` (admission: tokens, grants, designation), `shares` (the store), `tokens`,
//! `state` (job ledger and budgets), `net` (the Kafka peer transport), `attempt` (one run).
#![forbid(unsafe_code)]

pub mod attempt;
pub mod checks;
pub mod config;
pub mod metrics;
pub mod net;
pub mod shares;
pub mod state;
pub mod tokens;

use armored_schemas::Refusal;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::envelope::Receiver;
use armored_crypto::mpcjob::{peek_job, sign_job_failed, verify_job, JobFailure, SignedJob};
use armored_crypto::registry::Registry;
use armored_runtime::dlq::{DeadLetters, Source};
use armored_runtime::follower::Follower;
use armored_runtime::kafka::{enqueue, Ack, Topics};
use armored_runtime::pipeline::{GroupSpec, Handler, Inbound};
use armored_schemas::limits::MAX_JOB_BYTES;
use armored_schemas::v1::mpc_result::Result as ResultKind;
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;

pub use crate::config::{defaults, Config, Keys};
use crate::net::PeerNet;
use crate::shares::ShareStore;
use crate::state::{AttemptState, NodeState, Seen};
use crate::tokens::TokenStore;

struct Ctx {
    cfg: Config,
    keys: Keys,
    topics: Topics,
    producer: armored_runtime::kafka::AtProducer,
    dlq: DeadLetters,
    metrics: metrics::Metrics,
    registry: Arc<RwLock<Registry>>,
    tokens: Arc<RwLock<TokenStore>>,
    shares: Arc<RwLock<ShareStore>>,
    followers: [Follower; 3],
    state: Mutex<NodeState>,
    net: Arc<PeerNet>,
    shutdown: Shutdown,
}

/// Runs node `cfg.node.index` until `shutdown`.
pub async fn run(cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(config = %armored_runtime::config::redacted_json(&cfg), "at-mpc-node starting");
    let mut keys = Keys::load(&cfg.node)?;
    let pre = keys
        .pre
        .take()
        .ok_or_else(|| anyhow::anyhow!("node PRE key missing"))?;
    let j = keys.index;
    let metrics = metrics::Metrics::new()?;
    let base = armored_runtime::service::start(
        "mpc-node",
        &cfg.kafka,
        cfg.node.metrics_addr,
        metrics.registry.clone(),
        metrics.dead_letters.clone(),
        &shutdown,
    )
    .await?;
    let (topics, producer, dlq) = (base.topics.clone(), base.producer.clone(), base.dlq.clone());
    let state = NodeState::open(Some(cfg.node.state_dir()))?;
    // The peer channel first: its position is this process's start, so a peer that begins an
    // attempt while this node is still folding its topics does not lose its first messages.
    let net = PeerNet::start(
        &cfg.kafka,
        &topics.mpc_peer(),
        j,
        producer.clone(),
        metrics.clone(),
        shutdown.clone(),
    )?;
    let timeout = Duration::from_millis(cfg.kafka.connect_timeout_ms.max(10_000));

    let (bad_tx, mut bad_rx) =
        tokio::sync::mpsc::unbounded_channel::<(Inbound, &'static str, String)>();
    let tx = bad_tx.clone();
    let (registry, reg_follower) = armored_runtime::registry::follow(
        &cfg.kafka,
        &topics.registry(),
        shutdown.clone(),
        move |rec, outcome| {
            if let Err(e) = outcome {
                let _ = tx.send((rec.clone(), e.reason(), e.to_string()));
            }
        },
    )?;
    reg_follower.synced_since(Instant::now(), timeout).await?;

    let tokens: Arc<RwLock<TokenStore>> = Arc::default();
    let tok_follower = {
        let (registry, tokens, m, tx) = (
            registry.clone(),
            tokens.clone(),
            metrics.clone(),
            bad_tx.clone(),
        );
        Follower::start(
            &cfg.kafka,
            &topics.tokens(),
            Box::new(move |rec| {
                let (Ok(reg), Ok(mut t)) = (registry.read(), tokens.write()) else {
                    return;
                };
                if let Err(e) = t.apply(&rec.payload, &reg) {
                    let _ = tx.send((rec.clone(), e.reason(), e.to_string()));
                }
                m.tokens.set(t.len() as i64);
            }),
            shutdown.clone(),
        )?
    };

    let shares: Arc<RwLock<ShareStore>> = Arc::default();
    let share_follower = {
        let (registry, shares, m, tx) = (
            registry.clone(),
            shares.clone(),
            metrics.clone(),
            bad_tx.clone(),
        );
        let mut receiver = Receiver::new(pre);
        Follower::start(
            &cfg.kafka,
            &topics.mpc_shares(j),
            Box::new(move |rec| {
                let (Ok(reg), Ok(mut s)) = (registry.read(), shares.write()) else {
                    return;
                };
                let received = rec.timestamp_ms.map_or_else(now_ms, |t| t.max(0) as u64);
                match s.apply(&mut receiver, &reg, j, &rec.payload, received) {
                    Ok(_) => m.shares_stored.set(s.len() as i64),
                    Err(e) => {
                        m.shares_rejected.with_label_values(&[e.reason()]).inc();
                        if !matches!(e, shares::ShareError::NotForThisNode) {
                            let _ = tx.send((rec.clone(), e.reason(), e.to_string()));
                        }
                    }
                }
            }),
            shutdown.clone(),
        )?
    };
    tok_follower.synced_since(Instant::now(), timeout).await?;
    share_follower
        .synced_since(Instant::now(), Duration::from_secs(600))
        .await?;

    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        keys,
        topics,
        producer: producer.clone(),
        dlq,
        metrics,
        registry,
        tokens,
        shares,
        followers: [reg_follower, tok_follower, share_follower],
        state: Mutex::new(state),
        net,
        shutdown: shutdown.clone(),
    });

    // Refused control and share records become dead letters.
    let c = ctx.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = c.shutdown.cancelled() => break,
                Some((rec, reason, detail)) = bad_rx.recv() => dead_letter(&c, &rec, reason, &detail).await,
            }
        }
    });

    let handler: Handler = {
        let ctx = ctx.clone();
        Arc::new(move |m: Inbound| {
            let ctx = ctx.clone();
            Box::pin(async move { handle(ctx, m).await })
        })
    };
    let spec = GroupSpec {
        group: cfg.node.group(),
        topics: vec![ctx.topics.mpc_jobs()],
        queue_depth: 16,
        drain_timeout: Duration::from_secs(30),
    };
    tracing::info!(
        node = j,
        shares = ctx.shares.read().map(|s| s.len()).unwrap_or(0),
        tokens = ctx.tokens.read().map(|t| t.len()).unwrap_or(0),
        "at-mpc-node ready"
    );
    let lag = ctx.metrics.consumer_lag.clone();
    armored_runtime::service::consume("mpc-node", &base, &cfg.kafka, spec, lag, handler, shutdown)
        .await?;
    Ok(())
}

fn source(rec: &Inbound) -> Source<'_> {
    Source {
        topic: &rec.topic,
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.as_deref().unwrap_or_default(),
    }
}

async fn dead_letter(ctx: &Ctx, rec: &Inbound, reason: &str, detail: &str) {
    if let Err(e) = ctx
        .dlq
        .send(reason, detail, &source(rec), &rec.payload)
        .await
        .await
    {
        tracing::error!(error = %e, "dead letter not written");
    }
}

/// Publishes a result record (output share or failure) keyed by job id.
async fn publish(ctx: &Ctx, job_id: &str, result: ResultKind) -> Ack {
    let rec = v1::MpcResult {
        version: WIRE_VERSION,
        result: Some(result),
    }
    .encode_to_vec();
    enqueue(
        &ctx.producer,
        &ctx.topics.mpc_results(),
        job_id.as_bytes(),
        &rec,
        None,
    )
    .await
}

/// Fails an attempt on this node: signed `JobFailed`, metric, ledger.
async fn fail(ctx: &Ctx, job: &SignedJob, attempt: u32, reason: &str, detail: &str) -> Ack {
    tracing::info!(job = %job.job.job_id, attempt, reason, detail, "job attempt failed");
    ctx.metrics.jobs.with_label_values(&["failed"]).inc();
    ctx.metrics.failures.with_label_values(&[reason]).inc();
    let signed = sign_job_failed(
        &ctx.keys.sig,
        &JobFailure {
            job_id: job.job.job_id.clone(),
            job_hash: job.job_hash,
            attempt,
            node_index: ctx.keys.index,
            reason: reason.to_owned(),
            detail: detail.to_owned(),
        },
    );
    let ack = publish(ctx, &job.job.job_id, ResultKind::JobFailed(signed)).await;
    let persisted = ctx
        .state
        .lock()
        .map_err(|_| "state lock poisoned".to_string())
        .and_then(|mut s| {
            s.set(
                &job.job.job_id,
                &job.job_hash,
                attempt,
                AttemptState::Failed,
            )
            .map_err(|e| e.to_string())
        });
    Box::pin(async move {
        ack.await?;
        persisted
    })
}

/// Waits until the registry, tokens and shares are applied up to `since`.
async fn synced(ctx: &Ctx, since: Instant) -> Result<(), String> {
    for f in &ctx.followers {
        f.request_sync(since);
    }
    loop {
        let mut ok = true;
        for f in &ctx.followers {
            if let Err(e) = f.synced_since(since, Duration::from_secs(5)).await {
                if ctx.shutdown.is_cancelled() {
                    return Err(e.to_string());
                }
                tracing::warn!(error = %e, "waiting for the control and share topics");
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(());
        }
    }
}

/// One record of `at.mpc.jobs.v1`.
async fn handle(ctx: Arc<Ctx>, m: Inbound) -> Vec<Ack> {
    let sub: v1::JobSubmission =
        match decode_strict::<v1::JobSubmission>("JobSubmission", &m.payload, MAX_JOB_BYTES + 64) {
            Ok(s) if s.version == WIRE_VERSION => s,
            Ok(_) => {
                return vec![
                    ctx.dlq
                        .send(
                            "unsupported_version",
                            "JobSubmission",
                            &source(&m),
                            &m.payload,
                        )
                        .await,
                ]
            }
            Err(e) => {
                return vec![
                    ctx.dlq
                        .send("malformed_job", &e.to_string(), &source(&m), &m.payload)
                        .await,
                ]
            }
        };
    let sync_start = Instant::now();
    if let Err(e) = synced(&ctx, m.received).await {
        return vec![Box::pin(async move { Err(e) })];
    }
    tracing::debug!(
        before_ms = sync_start.duration_since(m.received).as_millis() as u64,
        sync_ms = sync_start.elapsed().as_millis() as u64,
        "job record synced"
    );
    let service = match peek_job(&sub.job) {
        Ok(j) => j.service_id,
        Err(e) => {
            return vec![
                ctx.dlq
                    .send("malformed_job", &e.to_string(), &source(&m), &m.payload)
                    .await,
            ]
        }
    };
    let key = ctx
        .registry
        .read()
        .ok()
        .and_then(|r| r.party(&service).map(|p| p.sig));
    let Some(key) = key else {
        return vec![
            ctx.dlq
                .send("unknown_service", &service, &source(&m), &m.payload)
                .await,
        ];
    };
    let job = match verify_job(&sub.job, &key) {
        Ok(j) => j.into_inner(),
        Err(e) => {
            return vec![
                ctx.dlq
                    .send(e.reason(), &e.to_string(), &source(&m), &m.payload)
                    .await,
            ]
        }
    };
    let attempt = sub.attempt;
    let seen = match ctx.state.lock() {
        Ok(s) => s.seen(&job.job.job_id, &job.job_hash, attempt),
        Err(_) => return vec![Box::pin(async { Err("state lock poisoned".to_string()) })],
    };
    match seen {
        Seen::New => {}
        Seen::Finished(_) => {
            ctx.metrics.jobs.with_label_values(&["skipped"]).inc();
            return Vec::new();
        }
        Seen::Conflict => {
            let detail = "another job body under a known job id";
            let d = ctx
                .dlq
                .send("job_conflict", detail, &source(&m), &m.payload)
                .await;
            // Not recorded in the ledger: the known job keeps its hash.
            ctx.metrics
                .failures
                .with_label_values(&["job_conflict"])
                .inc();
            let signed = sign_job_failed(
                &ctx.keys.sig,
                &JobFailure {
                    job_id: job.job.job_id.clone(),
                    job_hash: job.job_hash,
                    attempt,
                    node_index: ctx.keys.index,
                    reason: "job_conflict".into(),
                    detail: detail.into(),
                },
            );
            return vec![
                d,
                publish(&ctx, &job.job.job_id, ResultKind::JobFailed(signed)).await,
            ];
        }
        Seen::Interrupted => {
            return vec![
                fail(
                    &ctx,
                    &job,
                    attempt,
                    "node_restarted",
                    "this node stopped during the attempt",
                )
                .await,
            ];
        }
    }
    vec![run_attempt(&ctx, &job, attempt, m.received).await]
}

async fn run_attempt(ctx: &Arc<Ctx>, job: &SignedJob, attempt: u32, polled: Instant) -> Ack {
    let started = Instant::now();
    // From the job record's poll to here: its decoding, the sync with the control and share
    // topics, the ledger.
    let queued_ms = started.duration_since(polled).as_millis() as u64;
    let admitted = {
        let (Ok(reg), Ok(tok)) = (ctx.registry.read(), ctx.tokens.read()) else {
            return Box::pin(async { Err("lock poisoned".to_string()) });
        };
        checks::admit(
            job,
            attempt,
            &reg,
            &tok,
            &checks::Deployment {
                nodes: ctx.keys.node_ids(),
                max_participants: ctx.cfg.node.max_participants,
                cutoff_skew_ms: ctx.cfg.node.cutoff_skew_ms,
            },
            now_ms(),
        )
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(r) => return fail(ctx, job, attempt, r.reason, &r.detail).await,
    };
    let admit_ms = started.elapsed().as_millis() as u64;
    // Inputs are cut off at the window's end plus the skew bound: wait for it, then for the share
    // topic to be applied up to that moment.
    let now = now_ms();
    if admitted.cutoff_ms > now {
        let wait = admitted.cutoff_ms - now;
        if wait > ctx.cfg.node.max_cutoff_wait_ms {
            return fail(
                ctx,
                job,
                attempt,
                "window_not_closed",
                &format!("inputs close in {wait} ms"),
            )
            .await;
        }
        tracing::info!(job = %job.job.job_id, wait_ms = wait, "waiting for the window's cut-off");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = ctx.shutdown.cancelled() => return Box::pin(async { Err("shutting down".to_string()) }),
        }
        if let Err(e) = synced(ctx, Instant::now()).await {
            return Box::pin(async move { Err(e) });
        }
    }
    let twins: Vec<(String, u32)> = std::iter::once(&admitted.reference)
        .chain(&admitted.participants)
        .map(|a| (a.twin_id.clone(), a.max_jobs_per_window))
        .collect();
    let charged = match ctx.state.lock() {
        Ok(mut s) => s
            .charge(
                &job.job.job_id,
                (job.job.window_start_slot, job.job.window_slots),
                &twins,
            )
            .and_then(|r| {
                if r.is_ok() {
                    s.set(
                        &job.job.job_id,
                        &job.job_hash,
                        attempt,
                        AttemptState::Running,
                    )?;
                }
                Ok(r)
            }),
        Err(_) => return Box::pin(async { Err("state lock poisoned".to_string()) }),
    };
    match charged {
        Ok(Ok(())) => {}
        Ok(Err(twin)) => {
            return fail(
                ctx,
                job,
                attempt,
                "budget_exhausted",
                &format!("{twin}: no jobs left in this window"),
            )
            .await
        }
        Err(e) => {
            let e = e.to_string();
            return Box::pin(async move { Err(e) });
        }
    }
    let gather_started = Instant::now();
    let inputs = match ctx.shares.read() {
        Ok(s) => attempt::gather(&s, &admitted),
        Err(_) => return Box::pin(async { Err("share store lock poisoned".to_string()) }),
    };
    let gather_ms = gather_started.elapsed().as_millis() as u64;
    let c = ctx.clone();
    let handle = tokio::runtime::Handle::current();
    let timeout = Duration::from_millis(ctx.cfg.node.round_timeout_ms);
    let a = admitted.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        attempt::run(&c.net, &c.keys, &a, inputs, timeout, handle)
    })
    .await;
    let done = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(f)) => return fail(ctx, job, attempt, f.reason, &f.detail).await,
        Err(e) => return fail(ctx, job, attempt, "engine_error", &e.to_string()).await,
    };
    ctx.metrics.rounds.inc_by(u64::from(done.rounds));
    ctx.metrics
        .job_seconds
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics.jobs.with_label_values(&["completed"]).inc();
    tracing::info!(
        job = %job.job.job_id,
        attempt,
        rounds = done.rounds,
        bytes_sent = done.bytes_sent,
        ms = started.elapsed().as_millis() as u64,
        queued_ms,
        admit_ms,
        gather_ms,
        hello_ms = done.hello_ms,
        mpc_ms = done.mpc_ms,
        send_ms = done.send_ms,
        wait_ms = done.wait_ms,
        "job attempt completed"
    );
    let ack = publish(ctx, &job.job.job_id, ResultKind::OutputShare(done.sealed)).await;
    let persisted = ctx
        .state
        .lock()
        .map_err(|_| "state lock poisoned".to_string())
        .and_then(|mut s| {
            s.set(&job.job.job_id, &job.job_hash, attempt, AttemptState::Done)
                .map_err(|e| e.to_string())
        });
    Box::pin(async move {
        ack.await?;
        persisted
    })
}
