//! Attempts deferred until their window's cut-off. `at.mpc.jobs.v1` has one partition (every node
//! sees jobs in the same order), so an attempt that waited for its cut-off inside the handler held
//! up every later job, up to `max_cutoff_wait_ms`. Instead the handler admits it, charges its
//! budgets, persists it (`NodeState::defer`) and goes on; this queue starts it at its cut-off, in
//! cut-off order, each in a task of its own (the peer channel keeps one inbox per attempt). A node
//! that restarts resumes the attempts its ledger still holds.
//!
//! On resuming, the attempt is admitted again as of its admission time, so a node decides as it
//! did then, except for tokens revoked since: an owner's revocation before the cut-off stops the
//! job on every node that has applied it (a peer that has not fails the attempt for lack of
//! partners, never with a wrong result).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_crypto::mpcjob::{peek_job, verify_job, SignedJob};
use armored_runtime::kafka::{failed, Ack};
use tokio::sync::mpsc;

use crate::ctx::Ctx;
use crate::jobs::{self, JobError, Timing};
use crate::state::Deferred;

/// Starts the queue, with the attempts the ledger holds from before a restart.
pub(crate) fn start(ctx: Arc<Ctx>, mut incoming: mpsc::UnboundedReceiver<Deferred>) {
    let mut queue: BTreeMap<(u64, String, u32), Deferred> = BTreeMap::new();
    if let Ok(s) = ctx.state.lock() {
        for d in s.deferred() {
            tracing::info!(job = %d.job_id, attempt = d.attempt, "resuming a deferred attempt after a restart");
            queue.insert((d.cutoff_ms, d.job_id.clone(), d.attempt), d);
        }
        ctx.metrics.deferred.set(s.deferred_count() as i64);
    }
    tokio::spawn(async move {
        loop {
            let next = queue.keys().next().map(|(cutoff, ..)| *cutoff);
            let sleep = next.map_or(Duration::from_secs(3600), |c| {
                Duration::from_millis(c.saturating_sub(now_ms()))
            });
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                d = incoming.recv() => match d {
                    Some(d) => {
                        queue.insert((d.cutoff_ms, d.job_id.clone(), d.attempt), d);
                    }
                    None => break,
                },
                _ = tokio::time::sleep(sleep) => {
                    let now = now_ms();
                    while let Some(e) = queue.first_entry() {
                        if e.key().0 > now {
                            break;
                        }
                        let d = e.remove();
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            let (job, attempt) = (d.job_id.clone(), d.attempt);
                            if let Err(e) = resume(&ctx, &d).await.await {
                                tracing::error!(%job, attempt, error = %e, "deferred attempt not finished");
                            }
                        });
                    }
                }
            }
        }
    });
}

/// Reads a deferred attempt back, admits it again and runs it.
async fn resume(ctx: &Arc<Ctx>, d: &Deferred) -> Ack {
    let started = Instant::now();
    // Inputs received up to the cut-off (now past) must be in the share store.
    if let Err(e) = jobs::synced(ctx, Instant::now()).await {
        // Shutting down: the ledger keeps it deferred for the next start.
        return failed(JobError::Sync(e));
    }
    let job = match read_back(ctx, d) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "dropping a deferred attempt");
            if let Ok(mut s) = ctx.state.lock() {
                let _ = s.drop_deferred(d);
            }
            return failed(e);
        }
    };
    let admitted = match jobs::admit(ctx, &job, d.attempt, d.admitted_ms) {
        Ok(Ok(a)) => a,
        Ok(Err(r)) => {
            if let Ok(mut s) = ctx.state.lock() {
                let _ = s.drop_deferred(d);
            }
            return jobs::fail(ctx, &job, d.attempt, r.reason, &r.detail).await;
        }
        Err(e) => return failed(e),
    };
    let resumed = match ctx.state.lock() {
        Ok(mut s) => s
            .resume(&job.job_hash, d)
            .map(|()| s.deferred_count() as i64),
        Err(_) => return failed(JobError::Poisoned("state")),
    };
    match resumed {
        Ok(count) => ctx.metrics.deferred.set(count),
        Err(e) => return failed(JobError::State(e)),
    }
    tracing::info!(job = %d.job_id, attempt = d.attempt, "cut-off passed: running the deferred attempt");
    let timing = Timing {
        started,
        queued_ms: 0,
        admit_ms: started.elapsed().as_millis() as u64,
    };
    jobs::execute(ctx, &job, d.attempt, &admitted, timing).await
}

/// The signed job of a deferred attempt, verified again with its service's key.
fn read_back(ctx: &Ctx, d: &Deferred) -> Result<SignedJob, JobError> {
    let unreadable = |why: String| JobError::Unreadable(format!("{}/{}", d.job_id, d.attempt), why);
    let bytes = ctx
        .state
        .lock()
        .map_err(|_| JobError::Poisoned("state"))?
        .signed_job(d)
        .map_err(|e| unreadable(e.to_string()))?;
    let service = peek_job(&bytes)
        .map_err(|e| unreadable(e.to_string()))?
        .service_id;
    let key = ctx
        .registry
        .read()
        .map_err(|_| JobError::Poisoned("registry"))?
        .party(&service)
        .map(|p| p.sig)
        .ok_or_else(|| unreadable(format!("service {service} is not registered")))?;
    let job = verify_job(&bytes, &key)
        .map_err(|e| unreadable(e.to_string()))?
        .into_inner();
    if job.job.job_id != d.job_id {
        return Err(unreadable("another job id inside".into()));
    }
    Ok(job)
}
