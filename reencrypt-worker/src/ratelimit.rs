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
    /// Twins whose buckets are kept (bounded memory). When full, only buckets that have refilled
    /// completely are forgotten (forgetting one is the same as keeping it); if none has, a
    /// request for a new twin is refused (`limiter_full`) until some refill.
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
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_twin: HashMap<String, (f64, Instant)>,
    /// The last sweep for full buckets: at most one a second, so that a flood of new twins
    /// cannot make every request walk the whole map.
    swept: Option<Instant>,
}

/// Whether a request may go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A token was taken.
    Admitted,
    /// The twin's bucket is empty.
    Limited,
    /// The twin has no bucket and there is no room for one (every kept bucket is in use).
    Full,
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
    pub fn admit(&self, twin: &str, now: Instant) -> Admission {
        let Ok(mut b) = self.buckets.lock() else {
            return Admission::Full;
        };
        let burst = f64::from(self.cfg.burst.max(1));
        let rate = self.cfg.rate_per_s.max(0.0);
        let refilled = |(tokens, last): &(f64, Instant)| {
            (tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst)
        };
        if b.by_twin.len() >= self.cfg.max_twins.max(1) && !b.by_twin.contains_key(twin) {
            // Clearing them all (as before) let a flood of other twins' requests hand a limited
            // twin a full bucket again. A full bucket is the same as none: only those go.
            if b.swept
                .is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 1)
            {
                b.swept = Some(now);
                b.by_twin.retain(|_, v| refilled(v) < burst);
            }
            if b.by_twin.len() >= self.cfg.max_twins.max(1) {
                return Admission::Full;
            }
        }
        let bucket = b.by_twin.entry(twin.to_owned()).or_insert((burst, now));
        bucket.0 = refilled(bucket);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            Admission::Admitted
        } else {
            Admission::Limited
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
        let ok = |twin, t| l.admit(twin, t) == Admission::Admitted;
        assert!((0..3).all(|_| ok("a", t0)));
        assert!(!ok("a", t0));
        // Another twin has its own bucket.
        assert!(ok("b", t0));
        // Half a second refills one token at 2/s.
        assert!(ok("a", t0 + Duration::from_millis(500)));
        assert!(!ok("a", t0 + Duration::from_millis(500)));
    }

    #[test]
    fn a_flood_of_other_twins_does_not_refill_a_limited_twin() {
        let l = RateLimiter::new(RequestConfig {
            rate_per_s: 0.001,
            burst: 2,
            max_twins: 100,
        });
        let t0 = Instant::now();
        assert_eq!(l.admit("victim", t0), Admission::Admitted);
        assert_eq!(l.admit("victim", t0), Admission::Admitted);
        assert_eq!(l.admit("victim", t0), Admission::Limited);
        // 1,000 other twins, each using a token: the map fills up; nothing in it is full again.
        let mut full = 0;
        for i in 0..1_000 {
            if l.admit(&format!("other-{i}"), t0) == Admission::Full {
                full += 1;
            }
        }
        assert_eq!(
            full,
            1_000 - 99,
            "new twins are refused once every kept bucket is in use"
        );
        // Before: the map was cleared when full, and the victim started again with a full bucket.
        assert_eq!(l.admit("victim", t0), Admission::Limited);
        // Buckets that refilled completely make room (one sweep a second at most).
        let later = t0 + Duration::from_secs(3_000);
        assert_eq!(l.admit("newcomer", later), Admission::Admitted);
    }
}
