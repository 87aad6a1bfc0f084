//! Phases 4 and 6, ReEnc: the one place a stored envelope's capsule is re-encrypted under a re-key
//! and turned into a delivery, for live routing (route.rs) and history replay (history.rs) alike.
//! The capsule's well-formedness check runs at most once per envelope, and the result is cached
//! per (capsule, re-key), so ReEnc runs once per epoch, attribute set and receiver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use armored_crypto::audit::{attributes_digest, delivery_digest};
use armored_crypto::envelope::{decode_envelope, make_delivery};
use armored_crypto::kpcpre::{reencrypt, Capsule1, Capsule2, CheckedCapsule};
use armored_crypto::tokens::ReceiverKind;
use armored_crypto::Error as CryptoError;
use armored_schemas::replay::REQUEST_HEADER;
use armored_schemas::v1;
use prometheus::{Histogram, IntCounter};
use rdkafka::message::{Header, OwnedHeaders};
use sha2::{Digest, Sha256};

use crate::rekeys::Grant;

/// Where a delivery goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// `at.deliver.v1`, keyed by receiver id.
    Deliver {
        /// Receiver id (`{twin}/{device}` for devices).
        receiver: String,
        /// `device` or `service`.
        kind: &'static str,
    },
    /// `at.mpc.shares.node-j.v1`, keyed by twin.
    Node(u32),
}

impl Dest {
    /// The receiver kind, as the `at-receiver-kind` header and the deliveries metric name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Dest::Deliver { kind, .. } => kind,
            Dest::Node(_) => "mpc-node",
        }
    }
}

/// One output of routing.
#[derive(Debug)]
pub struct Output {
    /// Destination.
    pub dest: Dest,
    /// Encoded `Delivery`.
    pub payload: Vec<u8>,
    /// Hex rk_id (header, for operators).
    pub rk_id: String,
    /// Its audit entry as far as ReEnc knows it (re-key, receiver, twin, epoch, attributes,
    /// capsule id, delivery digest); the caller adds the time, the source record and the
    /// delivery topic (audit.rs).
    pub audit: v1::AuditEntry,
}

impl Output {
    /// The headers of every delivery, live or replayed: receiver kind and re-key id (for
    /// operators), and the request id of a replay.
    pub fn headers(&self, replay_request: Option<&str>) -> OwnedHeaders {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "at-receiver-kind",
                value: Some(self.dest.kind()),
            })
            .insert(Header {
                key: "at-rk-id",
                value: Some(&self.rk_id),
            });
        match replay_request {
            Some(id) => headers.insert(Header {
                key: REQUEST_HEADER,
                value: Some(id),
            }),
            None => headers,
        }
    }
}

/// (SHA-256 of the encoded capsule1, rk_id).
type CacheKey = ([u8; 32], [u8; 16]);

/// The ReEnc cache: (capsule digest, rk_id) → capsule2. Bounded: cleared when full, and on
/// every revocation (envelope.md: revocation purges the ReEnc cache).
#[derive(Debug)]
pub struct Cache {
    map: Mutex<HashMap<CacheKey, Arc<Capsule2>>>,
    capacity: usize,
}

impl Cache {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::default(),
            capacity,
        }
    }
    /// Drops every entry.
    pub fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
    fn get(&self, k: &CacheKey) -> Option<Arc<Capsule2>> {
        self.map.lock().ok()?.get(k).cloned()
    }
    fn contains(&self, k: &CacheKey) -> bool {
        self.map.lock().is_ok_and(|m| m.contains_key(k))
    }
    fn put(&self, k: CacheKey, v: Arc<Capsule2>) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= self.capacity {
                m.clear();
            }
            m.insert(k, v);
        }
    }
}

/// Counters routing updates.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    /// ReEnc runs.
    pub reencryptions: IntCounter,
    /// Cache hits.
    pub cache_hits: IntCounter,
    /// ReEnc latency.
    pub reenc_seconds: Histogram,
    /// Capsule checks.
    pub capsule_checks: IntCounter,
}

/// A stored envelope decoded for ReEnc.
pub struct Opened {
    /// The envelope.
    pub env: v1::Envelope,
    /// Its plain header.
    pub header: v1::EnvelopeHeader,
    /// Its capsule.
    pub c1: Capsule1,
    /// SHA-256 of the capsule's wire bytes (what was validated and what cid binds): the cache key.
    pub digest: [u8; 32],
    /// `j` of a share bundle's `node-j` attribute.
    pub node: Option<u32>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened({})", hex::encode(self.digest))
    }
}

impl Opened {
    /// Decodes an envelope (its size was checked by the caller).
    pub fn decode(payload: &[u8]) -> Result<Self, CryptoError> {
        let (env, header, c1) = decode_envelope(payload)?;
        let digest: [u8; 32] = Sha256::digest(
            env.capsule1
                .as_ref()
                .map(prost::Message::encode_to_vec)
                .unwrap_or_default(),
        )
        .into();
        let node = header
            .attributes
            .iter()
            .find_map(|a| a.strip_prefix("node-").and_then(|j| j.parse::<u32>().ok()));
        Ok(Self {
            env,
            header,
            c1,
            digest,
            node,
        })
    }

    /// Whether `g`'s capsule2 for this envelope is cached.
    pub fn cached(&self, cache: &Cache, g: &Grant) -> bool {
        cache.contains(&(self.digest, *g.grant.rk.rk_id()))
    }

    /// The delivery of this envelope for re-key `g`: its capsule2 from `cache`, or ReEnc (after
    /// the capsule's check, done here unless `checked` has it already), to `g`'s destination.
    /// `request_id` marks a history replay's delivery.
    pub fn deliver(
        &self,
        g: &Grant,
        checked: &mut Option<CheckedCapsule>,
        cache: &Cache,
        metrics: &RouteMetrics,
        request_id: Option<&str>,
    ) -> Result<Output, CryptoError> {
        let rk_id = *g.grant.rk.rk_id();
        let c2 = match cache.get(&(self.digest, rk_id)) {
            Some(c2) => {
                metrics.cache_hits.inc();
                c2
            }
            None => {
                // Checked once per envelope, and here when it was not (a concurrent revocation may
                // have purged the cache since the caller looked).
                let cc = match checked {
                    Some(cc) => cc,
                    None => {
                        metrics.capsule_checks.inc();
                        checked.insert(self.c1.clone().check(&mut rand_core::OsRng)?)
                    }
                };
                let t = Instant::now();
                let c2 = Arc::new(reencrypt(&g.grant.rk, cc)?);
                metrics.reenc_seconds.observe(t.elapsed().as_secs_f64());
                metrics.reencryptions.inc();
                cache.put((self.digest, rk_id), c2.clone());
                c2
            }
        };
        let dest = match (g.grant.receiver_kind, self.node) {
            (ReceiverKind::MpcNode, Some(j)) => Dest::Node(j),
            (kind, _) => Dest::Deliver {
                receiver: g.grant.receiver_id.clone(),
                kind: if kind == ReceiverKind::Device {
                    "device"
                } else {
                    "service"
                },
            },
        };
        let payload = make_delivery(&self.env, &c2, request_id);
        let audit = v1::AuditEntry {
            rk_id: rk_id.to_vec(),
            receiver_kind: g.grant.receiver_kind as i32,
            receiver_id: g.grant.receiver_id.clone(),
            twin_id: self.header.twin_id.clone(),
            epoch: self.header.epoch,
            attributes_digest: attributes_digest(&self.header.attributes).to_vec(),
            capsule_id: self.header.capsule_id.clone(),
            delivery_sha256: delivery_digest(&payload).to_vec(),
            replay_request_id: request_id.unwrap_or_default().to_string(),
            ..v1::AuditEntry::default()
        };
        Ok(Output {
            dest,
            payload,
            rk_id: hex::encode(rk_id),
            audit,
        })
    }
}
