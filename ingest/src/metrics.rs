//! `at_ingest_*` metrics (DESIGN, "Observability"): bounded labels only, never twin or device ids.

use prometheus::{
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry, IntCounter, IntCounterVec, IntGauge, Registry,
};

/// The bridge's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The registry served at `/metrics`.
    pub registry: Registry,
    /// Messages received, by path (`up`, `down`).
    pub messages_in: IntCounterVec,
    /// Messages forwarded, by path.
    pub messages_out: IntCounterVec,
    /// Bytes received, by path.
    pub bytes_in: IntCounterVec,
    /// Duplicate uplink messages dropped (QoS 1 redelivery).
    pub duplicates: IntCounter,
    /// Dead letters by reason.
    pub dead_letters: IntCounterVec,
    /// MQTT connection errors (each followed by a backoff and a reconnect).
    pub mqtt_reconnects: IntCounterVec,
    /// Roster updates pushed to devices.
    pub rosters: IntCounter,
    /// Rosters not pushed because they are over the MQTT packet limit.
    pub rosters_oversized: IntCounter,
    /// Consumer lag of the downlink consumer.
    pub consumer_lag: IntGauge,
    /// Consumers replaced because their group coordinator stayed lost.
    pub consumer_restarts: IntCounter,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let m = Self {
            messages_in: register_int_counter_vec_with_registry!(
                "at_ingest_messages_in_total",
                "Messages received",
                &["path"],
                r
            )?,
            messages_out: register_int_counter_vec_with_registry!(
                "at_ingest_messages_out_total",
                "Messages forwarded",
                &["path"],
                r
            )?,
            bytes_in: register_int_counter_vec_with_registry!(
                "at_ingest_bytes_in_total",
                "Bytes received",
                &["path"],
                r
            )?,
            duplicates: register_int_counter_with_registry!(
                "at_ingest_duplicates_total",
                "Duplicate uplink messages dropped",
                r
            )?,
            dead_letters: register_int_counter_vec_with_registry!(
                "at_ingest_dead_letters_total",
                "Dead letters by reason",
                &["reason"],
                r
            )?,
            mqtt_reconnects: register_int_counter_vec_with_registry!(
                "at_ingest_mqtt_reconnects_total",
                "MQTT connection errors",
                &["client"],
                r
            )?,
            rosters: register_int_counter_with_registry!(
                "at_ingest_roster_updates_total",
                "Twin rosters pushed to devices",
                r
            )?,
            rosters_oversized: register_int_counter_with_registry!(
                "at_ingest_rosters_oversized_total",
                "Twin rosters over the MQTT packet limit, not pushed",
                r
            )?,
            consumer_lag: register_int_gauge_with_registry!(
                "at_ingest_consumer_lag",
                "Downlink consumer lag (records)",
                r
            )?,
            consumer_restarts: register_int_counter_with_registry!(
                "at_ingest_consumer_restarts_total",
                "Consumers replaced because their group coordinator stayed lost",
                r
            )?,
            registry: r,
        };
        // Both connections' series exist from the start, at 0: a dashboard and an alert see
        // "no reconnects" rather than no data.
        for client in ["up", "down"] {
            m.mqtt_reconnects.with_label_values(&[client]);
        }
        Ok(m)
    }
}
