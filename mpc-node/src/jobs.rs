//! One record of `at.mpc.jobs.v1`: decode and verify the job, consult the ledger, admit the
//! attempt (checks.rs), charge the budgets, run it with the peers (attempt.rs) and publish the
//! output share or a signed `JobFailed`. An attempt whose window's cut-off is still ahead is
//! deferred (deferred.rs) instead of holding up the single-partition jobs topic until then.
//!
//! Budgets are charged at admission, in the topic's order, so every node charges the same jobs in
//! the same order whether an attempt runs at once or at its cut-off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_crypto::mpcjob::{peek_job, sign_job_failed, verify_job, JobFailure, SignedJob};
use armored_runtime::follower::{wait_all, SyncTimeout};
use armored_runtime::kafka::{enqueue, failed, Ack, AckError};
use armored_runtime::pipeline::Inbound;
use armored_schemas::limits::MAX_JOB_BYTES;
use armored_schemas::v1::mpc_result::Result as ResultKind;
use armored_schemas::{decode_strict, v1, DecodeError, Refusal, WIRE_VERSION};
use prost::Message;

use crate::ctx::{source, Ctx};
use crate::state::{AttemptState, Deferred, Seen, StateError};
use crate::{attempt, checks};

/// Why a job record was dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum JobRefused {
    /// A `JobSubmission` of another wire version.
    #[error("JobSubmission of version {0}")]
    UnsupportedVersion(u32),
    /// Not a `JobSubmission`.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// The job inside is not a well-formed signed job.
    #[error(transparent)]
    MalformedJob(armored_crypto::Error),
    /// Its service is not registered.
    #[error("{0}")]
    UnknownService(String),
    /// The service's signature does not verify.
    #[error(transparent)]
    Invalid(armored_crypto::Error),
    /// Another job body under a known job id.
    #[error("another job body under a known job id")]
    Conflict,
}

impl Refusal for JobRefused {
    fn reason(&self) -> &'static str {
        match self {
            JobRefused::UnsupportedVersion(_) => "unsupported_version",
            JobRefused::Malformed(_) | JobRefused::MalformedJob(_) => "malformed_job",
            JobRefused::UnknownService(_) => "unknown_service",
            JobRefused::Invalid(e) => e.reason(),
            JobRefused::Conflict => "job_conflict",
        }
    }
}

/// Why a job record was not finished: it is handled again (its offset is not committed).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Shut down before the control and share topics were applied up to the record.
    #[error(transparent)]
    Sync(#[from] SyncTimeout),
    /// The ledger could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A lock was poisoned by a panic.
    #[error("{0} lock poisoned")]
    Poisoned(&'static str),
    /// A deferred attempt could not be read back (the ledger is this node's own: a bug or a
    /// damaged file). It is dropped and logged.
    #[error("deferred attempt {0}: {1}")]
    Unreadable(String, String),
}

impl From<JobError> for AckError {
    fn from(e: JobError) -> Self {
        AckError::service(e)
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
pub(crate) async fn fail(
    ctx: &Ctx,
    job: &SignedJob,
    attempt: u32,
    reason: &str,
    detail: &str,
) -> Ack {
    tracing::info!(job = %job.job.job_id, attempt, reason, detail, "job attempt failed");
    ctx.metrics.jobs.with_label_values(&["failed"]).inc();
    ctx.metrics.failures.with_label_values(&[reason]).inc();
    let ack = publish(
        ctx,
        &job.job.job_id,
        job_failed(ctx, job, attempt, reason, detail),
    )
    .await;
    let persisted = ctx
        .state
        .lock()
        .map_err(|_| JobError::Poisoned("state"))
        .and_then(|mut s| {
            Ok(s.set(
                &job.job.job_id,
                &job.job_hash,
                attempt,
                AttemptState::Failed,
            )?)
        });
    Box::pin(async move {
        ack.await?;
        Ok(persisted?)
    })
}

/// This node's signed `JobFailed` for an attempt.
fn job_failed(ctx: &Ctx, job: &SignedJob, attempt: u32, reason: &str, detail: &str) -> ResultKind {
    ResultKind::JobFailed(sign_job_failed(
        &ctx.keys.sig,
        &JobFailure {
            job_id: job.job.job_id.clone(),
            job_hash: job.job_hash,
            attempt,
            node_index: ctx.keys.index,
            reason: reason.to_owned(),
            detail: detail.to_owned(),
        },
    ))
}

/// Waits until the registry, tokens and shares are applied up to `since`.
pub(crate) async fn synced(ctx: &Ctx, since: Instant) -> Result<(), SyncTimeout> {
    let [a, b, c] = &ctx.followers;
    wait_all(&[a, b, c], since, Duration::from_secs(5), &ctx.shutdown).await
}

/// Dead-letters a job record.
async fn refuse(ctx: &Ctx, m: &Inbound, why: JobRefused) -> Vec<Ack> {
    vec![ctx.dlq.refuse(&why, &source(m), &m.payload).await]
}

/// One record of `at.mpc.jobs.v1`.
pub(crate) async fn handle(ctx: Arc<Ctx>, m: Inbound) -> Vec<Ack> {
    let sub: v1::JobSubmission =
        match decode_strict::<v1::JobSubmission>("JobSubmission", &m.payload, MAX_JOB_BYTES + 64) {
            Ok(s) if s.version == WIRE_VERSION => s,
            Ok(s) => return refuse(&ctx, &m, JobRefused::UnsupportedVersion(s.version)).await,
            Err(e) => return refuse(&ctx, &m, JobRefused::Malformed(e)).await,
        };
    let sync_start = Instant::now();
    if let Err(e) = synced(&ctx, m.received).await {
        return vec![failed(JobError::Sync(e))];
    }
    tracing::debug!(
        before_ms = sync_start.duration_since(m.received).as_millis() as u64,
        sync_ms = sync_start.elapsed().as_millis() as u64,
        "job record synced"
    );
    let service = match peek_job(&sub.job) {
        Ok(j) => j.service_id,
        Err(e) => return refuse(&ctx, &m, JobRefused::MalformedJob(e)).await,
    };
    let key = ctx
        .registry
        .read()
        .ok()
        .and_then(|r| r.party(&service).map(|p| p.sig));
    let Some(key) = key else {
        return refuse(&ctx, &m, JobRefused::UnknownService(service)).await;
    };
    let job = match verify_job(&sub.job, &key) {
        Ok(j) => j.into_inner(),
        Err(e) => return refuse(&ctx, &m, JobRefused::Invalid(e)).await,
    };
    let attempt = sub.attempt;
    let seen = match ctx.state.lock() {
        Ok(s) => s.seen(&job.job.job_id, &job.job_hash, attempt),
        Err(_) => return vec![failed(JobError::Poisoned("state"))],
    };
    match seen {
        Seen::New => {}
        Seen::Finished(_) | Seen::Deferred => {
            ctx.metrics.jobs.with_label_values(&["skipped"]).inc();
            return Vec::new();
        }
        Seen::Conflict => {
            let refused = JobRefused::Conflict;
            let detail = refused.to_string();
            let d = ctx.dlq.refuse(&refused, &source(&m), &m.payload).await;
            // Not recorded in the ledger: the known job keeps its hash.
            ctx.metrics
                .failures
                .with_label_values(&["job_conflict"])
                .inc();
            let failed = job_failed(&ctx, &job, attempt, refused.reason(), &detail);
            return vec![d, publish(&ctx, &job.job.job_id, failed).await];
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
    vec![run_attempt(&ctx, &job, &sub.job, attempt, m.received).await]
}

/// Admits `job` as of `at_ms` (the same time again when a deferred attempt resumes).
pub(crate) fn admit(
    ctx: &Ctx,
    job: &SignedJob,
    attempt: u32,
    at_ms: u64,
) -> Result<Result<checks::Admitted, checks::Reject>, JobError> {
    let (Ok(reg), Ok(tok)) = (ctx.registry.read(), ctx.tokens.read()) else {
        return Err(JobError::Poisoned("registry or token store"));
    };
    let n = &ctx.cfg.node;
    Ok(checks::admit(
        job,
        attempt,
        &reg,
        &tok,
        &checks::Deployment {
            nodes: ctx.keys.node_ids(),
            max_participants: n.max_participants,
            cutoff_skew_ms: n.cutoff_skew_ms,
            max_window_slots: n.max_window_slots,
            max_job_inputs: n.max_job_inputs,
        },
        at_ms,
    ))
}

/// Where an attempt's time went before the engine ran (logged when it completes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) started: Instant,
    pub(crate) queued_ms: u64,
    pub(crate) admit_ms: u64,
}

/// Admits an attempt, charges its budgets, and runs it now or defers it to its cut-off.
/// `signed` is the job as submitted (kept with a deferred attempt).
async fn run_attempt(
    ctx: &Arc<Ctx>,
    job: &SignedJob,
    signed: &[u8],
    attempt: u32,
    polled: Instant,
) -> Ack {
    let started = Instant::now();
    // From the job record's poll to here: its decoding, the sync with the control and share
    // topics, the ledger.
    let queued_ms = started.duration_since(polled).as_millis() as u64;
    let admitted_ms = now_ms();
    let admitted = match admit(ctx, job, attempt, admitted_ms) {
        Ok(Ok(a)) => a,
        Ok(Err(r)) => return fail(ctx, job, attempt, r.reason, &r.detail).await,
        Err(e) => return failed(e),
    };
    let admit_ms = started.elapsed().as_millis() as u64;
    // Inputs are cut off at the window's end plus the skew bound. An attempt whose cut-off is
    // ahead waits for it in the deferred queue, not here.
    let wait = admitted.cutoff_ms.saturating_sub(now_ms());
    let n = &ctx.cfg.node;
    if wait > n.max_cutoff_wait_ms {
        let detail = format!("inputs close in {wait} ms");
        return fail(ctx, job, attempt, "window_not_closed", &detail).await;
    }
    let deferred_now = ctx.state.lock().map(|s| s.deferred_count()).unwrap_or(0);
    if wait > 0 && deferred_now >= n.max_deferred_jobs {
        let detail = format!("{deferred_now} attempts already wait for their cut-off");
        return fail(ctx, job, attempt, "too_many_deferred", &detail).await;
    }
    let twins: Vec<(String, u32)> = std::iter::once(&admitted.reference)
        .chain(&admitted.participants)
        .map(|a| (a.twin_id.clone(), a.max_jobs_per_window))
        .collect();
    let j = &job.job;
    let charged = match ctx.state.lock() {
        Ok(mut s) => s.charge(&j.job_id, (j.window_start_slot, j.window_slots), &twins),
        Err(_) => return failed(JobError::Poisoned("state")),
    };
    match charged {
        Ok(Ok(())) => {}
        Ok(Err(spent)) => {
            return fail(ctx, job, attempt, "budget_exhausted", &spent.to_string()).await
        }
        Err(e) => return failed(JobError::State(e)),
    }
    if wait > 0 {
        let d = Deferred {
            job_id: j.job_id.clone(),
            attempt,
            cutoff_ms: admitted.cutoff_ms,
            admitted_ms,
        };
        return defer(ctx, &job.job_hash, d, signed, wait);
    }
    let running = match ctx.state.lock() {
        Ok(mut s) => s.set(&j.job_id, &job.job_hash, attempt, AttemptState::Running),
        Err(_) => return failed(JobError::Poisoned("state")),
    };
    if let Err(e) = running {
        return failed(JobError::State(e));
    }
    let timing = Timing {
        started,
        queued_ms,
        admit_ms,
    };
    execute(ctx, job, attempt, &admitted, timing).await
}

/// Runs an admitted, charged attempt that is `Running` in the ledger: gathers its inputs, computes
/// with the peers and publishes the output share (or the failure).
pub(crate) async fn execute(
    ctx: &Arc<Ctx>,
    job: &SignedJob,
    attempt: u32,
    admitted: &checks::Admitted,
    timing: Timing,
) -> Ack {
    let Timing {
        started,
        queued_ms,
        admit_ms,
    } = timing;
    let gather_started = Instant::now();
    let inputs = match ctx.shares.read() {
        Ok(s) => attempt::gather(&s, admitted),
        Err(_) => return failed(JobError::Poisoned("share store")),
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
        .map_err(|_| JobError::Poisoned("state"))
        .and_then(|mut s| {
            Ok(s.set(&job.job.job_id, &job.job_hash, attempt, AttemptState::Done)?)
        });
    Box::pin(async move {
        ack.await?;
        Ok(persisted?)
    })
}

/// Persists `d` and hands it to the deferred queue (deferred.rs); the job record is then done. `wait_ms` is only logged.
fn defer(ctx: &Ctx, job_hash: &[u8; 32], d: Deferred, signed: &[u8], wait_ms: u64) -> Ack {
    let persisted = match ctx.state.lock() {
        Ok(mut s) => s
            .defer(job_hash, d.clone(), signed)
            .map(|()| s.deferred_count()),
        Err(_) => return failed(JobError::Poisoned("state")),
    };
    match persisted {
        Ok(count) => {
            ctx.metrics.deferred.set(count as i64);
            tracing::info!(job = %d.job_id, attempt = d.attempt, wait_ms, "deferred until the window's cut-off");
            // A closed queue means the node is stopping: the ledger has it for the next start.
            let _ = ctx.deferred.send(d);
            Box::pin(async { Ok(()) })
        }
        Err(e) => failed(JobError::State(e)),
    }
}
