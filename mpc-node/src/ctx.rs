//! What a node's handlers share: its configuration and keys, the folded registry, tokens and
//! shares with their followers, the job ledger, the peer channel; and its dead-letter path.

use std::sync::{Arc, Mutex, RwLock};

use armored_base::Shutdown;
use armored_crypto::registry::Registry;
use armored_runtime::dlq::{DeadLetters, Source};
use armored_runtime::follower::Follower;
use armored_runtime::kafka::Topics;
use armored_runtime::pipeline::Inbound;
use armored_schemas::Refusal;

use crate::config::{Config, Keys};
use crate::metrics::Metrics;
use crate::net::PeerNet;
use crate::shares::ShareStore;
use crate::state::{Deferred, NodeState};
use crate::tokens::TokenStore;

/// A refused control or share record, on its way to the dead letters.
pub(crate) type Refused = Box<dyn Refusal + Send + Sync>;

/// The node's shared state.
pub(crate) struct Ctx {
    pub(crate) cfg: Config,
    pub(crate) keys: Keys,
    pub(crate) topics: Topics,
    pub(crate) producer: armored_runtime::kafka::AtProducer,
    pub(crate) dlq: DeadLetters,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Arc<RwLock<Registry>>,
    pub(crate) tokens: Arc<RwLock<TokenStore>>,
    pub(crate) shares: Arc<RwLock<ShareStore>>,
    pub(crate) followers: [Follower; 3],
    pub(crate) state: Mutex<NodeState>,
    pub(crate) net: Arc<PeerNet>,
    /// Attempts waiting for their cut-off go to the deferred queue (deferred.rs).
    pub(crate) deferred: tokio::sync::mpsc::UnboundedSender<Deferred>,
    pub(crate) shutdown: Shutdown,
}

/// Where a consumed record came from (dead-letter headers).
pub(crate) fn source(rec: &Inbound) -> Source<'_> {
    Source {
        topic: &rec.topic,
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.as_deref().unwrap_or_default(),
    }
}

/// Writes `rec` as a dead letter refused for `why`.
pub(crate) async fn dead_letter(ctx: &Ctx, rec: &Inbound, why: &(dyn Refusal + Sync)) {
    if let Err(e) = ctx.dlq.refuse(why, &source(rec), &rec.payload).await.await {
        tracing::error!(error = %e, "dead letter not written");
    }
}
