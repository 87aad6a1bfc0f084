//! Re-key uploads: the owner signs a re-key and what it says about it (receiver, expiry,
//! history).

use armored_schemas::limits::MAX_REKEY_BYTES;
use armored_schemas::{v1, WIRE_VERSION};
use prost::Message;

use super::{check_signer, open_signed, ReceiverKind, RevocationKind, RevocationSet};
use crate::domain::SigDomain;
use crate::error::{check_version, Error, Result};
use crate::keyid::KeyId;
use crate::kpcpre::ReKey;
use crate::sig::{SigningKey, VerifyingKey};
use crate::verified::Verified;

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
    /// The first epoch it admits (and replays the stored history from), if any.
    pub history_from_epoch: Option<u64>,
    /// The first epoch it no longer admits, if any: with `history_from_epoch`, a time-windowed
    /// grant.
    pub until_epoch: Option<u64>,
}

impl ReKeyGrant {
    /// Whether the grant admits an envelope of `epoch`: inside [`history_from_epoch`, `until_epoch`).
    /// The workers check this before a ReEnc, live and in history replays.
    ///
    /// [`history_from_epoch`]: Self::history_from_epoch
    /// [`until_epoch`]: Self::until_epoch
    pub fn admits_epoch(&self, epoch: u64) -> bool {
        self.history_from_epoch.is_none_or(|f| epoch >= f)
            && self.until_epoch.is_none_or(|u| epoch < u)
    }
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
    /// The first epoch admitted (and the history replay's start).
    pub history_from_epoch: Option<u64>,
    /// The first epoch no longer admitted.
    pub until_epoch: Option<u64>,
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
        until_epoch: input.until_epoch,
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
    if let (Some(from), Some(until)) = (u.history_from_epoch, u.until_epoch) {
        if until <= from {
            return Err(Error::InvalidField {
                field: "rekey_upload.until_epoch",
                reason: "the window admits no epoch (until is not after from)",
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
        until_epoch: u.until_epoch,
    }))
}
