//! History replay (M3; envelope.md, "Re-encrypted delivery"): an owner-signed `ReplayRequest
//! { rk_id, from_epoch }` on `at.control.v1` makes one worker re-encrypt the twin's stored state
//! changes for that one re-key.
//!
//! - One worker per request: `at.control.v1` is consumed by the workers' group, so each request is
//!   handled by exactly one of them (a re-key upload's `history_from_epoch` does not start a replay
//!   by itself: every worker folds `at.rekeys.v1`, and `atctl owner grant --from` appends a request
//!   as well). It bounds what the re-key admits, with `until_epoch`, live and replayed alike.
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
//!
//! This file admits requests and reports progress; history.rs scans and delivers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use armored_crypto::history::{claimed_signer, verify_replay_request};
use armored_crypto::Error as CryptoError;
use armored_runtime::dlq::Source;
use armored_runtime::follower::wait_all;
use armored_runtime::kafka::{enqueue, failed, Ack, AckError};
use armored_runtime::pipeline::Inbound;
use armored_schemas::limits::MAX_CONTROL_BYTES;
use armored_schemas::replay::ReplayStatus;
use armored_schemas::v1::{self, control_record::Record};
use armored_schemas::{decode_strict, Refusal};
use rdkafka::message::{Header, OwnedHeaders};

pub use armored_schemas::replay::{REQUEST_HEADER, STATUS_HEADER};

use crate::ctx::Ctx;
use crate::history::{scan_and_deliver, Job, Progress, ReplayError};
use crate::replay_seen::NotAgain;

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
    /// Issued more than a day ago, or ahead of the worker's clock.
    #[error("replay request issued too long ago or in the future")]
    Stale,
    /// This request ran already (or is running): a copy appended again.
    #[error("replay request already run")]
    Duplicate,
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
            ReplayRefused::Stale => "stale_request",
            ReplayRefused::Duplicate => "duplicate_request",
        }
    }
}

/// One record of `at.control.v1`.
pub(crate) async fn handle(ctx: Arc<Ctx>, m: Inbound) -> Vec<Ack> {
    if m.header(STATUS_HEADER).is_some() {
        return Vec::new();
    }
    // A request names a re-key uploaded just before it: apply the control topics up to now first.
    let followers = [&ctx.reg_follower, &ctx.rk_follower];
    if let Err(e) = wait_all(
        &followers,
        m.received,
        Duration::from_secs(5),
        &ctx.shutdown,
    )
    .await
    {
        return vec![failed(AckError::service(e))];
    }
    let accepted = match check(&ctx, &m.payload) {
        Ok(a) => a,
        Err(e) => {
            let src = Source {
                topic: &m.topic,
                partition: m.partition,
                offset: m.offset,
                key: m.key.as_deref().unwrap_or_default(),
            };
            return vec![ctx.dlq.refuse(&e, &src, &m.payload).await];
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
            Ok(r) => r.map_err(AckError::service),
            Err(e) => Err(AckError::service(ReplayError::Task(e))),
        }
    })]
}

fn check(ctx: &Ctx, payload: &[u8]) -> Result<Job, ReplayRefused> {
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
    let request_id = hex::encode(&r.request_id);
    // Last: from here on the request counts as running.
    ctx.replays
        .admit(&request_id, r.issued_at_ms, armored_base::time::now_ms())
        .map_err(|e| match e {
            NotAgain::Stale => ReplayRefused::Stale,
            NotAgain::Duplicate => ReplayRefused::Duplicate,
        })?;
    Ok(Job {
        request_id,
        issued_at_ms: r.issued_at_ms,
        rk_id,
        from_epoch: r.from_epoch,
        owner_pre: owner.pre.key_id(),
        grant,
    })
}

/// Runs one replay; `Ok` once it is final (done or revoked), `Err` if it must be redone.
async fn run(ctx: Arc<Ctx>, a: Job) -> Result<(), ReplayError> {
    let m = ctx.metrics.replay.clone();
    m.in_flight.inc();
    let progress = Arc::new(Progress::default());
    let r = replay(&ctx, &a, &progress).await;
    m.in_flight.dec();
    // Finished (done, or stopped by a revocation) runs never again; a failed one may be redone.
    ctx.replays.ended(
        &a.request_id,
        a.issued_at_ms,
        r.is_ok(),
        armored_base::time::now_ms(),
    );
    let (state, detail) = match &r {
        Ok(true) => ("done", String::new()),
        Ok(false) => ("revoked", String::new()),
        Err(e) => ("failed", e.to_string()),
    };
    m.finished.with_label_values(&[state]).inc();
    tracing::info!(request = %a.request_id, state, delivered = progress.delivered.load(Ordering::Relaxed), "history replay finished");
    let ack = report(&ctx, &a, &progress, state, &detail).await;
    if let Err(e) = ack.await {
        tracing::warn!(error = %e, "replay status not written");
    }
    r.map(|_| ())
}

fn status(a: &Job, p: &Progress, state: &str, detail: &str) -> ReplayStatus {
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

async fn report(ctx: &Ctx, a: &Job, p: &Progress, state: &str, detail: &str) -> Ack {
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

/// Ok(true) done, Ok(false) stopped by a revocation, Err to be redone.
async fn replay(ctx: &Arc<Ctx>, a: &Job, p: &Arc<Progress>) -> Result<bool, ReplayError> {
    // Progress records every second while it runs.
    let ticker = {
        let (ctx, p, a) = (ctx.clone(), p.clone(), a.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = report(&ctx, &a, &p, "running", "").await.await {
                    tracing::debug!(error = %e, "replay progress not written");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let r = scan_and_deliver(ctx, a, p).await;
    ticker.abort();
    r
}
