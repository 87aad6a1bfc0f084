//! Job admission (Protocol 2 phase 6+ step 2; envelope.md, "Tokens"): for the reference twin and
//! every participant, the owner's process token must exist, be unexpired and unrevoked, name this
//! job's service as its receiver, and grant `contact-tracing/v1` with exactly the job's distance,
//! one of the grant's windows, and a designator whose signed statement names the reference twin for
//! this window.
//!
//! Windows cannot be differenced: a grant's windows are tiles of exactly its window length L
//! (`min_window_slots` on the wire), starting on multiples of L (and of `window_alignment`), so
//! any two admitted windows are the same or disjoint and the budget of a window is the budget of
//! each of its slots. (With windows of any length above a minimum, jobs over [s, s+50) and
//! [s, s+51) differed by one slot's contact.) A job's window and its size (participants × slots,
//! what every node allocates) are bounded by the node's configuration. Every node runs the same checks on the same records, so a
//! job that fails one fails on every node with the same reason.

use std::collections::HashSet;

use armored_crypto::designation::verify_designation;
use armored_crypto::hpke::HpkePublicKey;
use armored_crypto::kpcpre::{AttributeSet, Policy};
use armored_crypto::mpcjob::SignedJob;
use armored_crypto::registry::Registry;
use armored_crypto::{Error as CryptoError, KeyId};
use armored_mpc::job::{ContactTracingParams, Function, SlotWindow, DISTANCE_LIMIT};
use armored_schemas::v1;

use crate::tokens::TokenStore;

/// A refused job: a bounded reason (published in `JobFailed` and counted) and a detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Bounded label.
    pub reason: &'static str,
    /// Human-readable detail (ids only).
    pub detail: String,
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Reject {
    Reject {
        reason,
        detail: detail.into(),
    }
}

/// What a participant's token admits as input.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The twin.
    pub twin_id: String,
    /// Input shares must satisfy this policy.
    pub policy: Policy,
    /// ... and come from capsules of this owner.
    pub owner_sig_key_id: KeyId,
    /// The grant's job budget for this twin and window.
    pub max_jobs_per_window: u32,
}

/// An admitted job.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The engine's view.
    pub job: armored_mpc::job::Job,
    /// The reference twin's admission.
    pub reference: Admission,
    /// The participants' admissions, in output order.
    pub participants: Vec<Admission>,
    /// Where output shares go (the service's HPKE key, as every token names it).
    pub receiver: HpkePublicKey,
    /// Inputs received after this instant are not used (window end plus the skew bound).
    pub cutoff_ms: u64,
    /// The slot length every token grants: only shares of devices enrolled with it are inputs.
    pub slot_len_ms: u64,
}

/// What a node knows of its deployment.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The node ids in index order.
    pub nodes: [String; 3],
    /// Largest number of participants.
    pub max_participants: usize,
    /// Clock-skew bound added to the window's end.
    pub cutoff_skew_ms: u64,
    /// Longest window, in slots.
    pub max_window_slots: u32,
    /// Largest (participants + 1) × window slots: the inputs every node allocates for a job.
    pub max_job_inputs: u64,
}

/// Checks a verified job at `now_ms`.
pub fn admit(
    signed: &SignedJob,
    attempt: u32,
    registry: &Registry,
    tokens: &TokenStore,
    deployment: &Deployment,
    now_ms: u64,
) -> Result<Admitted, Reject> {
    let (nodes, max_participants) = (&deployment.nodes, deployment.max_participants);
    let cutoff_skew_ms = deployment.cutoff_skew_ms;
    let job = &signed.job;
    if job.function != Function::CONTACT_TRACING_V1 {
        return Err(reject("unsupported_function", job.function.clone()));
    }
    if job.node_ids.as_slice() != nodes.as_slice() {
        return Err(reject(
            "wrong_nodes",
            format!(
                "job names nodes {:?}, this deployment is {nodes:?}",
                job.node_ids
            ),
        ));
    }
    if job.distance >= DISTANCE_LIMIT || job.window_slots == 0 {
        return Err(reject(
            "bad_parameters",
            "distance below 2^16 and a non-empty window",
        ));
    }
    if job.participants.is_empty() || job.participants.len() > max_participants {
        return Err(reject(
            "bad_parameters",
            format!(
                "1 to {max_participants} participants (got {})",
                job.participants.len()
            ),
        ));
    }
    if job.window_slots > deployment.max_window_slots {
        return Err(reject(
            "window_too_long",
            format!(
                "{} slots, over this deployment's {}",
                job.window_slots, deployment.max_window_slots
            ),
        ));
    }
    let inputs = (job.participants.len() as u64 + 1).saturating_mul(u64::from(job.window_slots));
    if inputs > deployment.max_job_inputs {
        return Err(reject(
            "job_too_large",
            format!(
                "(participants + 1) × slots = {inputs}, over this deployment's {}",
                deployment.max_job_inputs
            ),
        ));
    }
    let reference = job
        .reference
        .as_ref()
        .ok_or_else(|| reject("bad_parameters", "no reference twin"))?;
    let mut seen = HashSet::new();
    if job
        .participants
        .iter()
        .any(|p| !seen.insert(p.twin_id.as_str()))
    {
        return Err(reject("bad_parameters", "a participant is listed twice"));
    }
    let service = registry
        .party(&job.service_id)
        .ok_or_else(|| reject("unknown_service", job.service_id.clone()))?;
    let window = SlotWindow {
        first_slot: job.window_start_slot,
        slots: job.window_slots,
    };
    let designator = KeyId::from_slice(&job.designator_key_id, "designator_key_id")
        .map_err(|e| reject("designation_invalid", e.to_string()))?;

    let check = |p: &v1::JobParticipant| -> Result<(Admission, u64), Reject> {
        let who = &p.twin_id;
        let owner = registry
            .twin_owner(who)
            .ok_or_else(|| reject("unknown_twin", who.clone()))?;
        let grant = tokens.token(&p.token_id).ok_or_else(|| {
            reject(
                "missing_token",
                format!("no process token {} for {who}", hex::encode(&p.token_id)),
            )
        })?;
        let revoked = tokens.revocations(&owner.sig.key_id());
        match grant.check_valid(&owner.sig, revoked, now_ms) {
            Ok(()) => {}
            Err(CryptoError::Expired { .. }) => return Err(reject("expired_token", who.clone())),
            Err(CryptoError::Revoked(_)) => return Err(reject("revoked_token", who.clone())),
            // Signed by another owner than the twin's.
            Err(e @ (CryptoError::BadSignature(_) | CryptoError::UnknownSigner(_))) => {
                return Err(reject("wrong_owner", format!("{who}: {e}")))
            }
            Err(e) => return Err(reject("invalid_token", format!("{who}: {e}"))),
        }
        let t = &grant.token;
        if t.receiver_sig_key_id.as_slice() != service.sig.key_id().0.as_slice()
            || grant.receiver_hpke_key != service.hpke
        {
            return Err(reject(
                "wrong_receiver",
                format!("{who}: token is for another receiver"),
            ));
        }
        let g = t
            .grants
            .iter()
            .find(|g| g.function == job.function)
            .ok_or_else(|| reject("function_not_granted", who.clone()))?;
        if g.distance != job.distance {
            return Err(reject(
                "parameters_not_granted",
                format!(
                    "{who}: distance {} is not the granted {}",
                    job.distance, g.distance
                ),
            ));
        }
        if !is_granted_window(g, job.window_start_slot, job.window_slots) {
            return Err(reject(
                "window_not_granted",
                format!(
                    "{who}: the grant's windows are exactly {len} slots, starting on multiples \
                     of {len} and of {}",
                    g.window_alignment,
                    len = g.min_window_slots,
                ),
            ));
        }
        if g.reference_designator_key_id.as_slice() != designator.0.as_slice() {
            return Err(reject(
                "designation_invalid",
                format!("{who}: another designator is granted"),
            ));
        }
        Ok((
            Admission {
                twin_id: who.clone(),
                policy: grant.policy.clone(),
                owner_sig_key_id: owner.sig.key_id(),
                max_jobs_per_window: g.max_jobs_per_window,
            },
            g.slot_len_ms,
        ))
    };

    let (reference_adm, slot_len) = check(reference)?;
    if slot_len == 0 {
        return Err(reject("invalid_token", "the grant names no slot length"));
    }
    let mut participants = Vec::with_capacity(job.participants.len());
    for p in &job.participants {
        let (a, len) = check(p)?;
        if len != slot_len {
            return Err(reject(
                "parameters_not_granted",
                "tokens grant different slot lengths",
            ));
        }
        participants.push(a);
    }

    // The designator's statement: signed by the granted key, naming this reference and window.
    let d_party = registry.party_by_sig_key(&designator).ok_or_else(|| {
        reject(
            "designation_invalid",
            "designator is not a registered party",
        )
    })?;
    let d = verify_designation(&job.designation, &d_party.sig)
        .map_err(|e| reject("designation_invalid", e.to_string()))?;
    if d.reference_twin_id != reference.twin_id
        || d.window_start_slot != job.window_start_slot
        || d.window_slots != job.window_slots
    {
        return Err(reject(
            "reference_not_designated",
            "the designation names another twin or window",
        ));
    }

    // The window's end, in slots then ms, both from signed but untrusted job fields: a window
    // past u64::MAX is refused here (the node's gather adds slots to first_slot without checks).
    let window_end_ms = job
        .window_start_slot
        .checked_add(u64::from(job.window_slots))
        .and_then(|end| end.checked_mul(slot_len))
        .ok_or_else(|| reject("bad_parameters", "window out of range"))?;
    let params = ContactTracingParams {
        reference: reference.twin_id.clone(),
        distance: job.distance,
        window,
    };
    params
        .validate()
        .map_err(|e| reject("bad_parameters", e.to_string()))?;
    Ok(Admitted {
        job: armored_mpc::job::Job {
            job_id: job.job_id.clone(),
            job_hash: signed.job_hash,
            attempt,
            function: Function::ContactTracingV1(params),
            participants: job.participants.iter().map(|p| p.twin_id.clone()).collect(),
        },
        reference: reference_adm,
        participants,
        receiver: service.hpke.clone(),
        cutoff_ms: window_end_ms.saturating_add(cutoff_skew_ms),
        slot_len_ms: slot_len,
    })
}

/// Whether a stored share is admissible under an admission.
pub fn admissible(a: &Admission, attributes: &[String], owner: &KeyId) -> bool {
    *owner == a.owner_sig_key_id
        && AttributeSet::new(attributes.iter().map(String::as_str))
            .is_ok_and(|s| a.policy.is_satisfied(&s))
}

/// Whether [start, start + slots) is one of the grant's windows: exactly its length L, starting on
/// a multiple of L and of its alignment. Two such windows are the same or disjoint.
pub fn is_granted_window(g: &v1::FunctionGrant, start: u64, slots: u32) -> bool {
    let len = g.min_window_slots;
    len > 0
        && g.window_alignment > 0
        && slots == len
        && start % u64::from(len) == 0
        && start % u64::from(g.window_alignment) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(alignment: u32, len: u32) -> v1::FunctionGrant {
        v1::FunctionGrant {
            window_alignment: alignment,
            min_window_slots: len,
            ..Default::default()
        }
    }

    #[test]
    fn only_the_grants_tiles_are_windows() {
        let g = grant(50, 50);
        assert!(is_granted_window(&g, 1000, 50));
        // The differencing pair: one slot longer, refused.
        assert!(!is_granted_window(&g, 1000, 51));
        // Shorter, or shifted into an overlap with a tile.
        assert!(!is_granted_window(&g, 1000, 49));
        assert!(!is_granted_window(&g, 1025, 50));
        // An alignment finer than the length does not let windows overlap.
        let fine = grant(1, 50);
        assert!(is_granted_window(&fine, 1050, 50));
        assert!(!is_granted_window(&fine, 1051, 50));
        // A coarser one skips tiles.
        let coarse = grant(100, 50);
        assert!(is_granted_window(&coarse, 1000, 50));
        assert!(!is_granted_window(&coarse, 1050, 50));
        // A grant without a length admits nothing.
        assert!(!is_granted_window(&grant(0, 50), 0, 50));
        assert!(!is_granted_window(&grant(50, 0), 0, 0));
    }

    #[test]
    fn admitted_windows_are_equal_or_disjoint() {
        // Exhaustively over a small range: the property that makes a per-window budget a per-slot one.
        for (a, len) in [(1, 3), (2, 4), (3, 3), (6, 3), (4, 6)] {
            let g = grant(a, len);
            let windows: Vec<u64> = (0..60).filter(|s| is_granted_window(&g, *s, len)).collect();
            for x in &windows {
                for y in &windows {
                    let overlap = x.max(y) < &(x.min(y) + u64::from(len));
                    assert!(
                        x == y || !overlap,
                        "grant ({a}, {len}): {x} and {y} overlap"
                    );
                }
            }
        }
    }
}
