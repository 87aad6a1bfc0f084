//! Phase 5 in the cloud: requests from `at.requests.v1` (consumed by the same group as
//! `at.sync.v1`). Before any ReEnc, on plain metadata only: the attributes must mark a request
//! (`req`) and carry no state or MPC marker (`sync`, `node-*`, `mpc-share`), the plain
//! `expires_at_ms` must be set and in the future, and the twin must be within its rate limit (a
//! token bucket per twin). Then the request is re-encrypted for the twin's *device* re-keys whose
//! policy admits it (enrollment grants `twin:<id> AND (sync OR req)`) and delivered like a state
//! change, so the downlink carries it to the device. Anything refused is dead-lettered with its
//! reason.
//!
//! Records are keyed by twin, so one twin's requests go to one partition and so one worker: the
//! limit holds per twin across the group (it restarts full when a partition moves).

use armored_schemas::Refusal;
use std::sync::Arc;
use std::time::Instant;

use armored_base::time::now_ms;
use armored_crypto::envelope::decode_envelope;
use armored_crypto::request::REQ_ATTRIBUTE;
use armored_runtime::dlq::Source;
use armored_runtime::kafka::{enqueue, failed, Ack, AckError};
use armored_runtime::pipeline::Inbound;
use rdkafka::message::{Header, OwnedHeaders};

use crate::ctx::Ctx;
pub use crate::ratelimit::{Admission, RateLimiter, RequestConfig, RequestMetrics};
use crate::route::{route, Dest, Routing};

/// Why a request is refused before routing (dead-letter reasons).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestReject {
    /// No `req` attribute: not a request.
    #[error("no req attribute: not a request")]
    NotARequest,
    /// `sync`, `node-*` or `mpc-share` on the request path.
    #[error("reserved attribute not allowed on a request: {0}")]
    ReservedAttribute(String),
    /// `expires_at_ms` is 0.
    #[error("request without expires_at_ms")]
    NoExpiry,
    /// Past `expires_at_ms`.
    #[error("request expired at {expires_at_ms} (now {now_ms})")]
    Expired {
        /// Its expiry.
        expires_at_ms: u64,
        /// The worker's clock.
        now_ms: u64,
    },
    /// The twin's bucket is empty.
    #[error("twin over its request rate limit")]
    RateLimited,
    /// The rate limiter keeps as many twins as it may and all of them are in use.
    #[error("the request rate limiter is full")]
    LimiterFull,
}

impl Refusal for RequestReject {
    fn reason(&self) -> &'static str {
        match self {
            RequestReject::NotARequest => "not_a_request",
            RequestReject::ReservedAttribute(_) => "reserved_attribute",
            RequestReject::NoExpiry => "no_expiry",
            RequestReject::Expired { .. } => "expired",
            RequestReject::RateLimited => "rate_limited",
            RequestReject::LimiterFull => "limiter_full",
        }
    }
}

/// The attribute rules of the request path.
pub fn check_request_attributes(attrs: &[String]) -> Result<(), RequestReject> {
    if let Some(a) = attrs
        .iter()
        .find(|a| *a == "sync" || *a == "mpc-share" || a.starts_with("node-"))
    {
        return Err(RequestReject::ReservedAttribute(a.clone()));
    }
    if !attrs.iter().any(|a| a == REQ_ATTRIBUTE) {
        return Err(RequestReject::NotARequest);
    }
    Ok(())
}

/// Why a request was dead-lettered before routing.
#[derive(Debug, thiserror::Error)]
pub enum RequestRefused {
    /// Over `max_envelope_bytes`.
    #[error("request of {0} bytes over the limit")]
    Oversized(usize),
    /// Not a well-formed envelope.
    #[error(transparent)]
    Crypto(#[from] armored_crypto::Error),
    /// Its plain metadata is refused.
    #[error(transparent)]
    Reject(#[from] RequestReject),
}

impl Refusal for RequestRefused {
    fn reason(&self) -> &'static str {
        match self {
            RequestRefused::Oversized(_) => "oversized",
            RequestRefused::Crypto(e) => e.reason(),
            RequestRefused::Reject(r) => r.reason(),
        }
    }
}

/// Checks the plain metadata of one request (everything before ReEnc). Returns the twin id.
pub fn admit(
    payload: &[u8],
    max_bytes: usize,
    limiter: &RateLimiter,
    now_ms: u64,
) -> Result<String, RequestRefused> {
    if payload.len() > max_bytes {
        return Err(RequestRefused::Oversized(payload.len()));
    }
    let (_, h, _) = decode_envelope(payload)?;
    let plain = || -> Result<(), RequestReject> {
        check_request_attributes(&h.attributes)?;
        if h.expires_at_ms == 0 {
            return Err(RequestReject::NoExpiry);
        }
        if h.expires_at_ms < now_ms {
            return Err(RequestReject::Expired {
                expires_at_ms: h.expires_at_ms,
                now_ms,
            });
        }
        // Last, so that refused requests never use up a twin's budget.
        match limiter.admit(&h.twin_id, Instant::now()) {
            Admission::Admitted => {}
            Admission::Limited => return Err(RequestReject::RateLimited),
            Admission::Full => return Err(RequestReject::LimiterFull),
        }
        Ok(())
    };
    plain()?;
    Ok(h.twin_id)
}

/// A lock poisoned by a panic: the record is handled again later.
#[derive(Debug, thiserror::Error)]
#[error("{0} lock poisoned")]
struct Poisoned(&'static str);

/// One record of `at.requests.v1` (the control topics are already synced by the caller).
pub(crate) async fn handle(ctx: Arc<Ctx>, m: Inbound) -> Vec<Ack> {
    let src = Source {
        topic: &m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.key.as_deref().unwrap_or_default(),
    };
    let counter = |o: &str| ctx.requests.metrics.requests.with_label_values(&[o]).inc();
    if let Err(e) = admit(
        &m.payload,
        ctx.cfg.worker.max_envelope_bytes,
        &ctx.requests.limiter,
        now_ms(),
    ) {
        counter(match e.reason() {
            r @ ("rate_limited" | "limiter_full" | "expired") => r,
            _ => "refused",
        });
        return vec![ctx.dlq.refuse(&e, &src, &m.payload).await];
    }
    let c = ctx.clone();
    let payload = m.payload.clone();
    let routed = tokio::task::spawn_blocking(move || {
        let reg = c.registry.read().map_err(|_| Poisoned("registry"))?;
        let store = c.store.read().map_err(|_| Poisoned("re-key store"))?;
        // Requests were screened above (their own attribute rules), not as state changes.
        let r = Routing {
            state_changes: false,
            ..c.routing(&reg, &store)
        };
        Ok::<_, Poisoned>(route(&payload, r))
    })
    .await;
    let outputs = match routed {
        Ok(Ok(Ok(o))) => o,
        Ok(Ok(Err(e))) => {
            counter("refused");
            return vec![ctx.dlq.refuse(&e, &src, &m.payload).await];
        }
        Ok(Err(e)) => return vec![failed(AckError::service(e))],
        Err(e) => return vec![failed(AckError::service(e))],
    };
    counter("routed");
    // Requests go to devices only: a service's re-key that happens to admit `req` gets nothing.
    let outputs: Vec<_> = outputs
        .into_iter()
        .filter(|o| matches!(o.dest, Dest::Deliver { kind: "device", .. }))
        .collect();
    // A request's re-encryptions are audited like state changes (audit.rs), entries first.
    let deliver = ctx.topics.deliver();
    let entries = outputs
        .iter()
        .map(|o| crate::audit::entry(o, &m, &deliver))
        .collect();
    let audited = ctx
        .audit
        .enqueue(&ctx.producer, &ctx.topics.audit(), entries)
        .await;
    let mut acks: Vec<Ack> = audited.iter().map(crate::audit::ack_of).collect();
    for o in outputs {
        let Dest::Deliver { receiver, .. } = &o.dest else {
            continue;
        };
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "at-receiver-kind",
                value: Some("device"),
            })
            .insert(Header {
                key: "at-rk-id",
                value: Some(&o.rk_id),
            });
        ctx.metrics.deliveries.with_label_values(&["device"]).inc();
        ctx.metrics.bytes_out.inc_by(o.payload.len() as u64);
        acks.push(
            enqueue(
                &ctx.producer,
                &ctx.topics.deliver(),
                receiver.as_bytes(),
                &o.payload,
                Some(headers),
            )
            .await,
        );
    }
    acks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_of_the_request_path() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_request_attributes(&v(&["req", "twin:a"])), Ok(()));
        assert_eq!(
            check_request_attributes(&v(&["twin:a"])),
            Err(RequestReject::NotARequest)
        );
        for bad in ["sync", "mpc-share", "node-1"] {
            assert_eq!(
                check_request_attributes(&v(&[bad, "req", "twin:a"])),
                Err(RequestReject::ReservedAttribute(bad.into()))
            );
        }
    }
}
