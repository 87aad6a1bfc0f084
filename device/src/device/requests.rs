//! Phase 5 on the device: a re-encrypted request is opened and its requester's signature checked
//! (`armored_crypto::request`), the requester authorized (the twin's owner, or a holder of a valid
//! write token for the twin naming its key), the body processed, and the answer sealed under the
//! request's response key. A `set` is synced like any change of the device (phase 3: the normal
//! record path, so it reaches the twin's other devices and services).
//!
//! Request bodies (JSON):
//! - `{"op":"read"}` or `{"op":"read","fields":["x","y"]}` → `{"ok":true,"state":{…}}`
//! - `{"op":"set","field":"x","value":<any JSON>}` → `{"ok":true,"seq":<seq of the state change>}`
//!
//! Anything else, or a requester that is neither the owner nor a token holder, gets
//! `{"ok":false,"error":…}`. A request past its `expires_at_ms` (it waited while the device was
//! offline) is refused without an answer: its requester has stopped waiting.

use armored_crypto::request::{authorize_requester, open_request, seal_response, Request};
use armored_crypto::Error as CryptoError;
use armored_schemas::Refusal;
use armored_schemas::{decode_strict, limits::MAX_DELIVERY_BYTES, v1};
use rand_core::OsRng;
use serde_json::{json, Value};

use super::{Device, DeviceError, Event};

/// Attributes of the state change a `set` produces.
const SET_ATTRIBUTES: &[&str] = &["sync"];

/// The longest a request may live (`expires_at_ms - issued_at_ms`): how long a device remembers
/// its id, so that a replay is refused, is bounded by it. `atctl request` asks for 60 s.
pub const MAX_REQUEST_LIFETIME_MS: u64 = 24 * 3_600_000;
/// How far ahead of the device's clock a request's `issued_at_ms` may be.
pub const MAX_REQUEST_SKEW_MS: u64 = 5 * 60_000;
/// Requests answered and not yet expired that a device remembers; beyond it new requests are
/// refused until some expire (a flood from an authorized requester cannot grow the state file).
pub const MAX_OPEN_REQUESTS: usize = 10_000;

/// Whether a delivery carries a request (its plain header has `req`); undecodable deliveries are
/// left to the state-change path, which reports them.
pub(super) fn is_request_delivery(bytes: &[u8]) -> bool {
    decode_strict::<v1::Delivery>("Delivery", bytes, MAX_DELIVERY_BYTES)
        .ok()
        .and_then(|d| armored_crypto::envelope::parse_header(&d.envelope_header).ok())
        .is_some_and(|h| armored_crypto::request::is_request(&h))
}

impl Device {
    pub(super) fn apply_request(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Event, DeviceError> {
        let req = open_request(&mut self.receiver, bytes, &mut OsRng)?.into_inner();
        if req.header.twin_id != self.card.twin_id {
            return Err(CryptoError::Mismatch("request for another twin").into());
        }
        if req.header.expires_at_ms < now_ms {
            return Err(CryptoError::Expired {
                what: "request",
                now_ms,
                not_before_ms: 0,
                not_after_ms: req.header.expires_at_ms,
            }
            .into());
        }
        self.remember_request(&req, now_ms)?;
        let (op, answer, state_change) = match authorize_requester(&req, &self.trust, now_ms) {
            Ok(_) => self.process(&req, now_ms)?,
            Err(e) => (
                "refused".to_string(),
                json!({"ok": false, "error": "unauthorized requester", "reason": e.reason()}),
                None,
            ),
        };
        let ok = answer.get("ok").and_then(Value::as_bool).unwrap_or(false);
        *self
            .state
            .counters
            .entry(format!("request_{}", if ok { "served" } else { "refused" }))
            .or_default() += 1;
        let response = seal_response(
            &self.sig,
            &req,
            &self.card.device_id,
            answer.to_string().into_bytes(),
            now_ms,
            &mut OsRng,
        )?;
        Ok(Event::Request {
            request_id: hex::encode(req.request_id),
            op,
            ok,
            response,
            state_change,
        })
    }

    /// Refuses a request seen before, one whose lifetime is over the cap or issued in the future,
    /// and any while [`MAX_OPEN_REQUESTS`] are open; otherwise remembers its id until it expires
    /// (persisted with the state, before the answer leaves).
    fn remember_request(&mut self, req: &Request, now_ms: u64) -> Result<(), DeviceError> {
        let expires = req.header.expires_at_ms;
        if req.issued_at_ms > now_ms.saturating_add(MAX_REQUEST_SKEW_MS) {
            return Err(DeviceError::RequestRefused("issued in the future"));
        }
        if expires.saturating_sub(req.issued_at_ms) > MAX_REQUEST_LIFETIME_MS {
            return Err(DeviceError::RequestRefused("lifetime over 24 h"));
        }
        let seen = &mut self.state.seen_requests;
        seen.retain(|_, exp| *exp >= now_ms);
        let id = hex::encode(req.request_id);
        if seen.contains_key(&id) {
            return Err(DeviceError::RequestSeen(id));
        }
        if seen.len() >= MAX_OPEN_REQUESTS {
            return Err(DeviceError::RequestRefused("too many open requests"));
        }
        seen.insert(id, expires);
        Ok(())
    }

    /// Runs one authorized request: (op, answer, state change to publish).
    fn process(
        &mut self,
        req: &Request,
        now_ms: u64,
    ) -> Result<(String, Value, Option<Vec<u8>>), DeviceError> {
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(_) => return Ok(unsupported("the body is not JSON")),
        };
        match body.get("op").and_then(Value::as_str) {
            Some("read") => {
                let state = match body.get("fields").and_then(Value::as_array) {
                    Some(names) => names
                        .iter()
                        .filter_map(Value::as_str)
                        .filter_map(|n| self.state.fields.get(n).map(|v| (n.to_owned(), v.clone())))
                        .collect(),
                    None => self
                        .state
                        .fields
                        .clone()
                        .into_iter()
                        .collect::<serde_json::Map<_, _>>(),
                };
                Ok(("read".into(), json!({"ok": true, "state": state}), None))
            }
            Some("set") => {
                let (Some(field), Some(value)) = (
                    body.get("field")
                        .and_then(Value::as_str)
                        .filter(|f| !f.is_empty()),
                    body.get("value"),
                ) else {
                    return Ok(unsupported("set needs a field name and a value"));
                };
                let seq = self.state.next_seq;
                let env = self.record(SET_ATTRIBUTES, json!({ field: value }), now_ms)?;
                Ok(("set".into(), json!({"ok": true, "seq": seq}), Some(env)))
            }
            _ => Ok(unsupported("unknown op (read, set)")),
        }
    }
}

fn unsupported(why: &str) -> (String, Value, Option<Vec<u8>>) {
    (
        "unsupported".into(),
        json!({"ok": false, "error": why}),
        None,
    )
}
