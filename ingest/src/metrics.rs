//! `at_ingest_*` metrics (DESIGN, "Observability"): bounded labels only, never twin or device ids.

use prometheus::{
    register_gauge_with_registry, register_histogram_with_registry,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry, Gauge, Histogram, IntCounter, IntCounterVec, IntGauge,
    Registry,
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
    /// From this or another bridge receiving an uplink to mosquitto acknowledging a device's
    /// delivery made from it: the cloud's whole part of a device-to-device sync.
    pub end_to_end: Histogram,
    /// mosquitto's own figures (`crate::broker_stats`).
    pub mqtt: BrokerMetrics,
}

/// mosquitto's `$SYS` figures, as the bridge last read them.
#[derive(Clone, Debug)]
pub struct BrokerMetrics {
    /// Clients connected: devices, bridges, probes and operators' clients alike.
    pub clients_connected: IntGauge,
    /// Persistent sessions whose client is not connected (offline devices whose messages queue).
    pub sessions_offline: IntGauge,
    /// Messages the broker holds (retained, queued and in flight).
    pub stored_messages: IntGauge,
    /// Messages the broker received, all clients.
    pub received: IntCounter,
    /// Messages the broker sent, all clients.
    pub sent: IntCounter,
    /// Messages the broker dropped (a client's queue full, or an over-limit publish).
    pub dropped: IntCounter,
    /// When the last `$SYS` figure arrived (Unix seconds; 0 before the first).
    pub updated: Gauge,
    /// `$SYS` messages skipped (not a figure the bridge reads, or not a number).
    pub skipped: IntCounter,
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
            end_to_end: register_histogram_with_registry!(
                "at_ingest_end_to_end_seconds",
                "From a bridge receiving an uplink to a device's delivery acknowledged by mosquitto",
                armored_runtime::latency::BUCKETS.to_vec(),
                r
            )?,
            mqtt: BrokerMetrics {
                clients_connected: register_int_gauge_with_registry!(
                    "at_mqtt_clients_connected",
                    "mosquitto: clients connected (devices, bridges and others)",
                    r
                )?,
                sessions_offline: register_int_gauge_with_registry!(
                    "at_mqtt_sessions_offline",
                    "mosquitto: persistent sessions whose client is not connected",
                    r
                )?,
                stored_messages: register_int_gauge_with_registry!(
                    "at_mqtt_stored_messages",
                    "mosquitto: messages held (retained, queued, in flight)",
                    r
                )?,
                received: register_int_counter_with_registry!(
                    "at_mqtt_messages_received_total",
                    "mosquitto: messages received from all clients",
                    r
                )?,
                sent: register_int_counter_with_registry!(
                    "at_mqtt_messages_sent_total",
                    "mosquitto: messages sent to all clients",
                    r
                )?,
                dropped: register_int_counter_with_registry!(
                    "at_mqtt_messages_dropped_total",
                    "mosquitto: messages dropped (queue full or over a limit)",
                    r
                )?,
                updated: register_gauge_with_registry!(
                    "at_mqtt_stats_updated_timestamp_seconds",
                    "When the bridge last read a mosquitto $SYS figure (0: never)",
                    r
                )?,
                skipped: register_int_counter_with_registry!(
                    "at_mqtt_stats_skipped_total",
                    "mosquitto $SYS messages skipped (unknown or not a number)",
                    r
                )?,
            },
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
