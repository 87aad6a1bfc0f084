//! What the worker's handlers share: configuration, producer and dead letters, the folded
//! registry and re-keys with their followers, the ReEnc cache, the request path's limiter.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::registry::Registry;
use armored_runtime::dlq::DeadLetters;
use armored_runtime::follower::{wait_all, Follower, SyncTimeout};
use armored_runtime::kafka::{AtProducer, Topics};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::ratelimit::Requests;
use crate::rekeys::ReKeyStore;
use crate::route::{Cache, Routing};

/// The worker's shared state.
pub(crate) struct Ctx {
    pub(crate) cfg: Config,
    pub(crate) topics: Topics,
    pub(crate) producer: AtProducer,
    pub(crate) dlq: DeadLetters,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Arc<RwLock<Registry>>,
    pub(crate) store: Arc<RwLock<ReKeyStore>>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) requests: Requests,
    pub(crate) reg_follower: Follower,
    pub(crate) rk_follower: Follower,
    pub(crate) shutdown: Shutdown,
    /// Replay requests finished or running (each runs once).
    pub(crate) replays: crate::replay_seen::SeenReplays,
    /// Signs the audit trail.
    pub(crate) audit: Arc<crate::audit::Auditor>,
    /// Signs the routed batches' entries in rounds (the hot path).
    pub(crate) audit_rounds: crate::audit::Rounds,
}

impl Ctx {
    /// What routing reads, under the caller's locks of the registry and the re-keys.
    pub(crate) fn routing<'a>(
        &'a self,
        registry: &'a Registry,
        store: &'a ReKeyStore,
    ) -> Routing<'a> {
        Routing {
            max_bytes: self.cfg.worker.max_envelope_bytes,
            registry,
            store,
            cache: &self.cache,
            metrics: &self.metrics.route,
            now_ms: now_ms(),
            state_changes: true,
        }
    }
}

/// Waits until the registry and the re-keys are applied up to `fetched` (a revocation appended
/// before a record was fetched wins); an error only when shutting down.
pub(crate) async fn wait_control(ctx: &Ctx, fetched: Instant) -> Result<(), SyncTimeout> {
    let followers = [&ctx.reg_follower, &ctx.rk_follower];
    wait_all(&followers, fetched, Duration::from_secs(5), &ctx.shutdown).await
}
