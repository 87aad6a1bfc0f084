//! The device's core, without I/O beyond its own files: sealing (phase 3) and accepting (phase 4).

use armored_schemas::Refusal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use armored_crypto::envelope::{seal_state_change, Receiver, StateChangeInput, TrustStore, Writer};
use armored_crypto::epoch::{epoch_of, EpochKeyManager};
use armored_crypto::identity::verify_owner_identity;
use armored_crypto::keyfile::{load_pre_key, load_signing_key};
use armored_crypto::replay::ReplayGuard;
use armored_crypto::sig::SigningKey;
use armored_crypto::{Error as CryptoError, KeyId};
use armored_schemas::v1::{self, downlink::Message as Down};
use armored_schemas::{decode_strict, limits::MAX_DELIVERY_BYTES};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

pub use crate::error::DeviceError;
use crate::files::{write_json, Card, Paths};

mod requests;
mod roster;
mod shares;

pub use shares::ShareState;

/// The persisted state of a device.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Next sequence number of this device's own changes.
    pub next_seq: u64,
    /// The twin's state as this device knows it: field → value, last writer wins in arrival order,
    /// except that a writer's change never overwrites what its own later seq set (`setters`).
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Field → the writer (key id, hex) and seq of the change that set it: with several bridges
    /// sharing the uplink, a writer's changes may arrive out of seq order.
    #[serde(default)]
    pub setters: BTreeMap<String, (String, u64)>,
    /// Changes applied (own and received).
    pub applied: u64,
    /// Replay guard (hex of its persisted form).
    pub replay: String,
    /// Counters: received, duplicates, and rejections by reason.
    pub counters: BTreeMap<String, u64>,
    /// Phase 3+: next item id of a shared location point, and the last slot shared (one point
    /// per slot).
    #[serde(default)]
    pub shares: ShareState,
    /// Phase 5: ids (hex) of the requests already answered, with their `expires_at_ms`: a
    /// redelivered or replayed request is refused, not run again (a replayed `set` would roll the
    /// state back). Kept until the request expires; bounded by `MAX_OPEN_REQUESTS`.
    #[serde(default)]
    pub seen_requests: BTreeMap<String, u64>,
}

/// What handling a downlink message did.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A verified state change was applied.
    Applied {
        /// Who wrote it.
        writer: Writer,
        /// Its sequence number.
        seq: u64,
        /// The update.
        delta: serde_json::Value,
    },
    /// The same change again (at-least-once redelivery or the echo of our own): dropped.
    Duplicate,
    /// The twin's roster (owner-signed enrollments) was updated.
    Roster {
        /// Devices now trusted.
        devices: usize,
    },
    /// A request (phase 5) was answered; publish `state_change` (if any) on the uplink and
    /// `response` on the device's response topic.
    Request {
        /// Hex request id.
        request_id: String,
        /// What was asked: read, set, unsupported, refused.
        op: String,
        /// Whether the answer says ok.
        ok: bool,
        /// The sealed `ResponseEnvelope`.
        response: Vec<u8>,
        /// The envelope of the state change a `set` made.
        state_change: Option<Vec<u8>>,
    },
}

/// A device: keys, the pinned owner, the roster of its twin, epoch keys and state.
pub struct Device {
    dir: PathBuf,
    pub(crate) card: Card,
    pub(crate) sig: SigningKey,
    receiver: Receiver,
    trust: TrustStore,
    epochs: EpochKeyManager,
    /// Epoch keys of share bundles (share epochs, not the twin's epochs: pruned separately).
    pub(crate) share_keys: EpochKeyManager,
    guard: ReplayGuard,
    pub(crate) state: State,
    /// Every roster item (enrollment, revocation) verified so far, as kept in `roster.pb`.
    roster: v1::TwinRoster,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({}/{})", self.card.twin_id, self.card.device_id)
    }
}

impl Device {
    /// Opens a device set up in `dir` with a pinned owner.
    pub fn open(dir: &Path) -> Result<Self, DeviceError> {
        let p = Paths::new(dir);
        let card: Card = read_json(&p.card)?;
        let owner_bytes =
            std::fs::read(&p.owner).map_err(|_| DeviceError::NoOwner(dir.display().to_string()))?;
        let owner = verify_owner_identity(&owner_bytes, None)?.into_inner();
        let sig = load_signing_key(&p.sig)?;
        let pre = load_pre_key(&p.pre, &mut OsRng)?;
        let mut trust = TrustStore::new(owner.sig);
        trust.add_device(&card.twin_id, *sig.verifying_key());
        let state: State = if p.state.exists() {
            read_json(&p.state)?
        } else {
            State::default()
        };
        let guard = if state.replay.is_empty() {
            ReplayGuard::new()
        } else {
            let b = hex::decode(&state.replay).map_err(|e| DeviceError::State(e.to_string()))?;
            ReplayGuard::from_bytes(&b)?
        };
        let mut device = Self {
            dir: dir.to_path_buf(),
            epochs: EpochKeyManager::new(owner.pre.clone(), &card.twin_id)?,
            share_keys: EpochKeyManager::new(owner.pre.clone(), &card.twin_id)?,
            card,
            sig,
            receiver: Receiver::new(pre),
            trust,
            guard,
            state,
            roster: v1::TwinRoster::default(),
        };
        device.restore_roster(&p.roster)?;
        Ok(device)
    }

    /// The public card.
    pub fn card(&self) -> &Card {
        &self.card
    }

    /// The state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The topic this device answers requests on: `at/v1/resp/{twin}/{device}`.
    pub fn response_topic(&self) -> String {
        format!("at/v1/resp/{}/{}", self.card.twin_id, self.card.device_id)
    }

    /// Whether a write-token revocation (pushed with the roster) has reached this device.
    pub fn write_token_revoked(&self, token_id: &[u8]) -> bool {
        self.trust
            .revocations
            .is_revoked(armored_crypto::tokens::RevocationKind::WriteToken, token_id)
    }

    /// The MQTT topics of this device: (uplink, downlink).
    pub fn topics(&self) -> (String, String) {
        let id = format!("{}/{}", self.card.twin_id, self.card.device_id);
        (format!("at/v1/up/{id}"), format!("at/v1/down/{id}"))
    }

    /// Phase 3: records a state change (a JSON object of field updates) with `attributes` (the
    /// twin attribute is added), applies it locally and returns the envelope to publish.
    pub fn record(
        &mut self,
        attributes: &[&str],
        delta: serde_json::Value,
        now_ms: u64,
    ) -> Result<Vec<u8>, DeviceError> {
        let serde_json::Value::Object(fields) = &delta else {
            return Err(DeviceError::BadDelta);
        };
        let seq = self.state.next_seq;
        let epoch = epoch_of(now_ms, self.card.epoch_len_ms.max(1));
        let key = self.epochs.key_for(epoch, attributes, &mut OsRng)?;
        let input = StateChangeInput {
            device_id: self.card.device_id.clone(),
            seq,
            observed_at_ms: now_ms,
            delta: delta.to_string().into_bytes(),
            ..Default::default()
        };
        let env = seal_state_change(key, &self.sig, &input, &mut OsRng)?;
        self.epochs.prune_before(epoch.saturating_sub(1));
        // Our own change comes back if our re-key admits it: mark it seen.
        let _ = self.guard.check(&self.card.twin_id, self.sig.key_id(), seq);
        let me = hex::encode(self.sig.key_id().0);
        for (k, v) in fields {
            self.state.fields.insert(k.clone(), v.clone());
            self.state.setters.insert(k.clone(), (me.clone(), seq));
        }
        self.state.next_seq = seq + 1;
        self.state.applied += 1;
        self.persist()?;
        // After the state: a crash in between loses this change, but never reuses its seq.
        crate::outbox::keep(&self.dir, &env)?;
        Ok(env)
    }

    /// The directory the device lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Phase 4: handles one downlink message (a delivery or the twin's roster).
    pub fn handle_downlink(&mut self, bytes: &[u8], now_ms: u64) -> Result<Event, DeviceError> {
        let r = self.handle_inner(bytes, now_ms);
        self.count_and_persist(r)
    }

    /// Like [`Device::handle_downlink`], but a delivery refused only because its writer is not in
    /// the roster yet (`unknown_signer`) is left alone: `None`, nothing counted or changed. It may
    /// come from a sibling enrolled while this device was offline, whose deliveries were queued
    /// before the retained roster that names it; the link holds it until the next roster.
    pub fn handle_downlink_or_hold(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Option<Result<Event, DeviceError>> {
        let r = self.handle_inner(bytes, now_ms);
        if matches!(&r, Err(e) if e.reason() == "unknown_signer") {
            return None;
        }
        Some(self.count_and_persist(r))
    }

    fn count_and_persist(&mut self, r: Result<Event, DeviceError>) -> Result<Event, DeviceError> {
        let label = match &r {
            Ok(Event::Applied { .. }) => "applied".to_string(),
            Ok(Event::Duplicate) => "duplicate".to_string(),
            Ok(Event::Roster { .. }) => "roster".to_string(),
            Ok(Event::Request { .. }) => "request".to_string(),
            Err(e) => format!("rejected_{}", e.reason()),
        };
        *self.state.counters.entry(label).or_default() += 1;
        // Only what changed the state is written (and synced) before the broker may forget it:
        // a duplicate (the echo of the device's own change is one) or a refusal changes nothing
        // but counters, which go with the next write.
        if matches!(r, Ok(Event::Applied { .. } | Event::Request { .. })) {
            self.persist()?;
        }
        r
    }

    fn handle_inner(&mut self, bytes: &[u8], now_ms: u64) -> Result<Event, DeviceError> {
        let d: v1::Downlink =
            decode_strict("Downlink", bytes, MAX_DELIVERY_BYTES + 64).map_err(CryptoError::from)?;
        armored_crypto::error::check_version("Downlink", d.version)?;
        match d.message {
            Some(Down::Roster(r)) => self.apply_roster(&r),
            Some(Down::Delivery(b)) if requests::is_request_delivery(&b) => {
                self.apply_request(&b, now_ms)
            }
            Some(Down::Delivery(b)) => self.apply_delivery(&b, now_ms),
            None => Err(CryptoError::InvalidField {
                field: "downlink.message",
                reason: "empty",
            }
            .into()),
        }
    }

    fn apply_delivery(&mut self, bytes: &[u8], now_ms: u64) -> Result<Event, DeviceError> {
        let sc = self
            .receiver
            .open_delivery(bytes, &self.trust, now_ms, &mut OsRng)?
            .into_inner();
        let writer = KeyId::from_slice(&sc.header.writer_key_id, "writer_key_id")?;
        if self
            .guard
            .check(&sc.header.twin_id, writer, sc.header.seq)
            .is_err()
        {
            return Ok(Event::Duplicate);
        }
        let delta: serde_json::Value =
            serde_json::from_slice(&sc.delta).map_err(|_| DeviceError::BadDelta)?;
        let serde_json::Value::Object(fields) = &delta else {
            return Err(DeviceError::BadDelta);
        };
        let by = hex::encode(writer.0);
        for (k, v) in fields {
            if self
                .state
                .setters
                .get(k)
                .is_some_and(|(w, s)| *w == by && *s > sc.header.seq)
            {
                continue;
            }
            self.state.fields.insert(k.clone(), v.clone());
            self.state
                .setters
                .insert(k.clone(), (by.clone(), sc.header.seq));
        }
        self.state.applied += 1;
        Ok(Event::Applied {
            writer: sc.writer,
            seq: sc.header.seq,
            delta,
        })
    }

    pub(crate) fn persist(&mut self) -> Result<(), DeviceError> {
        self.state.replay = hex::encode(self.guard.to_bytes());
        write_json(&Paths::new(&self.dir).state, &self.state)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DeviceError> {
    let b = std::fs::read(path).map_err(|e| DeviceError::Io(path.display().to_string(), e))?;
    serde_json::from_slice(&b).map_err(|e| DeviceError::State(format!("{}: {e}", path.display())))
}
