//! Owner-signed control records (envelope.md "Tokens, re-keys, revocations"): re-key uploads, write
//! tokens, process tokens and revocations. Each `verify_*` returns a [`Verified`] value only after the
//! signature (under the record's own domain), the signer's key id, expiry and revocation checks.

use std::collections::{HashMap, HashSet};

use armored_schemas::limits::{MAX_CONTROL_BYTES, MAX_REKEY_BYTES};
use armored_schemas::{decode_strict, v1, WIRE_VERSION};
use prost::Message;
use rand_core::{CryptoRng, RngCore};

use crate::domain::SigDomain;
use crate::encoding::{Reader, Writer};
use crate::error::{check_version, Error, Result};
use crate::hpke::HpkePublicKey;
use crate::keyid::KeyId;
use crate::kpcpre::{Policy, ReKey};
use crate::sig::{decode_signed, SigningKey, VerifyingKey};
use crate::verified::Verified;

pub use v1::{ReceiverKind, RevocationKind};

fn random_id<R: RngCore + CryptoRng>(rng: &mut R) -> Vec<u8> {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    id.to_vec()
}

fn check_signer(named: &[u8], owner: &VerifyingKey, what: &'static str) -> Result<()> {
    if named == owner.key_id().0.as_slice() {
        Ok(())
    } else {
        Err(Error::UnknownSigner(what))
    }
}

/// Verifies a signed control record under `domain` and decodes its body strictly.
fn open_signed<M: Message + Default>(
    bytes: &[u8],
    limit: usize,
    owner: &VerifyingKey,
    domain: SigDomain,
    what: &'static str,
) -> Result<M> {
    let signed = decode_signed(bytes, limit)?;
    let body = owner.verify(domain, &signed, what)?;
    Ok(decode_strict(what, body, limit)?)
}

// ---------------------------------------------------------------------------------------------
// Revocations

/// Sticky revocations: once an id is revoked it is never re-admitted, whatever arrives later.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationSet {
    ids: HashSet<(i32, Vec<u8>)>,
    devices: HashMap<KeyId, u64>,
}

impl RevocationSet {
    /// Applies a verified revocation.
    pub fn apply(&mut self, r: &Verified<v1::Revocation>) {
        if r.kind == RevocationKind::Device as i32 {
            if let Ok(kid) = KeyId::from_slice(&r.id, "revocation.id") {
                let last = r.last_valid_seq.unwrap_or(0);
                // Sticky and monotone: a later revocation can only lower the bound.
                let e = self.devices.entry(kid).or_insert(last);
                *e = (*e).min(last);
            }
        }
        self.ids.insert((r.kind, r.id.clone()));
    }

    /// Whether (kind, id) is revoked.
    pub fn is_revoked(&self, kind: RevocationKind, id: &[u8]) -> bool {
        self.ids.contains(&(kind as i32, id.to_vec()))
    }

    /// Whether a device's state change with `seq` is past its revocation.
    pub fn device_revoked(&self, device_key: &KeyId, seq: u64) -> bool {
        self.devices.get(device_key).is_some_and(|last| seq > *last)
    }

    /// Serialises the set (for persistence; sorted, deterministic).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut ids: Vec<_> = self.ids.iter().collect();
        ids.sort();
        let mut w = Writer::new();
        for (kind, id) in ids {
            w.push(1, &kind.to_be_bytes());
            w.push(2, id);
        }
        let mut devs: Vec<_> = self.devices.iter().collect();
        devs.sort();
        for (k, seq) in devs {
            w.push(3, k.as_bytes());
            w.push(4, &seq.to_be_bytes());
        }
        w.finish()
    }

    /// Restores a persisted set.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new("revocation set", bytes);
        let mut s = Self::default();
        while r.peek_tag() == Some(1) {
            let kind = r.u32(1)? as i32;
            s.ids.insert((kind, r.field(2)?.to_vec()));
        }
        while r.peek_tag() == Some(3) {
            let k = KeyId::from_slice(r.field(3)?, "revocation.device")?;
            s.devices.insert(k, r.u64(4)?);
        }
        r.finish()?;
        Ok(s)
    }
}

/// Issues a revocation (written to the same topic, under the same key, as what it revokes).
pub fn issue_revocation(
    owner: &SigningKey,
    kind: RevocationKind,
    id: &[u8],
    revoked_at_ms: u64,
    last_valid_seq: Option<u64>,
) -> Vec<u8> {
    let body = v1::Revocation {
        version: WIRE_VERSION,
        owner_sig_key_id: owner.key_id().0.to_vec(),
        kind: kind as i32,
        id: id.to_vec(),
        revoked_at_ms,
        last_valid_seq,
    };
    owner.sign_to_vec(SigDomain::Revocation, body.encode_to_vec())
}

/// Verifies a revocation signed by `owner`.
pub fn verify_revocation(bytes: &[u8], owner: &VerifyingKey) -> Result<Verified<v1::Revocation>> {
    let r: v1::Revocation = open_signed(
        bytes,
        MAX_CONTROL_BYTES,
        owner,
        SigDomain::Revocation,
        "Revocation",
    )?;
    check_version("Revocation", r.version)?;
    check_signer(&r.owner_sig_key_id, owner, "revocation")?;
    if RevocationKind::try_from(r.kind).map_or(true, |k| k == RevocationKind::Unspecified)
        || r.id.is_empty()
    {
        return Err(Error::InvalidField {
            field: "revocation.kind/id",
            reason: "unknown kind or empty id",
        });
    }
    Ok(Verified::new(r))
}

// ---------------------------------------------------------------------------------------------
// Write tokens

/// Issues a write token: `writer_key_id` may write twin `twin_id` in [not_before, not_after].
pub fn issue_write_token<R: RngCore + CryptoRng>(
    owner: &SigningKey,
    twin_id: &str,
    writer_key_id: KeyId,
    not_before_ms: u64,
    not_after_ms: u64,
    rng: &mut R,
) -> Vec<u8> {
    let body = v1::WriteToken {
        version: WIRE_VERSION,
        token_id: random_id(rng),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        twin_id: twin_id.to_owned(),
        writer_key_id: writer_key_id.0.to_vec(),
        not_before_ms,
        not_after_ms,
        writer_sig_key: Vec::new(),
    };
    owner.sign_to_vec(SigDomain::WriteToken, body.encode_to_vec())
}

/// Issues a write token that also carries the writer's public key (`writer_sig_key`), so that a
/// device can verify the writer's state changes from the token alone.
pub fn issue_write_token_for<R: RngCore + CryptoRng>(
    owner: &SigningKey,
    twin_id: &str,
    writer: &VerifyingKey,
    not_before_ms: u64,
    not_after_ms: u64,
    rng: &mut R,
) -> Vec<u8> {
    let body = v1::WriteToken {
        version: WIRE_VERSION,
        token_id: random_id(rng),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        twin_id: twin_id.to_owned(),
        writer_key_id: writer.key_id().0.to_vec(),
        not_before_ms,
        not_after_ms,
        writer_sig_key: writer.to_sec1(),
    };
    owner.sign_to_vec(SigDomain::WriteToken, body.encode_to_vec())
}

/// The writer key a verified write token carries, if any (checked against `writer_key_id`).
pub fn write_token_writer_key(t: &v1::WriteToken) -> Result<Option<VerifyingKey>> {
    if t.writer_sig_key.is_empty() {
        return Ok(None);
    }
    let k = VerifyingKey::from_sec1(&t.writer_sig_key)?;
    if k.key_id().0.as_slice() != t.writer_key_id.as_slice() {
        return Err(Error::Mismatch(
            "write token's writer key differs from its writer_key_id",
        ));
    }
    Ok(Some(k))
}

/// Checks only the owner's signature and key id of a write token (no validity window, no
/// revocation): for consumers that index tokens, e.g. to route their revocations to devices.
pub fn verify_write_token_signature(
    bytes: &[u8],
    owner: &VerifyingKey,
) -> Result<Verified<v1::WriteToken>> {
    let t: v1::WriteToken = open_signed(
        bytes,
        MAX_CONTROL_BYTES,
        owner,
        SigDomain::WriteToken,
        "WriteToken",
    )?;
    check_version("WriteToken", t.version)?;
    check_signer(&t.owner_sig_key_id, owner, "write token")?;
    crate::ids::check_id(&t.twin_id, "write_token.twin_id")?;
    KeyId::from_slice(&t.writer_key_id, "write_token.writer_key_id")?;
    write_token_writer_key(&t)?;
    Ok(Verified::new(t))
}

/// Verifies a write token: owner's signature and key id, validity window, not revoked.
pub fn verify_write_token(
    bytes: &[u8],
    owner: &VerifyingKey,
    revoked: &RevocationSet,
    now_ms: u64,
) -> Result<Verified<v1::WriteToken>> {
    let t: v1::WriteToken = open_signed(
        bytes,
        MAX_CONTROL_BYTES,
        owner,
        SigDomain::WriteToken,
        "WriteToken",
    )?;
    check_version("WriteToken", t.version)?;
    check_signer(&t.owner_sig_key_id, owner, "write token")?;
    if now_ms < t.not_before_ms || now_ms > t.not_after_ms {
        return Err(Error::Expired {
            what: "write token",
            now_ms,
            not_before_ms: t.not_before_ms,
            not_after_ms: t.not_after_ms,
        });
    }
    if revoked.is_revoked(RevocationKind::WriteToken, &t.token_id) {
        return Err(Error::Revoked("write token"));
    }
    KeyId::from_slice(&t.writer_key_id, "write_token.writer_key_id")?;
    write_token_writer_key(&t)?;
    Ok(Verified::new(t))
}

// ---------------------------------------------------------------------------------------------
// Process tokens

/// What a verified process token grants.
#[derive(Clone, Debug)]
pub struct ProcessGrant {
    /// The token as signed.
    pub token: v1::ProcessToken,
    /// Its policy, parsed.
    pub policy: Policy,
    /// The receiver's HPKE key for output shares.
    pub receiver_hpke_key: HpkePublicKey,
}

/// What the owner grants in a process token.
#[derive(Clone, Debug)]
pub struct ProcessTokenInput<'a> {
    /// Inputs the nodes may use.
    pub policy: &'a Policy,
    /// The receiver's PRE key id.
    pub receiver_key_id: KeyId,
    /// The receiver's signing key id (it signs jobs).
    pub receiver_sig_key_id: KeyId,
    /// Where output shares go.
    pub receiver_hpke_key: &'a HpkePublicKey,
    /// Admissible functions with their exact parameters.
    pub grants: Vec<v1::FunctionGrant>,
    /// Expiry.
    pub not_after_ms: u64,
}

/// Issues a process token.
pub fn issue_process_token<R: RngCore + CryptoRng>(
    owner: &SigningKey,
    input: &ProcessTokenInput<'_>,
    rng: &mut R,
) -> Vec<u8> {
    let body = v1::ProcessToken {
        version: WIRE_VERSION,
        token_id: random_id(rng),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        policy: input.policy.canonical().to_owned(),
        receiver_key_id: input.receiver_key_id.0.to_vec(),
        receiver_sig_key_id: input.receiver_sig_key_id.0.to_vec(),
        receiver_hpke_key: input.receiver_hpke_key.to_bytes(),
        grants: input.grants.clone(),
        not_after_ms: input.not_after_ms,
    };
    owner.sign_to_vec(SigDomain::ProcessToken, body.encode_to_vec())
}

/// Verifies a process token under `owner` at `now_ms`: signature, content, expiry and revocation
/// ([`verify_process_token_content`], then [`ProcessGrant::check_valid`]).
pub fn verify_process_token(
    bytes: &[u8],
    owner: &VerifyingKey,
    revoked: &RevocationSet,
    now_ms: u64,
) -> Result<Verified<ProcessGrant>> {
    let g = verify_process_token_content(bytes, owner)?.into_inner();
    g.check_valid(owner, revoked, now_ms)?;
    Ok(Verified::new(g))
}

/// The time-independent part of [`verify_process_token`]: the signature under `owner` and the
/// content (canonical policy, key ids, the receiver's HPKE key, grants). A node does this once per
/// token when it folds the token topic and [`ProcessGrant::check_valid`] at every job.
pub fn verify_process_token_content(
    bytes: &[u8],
    owner: &VerifyingKey,
) -> Result<Verified<ProcessGrant>> {
    let t: v1::ProcessToken = open_signed(
        bytes,
        MAX_CONTROL_BYTES,
        owner,
        SigDomain::ProcessToken,
        "ProcessToken",
    )?;
    check_version("ProcessToken", t.version)?;
    check_signer(&t.owner_sig_key_id, owner, "process token")?;
    let policy = Policy::parse(&t.policy)?;
    if policy.canonical() != t.policy {
        return Err(Error::InvalidField {
            field: "process_token.policy",
            reason: "not canonical policy text",
        });
    }
    KeyId::from_slice(&t.receiver_key_id, "process_token.receiver_key_id")?;
    KeyId::from_slice(&t.receiver_sig_key_id, "process_token.receiver_sig_key_id")?;
    let receiver_hpke_key = HpkePublicKey::from_bytes(&t.receiver_hpke_key)?;
    if t.grants
        .iter()
        .any(|g| g.distance >= 1 << 16 || g.function.is_empty())
    {
        return Err(Error::InvalidField {
            field: "process_token.grants",
            reason: "function named and distance below 2^16",
        });
    }
    Ok(Verified::new(ProcessGrant {
        token: t,
        policy,
        receiver_hpke_key,
    }))
}

impl ProcessGrant {
    /// Whether the token is still good at `now_ms`: signed by `owner`'s current key (a rotated
    /// owner key no longer vouches for it), unexpired and unrevoked.
    pub fn check_valid(
        &self,
        owner: &VerifyingKey,
        revoked: &RevocationSet,
        now_ms: u64,
    ) -> Result<()> {
        check_signer(&self.token.owner_sig_key_id, owner, "process token")?;
        if now_ms > self.token.not_after_ms {
            return Err(Error::Expired {
                what: "process token",
                now_ms,
                not_before_ms: 0,
                not_after_ms: self.token.not_after_ms,
            });
        }
        if revoked.is_revoked(RevocationKind::ProcessToken, &self.token.token_id) {
            return Err(Error::Revoked("process token"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Re-key uploads

/// A verified re-key with what the owner said about it.
#[derive(Clone, Debug)]
pub struct ReKeyGrant {
    /// The re-key (points validated, G2 points prepared).
    pub rk: ReKey,
    /// Device, service or MPC node.
    pub receiver_kind: ReceiverKind,
    /// The receiver's id.
    pub receiver_id: String,
    /// Expiry, if any.
    pub not_after_ms: Option<u64>,
    /// Replay history from this epoch, if asked.
    pub history_from_epoch: Option<u64>,
}

/// What the owner says about a re-key it uploads.
#[derive(Clone, Debug)]
pub struct ReKeyUploadInput<'a> {
    /// Kind of receiver.
    pub receiver_kind: ReceiverKind,
    /// Receiver id.
    pub receiver_id: &'a str,
    /// Expiry.
    pub not_after_ms: Option<u64>,
    /// History replay start.
    pub history_from_epoch: Option<u64>,
}

/// Signs a re-key upload (domain `at/v1/rekey`) over the whole encoded re-key and its metadata.
pub fn issue_rekey_upload(owner: &SigningKey, rk: &ReKey, input: &ReKeyUploadInput<'_>) -> Vec<u8> {
    let body = v1::ReKeyUpload {
        version: WIRE_VERSION,
        rk: rk.encode(),
        receiver_kind: input.receiver_kind as i32,
        receiver_id: input.receiver_id.to_owned(),
        receiver_key_id: rk.receiver_key_id().0.to_vec(),
        owner_sig_key_id: owner.key_id().0.to_vec(),
        not_after_ms: input.not_after_ms,
        history_from_epoch: input.history_from_epoch,
    };
    owner.sign_to_vec(SigDomain::ReKey, body.encode_to_vec())
}

/// Verifies a re-key upload: signed by the owner's registered signing key, the re-key is for that
/// owner's PRE key, receiver ids agree, not expired, not revoked; every point validated.
pub fn verify_rekey_upload(
    bytes: &[u8],
    owner_sig: &VerifyingKey,
    owner_pre_key_id: KeyId,
    revoked: &RevocationSet,
    now_ms: u64,
) -> Result<Verified<ReKeyGrant>> {
    let u: v1::ReKeyUpload = open_signed(
        bytes,
        MAX_REKEY_BYTES + 1024,
        owner_sig,
        SigDomain::ReKey,
        "ReKeyUpload",
    )?;
    check_version("ReKeyUpload", u.version)?;
    check_signer(&u.owner_sig_key_id, owner_sig, "re-key upload")?;
    let rk = ReKey::decode(&u.rk)?;
    if rk.owner_key_id() != owner_pre_key_id {
        return Err(Error::KeyMismatch("re-key is for another owner PRE key"));
    }
    if u.receiver_key_id.as_slice() != rk.receiver_key_id().0.as_slice() {
        return Err(Error::Mismatch(
            "upload names another receiver key than its re-key",
        ));
    }
    let receiver_kind = ReceiverKind::try_from(u.receiver_kind)
        .ok()
        .filter(|k| *k != ReceiverKind::Unspecified)
        .ok_or(Error::InvalidField {
            field: "rekey_upload.receiver_kind",
            reason: "unknown receiver kind",
        })?;
    // Services and nodes are named by their id; devices by `{twin}/{device}` (their MQTT user name).
    match u.receiver_id.split_once('/') {
        Some((twin, device)) if receiver_kind == ReceiverKind::Device => {
            crate::ids::check_id(twin, "rekey_upload.receiver_id twin")?;
            crate::ids::check_id(device, "rekey_upload.receiver_id device")?;
        }
        _ => crate::ids::check_id(&u.receiver_id, "rekey_upload.receiver_id")?,
    }
    if let Some(na) = u.not_after_ms {
        if now_ms > na {
            return Err(Error::Expired {
                what: "re-key",
                now_ms,
                not_before_ms: 0,
                not_after_ms: na,
            });
        }
    }
    if revoked.is_revoked(RevocationKind::Rekey, rk.rk_id()) {
        return Err(Error::Revoked("re-key"));
    }
    Ok(Verified::new(ReKeyGrant {
        rk,
        receiver_kind,
        receiver_id: u.receiver_id,
        not_after_ms: u.not_after_ms,
        history_from_epoch: u.history_from_epoch,
    }))
}
