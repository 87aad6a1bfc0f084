//! Write tokens (phase 2 step 2): the owner lets a pinned service write one twin until a time.
//! The token is an owner-signed `WriteToken` (carrying the writer's key) on `at.tokens.v1` under
//! its id; devices accept the writer's state changes while it is valid and unrevoked. The owner
//! keeps a ledger (`write-tokens.json`) beside the re-key ledger; a revocation goes to the same
//! topic under the same key and reaches devices in their twin's roster.

use std::path::PathBuf;

use armored_base::time::now_ms;
use armored_crypto::identity::{fingerprint, verify_pinned_identity};
use armored_crypto::tokens::{
    issue_revocation, issue_write_token_for, verify_write_token_signature, RevocationKind,
};
use armored_schemas::v1::control_record::Record;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::{key, parse, ClientError, Result};
use crate::files;
use crate::kafka::Ctl;
use crate::owner::{control, Owner};

/// One issued write token, as the owner remembers it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriteTokenEntry {
    /// Hex token id.
    pub token_id: String,
    /// The twin it lets the writer write.
    pub twin_id: String,
    /// The writer's party id.
    pub writer_id: String,
    /// The writer's signing key id (hex).
    pub writer_key: String,
    /// Validity.
    pub not_before_ms: u64,
    /// Validity.
    pub not_after_ms: u64,
    /// Revoked by this owner.
    pub revoked: bool,
}

fn ledger_path(owner: &Owner) -> PathBuf {
    owner.dir().join("write-tokens.json")
}

/// The write tokens this owner issued.
pub fn ledger(owner: &Owner) -> Result<Vec<WriteTokenEntry>> {
    let p = ledger_path(owner);
    if !p.exists() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&files::read(&p)?).map_err(|source| ClientError::Json {
        what: format!("{} is not a ledger of write tokens", p.display()),
        source,
    })
}

fn save(owner: &Owner, l: &[WriteTokenEntry]) -> Result<()> {
    files::replace_json(&ledger_path(owner), l, "the ledger of write tokens", false)
}

/// Issues a write token for the party whose identity file is `writer_identity`, for `twin_id`,
/// valid from `not_before_ms` to `not_after_ms`; publishes it and returns (entry, signed token).
pub async fn issue(
    owner: &Owner,
    ctl: &Ctl,
    writer_identity: &[u8],
    twin_id: &str,
    not_before_ms: u64,
    not_after_ms: u64,
) -> Result<(WriteTokenEntry, Vec<u8>)> {
    armored_crypto::envelope::check_id(twin_id, "twin id")?;
    if not_after_ms <= not_before_ms {
        return Err(ClientError::Invalid(
            "a write token must end after it starts".into(),
        ));
    }
    let writer = verify_pinned_identity(writer_identity, &fingerprint(writer_identity))
        .map_err(key("the writer's identity file does not verify"))?
        .into_inner();
    let token = issue_write_token_for(
        owner.signing_key(),
        twin_id,
        &writer.sig,
        not_before_ms,
        not_after_ms,
        &mut OsRng,
    );
    let t = verify_write_token_signature(&token, &owner.verifying_key())?;
    let id = hex::encode(&t.token_id);
    ctl.send(
        &ctl.topics.tokens(),
        &id,
        &control(Record::WriteToken(token.clone())),
    )
    .await?;
    let entry = WriteTokenEntry {
        token_id: id,
        twin_id: twin_id.into(),
        writer_id: writer.party_id.clone(),
        writer_key: writer.sig.key_id().to_string(),
        not_before_ms,
        not_after_ms,
        revoked: false,
    };
    let mut l = ledger(owner)?;
    l.push(entry.clone());
    save(owner, &l)?;
    Ok((entry, token))
}

/// Revokes a write token (sticky; same topic and key as the token).
pub async fn revoke(owner: &Owner, ctl: &Ctl, token_id_hex: &str) -> Result<()> {
    let id = hex::decode(token_id_hex).map_err(parse("a token id is hex"))?;
    if id.len() != 16 {
        return Err(ClientError::Invalid(
            "a token id is 16 bytes (32 hex digits)".into(),
        ));
    }
    let r = issue_revocation(
        owner.signing_key(),
        RevocationKind::WriteToken,
        &id,
        now_ms(),
        None,
    );
    ctl.send(
        &ctl.topics.tokens(),
        token_id_hex,
        &control(Record::Revocation(r)),
    )
    .await?;
    let mut l = ledger(owner)?;
    for e in l.iter_mut().filter(|e| e.token_id == token_id_hex) {
        e.revoked = true;
    }
    save(owner, &l)
}
