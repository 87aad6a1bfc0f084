//! mosquitto's own figures (`$SYS/broker/...`, published every `sys_interval`, 10 s by default),
//! read by the bridge's downlink connection and served as `at_mqtt_*` metrics, so that operators see
//! the device side of the edge (clients connected, offline sessions, messages queued or dropped)
//! without a separate exporter. With several bridges each serves the same figures: aggregate with
//! `max`.
//!
//! Only the broker can publish on `$SYS` (a client's publish there is refused by the ACL), but the
//! payloads are parsed with a bound all the same: anything but a short decimal number is counted
//! and skipped.

use std::collections::HashMap;

use prometheus::{IntCounter, IntGauge};

use crate::metrics::{BrokerMetrics, Metrics};

/// A figure, and the metric it goes to: the broker's current value, or a total since the broker
/// started (served as a counter).
#[derive(Clone, Copy)]
enum Kind {
    Gauge(fn(&BrokerMetrics) -> &IntGauge),
    Total(fn(&BrokerMetrics) -> &IntCounter),
}

/// The `$SYS` topics read, and where each goes.
const FIGURES: [(&str, Kind); 6] = [
    (
        "$SYS/broker/clients/connected",
        Kind::Gauge(|m| &m.clients_connected),
    ),
    (
        "$SYS/broker/clients/disconnected",
        Kind::Gauge(|m| &m.sessions_offline),
    ),
    (
        "$SYS/broker/store/messages/count",
        Kind::Gauge(|m| &m.stored_messages),
    ),
    (
        "$SYS/broker/messages/received",
        Kind::Total(|m| &m.received),
    ),
    ("$SYS/broker/messages/sent", Kind::Total(|m| &m.sent)),
    (
        "$SYS/broker/publish/messages/dropped",
        Kind::Total(|m| &m.dropped),
    ),
];

/// The subscriptions: one per figure (QoS 0: nothing is queued for a bridge that is away).
pub(crate) fn filters() -> impl Iterator<Item = &'static str> {
    FIGURES.iter().map(|(t, _)| *t)
}

/// Whether `topic` is one of the broker's own.
pub(crate) fn is_broker_topic(topic: &str) -> bool {
    topic.starts_with("$SYS/")
}

/// Why a `$SYS` payload was skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Skipped {
    /// Not one of [`FIGURES`].
    #[error("not a figure the bridge reads")]
    Unknown,
    /// Not a decimal number of at most 20 digits.
    #[error("not a bounded decimal number")]
    NotANumber,
}

/// The last totals seen, to turn the broker's running totals into counter increments.
#[derive(Debug, Default)]
pub(crate) struct BrokerStats {
    last: HashMap<&'static str, u64>,
}

impl BrokerStats {
    /// Applies one `$SYS` message to `m`.
    pub(crate) fn apply(
        &mut self,
        m: &Metrics,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), Skipped> {
        let (name, kind) = FIGURES
            .iter()
            .find(|(t, _)| *t == topic)
            .copied()
            .ok_or(Skipped::Unknown)?;
        let value = parse(payload).ok_or(Skipped::NotANumber)?;
        match kind {
            Kind::Gauge(g) => g(&m.mqtt).set(i64::try_from(value).unwrap_or(i64::MAX)),
            Kind::Total(c) => {
                // A total lower than the last one means the broker restarted and counts from 0.
                let last = self.last.insert(name, value).unwrap_or(0);
                let step = if value >= last { value - last } else { value };
                c(&m.mqtt).inc_by(step);
            }
        }
        m.mqtt
            .updated
            .set(armored_base::time::now_ms() as f64 / 1000.0);
        Ok(())
    }
}

fn parse(payload: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(payload).ok()?.trim();
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_follow_the_broker_and_totals_become_counters() {
        let m = Metrics::new().expect("metrics");
        let mut s = BrokerStats::default();
        s.apply(&m, "$SYS/broker/clients/connected", b"12")
            .expect("gauge");
        assert_eq!(m.mqtt.clients_connected.get(), 12);
        s.apply(&m, "$SYS/broker/clients/connected", b"3")
            .expect("gauge");
        assert_eq!(m.mqtt.clients_connected.get(), 3);

        s.apply(&m, "$SYS/broker/messages/received", b"100")
            .expect("total");
        s.apply(&m, "$SYS/broker/messages/received", b"150")
            .expect("total");
        assert_eq!(m.mqtt.received.get(), 150);
        // The broker restarted: its total starts again from 0, the counter goes on.
        s.apply(&m, "$SYS/broker/messages/received", b"20")
            .expect("total");
        assert_eq!(m.mqtt.received.get(), 170);
        assert!(m.mqtt.updated.get() > 0.0);
    }

    #[test]
    fn anything_but_a_short_number_on_a_known_topic_is_skipped() {
        let m = Metrics::new().expect("metrics");
        let mut s = BrokerStats::default();
        for bad in [
            &b""[..],
            b"-1",
            b"1e9",
            b"mosquitto",
            b"123456789012345678901",
            b"\xff",
        ] {
            assert_eq!(
                s.apply(&m, "$SYS/broker/clients/connected", bad),
                Err(Skipped::NotANumber),
                "{bad:?}"
            );
        }
        assert_eq!(
            s.apply(&m, "$SYS/broker/version", b"mosquitto version 2.0.11"),
            Err(Skipped::Unknown)
        );
        assert_eq!(m.mqtt.clients_connected.get(), 0);
        assert_eq!(m.mqtt.updated.get(), 0.0);
    }
}
