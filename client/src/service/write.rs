//! `atctl service write`: a processing service writes a twin's state with a write token (phase 2
//! step 2, phase 4 step 3). The state change is signed with the service's own key, carries the
//! owner-signed token, is sealed for the twin's owner like a device's change (epoch key of its
//! attribute set), and goes straight to `at.sync.v1` (the service is a Kafka client, not behind
//! the MQTT edge). Devices accept it only while the token is valid and unrevoked.

use std::path::Path;

use armored_base::time::now_ms;
use armored_crypto::envelope::{seal_state_change, StateChangeInput};
use armored_crypto::epoch::{epoch_of, EpochKeyManager};
use armored_crypto::registry::Registry;
use armored_crypto::tokens::{verify_write_token, RevocationSet};
use rand_core::OsRng;

use crate::error::{key, parse, ClientError, Result};
use crate::files;
use crate::kafka::Ctl;
use crate::request::Requester;

/// What to write.
#[derive(Clone, Debug)]
pub struct Write<'a> {
    /// Twin.
    pub twin_id: &'a str,
    /// The signed write token (file contents).
    pub token: &'a [u8],
    /// A JSON object of field updates.
    pub delta: serde_json::Value,
    /// Attributes (the twin attribute is added).
    pub attributes: &'a [&'a str],
    /// Check the token before sending (off only to test receivers).
    pub check_token: bool,
}

/// Takes the service's next sequence number (persisted, so receivers never see one twice).
fn next_seq(dir: &Path) -> Result<u64> {
    let p = dir.join("write-seq");
    let seq = match std::fs::read_to_string(&p) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map_err(parse(format!("{} is not a number", p.display())))?,
        Err(_) => 0,
    };
    let tmp = p.with_extension("tmp");
    files::write(&tmp, (seq + 1).to_string())?;
    files::rename(&tmp, &p)?;
    Ok(seq)
}

/// Seals the state change (returns the envelope and its seq) without sending it.
pub fn seal(reg: &Registry, dir: &Path, w: &Write<'_>, now: u64) -> Result<(Vec<u8>, u64)> {
    let who = Requester::open(dir)?;
    if !w.delta.is_object() {
        return Err(ClientError::Invalid(
            "--delta must be a JSON object of field updates".into(),
        ));
    }
    let owner = reg.twin_owner(w.twin_id).ok_or_else(|| {
        ClientError::NotFound(format!("twin {} is not in the registry", w.twin_id))
    })?;
    if w.check_token {
        let t = verify_write_token(w.token, &owner.sig, &RevocationSet::default(), now).map_err(
            key("the write token is not valid for this twin's owner now"),
        )?;
        if t.twin_id != w.twin_id || t.writer_key_id != who.signing_key().key_id().0.as_slice() {
            return Err(ClientError::Refused(
                "the write token is for another twin or another writer".into(),
            ));
        }
    }
    let epoch_len = reg
        .twin(w.twin_id)
        .and_then(|t| t.devices.values().next())
        .map(|d| d.enrollment.epoch_len_ms)
        .unwrap_or(3_600_000);
    let mut keys = EpochKeyManager::new(owner.pre.clone(), w.twin_id)?;
    let key = keys.key_for(epoch_of(now, epoch_len), w.attributes, &mut OsRng)?;
    let seq = next_seq(dir)?;
    let env = seal_state_change(
        key,
        who.signing_key(),
        &StateChangeInput {
            device_id: who.id.clone(),
            seq,
            observed_at_ms: now,
            delta: w.delta.to_string().into_bytes(),
            write_token: Some(w.token.to_vec()),
            expires_at_ms: 0,
        },
        &mut OsRng,
    )?;
    Ok((env, seq))
}

/// Seals and writes the change to `at.sync.v1`; returns its seq.
pub async fn write(ctl: &Ctl, dir: &Path, w: &Write<'_>) -> Result<u64> {
    let reg = ctl.registry().await?;
    let (env, seq) = seal(&reg, dir, w, now_ms())?;
    ctl.send(&ctl.topics.sync(), w.twin_id, &env).await?;
    Ok(seq)
}
