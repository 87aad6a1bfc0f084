//! The request path's per-twin rate limit (a token bucket per twin) and its metrics: the part of
//! phase 5 that the worker's shared state holds (requests.rs handles the records).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{register_int_counter_vec_with_registry, IntCounterVec};
use serde::{Deserialize, Serialize};

/// `[requests]` of the worker's configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RequestConfig {
    /// Sustained requests per second and twin.
    pub rate_per_s: f64,
    /// Requests a twin may send at once (bucket size).
    pub burst: u32,
    /// Twins whose buckets are kept (bounded memory; cleared when full).
    pub max_twins: usize,
}

impl Default for RequestConfig {
    fn default() -> Self {
        Self {
            rate_per_s: 1.0,
            burst: 10,
            max_twins: 100_000,
        }
    }
}

/// Per-twin token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RequestConfig,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Buckets per `cfg`.
    pub fn new(cfg: RequestConfig) -> Self {
        Self {
            cfg,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token of `twin`'s bucket if there is one.
    pub fn admit(&self, twin: &str, now: Instant) -> bool {
        let Ok(mut b) = self.buckets.lock() else {
            return false;
        };
        let burst = f64::from(self.cfg.burst.max(1));
        if b.len() >= self.cfg.max_twins.max(1) && !b.contains_key(twin) {
            // Forgetting buckets only ever lets a twin start full again: safe, and bounded.
            b.clear();
        }
        let (tokens, last) = b.entry(twin.to_owned()).or_insert((burst, now));
        let refill =
            now.saturating_duration_since(*last).as_secs_f64() * self.cfg.rate_per_s.max(0.0);
        *tokens = (*tokens + refill).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Request-path metrics.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    /// Requests by outcome: routed, rate_limited, expired, refused.
    pub requests: IntCounterVec,
}

impl RequestMetrics {
    /// Registers in `r`.
    pub fn new(r: &prometheus::Registry) -> prometheus::Result<Self> {
        Ok(Self {
            requests: register_int_counter_vec_with_registry!(
                "at_reencrypt_requests_total",
                "Requests by outcome (routed, rate_limited, expired, refused)",
                &["outcome"],
                r
            )?,
        })
    }
}

/// The request path's shared state.
#[derive(Debug)]
pub(crate) struct Requests {
    pub(crate) limiter: RateLimiter,
    pub(crate) metrics: RequestMetrics,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_bucket_per_twin() {
        let l = RateLimiter::new(RequestConfig {
            rate_per_s: 2.0,
            burst: 3,
            max_twins: 10,
        });
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.admit("a", t0)));
        assert!(!l.admit("a", t0));
        // Another twin has its own bucket.
        assert!(l.admit("b", t0));
        // Half a second refills one token at 2/s.
        assert!(l.admit("a", t0 + Duration::from_millis(500)));
        assert!(!l.admit("a", t0 + Duration::from_millis(500)));
    }
}
