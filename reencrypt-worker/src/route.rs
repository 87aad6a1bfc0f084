//! Phase 4/6 routing of one stored envelope: find every re-key of the twin's owner whose policy the
//! plain attributes satisfy, re-encrypt the capsule for it (cached per capsule and re-key, so ReEnc
//! runs once per epoch, attribute set and receiver) and build the deliveries. Share bundles
//! (`node-j`) go only through MPC-node re-keys, to node j's share topic; nothing else ever does.

use armored_schemas::Refusal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use armored_crypto::envelope::{decode_envelope, make_delivery};
use armored_crypto::kpcpre::{reencrypt, Capsule1, Capsule2, CheckedCapsule};
use armored_crypto::registry::Registry;
use armored_crypto::tokens::ReceiverKind;
use armored_crypto::Error as CryptoError;
use prometheus::{Histogram, IntCounter};
use sha2::{Digest, Sha256};

use crate::rekeys::ReKeyStore;

/// Why an envelope cannot be routed (dead-letter reasons).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Oversized.
    #[error("envelope of {0} bytes over the limit")]
    Oversized(usize),
    /// Not a well-formed envelope, or the capsule failed its well-formedness check.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// No owner is known for the twin.
    #[error("twin has no enrolled device, so no owner")]
    UnknownTwin,
    /// The capsule is for a PRE key other than the twin owner's.
    #[error("capsule is not for the twin owner's key")]
    ForeignCapsule,
}

impl Refusal for RouteError {
    fn reason(&self) -> &'static str {
        match self {
            RouteError::Oversized(_) => "oversized",
            RouteError::Crypto(e) => e.reason(),
            RouteError::UnknownTwin => "unknown_twin",
            RouteError::ForeignCapsule => "foreign_capsule",
        }
    }
}

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

/// One output of routing.
#[derive(Debug)]
pub struct Output {
    /// Destination.
    pub dest: Dest,
    /// Encoded `Delivery`.
    pub payload: Vec<u8>,
    /// Hex rk_id (header, for operators).
    pub rk_id: String,
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

/// Where routing reads from: the registry, the re-keys, the ReEnc cache, the clock.
#[derive(Clone, Copy, Debug)]
pub struct Routing<'a> {
    /// Envelopes above this size are refused.
    pub max_bytes: usize,
    /// Owners and twins.
    pub registry: &'a Registry,
    /// Re-keys.
    pub store: &'a ReKeyStore,
    /// ReEnc results.
    pub cache: &'a Cache,
    /// Counters.
    pub metrics: &'a RouteMetrics,
    /// Now (re-key expiry).
    pub now_ms: u64,
}

/// One envelope decoded, with the re-keys that will re-encrypt it.
struct Prepared {
    env: armored_schemas::v1::Envelope,
    c1: Capsule1,
    digest: [u8; 32],
    matching: Vec<Arc<crate::rekeys::Grant>>,
    node: Option<u32>,
    /// Some matching re-key has no cached capsule2: the capsule must be checked.
    needs_check: bool,
}

/// Routes one envelope. Pure except for the cache and metrics; runs on a blocking thread.
pub fn route(payload: &[u8], r: Routing<'_>) -> Result<Vec<Output>, RouteError> {
    route_batch(&[payload], r).pop().unwrap_or(Ok(Vec::new()))
}

/// Routes several envelopes (a partition's queued records), in order: the capsules that need
/// their well-formedness check get it in one batch ([`Capsule1::check_batch`]), which saves a
/// Miller loop and a final exponentiation per capsule. One result per payload.
pub fn route_batch(payloads: &[&[u8]], r: Routing<'_>) -> Vec<Result<Vec<Output>, RouteError>> {
    let prepared: Vec<Result<Option<Prepared>, RouteError>> =
        payloads.iter().map(|p| prepare(p, r)).collect();
    let to_check: Vec<Capsule1> = prepared
        .iter()
        .filter_map(|p| match p {
            Ok(Some(p)) if p.needs_check => Some(p.c1.clone()),
            _ => None,
        })
        .collect();
    r.metrics.capsule_checks.inc_by(to_check.len() as u64);
    let mut checked = Capsule1::check_batch(to_check, &mut rand_core::OsRng).into_iter();
    prepared
        .into_iter()
        .map(|p| match p? {
            None => Ok(Vec::new()),
            Some(p) => {
                let c = if p.needs_check { checked.next() } else { None };
                finish(p, c, r)
            }
        })
        .collect()
}

fn prepare(payload: &[u8], r: Routing<'_>) -> Result<Option<Prepared>, RouteError> {
    if payload.len() > r.max_bytes {
        return Err(RouteError::Oversized(payload.len()));
    }
    let (env, header, c1) = decode_envelope(payload)?;
    let owner = r
        .registry
        .twin_owner(&header.twin_id)
        .ok_or(RouteError::UnknownTwin)?;
    if c1.header().owner_key_id != owner.pre.key_id() {
        return Err(RouteError::ForeignCapsule);
    }
    let node = header
        .attributes
        .iter()
        .find_map(|a| a.strip_prefix("node-").and_then(|j| j.parse::<u32>().ok()));
    let attrs = &c1.header().attributes;
    let matching: Vec<_> = r
        .store
        .for_owner(&owner.pre.key_id())
        .into_iter()
        .filter(|g| {
            let is_node_key = g.grant.receiver_kind == ReceiverKind::MpcNode;
            is_node_key == node.is_some()
                && g.grant.not_after_ms.is_none_or(|na| r.now_ms <= na)
                && g.grant.rk.policy().is_satisfied(attrs)
        })
        .collect();
    if matching.is_empty() {
        return Ok(None);
    }
    // The capsule's wire bytes identify it (they are what was validated and what cid binds).
    let digest: [u8; 32] = Sha256::digest(
        env.capsule1
            .as_ref()
            .map(prost::Message::encode_to_vec)
            .unwrap_or_default(),
    )
    .into();
    let needs_check = matching
        .iter()
        .any(|g| !r.cache.contains(&(digest, *g.grant.rk.rk_id())));
    Ok(Some(Prepared {
        env,
        c1,
        digest,
        matching,
        node,
        needs_check,
    }))
}

fn finish(
    p: Prepared,
    checked: Option<Result<CheckedCapsule, CryptoError>>,
    r: Routing<'_>,
) -> Result<Vec<Output>, RouteError> {
    let mut checked = checked.transpose()?;
    let mut out = Vec::with_capacity(p.matching.len());
    for g in p.matching {
        let rk_id = *g.grant.rk.rk_id();
        let c2 = match r.cache.get(&(p.digest, rk_id)) {
            Some(c2) => {
                r.metrics.cache_hits.inc();
                c2
            }
            None => {
                // A concurrent revocation may have purged the cache since `prepare`: check now.
                if checked.is_none() {
                    r.metrics.capsule_checks.inc();
                    checked = Some(p.c1.clone().check(&mut rand_core::OsRng)?);
                }
                let Some(cc) = checked.as_ref() else { continue };
                let t = Instant::now();
                let c2 = Arc::new(reencrypt(&g.grant.rk, cc)?);
                r.metrics.reenc_seconds.observe(t.elapsed().as_secs_f64());
                r.metrics.reencryptions.inc();
                r.cache.put((p.digest, rk_id), c2.clone());
                c2
            }
        };
        let dest = match (g.grant.receiver_kind, p.node) {
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
        out.push(Output {
            dest,
            payload: make_delivery(&p.env, &c2, None),
            rk_id: hex::encode(rk_id),
        });
    }
    Ok(out)
}
