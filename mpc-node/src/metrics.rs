//! `at_mpc_*` metrics. No label or value ever carries a share, a value or a twin id.

use prometheus::{
    register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_with_registry, Histogram, IntCounter,
    IntCounterVec, IntGauge, Registry,
};

/// The node's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Served at `/metrics`.
    pub registry: Registry,
    /// Job attempts by outcome (`completed`, `failed`, `skipped`).
    pub jobs: IntCounterVec,
    /// Failed attempts by reason.
    pub failures: IntCounterVec,
    /// Engine rounds run.
    pub rounds: IntCounter,
    /// Peer channel bytes sent.
    pub bytes_sent: IntCounter,
    /// Peer channel bytes received.
    pub bytes_received: IntCounter,
    /// Peer records refused before any job saw them (malformed, misaddressed, overflow).
    pub peer_rejected: IntCounterVec,
    /// Attempt duration, admission to published result.
    pub job_seconds: Histogram,
    /// Stored (twin, slot) shares.
    pub shares_stored: IntGauge,
    /// Share deliveries refused, by reason.
    pub shares_rejected: IntCounterVec,
    /// Process tokens known.
    pub tokens: IntGauge,
    /// Attempts waiting for their window's cut-off.
    pub deferred: IntGauge,
    /// Dead letters by reason.
    pub dead_letters: IntCounterVec,
    /// Consumer lag on at.mpc.jobs.v1.
    pub consumer_lag: IntGauge,
    /// Consumers replaced because their group coordinator stayed lost.
    pub consumer_restarts: IntCounter,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let m = Self {
            jobs: register_int_counter_vec_with_registry!(
                "at_mpc_jobs_total",
                "Job attempts by outcome",
                &["outcome"],
                r
            )?,
            failures: register_int_counter_vec_with_registry!(
                "at_mpc_job_failures_total",
                "Failed job attempts by reason",
                &["reason"],
                r
            )?,
            rounds: register_int_counter_with_registry!("at_mpc_rounds_total", "Engine rounds", r)?,
            bytes_sent: register_int_counter_with_registry!(
                "at_mpc_peer_bytes_sent_total",
                "Peer channel bytes sent",
                r
            )?,
            bytes_received: register_int_counter_with_registry!(
                "at_mpc_peer_bytes_received_total",
                "Peer channel bytes received",
                r
            )?,
            peer_rejected: register_int_counter_vec_with_registry!(
                "at_mpc_peer_rejected_total",
                "Peer records refused",
                &["reason"],
                r
            )?,
            job_seconds: register_histogram_with_registry!(
                "at_mpc_job_seconds",
                "Job attempt duration",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
                r
            )?,
            shares_stored: register_int_gauge_with_registry!(
                "at_mpc_shares_stored",
                "Stored (twin, slot) shares",
                r
            )?,
            shares_rejected: register_int_counter_vec_with_registry!(
                "at_mpc_shares_rejected_total",
                "Share deliveries refused",
                &["reason"],
                r
            )?,
            tokens: register_int_gauge_with_registry!("at_mpc_tokens", "Process tokens known", r)?,
            deferred: register_int_gauge_with_registry!(
                "at_mpc_jobs_deferred",
                "Job attempts waiting for their window's cut-off",
                r
            )?,
            dead_letters: register_int_counter_vec_with_registry!(
                "at_mpc_dead_letters_total",
                "Dead letters by reason",
                &["reason"],
                r
            )?,
            consumer_lag: register_int_gauge_with_registry!(
                "at_mpc_consumer_lag",
                "Consumer lag on at.mpc.jobs.v1",
                r
            )?,
            consumer_restarts: register_int_counter_with_registry!(
                "at_mpc_consumer_restarts_total",
                "Consumers replaced because their group coordinator stayed lost",
                r
            )?,
            registry: r,
        };
        // Every outcome's series exists from the start, at 0: the first job then shows as an
        // increase (a series born at 1 does not), and "no failures" is a value, not no data.
        for outcome in ["completed", "failed", "skipped"] {
            m.jobs.with_label_values(&[outcome]);
        }
        Ok(m)
    }
}
