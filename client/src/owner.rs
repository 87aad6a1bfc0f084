//! The owner's management device: phase 1 (identity with proof of knowledge, device enrollment,
//! pinning services), phase 2 (re-keys for exactly the policy granted) and M1 (revocation).
//! Keys live in the owner directory (0600 key files); a ledger of issued re-keys sits beside them.

use std::path::{Path, PathBuf};

use armored_base::time::now_ms;
use armored_crypto::identity::{
    create_owner_identity, enroll_device_with_slots, fingerprint, verify_owner_identity,
    verify_pinned_identity, PartyIdentity,
};
use armored_crypto::keyfile::{load_pre_key, load_signing_key, save_pre_key, save_signing_key};
use armored_crypto::kpcpre::{Policy, PublicKey, ReKey, SecretKey};
use armored_crypto::registry::record;
use armored_crypto::shares::MAX_SLOTS_PER_SHARE_EPOCH;
use armored_crypto::sig::{SigningKey, VerifyingKey};
use armored_crypto::tokens::{
    issue_rekey_upload, issue_revocation, ReKeyUploadInput, ReceiverKind, RevocationKind,
};
use armored_device::Card;
use armored_schemas::v1::{control_record, registry_record::Record, ControlRecord};
use prost::Message;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::{parse, ClientError, Result};
use crate::files;
use crate::kafka::Ctl;

pub mod audit;
pub mod backup;
pub mod process_tokens;
pub mod write_tokens;

pub use process_tokens::{
    default_policy, parse_until, ProcessTokenRequest, TokenInfo, CONTACT_TRACING,
};

/// One issued re-key, as the owner remembers it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Hex rk_id.
    pub rk_id: String,
    /// device, service or mpc-node.
    pub receiver_kind: String,
    /// Receiver id.
    pub receiver_id: String,
    /// Canonical policy.
    pub policy: String,
    /// When issued.
    pub issued_ms: u64,
    /// Revoked by this owner.
    pub revoked: bool,
    /// The receiver's PRE key id (hex).
    #[serde(default)]
    pub receiver_key: String,
    /// For MPC-node re-keys: the share number j of `node-j`.
    #[serde(default)]
    pub node_index: Option<u32>,
    /// A process token (kind `process-token`; `rk_id` is then the token id) and what it grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenInfo>,
    /// The epochs a re-key admits (a time-windowed grant); both open when absent.
    #[serde(default, skip_serializing_if = "EpochWindow::is_open")]
    pub window: EpochWindow,
}

/// The epochs a grant admits: [`from_epoch`, `until_epoch`), either end open.
///
/// [`from_epoch`]: Self::from_epoch
/// [`until_epoch`]: Self::until_epoch
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochWindow {
    /// The first epoch admitted (the stored history is replayed from it when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_epoch: Option<u64>,
    /// The first epoch no longer admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_epoch: Option<u64>,
}

impl EpochWindow {
    /// Admits every epoch.
    pub fn is_open(&self) -> bool {
        self.from_epoch.is_none() && self.until_epoch.is_none()
    }

    /// `from..until` in epochs, `..` for an open end (for listings).
    pub fn describe(&self) -> String {
        let end = |e: Option<u64>| e.map(|e| e.to_string()).unwrap_or_default();
        format!("{}..{}", end(self.from_epoch), end(self.until_epoch))
    }
}

/// An owner's management device.
pub struct Owner {
    dir: PathBuf,
    /// Owner id.
    pub owner_id: String,
    pre: SecretKey,
    sig: SigningKey,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Owner({})", self.owner_id)
    }
}

fn identity_path(dir: &Path) -> PathBuf {
    dir.join("owner.identity")
}

/// The control record wrapping a signed upload or revocation.
pub fn control(r: control_record::Record) -> Vec<u8> {
    ControlRecord {
        version: armored_schemas::WIRE_VERSION,
        record: Some(r),
    }
    .encode_to_vec()
}

impl Owner {
    /// Phase 1: creates the owner's keys in `dir` and publishes the identity (with its proof of
    /// knowledge) to the registry. Refuses to overwrite an existing owner.
    pub async fn init(dir: &Path, owner_id: &str, ctl: &Ctl) -> Result<Self> {
        armored_crypto::envelope::check_id(owner_id, "owner_id")?;
        if identity_path(dir).exists() {
            return Err(ClientError::Occupied {
                dir: dir.display().to_string(),
                what: "an owner identity",
            });
        }
        files::create_dir_all(dir)?;
        let pre = SecretKey::generate(&mut OsRng);
        let sig = SigningKey::generate(&mut OsRng);
        save_pre_key(&dir.join("pre.key"), &pre, &format!("owner {owner_id} PRE"))?;
        save_signing_key(
            &dir.join("sig.key"),
            &sig,
            &format!("owner {owner_id} signing"),
        )?;
        let identity = create_owner_identity(owner_id, &pre, &sig, 0, &sig, &mut OsRng);
        files::write(&identity_path(dir), &identity)?;
        ctl.send(
            &ctl.topics.registry(),
            &format!("owner:{owner_id}"),
            &record(Record::OwnerIdentity(identity)),
        )
        .await?;
        Ok(Self {
            dir: dir.to_path_buf(),
            owner_id: owner_id.to_string(),
            pre,
            sig,
        })
    }

    /// Opens an owner directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let identity = std::fs::read(identity_path(dir)).map_err(|source| ClientError::Io {
            what: format!("no owner in {} (atctl owner init)", dir.display()),
            source,
        })?;
        let id = verify_owner_identity(&identity, None)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            owner_id: id.owner_id.clone(),
            pre: load_pre_key(&dir.join("pre.key"), &mut OsRng)?,
            sig: load_signing_key(&dir.join("sig.key"))?,
        })
    }

    /// The owner directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The signed identity file (what devices and services pin).
    pub fn identity(&self) -> Result<Vec<u8>> {
        files::read(&identity_path(&self.dir))
    }

    /// The owner's signing key (public).
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.sig.verifying_key()
    }

    /// Phase 1 + 2 for a device: an owner-signed enrollment of the card received out of band, and
    /// the device's re-key for `twin:<id> AND (sync OR req)` (device grants are always scoped to
    /// their twin: one owner key covers all the owner's twins). Returns the rk_id.
    pub async fn enroll_device(&self, ctl: &Ctl, card: &Card) -> Result<String> {
        let pre = PublicKey::from_bytes(
            &hex::decode(&card.pre_public_key).map_err(parse("the card's PRE key is hex"))?,
        )?;
        let sig = VerifyingKey::from_sec1(
            &hex::decode(&card.sig_key).map_err(parse("the card's signing key is hex"))?,
        )?;
        let slots = card.share_slots();
        if slots.slots_per_share_epoch > MAX_SLOTS_PER_SHARE_EPOCH {
            return Err(ClientError::Invalid(format!(
                "the card's slots_per_share_epoch {} is above {MAX_SLOTS_PER_SHARE_EPOCH}",
                slots.slots_per_share_epoch
            )));
        }
        let enrollment = enroll_device_with_slots(
            &self.sig,
            &card.twin_id,
            &card.device_id,
            &pre,
            &sig,
            card.epoch_len_ms,
            slots,
        );
        ctl.send(
            &ctl.topics.registry(),
            &format!("device:{}/{}", card.twin_id, card.device_id),
            &record(Record::Enrollment(enrollment)),
        )
        .await?;
        let policy = format!("twin:{} AND (sync OR req)", card.twin_id);
        self.issue(
            ctl,
            ReceiverKind::Device,
            &format!("{}/{}", card.twin_id, card.device_id),
            &policy,
            &pre,
            EpochWindow::default(),
        )
        .await
    }

    /// Pins a service or node identity file after checking its self-signature; returns the party
    /// and the fingerprint to compare out of band. The file is kept in `trusted/` and published to
    /// the registry (informational: owners trust by fingerprint, never by what a topic says).
    pub async fn trust(&self, ctl: &Ctl, identity: &[u8]) -> Result<(PartyIdentity, String)> {
        let (p, fp) = self.pin(identity)?;
        ctl.send(
            &ctl.topics.registry(),
            &format!("party:{}", p.party_id),
            &record(Record::PartyIdentity(identity.to_vec())),
        )
        .await?;
        Ok((p, fp))
    }

    /// Pins a party identity file locally (what [`Owner::trust`] does before publishing it):
    /// checks the self-signature and keeps the file in `trusted/`. Returns the party and the hex
    /// fingerprint.
    pub fn pin(&self, identity: &[u8]) -> Result<(PartyIdentity, String)> {
        let fp = fingerprint(identity);
        let p = verify_pinned_identity(identity, &fp)?.into_inner();
        let dir = self.dir.join("trusted");
        files::create_dir_all(&dir)?;
        files::write(&dir.join(format!("{}.identity", p.party_id)), identity)?;
        Ok((p, hex::encode(fp)))
    }

    /// A pinned party.
    pub fn trusted(&self, party_id: &str) -> Result<PartyIdentity> {
        armored_crypto::envelope::check_id(party_id, "party id")?;
        let path = self
            .dir
            .join("trusted")
            .join(format!("{party_id}.identity"));
        let bytes = std::fs::read(&path).map_err(|source| ClientError::Io {
            what: format!("{party_id} is not pinned (atctl owner trust <identity file>)"),
            source,
        })?;
        Ok(verify_pinned_identity(&bytes, &fingerprint(&bytes))?.into_inner())
    }

    /// Phase 2: grants a pinned service exactly `policy`. Returns the rk_id.
    pub async fn grant(
        &self,
        ctl: &Ctl,
        party_id: &str,
        policy: &str,
        history_from_epoch: Option<u64>,
    ) -> Result<String> {
        let window = EpochWindow {
            from_epoch: history_from_epoch,
            until_epoch: None,
        };
        self.grant_window(ctl, party_id, policy, window).await
    }

    /// Phase 2, time-windowed: grants `party_id` exactly `policy` for the epochs of `window` only.
    /// The workers re-encrypt nothing outside it, live or replayed (`ReKeyUpload.history_from_epoch`
    /// and `until_epoch`, signed with the re-key).
    pub async fn grant_window(
        &self,
        ctl: &Ctl,
        party_id: &str,
        policy: &str,
        window: EpochWindow,
    ) -> Result<String> {
        if let (Some(f), Some(u)) = (window.from_epoch, window.until_epoch) {
            if u <= f {
                return Err(ClientError::Invalid(format!(
                    "the window admits no epoch: until (epoch {u}) is not after from (epoch {f})"
                )));
            }
        }
        let p = self.trusted(party_id)?;
        let kind = match p.kind {
            armored_schemas::v1::PartyKind::MpcNode => ReceiverKind::MpcNode,
            _ => ReceiverKind::Service,
        };
        self.issue(ctl, kind, party_id, policy, &p.pre, window)
            .await
    }

    async fn issue(
        &self,
        ctl: &Ctl,
        kind: ReceiverKind,
        receiver_id: &str,
        policy: &str,
        receiver: &PublicKey,
        window: EpochWindow,
    ) -> Result<String> {
        let policy = Policy::parse(policy).map_err(|reason| ClientError::Policy {
            text: policy.to_string(),
            reason,
        })?;
        let rk = ReKey::generate(&self.pre, &policy, receiver, &mut OsRng)?;
        let upload = issue_rekey_upload(
            &self.sig,
            &rk,
            &ReKeyUploadInput {
                receiver_kind: kind,
                receiver_id,
                not_after_ms: None,
                history_from_epoch: window.from_epoch,
                until_epoch: window.until_epoch,
            },
        );
        let rk_id = hex::encode(rk.rk_id());
        ctl.send(
            &ctl.topics.rekeys(),
            &rk_id,
            &control(control_record::Record::RekeyUpload(upload)),
        )
        .await?;
        let mut ledger = self.ledger()?;
        ledger.push(LedgerEntry {
            rk_id: rk_id.clone(),
            receiver_kind: match kind {
                ReceiverKind::Device => "device",
                ReceiverKind::MpcNode => "mpc-node",
                _ => "service",
            }
            .into(),
            receiver_id: receiver_id.into(),
            policy: policy.canonical().to_string(),
            issued_ms: now_ms(),
            revoked: false,
            receiver_key: receiver.key_id().to_string(),
            node_index: None,
            token: None,
            window,
        });
        self.save_ledger(&ledger)?;
        Ok(rk_id)
    }

    /// Phase 2+: grants three pinned MPC nodes their shares: node number j gets
    /// `mpc-share AND node-j AND location`. Refuses a mapping that would let one key hold two share
    /// numbers, ever (envelope.md: the owner never grants `node-i` to a key that has held `node-j`):
    /// the same node twice, or a node (by id or PRE key) that held another share number before.
    /// Returns the three rk_ids.
    pub async fn grant_mpc(&self, ctl: &Ctl, nodes: &[String; 3]) -> Result<Vec<String>> {
        let parties: Vec<PartyIdentity> = nodes
            .iter()
            .map(|n| self.trusted(n))
            .collect::<Result<_>>()?;
        for (i, p) in parties.iter().enumerate() {
            if parties[..i]
                .iter()
                .any(|q| q.party_id == p.party_id || q.pre.key_id() == p.pre.key_id())
            {
                return Err(ClientError::Refused(format!(
                    "{} would hold two share numbers: each node gets exactly one",
                    p.party_id
                )));
            }
        }
        let ledger = self.ledger()?;
        for (i, p) in parties.iter().enumerate() {
            check_node(&ledger, p, i as u32 + 1)?;
        }
        let mut ids = Vec::new();
        for (i, p) in parties.iter().enumerate() {
            ids.push(self.grant_node(ctl, p, i as u32 + 1).await?);
        }
        Ok(ids)
    }

    /// M2: node `j` is replaced by the pinned node `new`: the re-keys that gave share number j to
    /// another node are revoked (it receives nothing new), and `new` gets node-j's re-key. Refused
    /// if `new` ever held another share number. Returns (revoked re-key ids, the new re-key id).
    pub async fn replace_node(
        &self,
        ctl: &Ctl,
        j: u32,
        new: &str,
    ) -> Result<(Vec<String>, String)> {
        if !(1..=3).contains(&j) {
            return Err(ClientError::Invalid(format!(
                "share numbers are 1, 2 and 3 (got {j})"
            )));
        }
        let p = self.trusted(new)?;
        let ledger = self.ledger()?;
        check_node(&ledger, &p, j)?;
        let old: Vec<String> = ledger
            .iter()
            .filter(|e| e.node_index == Some(j) && !e.revoked && e.receiver_id != p.party_id)
            .map(|e| e.rk_id.clone())
            .collect();
        for rk in &old {
            self.revoke_rekey(ctl, rk).await?;
        }
        Ok((old, self.grant_node(ctl, &p, j).await?))
    }

    /// Issues node `j`'s re-key `mpc-share AND node-j AND location` to `p` and records the share
    /// number in the ledger.
    async fn grant_node(&self, ctl: &Ctl, p: &PartyIdentity, j: u32) -> Result<String> {
        let policy = format!("mpc-share AND node-{j} AND location");
        let rk = self
            .issue(
                ctl,
                ReceiverKind::MpcNode,
                &p.party_id,
                &policy,
                &p.pre,
                EpochWindow::default(),
            )
            .await?;
        let mut ledger = self.ledger()?;
        for e in ledger.iter_mut().filter(|e| e.rk_id == rk) {
            e.node_index = Some(j);
        }
        self.save_ledger(&ledger)?;
        Ok(rk)
    }

    /// M1: revokes a re-key (sticky; written under the re-key's own key on the re-key topic).
    pub async fn revoke_rekey(&self, ctl: &Ctl, rk_id_hex: &str) -> Result<()> {
        let id = hex::decode(rk_id_hex).map_err(parse("rk id must be hex"))?;
        if id.len() != 16 {
            return Err(ClientError::Invalid(
                "an rk id is 16 bytes (32 hex digits)".into(),
            ));
        }
        let r = issue_revocation(&self.sig, RevocationKind::Rekey, &id, now_ms(), None);
        ctl.send(
            &ctl.topics.rekeys(),
            rk_id_hex,
            &control(control_record::Record::Revocation(r)),
        )
        .await?;
        let mut ledger = self.ledger()?;
        for e in ledger
            .iter_mut()
            .filter(|e| e.rk_id == rk_id_hex && e.token.is_none())
        {
            e.revoked = true;
        }
        self.save_ledger(&ledger)
    }

    /// Revokes every re-key and process token issued to `receiver_id`; returns how many.
    pub async fn revoke_receiver(&self, ctl: &Ctl, receiver_id: &str) -> Result<usize> {
        let entries: Vec<LedgerEntry> = self
            .ledger()?
            .into_iter()
            .filter(|e| e.receiver_id == receiver_id && !e.revoked)
            .collect();
        for e in &entries {
            match e.token {
                Some(_) => self.revoke_process_token(ctl, &e.rk_id).await?,
                None => self.revoke_rekey(ctl, &e.rk_id).await?,
            }
        }
        Ok(entries.len())
    }

    /// Issued re-keys.
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>> {
        let p = self.dir.join("grants.json");
        if !p.exists() {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&files::read(&p)?).map_err(|source| ClientError::Json {
            what: format!("{} is not a ledger of grants", p.display()),
            source,
        })
    }

    fn save_ledger(&self, l: &[LedgerEntry]) -> Result<()> {
        files::replace_json(
            &self.dir.join("grants.json"),
            l,
            "the ledger of grants",
            false,
        )
    }

    /// Signs an arbitrary upload for tests of the cloud's checks (never used by the CLI itself).
    pub fn signing_key(&self) -> &SigningKey {
        &self.sig
    }

    /// The owner's PRE key (tests seal envelopes as the owner would).
    pub fn pre_key(&self) -> &SecretKey {
        &self.pre
    }

    /// A second copy of the PRE key, read from its file, for a receiver that owns its key (the
    /// owner opening its twins' log).
    pub(crate) fn pre_key_copy(&self) -> Result<SecretKey> {
        Ok(load_pre_key(&self.dir.join("pre.key"), &mut OsRng)?)
    }
}

/// A node may hold share number `j` only if it is an MPC node that never held another one (by
/// party id or PRE key): one key that saw two shares would see the point.
fn check_node(ledger: &[LedgerEntry], p: &PartyIdentity, j: u32) -> Result<()> {
    if p.kind != armored_schemas::v1::PartyKind::MpcNode {
        return Err(ClientError::Refused(format!(
            "{} is not an MPC node identity",
            p.party_id
        )));
    }
    let key = p.pre.key_id().to_string();
    if let Some(e) = ledger.iter().find(|e| {
        e.node_index.is_some_and(|k| k != j)
            && (e.receiver_id == p.party_id || e.receiver_key == key)
    }) {
        return Err(ClientError::Refused(format!(
            "{} held node-{} before; granting it node-{j} would let one key see two shares",
            p.party_id,
            e.node_index.unwrap_or_default()
        )));
    }
    Ok(())
}
