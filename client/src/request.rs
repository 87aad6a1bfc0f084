//! `atctl request` (phase 5, the requester): seal a request for the twin's owner (attributes `req`,
//! `twin:<id>`, a plain expiry), write it to `at.requests.v1`, and wait on `at.responses.v1` for
//! the answer under the request id, which only this requester can open (it chose the response
//! key) and which must be signed by a device the owner enrolled for the twin.
//!
//! The requester signs with the key of an owner directory (`atctl owner init`) or a service
//! directory (`atctl service init`); a service attaches a write token to be served.

use armored_schemas::Refusal;
use std::path::Path;
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_crypto::epoch::{epoch_of, EpochKeyManager};
use armored_crypto::identity::{fingerprint, verify_owner_identity, verify_pinned_identity};
use armored_crypto::keyfile::load_signing_key;
use armored_crypto::registry::Registry;
use armored_crypto::request::{
    new_request_id, open_response, seal_request, RequestInput, ResponseKey, REQ_ATTRIBUTE,
};
use armored_crypto::sig::SigningKey;
use armored_runtime::reader::{groupless_config, Assignment, Start};
use rand_core::OsRng;
use rdkafka::consumer::StreamConsumer;
use rdkafka::Message;
use serde::Serialize;

use crate::error::{key, ClientError, KafkaError, Result};
use crate::kafka::Ctl;

/// Default epoch length when the twin's enrollment is not at hand.
const DEFAULT_EPOCH_LEN_MS: u64 = 3_600_000;

/// Who asks: an id (for the header) and a signing key.
pub struct Requester {
    /// Owner or party id.
    pub id: String,
    /// The local brokers' principal it signs in as (an owner's tool or the service's own).
    pub principal: String,
    sig: SigningKey,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Requester({}, {})", self.id, self.sig.key_id())
    }
}

impl Requester {
    /// Opens an owner directory (`owner.identity`) or a service directory (`identity`).
    pub fn open(dir: &Path) -> Result<Self> {
        let sig = load_signing_key(&dir.join("sig.key"))
            .map_err(key(format!("no signing key in {}", dir.display())))?;
        let (id, principal) = if let Ok(b) = std::fs::read(dir.join("owner.identity")) {
            let id = verify_owner_identity(&b, None)?.owner_id.clone();
            (id, crate::kafka::OWNER_PRINCIPAL.to_string())
        } else {
            let b = std::fs::read(dir.join("identity")).map_err(|source| ClientError::Io {
                what: format!(
                    "{} is neither an owner nor a service directory",
                    dir.display()
                ),
                source,
            })?;
            let id = verify_pinned_identity(&b, &fingerprint(&b))?
                .party_id
                .clone();
            let principal = crate::kafka::service_principal(&id);
            (id, principal)
        };
        Ok(Self { id, principal, sig })
    }

    /// The signing key (a service writing with a token uses the same one).
    pub fn signing_key(&self) -> &SigningKey {
        &self.sig
    }
}

/// What to ask.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    /// Twin.
    pub twin_id: &'a str,
    /// Body (JSON ops of the device: `{"op":"read"}`, `{"op":"set","field":…,"value":…}`).
    pub body: Vec<u8>,
    /// How long the cloud may hold it.
    pub ttl: Duration,
    /// How long to wait for the answer.
    pub wait: Duration,
    /// A write token naming the requester's key.
    pub write_token: Option<Vec<u8>>,
}

/// A verified answer.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Answer {
    /// Hex request id.
    pub request_id: String,
    /// Twin.
    pub twin_id: String,
    /// The device that answered.
    pub device_id: String,
    /// Its answer (JSON if it parses).
    pub response: serde_json::Value,
}

/// The twin's owner PRE key and epoch length, from the registry.
fn twin_keys(reg: &Registry, twin_id: &str) -> Result<(armored_crypto::kpcpre::PublicKey, u64)> {
    let owner = reg.twin_owner(twin_id).ok_or_else(|| {
        ClientError::NotFound(format!(
            "twin {twin_id} is not in the registry (no enrolled device)"
        ))
    })?;
    let epoch_len = reg
        .twin(twin_id)
        .and_then(|t| t.devices.values().next())
        .map(|d| d.enrollment.epoch_len_ms)
        .unwrap_or(DEFAULT_EPOCH_LEN_MS);
    Ok((owner.pre.clone(), epoch_len))
}

/// Seals a request (returns the envelope, request id and response key) without sending it.
pub fn seal(
    reg: &Registry,
    who: &Requester,
    ask: &Ask<'_>,
    now: u64,
) -> Result<(Vec<u8>, [u8; 16], ResponseKey)> {
    let (owner_pre, epoch_len) = twin_keys(reg, ask.twin_id)?;
    let mut keys = EpochKeyManager::new(owner_pre, ask.twin_id)?;
    let key = keys.key_for(epoch_of(now, epoch_len), &[REQ_ATTRIBUTE], &mut OsRng)?;
    let request_id = new_request_id(&mut OsRng);
    let response_key = ResponseKey::generate(&mut OsRng);
    let env = seal_request(
        key,
        &who.sig,
        &RequestInput {
            requester_id: &who.id,
            request_id,
            response_key: &response_key,
            body: ask.body.clone(),
            expires_at_ms: now.saturating_add(ask.ttl.as_millis() as u64).max(1),
            issued_at_ms: now,
            write_token: ask.write_token.clone(),
        },
        &mut OsRng,
    )?;
    Ok((env, request_id, response_key))
}

/// A consumer of `at.responses.v1` positioned at its current end, before the request is sent, so
/// that no answer can slip past it.
pub fn responses_from_now(ctl: &Ctl) -> Result<StreamConsumer> {
    let topic = ctl.topics.responses();
    let timeout = Duration::from_millis(ctl.kafka.connect_timeout_ms);
    let c: StreamConsumer = groupless_config(&ctl.kafka)
        .set("fetch.wait.max.ms", ctl.kafka.fetch_wait_max_ms.to_string())
        .create()?;
    let mut a = Assignment::new();
    a.add(&c, &topic, None, Start::End, timeout)?;
    if a.is_empty() {
        return Err(KafkaError::NoPartitions {
            topic,
            hint: " (infra/topics.sh)",
        }
        .into());
    }
    a.assign(&c)?;
    Ok(c)
}

/// Waits for the first verified answer to `request_id`; answers that do not verify are reported
/// through `on_bad` and skipped.
pub async fn wait_answer(
    consumer: &StreamConsumer,
    reg: &Registry,
    request_id: &[u8; 16],
    key: &ResponseKey,
    wait: Duration,
    mut on_bad: impl FnMut(&armored_crypto::Error),
) -> Result<Answer> {
    let want = hex::encode(request_id);
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::TimedOut(format!(
                "no response to request {want} within {wait:?}"
            )));
        }
        let m = match tokio::time::timeout(left, consumer.recv()).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
            Ok(Ok(m)) => m,
        };
        if m.key() != Some(want.as_bytes()) {
            continue;
        }
        let payload = m.payload().unwrap_or_default();
        let lookup = |t: &str, d: &str| reg.device(t, d).map(|e| e.enrollment.sig);
        match open_response(payload, key, request_id, lookup) {
            Ok(r) => {
                let r = r.into_inner();
                return Ok(Answer {
                    request_id: want,
                    twin_id: r.twin_id,
                    device_id: r.device_id,
                    response: serde_json::from_slice(&r.body).unwrap_or_else(|_| {
                        serde_json::Value::String(String::from_utf8_lossy(&r.body).into_owned())
                    }),
                });
            }
            Err(e) => on_bad(&e),
        }
    }
}

/// The whole round trip: seal, send, wait.
pub async fn request(ctl: &Ctl, who: &Requester, ask: &Ask<'_>) -> Result<Answer> {
    let reg = ctl.registry().await?;
    let (env, id, key) = seal(&reg, who, ask, now_ms())?;
    let consumer = responses_from_now(ctl)?;
    ctl.send(&ctl.topics.requests(), ask.twin_id, &env).await?;
    wait_answer(
        &consumer,
        &reg,
        &id,
        &key,
        ask.wait,
        |e| tracing::warn!(reason = e.reason(), error = %e, "response refused"),
    )
    .await
}
