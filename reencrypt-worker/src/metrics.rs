//! `at_reencrypt_*` metrics (DESIGN, "Observability").

use prometheus::{
    register_histogram_vec_with_registry, register_histogram_with_registry,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry,
};

use crate::route::RouteMetrics;

/// The worker's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Served at `/metrics`.
    pub registry: Registry,
    /// Envelopes consumed.
    pub messages_in: IntCounter,
    /// Deliveries produced, by receiver kind.
    pub deliveries: IntCounterVec,
    /// Bytes produced.
    pub bytes_out: IntCounter,
    /// Audit entries written to `at.audit.v1` (one per delivery).
    pub audit_entries: IntCounter,
    /// From the bridge receiving an uplink to Kafka acknowledging an output made from it, by
    /// receiver kind (live records only; history replays re-send old data).
    pub end_to_end: HistogramVec,
    /// ReEnc, cache and check counters and the ReEnc latency histogram.
    pub route: RouteMetrics,
    /// Dead letters by reason.
    pub dead_letters: IntCounterVec,
    /// Usable re-keys.
    pub rekeys: IntGauge,
    /// Re-key uploads waiting for their owner's identity.
    pub rekeys_pending: IntGauge,
    /// Re-key revocations applied.
    pub revocations: IntCounter,
    /// Consumer lag (records) on at.sync.v1.
    pub consumer_lag: IntGauge,
    /// Consumers replaced because their group coordinator stayed lost.
    pub consumer_restarts: IntCounter,
    /// History replays (replay.rs).
    pub replay: ReplayMetrics,
}

/// History replay metrics.
#[derive(Clone, Debug)]
pub struct ReplayMetrics {
    /// Replays running now.
    pub in_flight: IntGauge,
    /// Replays finished, by outcome (done, revoked, failed).
    pub finished: IntCounterVec,
    /// Stored records read by replays.
    pub scanned: IntCounter,
    /// Deliveries produced by replays.
    pub delivered: IntCounter,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let route = RouteMetrics {
            reencryptions: register_int_counter_with_registry!(
                "at_reencrypt_reencryptions_total",
                "ReEnc runs",
                r
            )?,
            cache_hits: register_int_counter_with_registry!(
                "at_reencrypt_cache_hits_total",
                "ReEnc cache hits",
                r
            )?,
            capsule_checks: register_int_counter_with_registry!(
                "at_reencrypt_capsule_checks_total",
                "Capsule well-formedness checks",
                r
            )?,
            reenc_seconds: register_histogram_with_registry!(
                "at_reencrypt_reenc_seconds",
                "ReEnc latency",
                vec![0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128],
                r
            )?,
        };
        let m = Self {
            messages_in: register_int_counter_with_registry!(
                "at_reencrypt_messages_in_total",
                "Envelopes consumed",
                r
            )?,
            deliveries: register_int_counter_vec_with_registry!(
                "at_reencrypt_deliveries_total",
                "Deliveries produced",
                &["kind"],
                r
            )?,
            bytes_out: register_int_counter_with_registry!(
                "at_reencrypt_bytes_out_total",
                "Bytes produced",
                r
            )?,
            audit_entries: register_int_counter_with_registry!(
                "at_reencrypt_audit_entries_total",
                "Audit entries written to at.audit.v1, one per delivery",
                r
            )?,
            end_to_end: register_histogram_vec_with_registry!(
                "at_reencrypt_end_to_end_seconds",
                "From the bridge receiving an uplink to its output written to Kafka",
                &["kind"],
                armored_runtime::latency::BUCKETS.to_vec(),
                r
            )?,
            dead_letters: register_int_counter_vec_with_registry!(
                "at_reencrypt_dead_letters_total",
                "Dead letters by reason",
                &["reason"],
                r
            )?,
            rekeys: register_int_gauge_with_registry!("at_reencrypt_rekeys", "Usable re-keys", r)?,
            rekeys_pending: register_int_gauge_with_registry!(
                "at_reencrypt_rekeys_pending",
                "Re-key uploads waiting for their owner",
                r
            )?,
            revocations: register_int_counter_with_registry!(
                "at_reencrypt_revocations_total",
                "Re-key revocations applied",
                r
            )?,
            consumer_lag: register_int_gauge_with_registry!(
                "at_reencrypt_consumer_lag",
                "Consumer lag on at.sync.v1",
                r
            )?,
            consumer_restarts: register_int_counter_with_registry!(
                "at_reencrypt_consumer_restarts_total",
                "Consumers replaced because their group coordinator stayed lost",
                r
            )?,
            replay: ReplayMetrics {
                in_flight: register_int_gauge_with_registry!(
                    "at_reencrypt_replays_in_flight",
                    "History replays running",
                    r
                )?,
                finished: register_int_counter_vec_with_registry!(
                    "at_reencrypt_replays_total",
                    "History replays finished, by outcome",
                    &["outcome"],
                    r
                )?,
                scanned: register_int_counter_with_registry!(
                    "at_reencrypt_replay_records_scanned_total",
                    "Stored records read by history replays",
                    r
                )?,
                delivered: register_int_counter_with_registry!(
                    "at_reencrypt_replay_deliveries_total",
                    "Deliveries produced by history replays",
                    r
                )?,
            },
            route,
            registry: r,
        };
        // Every receiver kind's series exists from the start, at 0 (see at-mpc-node's jobs).
        for kind in ["device", "service", "mpc-node"] {
            m.deliveries.with_label_values(&[kind]);
            m.end_to_end.with_label_values(&[kind]);
        }
        Ok(m)
    }
}
