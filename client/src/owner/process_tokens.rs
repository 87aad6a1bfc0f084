//! Phase 2+ process tokens (envelope.md "Tokens"): the owner lets a receiver have MPC nodes compute
//! exactly one function with fixed parameters over the owner's shares, and revokes it again.
//! Tokens and their revocations go to at.tokens.v1 under the token id; the ledger (grants.json)
//! remembers them beside the re-keys.

use armored_base::time::now_ms;
use armored_crypto::identity::{fingerprint, verify_pinned_identity, PartyIdentity};
use armored_crypto::kpcpre::Policy;
use armored_crypto::tokens::{
    issue_process_token, issue_revocation, verify_process_token, ProcessTokenInput, RevocationKind,
    RevocationSet,
};
use armored_schemas::v1::{control_record, FunctionGrant};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use super::{control, LedgerEntry, Owner};
use crate::error::{key, parse, ClientError, Result};
use crate::kafka::Ctl;

/// The one function process tokens grant today.
pub const CONTACT_TRACING: &str = "contact-tracing/v1";

/// What a process token grants, as the owner's ledger remembers it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// Function name.
    pub function: String,
    /// Exact contact distance d.
    pub distance: u32,
    /// Slot length the windows are counted in.
    pub slot_len_ms: u64,
    /// Windows start on multiples of this many slots.
    pub window_alignment: u32,
    /// The window length, in slots (nodes admit exactly this length; once "smallest window").
    pub min_window_slots: u32,
    /// Jobs per (participant, window).
    pub max_jobs_per_window: u32,
    /// The designator's party id.
    pub designator: String,
    /// Designator signing key id (hex).
    pub designator_key_id: String,
    /// Expiry (unix ms).
    pub not_after_ms: u64,
}

/// What the owner asks for in `atctl owner process-token`.
#[derive(Clone, Debug)]
pub struct ProcessTokenRequest {
    /// The receiver's identity file (who submits jobs and gets the output shares).
    pub receiver_identity: Vec<u8>,
    /// The designator's identity file (who names the reference twin).
    pub designator_identity: Vec<u8>,
    /// Function, exactly [`CONTACT_TRACING`].
    pub function: String,
    /// Contact distance d (< 2^16).
    pub distance: u32,
    /// Slot length (must equal the devices' enrolled slot length).
    pub slot_len_ms: u64,
    /// The window length L in slots: jobs run over [k·L, (k+1)·L) only, so that no two windows
    /// overlap and jobs cannot be differenced (on the wire: `window_alignment` and
    /// `min_window_slots`, both L). Nodes refuse windows over their `max_window_slots` (2016 by
    /// default).
    pub window_slots: u32,
    /// Job budget per window.
    pub max_jobs_per_window: u32,
    /// Expiry (unix ms).
    pub not_after_ms: u64,
    /// Policy every input share must satisfy; `None`: [`default_policy`] of `twins`.
    pub policy: Option<String>,
    /// Twins the default policy is scoped to (empty: all of the owner's twins).
    pub twins: Vec<String>,
}

/// The default policy of a process token: shares of location points, `mpc-share AND location`,
/// scoped to the given twins if any (`... AND (twin:a OR twin:b)`). It names no `node-j`: every
/// node checks it against its own shares, which carry only their own node attribute.
pub fn default_policy(twins: &[String]) -> Result<String> {
    for t in twins {
        armored_crypto::envelope::check_id(t, "twin id")?;
    }
    Ok(match twins {
        [] => "mpc-share AND location".to_string(),
        [t] => format!("mpc-share AND location AND twin:{t}"),
        ts => format!(
            "mpc-share AND location AND ({})",
            ts.iter()
                .map(|t| format!("twin:{t}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    })
}

fn party(bytes: &[u8], what: &str) -> Result<PartyIdentity> {
    verify_pinned_identity(bytes, &fingerprint(bytes))
        .map(|v| v.into_inner())
        .map_err(key(format!("the {what} identity file does not verify")))
}

impl Owner {
    /// Phase 2+: issues a process token to the receiver for one function with exact parameters,
    /// publishes it on at.tokens.v1 (key = token id, hex) and records it in the ledger. Returns the
    /// token id (hex) and the signed token.
    pub async fn process_token(
        &self,
        ctl: &Ctl,
        req: &ProcessTokenRequest,
    ) -> Result<(String, Vec<u8>)> {
        if req.function != CONTACT_TRACING {
            return Err(ClientError::Invalid(format!(
                "unknown function {:?} (only {CONTACT_TRACING})",
                req.function
            )));
        }
        if req.distance == 0 || req.distance >= 1 << 16 {
            return Err(ClientError::Invalid(
                "--distance must be in 1..65536".into(),
            ));
        }
        if req.slot_len_ms == 0 || req.window_slots == 0 || req.max_jobs_per_window == 0 {
            return Err(ClientError::Invalid(
                "slot length, window length and job budget must be positive".into(),
            ));
        }
        if req.not_after_ms <= now_ms() {
            return Err(ClientError::Invalid("--until is in the past".into()));
        }
        let receiver = party(&req.receiver_identity, "receiver")?;
        let designator = party(&req.designator_identity, "designator")?;
        let text = match &req.policy {
            Some(p) => p.clone(),
            None => default_policy(&req.twins)?,
        };
        let policy = Policy::parse(&text).map_err(|reason| ClientError::Policy {
            text: text.clone(),
            reason,
        })?;
        let grant = FunctionGrant {
            function: req.function.clone(),
            distance: req.distance,
            slot_len_ms: req.slot_len_ms,
            window_alignment: req.window_slots,
            min_window_slots: req.window_slots,
            max_jobs_per_window: req.max_jobs_per_window,
            reference_designator_key_id: designator.sig.key_id().0.to_vec(),
        };
        let token = issue_process_token(
            &self.sig,
            &ProcessTokenInput {
                policy: &policy,
                receiver_key_id: receiver.pre.key_id(),
                receiver_sig_key_id: receiver.sig.key_id(),
                receiver_hpke_key: &receiver.hpke,
                grants: vec![grant],
                not_after_ms: req.not_after_ms,
            },
            &mut OsRng,
        );
        // What we publish must verify exactly as the nodes will verify it.
        let v = verify_process_token(
            &token,
            self.sig.verifying_key(),
            &RevocationSet::default(),
            now_ms(),
        )?;
        let id = hex::encode(&v.token.token_id);
        ctl.send(
            &ctl.topics.tokens(),
            &id,
            &control(control_record::Record::ProcessToken(token.clone())),
        )
        .await?;
        let mut ledger = self.ledger()?;
        ledger.push(LedgerEntry {
            rk_id: id.clone(),
            receiver_kind: "process-token".into(),
            receiver_id: receiver.party_id.clone(),
            policy: policy.canonical().to_string(),
            issued_ms: now_ms(),
            revoked: false,
            receiver_key: receiver.pre.key_id().to_string(),
            node_index: None,
            token: Some(TokenInfo {
                function: req.function.clone(),
                distance: req.distance,
                slot_len_ms: req.slot_len_ms,
                window_alignment: req.window_slots,
                min_window_slots: req.window_slots,
                max_jobs_per_window: req.max_jobs_per_window,
                designator: designator.party_id.clone(),
                designator_key_id: designator.sig.key_id().to_string(),
                not_after_ms: req.not_after_ms,
            }),
            window: Default::default(),
        });
        self.save_ledger(&ledger)?;
        Ok((id, token))
    }

    /// Revokes a process token: a signed revocation on at.tokens.v1 under the token's own key
    /// (sticky at every node). Jobs already computed are not recalled.
    pub async fn revoke_process_token(&self, ctl: &Ctl, token_id_hex: &str) -> Result<()> {
        let id = hex::decode(token_id_hex).map_err(parse("a token id is hex"))?;
        if id.len() != 16 {
            return Err(ClientError::Invalid(
                "a token id is 16 bytes (32 hex digits)".into(),
            ));
        }
        let r = issue_revocation(&self.sig, RevocationKind::ProcessToken, &id, now_ms(), None);
        ctl.send(
            &ctl.topics.tokens(),
            token_id_hex,
            &control(control_record::Record::Revocation(r)),
        )
        .await?;
        let mut ledger = self.ledger()?;
        for e in ledger
            .iter_mut()
            .filter(|e| e.rk_id == token_id_hex && e.token.is_some())
        {
            e.revoked = true;
        }
        self.save_ledger(&ledger)
    }
}

/// `--until`: a duration from now (`90s`, `30m`, `12h`, `7d`), unix milliseconds, or an RFC 3339
/// UTC time (`2027-01-31T12:00:00Z`). Returns unix ms (`crate::when::parse_until`).
pub fn parse_until(text: &str, now_ms: u64) -> Result<u64> {
    crate::when::parse_until(text, now_ms)
        .map_err(|e| ClientError::Invalid(format!("--until: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_forms() -> Result<()> {
        assert_eq!(parse_until("90s", 1_000)?, 91_000);
        assert_eq!(parse_until("2d", 0)?, 172_800_000);
        assert_eq!(parse_until("1700000000000", 5)?, 1_700_000_000_000);
        assert_eq!(parse_until("2023-11-14T22:13:20Z", 0)?, 1_700_000_000_000);
        assert_eq!(parse_until("2000-03-01T00:00:00Z", 0)?, 951_868_800_000);
        assert!(parse_until("tomorrow", 0).is_err());
        assert!(parse_until("2023-13-01T00:00:00Z", 0).is_err());
        Ok(())
    }

    #[test]
    fn default_policies() -> Result<()> {
        assert_eq!(default_policy(&[])?, "mpc-share AND location");
        assert_eq!(
            default_policy(&["a".into(), "b".into()])?,
            "mpc-share AND location AND (twin:a OR twin:b)"
        );
        assert!(default_policy(&["Bad".into()]).is_err());
        for p in [default_policy(&[])?, default_policy(&["a".into()])?] {
            Policy::parse(&p)?;
        }
        Ok(())
    }
}
