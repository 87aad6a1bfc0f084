//! Owner-signed control records (envelope.md "Tokens, re-keys, revocations"): re-key uploads,
//! write tokens, process tokens and revocations. Each `verify_*` returns a
//! [`Verified`](crate::Verified) value only after the signature (under the record's own domain),
//! the signer's key id, expiry and revocation checks. One file per record kind; what they share
//! (the signature check, random ids) is here.

use armored_schemas::decode_strict;
use prost::Message;
use rand_core::{CryptoRng, RngCore};

use crate::domain::SigDomain;
use crate::error::{Error, Result};
use crate::sig::{decode_signed, VerifyingKey};

mod process;
mod rekey;
mod revocation;
mod write;

pub use armored_schemas::v1::{ReceiverKind, RevocationKind};
pub use process::{
    issue_process_token, verify_process_token, verify_process_token_content, ProcessGrant,
    ProcessTokenInput,
};
pub use rekey::{issue_rekey_upload, verify_rekey_upload, ReKeyGrant, ReKeyUploadInput};
pub use revocation::{issue_revocation, verify_revocation, RevocationSet};
pub use write::{
    issue_write_token, issue_write_token_for, verify_write_token, verify_write_token_signature,
    write_token_writer_key,
};

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
