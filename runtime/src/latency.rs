//! End-to-end latency through the cloud. The bridge stamps each uplink record of `at.sync.v1` with
//! the time it received the publish ([`INGEST_MS_HEADER`]); a worker carries the stamp onto the
//! outputs it makes from the record, and whoever finishes an output (the worker once Kafka has it,
//! the bridge once mosquitto acknowledged a device's delivery) observes the time since.
//!
//! The stamp is plain metadata any writer of the topic could set: it is parsed with a bound and a
//! forged one can only skew a histogram, never a record's handling. Times are the bridge's and the
//! observer's wall clocks, so on different hosts they include the clocks' offset (clamped at 0).

use prometheus::Histogram;

use crate::kafka::Ack;

/// Header of an uplink record: the bridge's receive time, decimal Unix milliseconds.
pub const INGEST_MS_HEADER: &str = "at-ingest-ms";

/// Histogram buckets (seconds) for end-to-end latencies: 1 ms to 30 s.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The stamp's value, if it is one: at most 20 ASCII digits that fit a `u64`.
pub fn parse_stamp(value: Option<&[u8]>) -> Option<u64> {
    let v = value?;
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Seconds from `since_ms` to `now_ms`, 0 if the stamp is in the future (clock offset, forgery).
pub fn seconds_between(since_ms: u64, now_ms: u64) -> f64 {
    now_ms.saturating_sub(since_ms) as f64 / 1000.0
}

/// `ack`, which also observes the time since `stamp_ms` in `histogram` once it succeeds.
pub fn observe_on_ack(ack: Ack, histogram: Histogram, stamp_ms: u64) -> Ack {
    Box::pin(async move {
        let r = ack.await;
        if r.is_ok() {
            histogram.observe(seconds_between(stamp_ms, armored_base::time::now_ms()));
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse_only_when_they_are_bounded_decimal_numbers() {
        assert_eq!(parse_stamp(Some(b"1796622464924")), Some(1_796_622_464_924));
        assert_eq!(parse_stamp(Some(b"0")), Some(0));
        for bad in [
            &b""[..],
            b"-5",
            b"12a",
            b" 12",
            b"1.5",
            b"99999999999999999999",  // 20 digits, over u64::MAX
            b"123456789012345678901", // 21 digits
        ] {
            assert_eq!(parse_stamp(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(parse_stamp(None), None);
    }

    #[test]
    fn a_stamp_from_the_future_counts_as_no_time() {
        assert_eq!(seconds_between(2_000, 1_000), 0.0);
        assert_eq!(seconds_between(1_000, 3_500), 2.5);
    }
}
