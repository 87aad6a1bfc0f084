//! The audit trail of every re-encryption (issue 19): for each delivery a worker produces (live
//! routing, history replay, requests) it writes an `AuditEntry` to `at.audit.v1`, signed with a
//! key of its own ([`armored_crypto::audit`]). The entries of the routed batches waiting at one
//! moment, from every partition the worker holds, are signed together (`Rounds`) as one
//! `AuditBatch`: one ECDSA signature per round, not per delivery nor per partition's batch,
//! because a signature (~130 µs) costs as much as the rest of a cached delivery and the hot path's
//! CPU is the workers' budget.
//!
//! Ordering: a batch's audit record (its round's) is enqueued before its deliveries, and its acknowledgement is
//! one of every covered source record's outputs, so a record's offset is committed only once both
//! its deliveries and its entries are in Kafka. At-least-once: a record handled again (after a
//! crash or a rebalance) gets a second entry; its delivery digest differs when the capsule2 was
//! re-computed, and equals the first when it came from the cache (both copies are then covered).
//!
//! The key lives in the worker's state directory (`worker-audit.key`, 0600, made on first start;
//! `worker-audit.pub` beside it holds the public key in hex SEC1 for the owners to pin with
//! `atctl owner trust-worker`). The instance name is `worker.instance`, or one made on first
//! start from the host name and a random suffix and kept in `worker-instance`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use armored_base::time::now_ms;
use armored_crypto::audit::{seal_batch, split_entries};
use armored_crypto::keyfile::{load_signing_key, save_signing_key};
use armored_crypto::sig::SigningKey;
use armored_runtime::kafka::{enqueue, Ack, AckError, AtProducer};
use armored_runtime::pipeline::Inbound;
use armored_schemas::v1;
use futures::future::{BoxFuture, FutureExt, Shared};
use prometheus::IntCounter;
use rand_core::RngCore;
use tokio::sync::{mpsc, oneshot};

use crate::reencrypt::Output;

/// The secret key file in the state directory.
pub const KEY_FILE: &str = "worker-audit.key";
/// The public key (hex SEC1 compressed, one line) beside it.
pub const PUB_FILE: &str = "worker-audit.pub";
/// The instance name made on first start.
pub const INSTANCE_FILE: &str = "worker-instance";

/// Why the audit key or instance could not be set up (the worker does not start).
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    /// The key file does not load (mode, format) or cannot be written.
    #[error("audit key {path}: {source}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: armored_crypto::Error,
    },
    /// A file of the state directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `worker.instance` is not a name.
    #[error("worker.instance {0:?}: 1 to 64 characters of A-Z a-z 0-9 . _ - expected")]
    Instance(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditSetupError + '_ {
    move |source| AuditSetupError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn key_err(path: &Path) -> impl FnOnce(armored_crypto::Error) -> AuditSetupError + '_ {
    move |source| AuditSetupError::Key {
        path: path.display().to_string(),
        source,
    }
}

/// Whether `s` may name a worker instance.
pub fn valid_instance(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What signs this worker's audit batches.
pub struct Auditor {
    key: SigningKey,
    /// The worker instance named in every batch.
    pub instance: String,
    /// Entries enqueued (`at_reencrypt_audit_entries_total`).
    entries: IntCounter,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auditor({}, {})", self.instance, self.key.key_id())
    }
}

impl Auditor {
    /// The key and instance of the worker whose state directory is `state_dir` (made there on
    /// first start; empty: a key for this run only, with a warning), instance `configured` if set;
    /// `entries` counts the entries it enqueues.
    pub fn open(
        state_dir: &str,
        configured: &str,
        entries: IntCounter,
    ) -> Result<Self, AuditSetupError> {
        if !configured.is_empty() && !valid_instance(configured) {
            return Err(AuditSetupError::Instance(configured.to_string()));
        }
        if state_dir.is_empty() {
            tracing::warn!(
                "worker.state_dir is empty: the audit key is made for this run only, and owners cannot pin it"
            );
            let instance = if configured.is_empty() {
                made_instance()
            } else {
                configured.to_string()
            };
            return Ok(Self {
                key: SigningKey::generate(&mut rand_core::OsRng),
                instance,
                entries,
            });
        }
        let dir = PathBuf::from(state_dir);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key = load_or_make_key(&dir)?;
        let public = dir.join(PUB_FILE);
        let line = format!("{}\n", hex::encode(key.verifying_key().to_sec1()));
        if std::fs::read_to_string(&public).ok().as_deref() != Some(line.as_str()) {
            let tmp = dir.join(format!("{PUB_FILE}.{:08x}", rand_core::OsRng.next_u32()));
            std::fs::write(&tmp, &line).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &public).map_err(io(&public))?;
        }
        let instance = if configured.is_empty() {
            let file = dir.join(INSTANCE_FILE);
            match std::fs::read_to_string(&file) {
                Ok(s) if valid_instance(s.trim()) => s.trim().to_string(),
                _ => {
                    let made = made_instance();
                    armored_base::files::write_private(&file, format!("{made}\n").as_bytes())
                        .map_err(io(&file))?;
                    made
                }
            }
        } else {
            configured.to_string()
        };
        Ok(Self {
            key,
            instance,
            entries,
        })
    }

    /// The public key as `worker-audit.pub` holds it (hex SEC1 compressed).
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_sec1())
    }

    /// The key id of the public key.
    pub fn key_id(&self) -> armored_crypto::KeyId {
        self.key.key_id()
    }
}

/// The key file of `dir`, made if absent. Several workers may share a state directory: a new key
/// is linked into place only if none is there yet (never replacing one another worker uses).
fn load_or_make_key(dir: &Path) -> Result<SigningKey, AuditSetupError> {
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        let mine = dir.join(format!("{KEY_FILE}.{:08x}", rand_core::OsRng.next_u32()));
        let key = SigningKey::generate(&mut rand_core::OsRng);
        save_signing_key(&mine, &key, "at-reencrypt audit").map_err(key_err(&mine))?;
        let linked = std::fs::hard_link(&mine, &path);
        let _ = std::fs::remove_file(&mine);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    load_signing_key(&path).map_err(key_err(&path))
}

/// `<host name>-<8 hex digits>`.
fn made_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{:08x}", rand_core::OsRng.next_u32())
}

/// The acknowledgement of an audit record, shared by every source record it covers.
pub(crate) type SharedAck = Shared<BoxFuture<'static, Result<(), Arc<AckError>>>>;

/// An audit record's write failed (the source record is handled again).
#[derive(Debug, thiserror::Error)]
#[error("audit record not written: {0}")]
pub(crate) struct AuditNotWritten(Arc<AckError>);

/// One covered record's share of an audit record's acknowledgement.
pub(crate) fn ack_of(shared: &SharedAck) -> Ack {
    shared
        .clone()
        .map(|r| r.map_err(|e| AckError::service(AuditNotWritten(e))))
        .boxed()
}

/// `o`'s entry, completed with the time, the source record and the delivery topic.
pub(crate) fn entry(o: &Output, source: &Inbound, delivery_topic: &str) -> v1::AuditEntry {
    entry_from(
        o,
        &source.topic,
        source.partition,
        source.offset,
        delivery_topic,
    )
}

/// [`entry`] from a source record's coordinates.
pub(crate) fn entry_from(
    o: &Output,
    topic: &str,
    partition: i32,
    offset: i64,
    delivery_topic: &str,
) -> v1::AuditEntry {
    v1::AuditEntry {
        at_ms: now_ms(),
        source_topic: topic.to_string(),
        source_partition: partition,
        source_offset: offset,
        delivery_topic: delivery_topic.to_string(),
        ..o.audit.clone()
    }
}

impl Auditor {
    /// Signs `entries` (split into batches within the limits) and enqueues them on `topic`
    /// (`at.audit.v1`), keyed by the worker instance; one acknowledgement for all, or `None` when
    /// there is nothing.
    pub(crate) async fn enqueue(
        &self,
        producer: &AtProducer,
        topic: &str,
        entries: Vec<v1::AuditEntry>,
    ) -> Option<SharedAck> {
        if entries.is_empty() {
            return None;
        }
        let n = entries.len() as u64;
        let mut acks = Vec::new();
        for group in split_entries(entries) {
            let record = seal_batch(&self.key, &self.instance, now_ms(), group);
            acks.push(enqueue(producer, topic, self.instance.as_bytes(), &record, None).await);
        }
        self.entries.inc_by(n);
        let all: BoxFuture<'static, Result<(), Arc<AckError>>> = async move {
            for a in acks {
                a.await.map_err(Arc::new)?;
            }
            Ok(())
        }
        .boxed();
        Some(all.shared())
    }
}

/// Most entries one round of [`Rounds`] takes before it signs (more wait for the next round).
const MAX_ROUND_ENTRIES: usize = 4096;

/// One lane's entries waiting for a round, and where the round's acknowledgement goes once its
/// record is enqueued.
struct Waiting {
    entries: Vec<v1::AuditEntry>,
    enqueued: oneshot::Sender<Option<SharedAck>>,
}

/// The routed batches' audit entries of every lane of this worker, signed in rounds: a round takes
/// every batch waiting at that moment and signs them together. An idle worker signs a lone batch at
/// once (no timer, so nothing waits); under load a round covers the batches of many partitions, and
/// one ECDSA signature many deliveries (issue 17: one signature per batch of one partition was about
/// 15% of a worker's CPU). A lane still produces its deliveries only after its round's record is
/// enqueued, as before.
#[derive(Clone, Debug)]
pub(crate) struct Rounds {
    tx: mpsc::UnboundedSender<Waiting>,
}

/// The round task stopped (the worker is shutting down): the batch is not audited, so its records
/// are not committed and are handled again.
#[derive(Debug, thiserror::Error)]
#[error("the audit round task has stopped")]
struct RoundsStopped;

impl Rounds {
    /// Starts the round task: `auditor` signs, `producer` writes to `topic` (`at.audit.v1`).
    pub(crate) fn start(auditor: Arc<Auditor>, producer: AtProducer, topic: String) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiting>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut round = vec![first];
                let mut n = round[0].entries.len();
                while n < MAX_ROUND_ENTRIES {
                    match rx.try_recv() {
                        Ok(w) => {
                            n += w.entries.len();
                            round.push(w);
                        }
                        Err(_) => break,
                    }
                }
                let mut entries = Vec::with_capacity(n);
                let mut waiting = Vec::with_capacity(round.len());
                for w in round {
                    entries.extend(w.entries);
                    waiting.push(w.enqueued);
                }
                let ack = auditor.enqueue(&producer, &topic, entries).await;
                for w in waiting {
                    let _ = w.send(ack.clone());
                }
            }
        });
        Self { tx }
    }

    /// Queues `entries` for the next round; returns once its record is enqueued, with the
    /// acknowledgement every covered record waits for (`None` when there is nothing to audit).
    pub(crate) async fn submit(&self, entries: Vec<v1::AuditEntry>) -> Option<SharedAck> {
        if entries.is_empty() {
            return None;
        }
        let (enqueued, rx) = oneshot::channel();
        let stopped = || {
            let failed: BoxFuture<'static, Result<(), Arc<AckError>>> =
                futures::future::ready(Err(Arc::new(AckError::service(RoundsStopped)))).boxed();
            Some(failed.shared())
        };
        if self.tx.send(Waiting { entries, enqueued }).is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_and_instance_are_made_once_and_kept() -> Result<(), Box<dyn std::error::Error>> {
        let dir =
            std::env::temp_dir().join(format!("at-audit-key-{:08x}", rand_core::OsRng.next_u32()));
        let d = dir.display().to_string();
        let counter = || IntCounter::new("entries", "entries");
        let first = Auditor::open(&d, "", counter()?)?;
        let mode = std::fs::metadata(dir.join(KEY_FILE))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.join(PUB_FILE))?.trim(),
            first.public_hex()
        );
        assert!(valid_instance(&first.instance), "{}", first.instance);
        // A restart (or a second worker on the same directory) uses the same key and instance.
        let again = Auditor::open(&d, "", counter()?)?;
        assert_eq!(again.public_hex(), first.public_hex());
        assert_eq!(again.instance, first.instance);
        assert_eq!(
            Auditor::open(&d, "worker-2", counter()?)?.instance,
            "worker-2"
        );
        assert!(matches!(
            Auditor::open(&d, "bad name", counter()?),
            Err(AuditSetupError::Instance(_))
        ));
        // No state directory: a key for this run only.
        assert_ne!(
            Auditor::open("", "", counter()?)?.public_hex(),
            first.public_hex()
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
