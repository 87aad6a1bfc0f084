//! `atctl owner audit`: the audit trail of the re-encryption workers, as an owner reads it. Every
//! worker writes one entry per delivery it produces to `at.audit.v1` (re-key, receiver, twin,
//! epoch, attribute-set digest, capsule id, time, source record, SHA-256 of the delivery), in
//! batches signed with the worker's own key (`armored_crypto::audit`). This module reads that
//! topic group-less, keeps the entries of this owner's twins and, with `verify`:
//!
//! - checks every batch's signature, and flags batches signed by a key the owner did not pin
//!   (`trust-worker`, kept in `worker-keys` in the owner directory, or given for one call) as
//!   "unknown signer": any Kafka client that may write the topic can write a batch, but only a
//!   worker holds a pinned key;
//! - reads the deliveries (`at.deliver.v1` and the MPC nodes' share topics) up to the end offsets
//!   they had before the audit topic was read, and flags each delivery of this owner's twins whose
//!   SHA-256 no entry of a pinned worker names (a gap).
//!
//! Memory stays bounded by the owner's own trail: the digests of its entries (32 bytes each), not
//! the entries or the deliveries. Malformed or oversized records on the audit topic are counted,
//! never trusted. What is not guaranteed: a worker writes its entries at least once, so a record
//! redelivered after a crash may have two entries; entries written after a delivery was read (a
//! batch in flight) are not flagged because deliveries are read only up to the ends they had when
//! the scan began.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use armored_crypto::audit::{delivery_digest, open_batch};
use armored_crypto::envelope::parse_header;
use armored_crypto::sig::VerifyingKey;
use armored_crypto::tokens::ReceiverKind;
use armored_crypto::KeyId;
use armored_runtime::reader::{ReadError, ReadOptions, TopicReader};
use armored_schemas::limits::{MAX_AUDIT_BATCH_BYTES, MAX_DELIVERY_BYTES};
use armored_schemas::{decode_strict, v1};
use serde::Serialize;

use crate::error::{ClientError, KafkaError, Result};
use crate::files;
use crate::kafka::Ctl;
use crate::owner::Owner;

/// The file of pinned worker keys in the owner directory: one hex SEC1 key per line, then
/// optionally a space and a comment.
pub const WORKER_KEYS_FILE: &str = "worker-keys";
/// Gaps and unknown signers listed in a report (the counts go on).
pub const MAX_LISTED: usize = 1000;

/// Parses a worker key given as hex SEC1 (what `worker-audit.pub` holds) or as the path of such a
/// file.
pub fn parse_worker_key(file_or_hex: &str) -> Result<VerifyingKey> {
    let s = file_or_hex.trim();
    let path = Path::new(s);
    let text = if path.is_file() {
        String::from_utf8_lossy(&files::read(path)?).into_owned()
    } else {
        s.to_string()
    };
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default();
    let bytes = hex::decode(first).map_err(|e| ClientError::Parse {
        what: format!("{s:?} is neither a worker's key file (worker-audit.pub) nor a hex SEC1 key"),
        source: e.into(),
    })?;
    VerifyingKey::from_sec1(&bytes).map_err(|source| ClientError::Key {
        what: format!("{s:?} is not a P-256 public key (66 hex digits, from worker-audit.pub)"),
        source,
    })
}

fn keys_path(owner: &Owner) -> PathBuf {
    owner.dir().join(WORKER_KEYS_FILE)
}

/// The worker keys the owner pinned.
pub fn pinned_workers(owner: &Owner) -> Result<Vec<VerifyingKey>> {
    let path = keys_path(owner);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = String::from_utf8_lossy(&files::read(&path)?).into_owned();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            parse_worker_key(l.split_whitespace().next().unwrap_or_default()).map_err(|e| {
                ClientError::Invalid(format!("{}: a line that is no key: {e}", path.display()))
            })
        })
        .collect()
}

/// Pins a worker's audit key (`atctl owner trust-worker`): its batches then count as the
/// workers'. Returns the key and whether it was new.
pub fn trust_worker(owner: &Owner, file_or_hex: &str, note: &str) -> Result<(VerifyingKey, bool)> {
    let key = parse_worker_key(file_or_hex)?;
    let pinned = pinned_workers(owner)?;
    if pinned.contains(&key) {
        return Ok((key, false));
    }
    let path = keys_path(owner);
    let mut text = if path.exists() {
        String::from_utf8_lossy(&files::read(&path)?).into_owned()
    } else {
        "# worker audit keys pinned by atctl owner trust-worker (hex SEC1, then a note)\n".into()
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let note: String = note.chars().filter(|c| !c.is_control()).collect();
    text.push_str(&format!("{} {note}\n", hex::encode(key.to_sec1())));
    let tmp = path.with_extension("tmp");
    files::write_private(&tmp, text, true)?;
    files::rename(&tmp, &path)?;
    Ok((key, true))
}

/// Which entries to show (the verification always covers every entry of the owner's twins).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// One twin only (its deliveries only, with `verify`).
    pub twin: Option<String>,
    /// One receiver id only (a service id, `twin/device`, a node id).
    pub receiver: Option<String>,
    /// Entries at or after this time (ms).
    pub from_ms: Option<u64>,
    /// Entries at or before this time (ms).
    pub to_ms: Option<u64>,
}

impl AuditFilter {
    fn shows(&self, e: &v1::AuditEntry) -> bool {
        self.twin.as_ref().is_none_or(|t| *t == e.twin_id)
            && self.receiver.as_ref().is_none_or(|r| *r == e.receiver_id)
            && self.from_ms.is_none_or(|f| e.at_ms >= f)
            && self.to_ms.is_none_or(|t| e.at_ms <= t)
    }
}

/// One audit entry of the owner's twins, as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// When the worker produced the delivery (ms).
    pub at_ms: u64,
    /// The twin.
    pub twin: String,
    /// `device`, `service` or `mpc-node`.
    pub receiver_kind: String,
    /// The receiver's id.
    pub receiver: String,
    /// The envelope's epoch.
    pub epoch: u64,
    /// The re-key (hex).
    pub rk_id: String,
    /// The grant's policy, from the owner's ledger (absent if the ledger does not know the re-key).
    pub grant: Option<String>,
    /// The worker instance the batch names.
    pub worker: String,
    /// The key id of the key that signed the batch (hex).
    pub worker_key_id: String,
    /// Whether that key is pinned.
    pub pinned: bool,
    /// The capsule id (hex).
    pub capsule_id: String,
    /// SHA-256 of the attribute set (hex).
    pub attributes_digest: String,
    /// The record re-encrypted: topic, partition, offset.
    pub source_topic: String,
    /// Its partition.
    pub source_partition: i32,
    /// Its offset.
    pub source_offset: i64,
    /// Where the delivery went.
    pub delivery_topic: String,
    /// SHA-256 of the delivery (hex).
    pub delivery_sha256: String,
    /// The replay request that produced it, for history replays.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub replay_request_id: String,
}

/// A batch signed by a key the owner did not pin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnknownSigner {
    /// The instance it claims.
    pub instance: String,
    /// Its batches.
    pub batches: u64,
    /// Their entries of this owner's twins.
    pub entries: u64,
}

/// A delivery of this owner's twins that no pinned worker's entry names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Where it is.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The twin of its envelope header.
    pub twin: String,
    /// Its record key (the receiver id on at.deliver.v1).
    pub key: String,
    /// SHA-256 of its payload (hex).
    pub sha256: String,
}

/// What a scan of the audit trail found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditReport {
    /// Records read on `at.audit.v1`.
    pub records: u64,
    /// Batches that verified under the key they name.
    pub batches: u64,
    /// Entries of this owner's twins (all, shown or not).
    pub entries: u64,
    /// Entries shown (the filter's).
    pub shown: u64,
    /// Records that are no audit batch (malformed, oversized, wrong version or shape).
    pub malformed: u64,
    /// Records whose signature does not verify under the key they name.
    pub bad_signatures: u64,
    /// Keys not pinned that signed batches with entries of this owner's twins, by key id (hex);
    /// at most [`MAX_LISTED`].
    pub unknown_signers: BTreeMap<String, UnknownSigner>,
    /// Whether deliveries were checked against the entries.
    pub verified: bool,
    /// Deliveries of this owner's twins checked.
    pub deliveries_checked: u64,
    /// Deliveries that do not decode (no twin to attribute them to; not flagged).
    pub deliveries_unreadable: u64,
    /// Deliveries without an entry of a pinned worker.
    pub gap_count: u64,
    /// The first [`MAX_LISTED`] of them.
    pub gaps: Vec<Gap>,
}

impl AuditReport {
    /// Whether `verify` found anything to flag: a malformed or badly signed record, an unknown
    /// signer, a gap.
    pub fn flagged(&self) -> bool {
        self.malformed > 0
            || self.bad_signatures > 0
            || !self.unknown_signers.is_empty()
            || self.gap_count > 0
    }
}

/// How to scan.
#[derive(Clone, Debug, Default)]
pub struct AuditOptions {
    /// Check signatures against the pinned keys and deliveries against the entries.
    pub verify: bool,
    /// Worker keys trusted for this call besides the pinned ones.
    pub worker_keys: Vec<VerifyingKey>,
    /// Reading ends when no record came for this long (default 30 s).
    pub stall: Option<Duration>,
}

/// Reads the audit trail of `owner`'s twins: each entry the filter shows goes to `row`, progress
/// as `(topic, read, total)` to `progress`; with `verify`, deliveries are checked too. The report
/// says what was found (see [`AuditReport::flagged`]).
pub async fn scan(
    owner: &Owner,
    ctl: &Ctl,
    filter: &AuditFilter,
    opts: &AuditOptions,
    mut row: impl FnMut(AuditRow),
    mut progress: impl FnMut(&str, u64, u64),
) -> Result<AuditReport> {
    if let Some(t) = &filter.twin {
        armored_crypto::envelope::check_id(t, "twin id")?;
    }
    let registry = ctl.registry().await?;
    let mine = owner.pre_key().key_id();
    let ours = |twin: &str| {
        registry
            .twin_owner(twin)
            .is_some_and(|o| o.pre.key_id() == mine)
    };
    if let Some(t) = &filter.twin {
        if !ours(t) {
            return Err(ClientError::NotFound(format!(
                "twin {t} is not one of this owner's twins in the registry"
            )));
        }
    }
    let mut trusted: HashSet<KeyId> = pinned_workers(owner)?
        .iter()
        .map(VerifyingKey::key_id)
        .collect();
    trusted.extend(opts.worker_keys.iter().map(VerifyingKey::key_id));
    if opts.verify && trusted.is_empty() {
        return Err(ClientError::Invalid(
            "no worker key is pinned: atctl owner trust-worker <state dir>/worker-audit.pub (or --worker-key) first"
                .into(),
        ));
    }
    let grants: HashMap<String, String> = owner
        .ledger()?
        .into_iter()
        .map(|e| (e.rk_id, e.policy))
        .collect();
    let stall = opts.stall.unwrap_or(Duration::from_secs(30));
    let read_opts = |max_payload| ReadOptions {
        stall: Some(stall),
        max_payload,
        ..ReadOptions::default()
    };
    // The deliveries' ends before the trail is read: every delivery up to them was made before
    // its entries could be missing from what is read next.
    let mut delivery_topics = vec![ctl.topics.deliver()];
    delivery_topics.extend((1..=3).map(|j| ctl.topics.mpc_shares(j)));
    let mut delivery_ends: Vec<HashMap<i32, i64>> = Vec::new();
    if opts.verify {
        for t in &delivery_topics {
            let r = TopicReader::open(&ctl.kafka, t, read_opts(MAX_DELIVERY_BYTES))
                .map_err(KafkaError::from)?;
            delivery_ends.push(r.end_offsets().clone());
        }
    }

    let mut report = AuditReport {
        verified: opts.verify,
        ..AuditReport::default()
    };
    let mut covered: HashSet<[u8; 32]> = HashSet::new();
    let topic = ctl.topics.audit();
    let reader = TopicReader::open(&ctl.kafka, &topic, read_opts(MAX_AUDIT_BATCH_BYTES))
        .map_err(KafkaError::from)?;
    let total = reader.total();
    let mut n = 0u64;
    for r in reader {
        let m = match r {
            Ok(m) => m,
            Err(e) if !e.is_final() => {
                n += 1;
                report.records += 1;
                report.malformed += 1;
                continue;
            }
            Err(e) => return Err(ClientError::TimedOut(format!("reading {topic}: {e}"))),
        };
        n += 1;
        report.records += 1;
        if n % 256 == 0 || n == total {
            progress(&topic, n, total);
        }
        let batch = match open_batch(&m.payload) {
            Ok(b) => b,
            Err(armored_crypto::Error::BadSignature(_)) => {
                report.bad_signatures += 1;
                continue;
            }
            Err(_) => {
                report.malformed += 1;
                continue;
            }
        };
        report.batches += 1;
        let kid = batch.worker_key.key_id();
        let pinned = trusted.contains(&kid);
        for e in batch.entries {
            if !ours(&e.twin_id) {
                continue;
            }
            report.entries += 1;
            if pinned {
                if let Ok(d) = <[u8; 32]>::try_from(e.delivery_sha256.as_slice()) {
                    covered.insert(d);
                }
            } else {
                let listed = report.unknown_signers.len();
                let key = kid.to_hex();
                if let Some(u) = report.unknown_signers.get_mut(&key) {
                    u.entries += 1;
                } else if listed < MAX_LISTED {
                    report.unknown_signers.insert(
                        key,
                        UnknownSigner {
                            instance: batch.worker_instance.clone(),
                            batches: 0,
                            entries: 1,
                        },
                    );
                }
            }
            if filter.shows(&e) {
                report.shown += 1;
                row(to_row(e, &batch.worker_instance, kid, pinned, &grants));
            }
        }
        if let Some(u) = report.unknown_signers.get_mut(&kid.to_hex()) {
            u.batches += 1;
        }
    }
    progress(&topic, n, total);

    if opts.verify {
        for (t, ends) in delivery_topics.iter().zip(&delivery_ends) {
            check_deliveries(
                ctl,
                t,
                ends,
                read_opts(MAX_DELIVERY_BYTES),
                filter,
                &ours,
                &covered,
                &mut report,
                &mut progress,
            )?;
        }
    }
    Ok(report)
}

fn to_row(
    e: v1::AuditEntry,
    worker: &str,
    kid: KeyId,
    pinned: bool,
    grants: &HashMap<String, String>,
) -> AuditRow {
    let rk_id = hex::encode(&e.rk_id);
    AuditRow {
        at_ms: e.at_ms,
        twin: e.twin_id,
        receiver_kind: match ReceiverKind::try_from(e.receiver_kind) {
            Ok(ReceiverKind::Device) => "device",
            Ok(ReceiverKind::MpcNode) => "mpc-node",
            _ => "service",
        }
        .to_string(),
        receiver: e.receiver_id,
        epoch: e.epoch,
        grant: grants.get(&rk_id).cloned(),
        rk_id,
        worker: worker.to_string(),
        worker_key_id: kid.to_hex(),
        pinned,
        capsule_id: hex::encode(&e.capsule_id),
        attributes_digest: hex::encode(&e.attributes_digest),
        source_topic: e.source_topic,
        source_partition: e.source_partition,
        source_offset: e.source_offset,
        delivery_topic: e.delivery_topic,
        delivery_sha256: hex::encode(&e.delivery_sha256),
        replay_request_id: e.replay_request_id,
    }
}

/// Reads `topic` up to `ends` and flags each delivery of the owner's twins (the filter's twin,
/// receiver and time) that no pinned entry names.
#[allow(clippy::too_many_arguments)]
fn check_deliveries(
    ctl: &Ctl,
    topic: &str,
    ends: &HashMap<i32, i64>,
    opts: ReadOptions,
    filter: &AuditFilter,
    ours: &dyn Fn(&str) -> bool,
    covered: &HashSet<[u8; 32]>,
    report: &mut AuditReport,
    progress: &mut impl FnMut(&str, u64, u64),
) -> Result<()> {
    let reader = TopicReader::open(&ctl.kafka, topic, opts).map_err(KafkaError::from)?;
    let total: u64 = ends.values().map(|&e| e.max(0) as u64).sum();
    let mut n = 0u64;
    let deliver = topic == ctl.topics.deliver();
    for r in reader {
        let m = match r {
            Ok(m) => m,
            Err(e) if !e.is_final() => {
                report.deliveries_unreadable += 1;
                continue;
            }
            Err(ReadError::Stalled(_)) if n >= total => break,
            Err(e) => return Err(ClientError::TimedOut(format!("reading {topic}: {e}"))),
        };
        // Only what was there before the trail was read.
        if ends.get(&m.partition).is_none_or(|&end| m.offset >= end) {
            continue;
        }
        n += 1;
        if n % 256 == 0 {
            progress(topic, n, total);
        }
        let Some(twin) = delivery_twin(&m.payload) else {
            report.deliveries_unreadable += 1;
            continue;
        };
        let key = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned();
        let at = m.timestamp_ms.and_then(|t| u64::try_from(t).ok());
        let shown = ours(&twin)
            && filter.twin.as_ref().is_none_or(|t| *t == twin)
            && (!deliver || filter.receiver.as_ref().is_none_or(|r| *r == key))
            && at.is_none_or(|at| {
                filter.from_ms.is_none_or(|f| at >= f) && filter.to_ms.is_none_or(|t| at <= t)
            });
        if !shown {
            continue;
        }
        report.deliveries_checked += 1;
        let digest = delivery_digest(&m.payload);
        if !covered.contains(&digest) {
            report.gap_count += 1;
            if report.gaps.len() < MAX_LISTED {
                report.gaps.push(Gap {
                    topic: topic.to_string(),
                    partition: m.partition,
                    offset: m.offset,
                    twin,
                    key,
                    sha256: hex::encode(digest),
                });
            }
        }
    }
    progress(topic, n, total);
    Ok(())
}

/// The twin a delivery's envelope header names (plain; receivers authenticate it when opening).
fn delivery_twin(payload: &[u8]) -> Option<String> {
    let d: v1::Delivery = decode_strict("Delivery", payload, MAX_DELIVERY_BYTES).ok()?;
    parse_header(&d.envelope_header).ok().map(|h| h.twin_id)
}
