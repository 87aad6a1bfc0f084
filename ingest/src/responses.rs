//! Device → requester: answers to requests (phase 5 step 8) from MQTT `at/v1/resp/{twin}/{device}`
//! to `at.responses.v1`, keyed by the hex request id the requester waits on. The bridge cannot open
//! a response (it is sealed under the requester's key); it checks what is plain: the topic's ids,
//! the size, the framing, that the response names the device the broker authenticated, and that
//! the device is enrolled. Acknowledged to the device only after Kafka's ack, like the uplink.

use armored_crypto::registry::Registry;
use armored_crypto::request::parse_response_envelope;
use armored_crypto::Error as CryptoError;
use armored_runtime::dlq::Source;
use armored_runtime::kafka::{enqueue, Ack};
use armored_schemas::Refusal;
use rumqttc::Publish;

use crate::Ctx;

/// MQTT topic filter of responses.
pub const RESPONSE_FILTER: &str = "at/v1/resp/+/+";

/// Why a response is refused (dead-letter reasons, the uplink's labels).
#[derive(Debug, thiserror::Error)]
pub enum ResponseReject {
    /// Not `at/v1/resp/{twin}/{device}` with valid ids.
    #[error("topic is not at/v1/resp/{{twin}}/{{device}}")]
    BadTopic,
    /// Over the response size limit.
    #[error("response of {0} bytes over the limit")]
    Oversized(usize),
    /// Not a well-formed `ResponseEnvelope`.
    #[error("malformed response: {0}")]
    Malformed(CryptoError),
    /// Its twin/device differ from the topic.
    #[error("response ids differ from the topic")]
    IdMismatch,
    /// The device is not enrolled.
    #[error("device not enrolled")]
    UnknownDevice,
}

impl Refusal for ResponseReject {
    fn reason(&self) -> &'static str {
        match self {
            ResponseReject::BadTopic => "bad_topic",
            ResponseReject::Oversized(_) => "oversized",
            ResponseReject::Malformed(_) => "malformed",
            ResponseReject::IdMismatch => "id_mismatch",
            ResponseReject::UnknownDevice => "unknown_device",
        }
    }
}

/// Splits `at/v1/resp/{twin}/{device}`.
pub fn parse_resp_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("at/v1/resp/")?;
    let (twin, device) = rest.split_once('/')?;
    (armored_crypto::envelope::is_valid_id(twin) && armored_crypto::envelope::is_valid_id(device))
        .then_some((twin, device))
}

/// The edge's checks of one response; returns the Kafka key (hex request id).
pub fn check_response(
    topic: &str,
    payload: &[u8],
    registry: &Registry,
) -> Result<String, ResponseReject> {
    let (twin, device) = parse_resp_topic(topic).ok_or(ResponseReject::BadTopic)?;
    let limit = armored_schemas::limits::MAX_RESPONSE_BYTES;
    if payload.len() > limit {
        return Err(ResponseReject::Oversized(payload.len()));
    }
    let env = parse_response_envelope(payload).map_err(ResponseReject::Malformed)?;
    if env.twin_id != twin || env.device_id != device {
        return Err(ResponseReject::IdMismatch);
    }
    if registry.device(twin, device).is_none() {
        return Err(ResponseReject::UnknownDevice);
    }
    Ok(hex::encode(env.request_id))
}

/// Checks one response and enqueues it (or its dead letter).
pub(crate) async fn handle(ctx: &Ctx, p: &Publish) -> Option<Ack> {
    let m = &ctx.metrics;
    m.messages_in.with_label_values(&["resp"]).inc();
    m.bytes_in
        .with_label_values(&["resp"])
        .inc_by(p.payload.len() as u64);
    let verdict = {
        let Ok(r) = ctx.registry.read() else {
            return Some(crate::Poisoned::ack());
        };
        check_response(&p.topic, &p.payload, &r)
    };
    match verdict {
        Err(reject) => {
            let src = Source {
                topic: &p.topic,
                partition: -1,
                offset: -1,
                key: p.topic.as_bytes(),
            };
            Some(ctx.dlq.refuse(&reject, &src, &p.payload).await)
        }
        Ok(key) => {
            m.messages_out.with_label_values(&["resp"]).inc();
            Some(
                enqueue(
                    &ctx.producer,
                    &ctx.topics.responses(),
                    key.as_bytes(),
                    &p.payload,
                    None,
                )
                .await,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_topics() {
        assert_eq!(parse_resp_topic("at/v1/resp/t1/d1"), Some(("t1", "d1")));
        assert_eq!(parse_resp_topic("at/v1/resp/t1"), None);
        assert_eq!(parse_resp_topic("at/v1/resp/T1/d1"), None);
        assert_eq!(parse_resp_topic("at/v1/up/t1/d1"), None);
        assert_eq!(parse_resp_topic("at/v1/resp/t1/d1/x"), None);
    }

    #[test]
    fn garbage_is_malformed_and_topic_checked_first() {
        let r = Registry::new();
        assert!(matches!(
            check_response("at/v1/resp/t1/d1", b"garbage", &r),
            Err(ResponseReject::Malformed(_))
        ));
        assert!(matches!(
            check_response("at/v1/resp/t1", b"garbage", &r),
            Err(ResponseReject::BadTopic)
        ));
    }
}
