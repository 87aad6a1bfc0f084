//! A processing service (phase 6): its identity (PRE, signing and HPKE keys, pinned by owners),
//! and the consumer of its deliveries: decrypt, verify the writer, drop duplicates, report.

use armored_schemas::Refusal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::envelope::{Receiver, TrustStore, Writer};
use armored_crypto::hpke::HpkeSecretKey;
use armored_crypto::identity::{create_party_identity, PartyKind};
use armored_crypto::keyfile::{load_pre_key, save_hpke_key, save_pre_key, save_signing_key};
use armored_crypto::kpcpre::SecretKey;
use armored_crypto::registry::Registry;
use armored_crypto::replay::ReplayGuard;
use armored_crypto::sig::SigningKey;
use armored_crypto::{Error as CryptoError, KeyId};
use armored_runtime::follower::Follower;
use armored_schemas::v1;
use armored_schemas::{decode_strict, limits::MAX_DELIVERY_BYTES};
use rand_core::OsRng;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde::Serialize;

use crate::error::{ClientError, Result};
use crate::files;
use crate::kafka::Ctl;

pub mod write;

/// A verified state change received by a service.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Received {
    /// Twin.
    pub twin_id: String,
    /// Uploading device.
    pub device_id: String,
    /// Writer: `owner`, `device:<id>` or `token:<hex>`.
    pub writer: String,
    /// Writer's sequence number.
    pub seq: u64,
    /// Epoch.
    pub epoch: u64,
    /// Plain attributes.
    pub attributes: Vec<String>,
    /// The change (JSON if it parses, else a string).
    pub delta: serde_json::Value,
}

/// What the consumer saw.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Verified and new.
    pub received: u64,
    /// Seen before (redelivery).
    pub duplicates: u64,
    /// Refused, by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
}

/// One outcome handed to the caller.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A new verified change.
    Received(Received),
    /// Refused, with its typed reason.
    Rejected {
        /// Bounded reason.
        reason: &'static str,
        /// Error text.
        detail: String,
    },
}

/// A service's keys.
pub struct Service {
    /// Service id.
    pub id: String,
    receiver: Receiver,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Service({})", self.id)
    }
}

fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    (
        dir.join("pre.key"),
        dir.join("sig.key"),
        dir.join("hpke.key"),
        dir.join("identity"),
    )
}

impl Service {
    /// Creates a service's (or MPC node's) keys in `dir` and its self-signed identity file, which
    /// owners pin with `atctl owner trust`. Returns the identity file's path.
    pub fn init(dir: &Path, id: &str, kind: PartyKind) -> Result<PathBuf> {
        armored_crypto::envelope::check_id(id, "service id")?;
        let (pre_p, sig_p, hpke_p, id_p) = paths(dir);
        if id_p.exists() {
            return Err(ClientError::Occupied {
                dir: dir.display().to_string(),
                what: "an identity",
            });
        }
        files::create_dir_all(dir)?;
        let pre = SecretKey::generate(&mut OsRng);
        let sig = SigningKey::generate(&mut OsRng);
        let hpke = HpkeSecretKey::generate(&mut OsRng);
        save_pre_key(&pre_p, &pre, &format!("{id} PRE"))?;
        save_signing_key(&sig_p, &sig, &format!("{id} signing"))?;
        save_hpke_key(&hpke_p, &hpke, &format!("{id} HPKE"))?;
        files::write(
            &id_p,
            create_party_identity(kind, id, pre.public(), &sig, hpke.public(), 0),
        )?;
        Ok(id_p)
    }

    /// Opens a service directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let (pre_p, _, _, id_p) = paths(dir);
        let bytes = std::fs::read(&id_p).map_err(|source| ClientError::Io {
            what: format!("no identity in {} (atctl service init)", dir.display()),
            source,
        })?;
        let p = armored_crypto::identity::verify_pinned_identity(
            &bytes,
            &armored_crypto::identity::fingerprint(&bytes),
        )?;
        Ok(Self {
            id: p.party_id.clone(),
            receiver: Receiver::new(load_pre_key(&pre_p, &mut OsRng)?),
        })
    }

    /// Consumes this service's deliveries until `shutdown`, `max` new changes, or `idle` without
    /// any record. Writers are trusted from the registry: the twin's owner (identity with proof of
    /// knowledge) and its owner-enrolled devices.
    pub async fn consume(
        &mut self,
        ctl: &Ctl,
        max: Option<u64>,
        idle: Option<Duration>,
        shutdown: Shutdown,
        mut on: impl FnMut(&Outcome),
    ) -> Result<Stats> {
        let stop = shutdown.child_token();
        let (registry, follower) = armored_runtime::registry::follow(
            &ctl.kafka,
            &ctl.topics.registry(),
            stop.clone(),
            |_, _| {},
        )?;
        follower
            .synced_since(Instant::now(), Duration::from_secs(30))
            .await?;
        let consumer: StreamConsumer = armored_runtime::kafka::base_config(&ctl.kafka)
            .set("group.id", format!("svc-{}", self.id))
            .set("enable.auto.commit", "true")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                ctl.kafka.session_timeout_ms.to_string(),
            )
            .set("fetch.wait.max.ms", ctl.kafka.fetch_wait_max_ms.to_string())
            .create()?;
        consumer.subscribe(&[&ctl.topics.deliver()])?;
        let mut guard = ReplayGuard::new();
        let mut stats = Stats::default();
        let mut last = Instant::now();
        loop {
            if max.is_some_and(|m| stats.received >= m) {
                break;
            }
            let tick = tokio::time::sleep(Duration::from_millis(200));
            let m = tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick => {
                    if idle.is_some_and(|i| last.elapsed() >= i) { break; }
                    continue;
                }
                m = consumer.recv() => m,
            };
            let m = match m {
                Ok(m) => m,
                Err(e) if crate::kafka::is_refusal(&e) => {
                    return Err(crate::error::KafkaError::Refused(Box::new(
                        crate::error::AclRefusal {
                            principal: crate::kafka::principal_of(&ctl.kafka),
                            what: format!("group svc-{} on {}", self.id, ctl.topics.deliver()),
                            source: e,
                        },
                    ))
                    .into())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
            };
            if m.key() != Some(self.id.as_bytes()) {
                continue;
            }
            last = Instant::now();
            let payload = m.payload().unwrap_or_default().to_vec();
            let outcome = match self.open_delivery(&payload, &registry, &follower).await {
                Ok(sc) => {
                    let kid = KeyId::from_slice(&sc.header.writer_key_id, "writer")?;
                    if guard.check(&sc.header.twin_id, kid, sc.header.seq).is_err() {
                        stats.duplicates += 1;
                        continue;
                    }
                    stats.received += 1;
                    Outcome::Received(Received {
                        twin_id: sc.header.twin_id.clone(),
                        device_id: sc.header.device_id.clone(),
                        writer: match &sc.writer {
                            Writer::Owner => "owner".into(),
                            Writer::Device(d) => format!("device:{d}"),
                            Writer::Token(t) => format!("token:{}", hex::encode(t)),
                        },
                        seq: sc.header.seq,
                        epoch: sc.header.epoch,
                        attributes: sc.header.attributes.clone(),
                        delta: serde_json::from_slice(&sc.delta).unwrap_or_else(|_| {
                            serde_json::Value::String(
                                String::from_utf8_lossy(&sc.delta).into_owned(),
                            )
                        }),
                    })
                }
                Err(e) => {
                    *stats.rejected.entry(e.reason().to_string()).or_default() += 1;
                    Outcome::Rejected {
                        reason: e.reason(),
                        detail: e.to_string(),
                    }
                }
            };
            on(&outcome);
        }
        stop.cancel();
        Ok(stats)
    }

    async fn open_delivery(
        &mut self,
        payload: &[u8],
        registry: &Arc<RwLock<Registry>>,
        follower: &Follower,
    ) -> Result<armored_crypto::envelope::StateChange, CryptoError> {
        let d: v1::Delivery = decode_strict("Delivery", payload, MAX_DELIVERY_BYTES)?;
        let header = armored_crypto::envelope::parse_header(&d.envelope_header)?;
        let mut trust = trust_for(registry, &header.twin_id);
        if trust.is_none() {
            // An enrollment written just before the data: catch up once.
            let _ = follower
                .synced_since(Instant::now(), Duration::from_secs(5))
                .await;
            trust = trust_for(registry, &header.twin_id);
        }
        let trust = trust.ok_or(CryptoError::UnknownSigner("twin has no registered owner"))?;
        self.open_delivery_with(payload, &trust, now_ms())
    }

    /// Opens one of this service's deliveries, its writer checked against `trust` as of `at_ms`
    /// (a write token is judged at the time the cloud received the change).
    pub fn open_delivery_with(
        &mut self,
        payload: &[u8],
        trust: &TrustStore,
        at_ms: u64,
    ) -> Result<armored_crypto::envelope::StateChange, CryptoError> {
        Ok(self
            .receiver
            .open_delivery(payload, trust, at_ms, &mut OsRng)?
            .into_inner())
    }
}

fn trust_for(registry: &Arc<RwLock<Registry>>, twin_id: &str) -> Option<TrustStore> {
    registry.read().ok()?.trust_store(twin_id)
}
