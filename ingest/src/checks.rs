//! The checks the MQTT edge applies to an uplink envelope before it enters the twin store
//! (envelope.md, "State change"): the broker authenticated the device and its ACL confined it to
//! its topic, so the header's ids must equal the topic's; the device must be enrolled; the epoch must
//! be near now; reserved attributes only where allowed; size capped. No signature is checked here.

use armored_crypto::envelope::decode_envelope;
use armored_crypto::epoch::epoch_of;
use armored_crypto::registry::Registry;
use armored_crypto::Error as CryptoError;
use armored_schemas::Refusal;

/// Why an uplink message is refused (each is a dead-letter reason).
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    /// Not `at/v1/up/{twin}/{device}` with valid ids.
    #[error("topic is not at/v1/up/{{twin}}/{{device}}")]
    BadTopic,
    /// Over `max_envelope_bytes`.
    #[error("envelope of {0} bytes over the limit")]
    Oversized(usize),
    /// Not a well-formed envelope (bad protobuf, bad points, header/capsule disagreement).
    #[error("malformed envelope: {0}")]
    Malformed(CryptoError),
    /// Header twin/device differ from the topic (a device speaking for another).
    #[error("header ids differ from the topic")]
    IdMismatch,
    /// The device is not enrolled (or revoked).
    #[error("device not enrolled")]
    UnknownDevice,
    /// The header names a writer key other than the device's own.
    #[error("writer key is not the uploading device's key")]
    WriterMismatch,
    /// The epoch is outside the clock-skew bound.
    #[error("epoch {epoch} outside [{min}, {max}]")]
    StaleEpoch {
        /// Header epoch.
        epoch: u64,
        /// Oldest accepted.
        min: u64,
        /// Newest accepted.
        max: u64,
    },
    /// A reserved attribute on a path that may not carry it.
    #[error("reserved attribute not allowed here: {0}")]
    ReservedAttribute(&'static str),
    /// A share bundle from a device enrolled without an MPC slot length.
    #[error("share bundle from a device enrolled without a slot length")]
    NoSlotLength,
    /// Published with the retain flag: the broker would give it again to every new subscription
    /// (each bridge restart), so the bridge drops it (acknowledged, dead-lettered).
    #[error("retained uplink")]
    Retained,
}

impl Refusal for Reject {
    fn reason(&self) -> &'static str {
        match self {
            Reject::BadTopic => "bad_topic",
            Reject::Oversized(_) => "oversized",
            Reject::Malformed(_) => "malformed",
            Reject::IdMismatch => "id_mismatch",
            Reject::UnknownDevice => "unknown_device",
            Reject::WriterMismatch => "writer_mismatch",
            Reject::StaleEpoch { .. } => "stale_epoch",
            Reject::ReservedAttribute(_) => "reserved_attribute",
            Reject::NoSlotLength => "no_slot_length",
            Reject::Retained => "retained_uplink",
        }
    }
}

/// What an accepted uplink envelope says in plain.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// Twin.
    pub twin_id: String,
    /// Uploading device.
    pub device_id: String,
    /// Writer key id.
    pub writer_key_id: Vec<u8>,
    /// Sequence number.
    pub seq: u64,
    /// A share bundle (phase 3+) rather than a state change.
    pub share_bundle: bool,
}

/// Limits of the uplink checks.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `max_envelope_bytes`.
    pub max_bytes: usize,
    /// Clock-skew bound.
    pub skew_ms: u64,
}

/// Splits `at/v1/up/{twin}/{device}`.
pub fn parse_up_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("at/v1/up/")?;
    let (twin, device) = rest.split_once('/')?;
    (armored_crypto::envelope::is_valid_id(twin) && armored_crypto::envelope::is_valid_id(device))
        .then_some((twin, device))
}

/// Attribute rules of the uplink path ([`armored_crypto::ids::uplink_attribute_rules`]): `Ok(true)`
/// for a share bundle.
pub fn check_uplink_attributes(attrs: &[String], twin_id: &str) -> Result<bool, Reject> {
    armored_crypto::ids::uplink_attribute_rules(attrs, twin_id).map_err(Reject::ReservedAttribute)
}

/// Applies every uplink check.
pub fn check_uplink(
    topic: &str,
    payload: &[u8],
    registry: &Registry,
    now_ms: u64,
    limits: Limits,
) -> Result<Accepted, Reject> {
    let (twin, device) = parse_up_topic(topic).ok_or(Reject::BadTopic)?;
    if payload.len() > limits.max_bytes {
        return Err(Reject::Oversized(payload.len()));
    }
    let (_, header, _) = decode_envelope(payload).map_err(Reject::Malformed)?;
    if header.twin_id != twin || header.device_id != device {
        return Err(Reject::IdMismatch);
    }
    let dev = registry.device(twin, device).ok_or(Reject::UnknownDevice)?;
    if header.writer_key_id.as_slice() != dev.enrollment.sig.key_id().as_bytes().as_slice() {
        return Err(Reject::WriterMismatch);
    }
    let share_bundle = check_uplink_attributes(&header.attributes, twin)?;
    // A share bundle's epoch is a share epoch: the enrolled number of global MPC slots of the
    // enrolled slot length (both bounded by the enrollment's checks; saturating regardless).
    let len = if share_bundle {
        match dev.enrollment.slot_len_ms {
            0 => return Err(Reject::NoSlotLength),
            l => l.saturating_mul(dev.enrollment.slots_per_share_epoch.max(1)),
        }
    } else {
        dev.enrollment.epoch_len_ms.max(1)
    };
    let min = epoch_of(now_ms.saturating_sub(limits.skew_ms), len);
    let max = epoch_of(now_ms.saturating_add(limits.skew_ms), len);
    if header.epoch < min || header.epoch > max {
        return Err(Reject::StaleEpoch {
            epoch: header.epoch,
            min,
            max,
        });
    }
    Ok(Accepted {
        twin_id: header.twin_id,
        device_id: header.device_id,
        writer_key_id: header.writer_key_id,
        seq: header.seq,
        share_bundle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn topics() {
        assert_eq!(parse_up_topic("at/v1/up/bike-7/d1"), Some(("bike-7", "d1")));
        for bad in [
            "at/v1/up/bike-7",
            "at/v1/up/Bike/d1",
            "at/v1/up/b/d/x",
            "at/v1/down/b/d",
            "at/v1/up//d",
        ] {
            assert_eq!(parse_up_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn attribute_rules() {
        let t = "twin:bike";
        assert_eq!(
            check_uplink_attributes(&a(&["sync", "location", t]), "bike").ok(),
            Some(false)
        );
        assert_eq!(
            check_uplink_attributes(&a(&["mpc-share", "node-2", "location", t]), "bike").ok(),
            Some(true)
        );
        for bad in [
            &["req", "sync", t][..],
            &["sync", "twin:other", t],
            &["node-1", "location", t],
            &["mpc-share", "location", t],
            &["mpc-share", "node-1", "node-2", t],
            &["mpc-share", "node-4", t],
            &["mpc-share", "node-1", "sync", t],
            &["mpc-share", "node-1", "location", "sync", t],
            &["mpc-share", "node-1", "location", "pulse", t],
            &["mpc-share", "node-1", t],
        ] {
            assert!(check_uplink_attributes(&a(bad), "bike").is_err(), "{bad:?}");
        }
    }
}
