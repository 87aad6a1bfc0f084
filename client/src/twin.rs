//! `atctl twin show`: a twin's state folded on the reader's machine. The owner reads the log
//! (`at.sync.v1`) and opens each of the twin's state changes with its own PRE key (Dec of
//! capsule1); a service reads its own deliveries (`at.deliver.v1`, keyed by its id: only the
//! changes its grants admit, re-encrypted for it) and opens them with its key. Either way the
//! cloud never sees a plaintext. Each change's writer is verified against the registry (enrolled
//! devices, the owner, write-token holders; device revocations apply, and a write token revoked on
//! `at.tokens.v1` refuses what the cloud received after its revocation, as the devices do once it
//! reaches them), copies are dropped by (writer, seq), and the fields are applied in the order read,
//! as every receiver does (`armored_device`: a field takes the value of the last change that set
//! it), except that a writer's change never overwrites a field its own later seq set (with several
//! bridges a writer's changes may reach the log out of seq order). A service sees its subset only: changes its grants do not admit never reach it, so it
//! cannot even tell that they exist.
//!
//! A checkpoint in the reader's directory (`twins/<twin>.json`, 0600: it holds plaintext, like the
//! devices' own state files) keeps the changes read so far and the topic's end offsets, so the next
//! call reads only what came since. Changes keep the verdict they had when read: a later device
//! revocation with an earlier `last_valid_seq` does not reach back into it (`rescan` does).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use armored_crypto::envelope::{Receiver, StateChange, TrustStore, Writer};
use armored_crypto::sig::VerifyingKey;
use armored_crypto::tokens::{verify_revocation, RevocationKind};
use armored_runtime::reader::{ReadOptions, TopicReader};
use armored_schemas::v1::{control_record::Record, ControlRecord};
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ClientError, KafkaError, Result};
use crate::files;
use crate::kafka::Ctl;
use crate::owner::Owner;
use crate::service::Service;

/// Who reads a twin.
#[derive(Clone, Copy, Debug)]
pub enum Viewer<'a> {
    /// Its owner: the log, opened with the owner's key.
    Owner(&'a Owner),
    /// A service (its directory): its own deliveries, what its grants admit.
    Service(&'a Path),
}

/// One verified state change of the twin, as the owner read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Where it is in the log.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// When the writer observed it (signed).
    pub observed_at_ms: u64,
    /// Who wrote it: `device:<id>`, `owner` or `token:<hex id>`.
    pub writer: String,
    /// The writer's sequence number.
    pub seq: u64,
    /// The epoch of its envelope.
    pub epoch: u64,
    /// The fields it sets.
    pub fields: Map<String, Value>,
}

/// The twin's log as far as the owner has read it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TwinLog {
    /// The topic it was read from (a checkpoint of another prefix is not reused).
    pub topic: String,
    /// The next offset to read, per partition.
    pub offsets: BTreeMap<i32, i64>,
    /// The verified changes, in log order.
    pub changes: Vec<Change>,
    /// The twin's records refused: they did not open or verify (tampered, unknown or revoked
    /// writer), or came under a write token revoked before the cloud received them.
    pub refused: u64,
    /// Log records this call read (all twins': the log is read whole), not persisted.
    #[serde(skip)]
    pub read_now: u64,
}

/// A field's current value and the change that set it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Field {
    /// The value.
    pub value: Value,
    /// Who set it.
    pub writer: String,
    /// The writer's seq.
    pub seq: u64,
    /// When it was observed.
    pub observed_at_ms: u64,
}

impl TwinLog {
    /// The state after every change observed at or before `at_ms` (all of them: `None`).
    pub fn state_at(&self, at_ms: Option<u64>) -> BTreeMap<String, Field> {
        let mut state = BTreeMap::new();
        for c in self
            .changes
            .iter()
            .filter(|c| at_ms.is_none_or(|t| c.observed_at_ms <= t))
        {
            for (k, v) in &c.fields {
                // A writer's changes may reach the log out of seq order (bridges sharing the
                // uplink): its later change keeps the field against an earlier one read after it.
                if state
                    .get(k)
                    .is_some_and(|f: &Field| f.writer == c.writer && f.seq > c.seq)
                {
                    continue;
                }
                state.insert(
                    k.clone(),
                    Field {
                        value: v.clone(),
                        writer: c.writer.clone(),
                        seq: c.seq,
                        observed_at_ms: c.observed_at_ms,
                    },
                );
            }
        }
        state
    }

    /// The changes observed in [`from_ms`, `to_ms`] (either end open).
    pub fn history(&self, from_ms: Option<u64>, to_ms: Option<u64>) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| from_ms.is_none_or(|f| c.observed_at_ms >= f))
            .filter(|c| to_ms.is_none_or(|t| c.observed_at_ms <= t))
            .collect()
    }

    /// The time of the last change, if any.
    pub fn last_change_ms(&self) -> Option<u64> {
        self.changes.iter().map(|c| c.observed_at_ms).max()
    }
}

fn checkpoint_path(dir: &Path, twin: &str) -> PathBuf {
    dir.join("twins").join(format!("{twin}.json"))
}

/// What the owner's checkpoint holds for `twin` (nothing read yet: `None`), without reading the log.
pub fn checkpoint(owner: &Owner, twin: &str) -> Result<Option<TwinLog>> {
    armored_crypto::envelope::check_id(twin, "twin id")?;
    let path = checkpoint_path(owner.dir(), twin);
    if !path.exists() {
        return Ok(None);
    }
    let b = files::read(&path)?;
    serde_json::from_slice(&b)
        .map(Some)
        .map_err(|source| ClientError::Json {
            what: format!("the checkpoint {}", path.display()),
            source,
        })
}

/// Write tokens revoked on `at.tokens.v1` by the owner whose signing key is `owner`: token id (hex)
/// → its signed `revoked_at_ms`.
fn revoked_write_tokens(ctl: &Ctl, owner: &VerifyingKey) -> Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    for payload in crate::kafka::read_topic(ctl, &ctl.topics.tokens())? {
        let Ok(ControlRecord {
            record: Some(Record::Revocation(bytes)),
            ..
        }) = ControlRecord::decode(payload.as_slice())
        else {
            continue;
        };
        let Ok(r) = verify_revocation(&bytes, owner) else {
            continue;
        };
        let r = r.into_inner();
        if r.kind == RevocationKind::WriteToken as i32 {
            let at = r.revoked_at_ms;
            out.entry(hex::encode(&r.id))
                .and_modify(|t: &mut u64| *t = (*t).min(at))
                .or_insert(at);
        }
    }
    Ok(out)
}

/// How a [`Viewer`] opens what it reads.
enum Opener {
    Owner(Box<Receiver>),
    Service(Box<Service>),
}

impl Opener {
    fn open(&mut self, payload: &[u8], trust: &TrustStore, at_ms: u64) -> Option<StateChange> {
        match self {
            Opener::Owner(r) => r
                .open_envelope(payload, trust, at_ms)
                .ok()
                .map(|v| v.into_inner()),
            Opener::Service(s) => s.open_delivery_with(payload, trust, at_ms).ok(),
        }
    }
}

/// Reads what `viewer` can see of `twin` since its checkpoint (from the start with `rescan`),
/// reporting `(read, total)` records as it goes, and saves the checkpoint.
pub async fn load(
    viewer: Viewer<'_>,
    ctl: &Ctl,
    twin: &str,
    rescan: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<TwinLog> {
    armored_crypto::envelope::check_id(twin, "twin id")?;
    let registry = ctl.registry().await?;
    let twin_owner = registry
        .twin_owner(twin)
        .ok_or_else(|| ClientError::NotFound(format!("no twin {twin} in the registry")))?;
    // The owner reads the log under the twin's key; a service its deliveries, under its id.
    let (dir, topic, key, mut opener) = match viewer {
        Viewer::Owner(owner) => {
            if twin_owner.pre.key_id() != owner.pre_key().key_id() {
                return Err(ClientError::Refused(format!(
                    "twin {twin} belongs to another owner"
                )));
            }
            let r = Box::new(Receiver::new(owner.pre_key_copy()?));
            let dir = owner.dir().to_path_buf();
            (dir, ctl.topics.sync(), twin.to_string(), Opener::Owner(r))
        }
        Viewer::Service(dir) => {
            let s = Service::open(dir)?;
            let id = s.id.clone();
            let opener = Opener::Service(Box::new(s));
            (dir.to_path_buf(), ctl.topics.deliver(), id, opener)
        }
    };
    let trust = registry
        .trust_store(twin)
        .ok_or_else(|| ClientError::NotFound(format!("no twin {twin} in the registry")))?;
    let revoked_tokens = revoked_write_tokens(ctl, &twin_owner.sig)?;
    let path = checkpoint_path(&dir, twin);
    let mut log = match files::read(&path) {
        Ok(b) if !rescan => {
            serde_json::from_slice::<TwinLog>(&b).map_err(|source| ClientError::Json {
                what: format!("the checkpoint {} (delete it, or --rescan)", path.display()),
                source,
            })?
        }
        _ => TwinLog::default(),
    };
    if log.topic != topic {
        log = TwinLog {
            topic: topic.clone(),
            ..TwinLog::default()
        };
    }
    let opts = ReadOptions {
        stall: Some(Duration::from_secs(30)),
        max_payload: armored_schemas::limits::MAX_DELIVERY_BYTES,
        from_offsets: log.offsets.iter().map(|(p, o)| (*p, *o)).collect(),
        ..ReadOptions::default()
    };
    let reader = TopicReader::open(&ctl.kafka, &topic, opts).map_err(KafkaError::from)?;
    let (total, ends) = (reader.total(), reader.end_offsets().clone());
    let mut seen: HashSet<(String, u64)> = log
        .changes
        .iter()
        .map(|c| (c.writer.clone(), c.seq))
        .collect();
    let now = armored_base::time::now_ms();
    let mut n = 0u64;
    for r in reader {
        let m = match r {
            Ok(m) => m,
            // An oversized record is no envelope of ours: the edge refuses those.
            Err(e) if !e.is_final() => continue,
            Err(e) => return Err(ClientError::TimedOut(format!("reading {topic}: {e}"))),
        };
        n += 1;
        if n % 256 == 0 || n == total {
            progress(n, total);
        }
        if m.key.as_deref() != Some(key.as_bytes()) {
            continue;
        }
        // Judged as of when the cloud received it (the record's timestamp): a write token that
        // has expired since was valid then.
        let at = m
            .timestamp_ms
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(now);
        // A service's deliveries are of all its twins: only this twin's count, refused or not.
        if matches!(viewer, Viewer::Service(_)) && !delivery_is_of(&m.payload, twin) {
            continue;
        }
        let Some(sc) = opener.open(&m.payload, &trust, at) else {
            log.refused += 1;
            continue;
        };
        let attrs = &sc.header.attributes;
        // State changes only: requests (`req`) and share bundles are not the twin's state.
        if sc.header.twin_id != twin
            || !attrs.iter().any(|a| a == "sync")
            || attrs.iter().any(|a| a == "req" || a == "mpc-share")
        {
            continue;
        }
        let writer = match &sc.writer {
            Writer::Owner => "owner".to_string(),
            Writer::Device(d) => format!("device:{d}"),
            Writer::Token(t) => {
                let id = hex::encode(t);
                if revoked_tokens.get(&id).is_some_and(|&r| at >= r) {
                    log.refused += 1;
                    continue;
                }
                format!("token:{id}")
            }
        };
        if !seen.insert((writer.clone(), sc.header.seq)) {
            continue;
        }
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&sc.delta) else {
            log.refused += 1;
            continue;
        };
        log.changes.push(Change {
            partition: m.partition,
            offset: m.offset,
            observed_at_ms: sc.observed_at_ms,
            writer,
            seq: sc.header.seq,
            epoch: sc.header.epoch,
            fields,
        });
    }
    progress(n, total);
    log.read_now = n;
    // Everything up to the captured ends was read (a stall or a cut-off ended the loop above with
    // an error), so the next call starts there.
    log.offsets = ends.into_iter().collect();
    save(&path, &log)?;
    Ok(log)
}

/// Whether a delivery's envelope header (plain here, authenticated when opened) names `twin`.
fn delivery_is_of(payload: &[u8], twin: &str) -> bool {
    armored_schemas::decode_strict::<armored_schemas::v1::Delivery>(
        "Delivery",
        payload,
        armored_schemas::limits::MAX_DELIVERY_BYTES,
    )
    .ok()
    .and_then(|d| armored_crypto::envelope::parse_header(&d.envelope_header).ok())
    .is_some_and(|h| h.twin_id == twin)
}

fn save(path: &Path, log: &TwinLog) -> Result<()> {
    if let Some(dir) = path.parent() {
        files::create_dir_all(dir)?;
    }
    files::replace_json(path, log, "a twin checkpoint", true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(offset: i64, at: u64, writer: &str, fields: Value) -> Change {
        let Value::Object(fields) = fields else {
            panic!("fields are an object")
        };
        Change {
            partition: 0,
            offset,
            observed_at_ms: at,
            writer: writer.into(),
            seq: offset as u64,
            epoch: 0,
            fields,
        }
    }

    #[test]
    fn the_last_change_of_a_field_wins_and_at_cuts_the_log() {
        let log = TwinLog {
            changes: vec![
                change(0, 100, "device:d1", json!({"lat": 1, "lon": 2})),
                change(1, 200, "device:d2", json!({"lat": 3})),
                change(2, 300, "token:ab", json!({"mode": "eco"})),
            ],
            ..TwinLog::default()
        };
        let now = log.state_at(None);
        assert_eq!(now["lat"].value, json!(3));
        assert_eq!(now["lat"].writer, "device:d2");
        assert_eq!(now["lon"].value, json!(2));
        assert_eq!(now["mode"].value, json!("eco"));
        let then = log.state_at(Some(150));
        assert_eq!(then["lat"].value, json!(1));
        assert!(!then.contains_key("mode"));
        assert!(log.state_at(Some(50)).is_empty());
        assert_eq!(log.history(Some(150), Some(250)).len(), 1);
        assert_eq!(log.last_change_ms(), Some(300));
    }

    #[test]
    fn a_writers_earlier_seq_read_later_does_not_overwrite_its_later_one() {
        let mut late = change(0, 100, "device:d1", json!({"v": 2, "w": 2}));
        late.seq = 2;
        let mut early = change(1, 90, "device:d1", json!({"v": 1, "x": 1}));
        early.seq = 1;
        let other = change(2, 95, "device:d2", json!({"w": 9}));
        let log = TwinLog {
            changes: vec![late, early, other],
            ..TwinLog::default()
        };
        let now = log.state_at(None);
        assert_eq!(now["v"].value, json!(2), "seq 2 keeps the field");
        assert_eq!(
            now["x"].value,
            json!(1),
            "a field only seq 1 set is still applied"
        );
        assert_eq!(
            now["w"].value,
            json!(9),
            "another writer's change read later wins"
        );
    }
}
