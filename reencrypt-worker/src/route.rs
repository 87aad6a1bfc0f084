//! Phase 4/6 routing of one stored envelope: find every re-key of the twin's owner whose policy the
//! plain attributes satisfy, and re-encrypt the capsule for each (reencrypt.rs). Share bundles
//! (`node-j`) go only through MPC-node re-keys, to node j's share topic; nothing else ever does.

use armored_schemas::Refusal;
use std::sync::Arc;

use armored_crypto::kpcpre::{Capsule1, CheckedCapsule};
use armored_crypto::registry::Registry;
use armored_crypto::tokens::ReceiverKind;
use armored_crypto::Error as CryptoError;

use crate::reencrypt::Opened;
pub use crate::reencrypt::{Cache, Dest, Output, RouteMetrics};
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
    /// The header names an enrolled device of the twin but another writer key.
    #[error("writer key is not that of the enrolled device {0}")]
    WriterMismatch(String),
    /// Attributes only the bridge's edge admits in this form (`req`, another twin's attribute,
    /// a share bundle's markers outside a device's share bundle).
    #[error("reserved attribute: {0}")]
    ReservedAttribute(&'static str),
}

impl Refusal for RouteError {
    fn reason(&self) -> &'static str {
        match self {
            RouteError::Oversized(_) => "oversized",
            RouteError::Crypto(e) => e.reason(),
            RouteError::UnknownTwin => "unknown_twin",
            RouteError::ForeignCapsule => "foreign_capsule",
            RouteError::WriterMismatch(_) => "writer_mismatch",
            RouteError::ReservedAttribute(_) => "reserved_attribute",
        }
    }
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
    /// The records are state changes from `at.sync.v1`: their writer and attributes are checked
    /// again (`check_writer`).
    pub state_changes: bool,
}

/// One envelope decoded, with the re-keys that will re-encrypt it.
struct Prepared {
    opened: Opened,
    matching: Vec<Arc<crate::rekeys::Grant>>,
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
            Ok(Some(p)) if p.needs_check => Some(p.opened.c1.clone()),
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
    let opened = Opened::decode(payload)?;
    let owner = r
        .registry
        .twin_owner(&opened.header.twin_id)
        .ok_or(RouteError::UnknownTwin)?;
    let attrs = &opened.c1.header().attributes;
    if opened.c1.header().owner_key_id != owner.pre.key_id() {
        return Err(RouteError::ForeignCapsule);
    }
    // A change never goes back to the device that wrote it: it has it already (its own re-key
    // matches its own attributes). check_writer has bound the header's device id to the writer's
    // key, so only the writer itself is skipped.
    if r.state_changes {
        check_writer(&opened.header, attrs.as_slice(), r.registry)?;
    }
    let h = &opened.header;
    // A device re-key names its receiver `{twin}/{device}` (compared without building it: this
    // runs for every re-key of the owner on every record).
    let is_writer_device = |receiver: &str| {
        r.state_changes
            && receiver
                .strip_prefix(h.twin_id.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(h.device_id.as_str())
    };
    let matching: Vec<_> = r
        .store
        .for_owner(&owner.pre.key_id())
        .into_iter()
        .filter(|g| {
            let is_node_key = g.grant.receiver_kind == ReceiverKind::MpcNode;
            let is_writer = g.grant.receiver_kind == ReceiverKind::Device
                && is_writer_device(&g.grant.receiver_id);
            !is_writer
                && is_node_key == opened.node.is_some()
                && g.grant.not_after_ms.is_none_or(|na| r.now_ms <= na)
                && g.grant.admits_epoch(opened.header.epoch)
                && g.grant.rk.policy().is_satisfied(attrs)
        })
        .collect();
    if matching.is_empty() {
        return Ok(None);
    }
    let needs_check = matching.iter().any(|g| !opened.cached(r.cache, g));
    Ok(Some(Prepared {
        opened,
        matching,
        needs_check,
    }))
}

/// Defence in depth: the bridge's edge rules again, for records that reached `at.sync.v1` without
/// it (any Kafka client with WRITE on the topic: services write there directly, under their own id
/// and key, with a write token that only receivers can see). A header naming an enrolled device of
/// the twin must carry that device's key id; `req` and another twin's attribute are never admitted;
/// only an enrolled device may send a share bundle (`mpc-share` with exactly one `node-j`, j in
/// 1..=3, and `location`). The header is not authenticated here (the signature is inside the
/// ciphertext): receivers and nodes verify it; this keeps a direct writer from routing what the
/// bridge would have refused, e.g. to the nodes.
fn check_writer(
    h: &armored_schemas::v1::EnvelopeHeader,
    attrs: &[String],
    reg: &Registry,
) -> Result<(), RouteError> {
    let share = armored_crypto::ids::uplink_attribute_rules(attrs, &h.twin_id)
        .map_err(RouteError::ReservedAttribute)?;
    // None: the header names no device of the twin (a service's write). A revoked (replaced)
    // device is still named: its records up to the revocation's last valid seq stay valid, and
    // the bridge refuses its uploads after the revocation.
    let device = reg.enrollment(&h.twin_id, &h.device_id);
    if device.is_some_and(|d| d.enrollment.sig.key_id().0.as_slice() != h.writer_key_id.as_slice())
    {
        return Err(RouteError::WriterMismatch(h.device_id.clone()));
    }
    if share {
        let Some(d) = device else {
            return Err(RouteError::ReservedAttribute("mpc-share/node-j"));
        };
        // Nodes refuse a share past the bound too; routing it would only cost them a pairing.
        if reg
            .revocations()
            .device_revoked(&d.enrollment.sig.key_id(), h.seq)
        {
            return Err(RouteError::Crypto(CryptoError::Revoked("device")));
        }
    }
    Ok(())
}

/// ReEnc for every matching re-key (reencrypt.rs).
fn finish(
    p: Prepared,
    checked: Option<Result<CheckedCapsule, CryptoError>>,
    r: Routing<'_>,
) -> Result<Vec<Output>, RouteError> {
    let mut checked = checked.transpose()?;
    p.matching
        .iter()
        .map(|g| {
            p.opened
                .deliver(g, &mut checked, r.cache, r.metrics, None)
                .map_err(RouteError::from)
        })
        .collect()
}
