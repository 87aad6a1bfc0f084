//! `at-mpc-node`, MPC node j of Protocol 2 (phase 6+): it follows the registry, the process tokens
//! (`at.tokens.v1`) and its share topic (`at.mpc.shares.node-j.v1`, folded from the beginning into
//! a verified, decrypted share store), and consumes `at.mpc.jobs.v1` as consumer group
//! `mpc-node-j`. For each job attempt it checks the service's signature and every participant's
//! process token, charges the persisted job budgets, defers it until its window's cut-off if that
//! is ahead (without holding up later jobs), computes with its two peers over the HPKE
//! peer channel on `at.mpc.peer.v1`, and publishes an output share sealed for the receiver, or a
//! signed `JobFailed`, on `at.mpc.results.v1`.
//!
//! Modules: `jobs` (one job record), `checks` (admission: tokens, grants, designation, window
//! bounds), `deferred` (attempts waiting for their cut-off), `shares` (the store), `tokens`, `state`
//! (job ledger, budgets, deferred attempts), `net` (the Kafka peer transport), `attempt` (one run),
//! `ctx` (what the handlers share).
#![forbid(unsafe_code)]

pub mod attempt;
pub mod checks;
pub mod config;
mod ctx;
mod deferred;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod shares;
pub mod state;
pub mod tokens;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::envelope::Receiver;
use armored_runtime::follower::Follower;
use armored_runtime::pipeline::{GroupSpec, Handler, Inbound};
use armored_schemas::Refusal;

pub use crate::config::{defaults, Config, Keys};
use crate::ctx::{dead_letter, Ctx, Refused};
use crate::net::PeerNet;
use crate::shares::ShareStore;
use crate::state::NodeState;
use crate::tokens::TokenStore;

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

    let (bad_tx, mut bad_rx) = tokio::sync::mpsc::unbounded_channel::<(Inbound, Refused)>();
    let tx = bad_tx.clone();
    let (registry, reg_follower) = armored_runtime::registry::follow(
        &cfg.kafka,
        &topics.registry(),
        shutdown.clone(),
        move |rec, outcome| {
            if let Err(e) = outcome {
                let _ = tx.send((rec.clone(), Box::new(e)));
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
                    let _ = tx.send((rec.clone(), Box::new(e)));
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
                            let _ = tx.send((rec.clone(), Box::new(e)));
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

    let (deferred_tx, deferred_rx) = tokio::sync::mpsc::unbounded_channel();
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
        deferred: deferred_tx,
        shutdown: shutdown.clone(),
    });
    deferred::start(ctx.clone(), deferred_rx);

    // Refused control and share records become dead letters.
    let c = ctx.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = c.shutdown.cancelled() => break,
                Some((rec, why)) = bad_rx.recv() => dead_letter(&c, &rec, &*why).await,
            }
        }
    });

    let handler: Handler = {
        let ctx = ctx.clone();
        Arc::new(move |m: Inbound| {
            let ctx = ctx.clone();
            Box::pin(async move { jobs::handle(ctx, m).await })
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
    let metrics = armored_runtime::pipeline::GroupMetrics {
        lag: ctx.metrics.consumer_lag.clone(),
        consumer_restarts: ctx.metrics.consumer_restarts.clone(),
    };
    armored_runtime::service::consume(
        "mpc-node", &base, &cfg.kafka, spec, metrics, handler, shutdown,
    )
    .await?;
    Ok(())
}
