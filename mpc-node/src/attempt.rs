//! One job attempt on this node (Protocol 2 phase 6+ steps 2-4): gather the admitted inputs from
//! the share store, open the peer channels (hello = the public presence pattern), agree on the
//! intersection of what the three nodes hold, run the engine, seal the output share for the
//! receiver. Runs on a blocking thread: the engine is a straight line of blocking rounds.

use std::sync::Arc;
use std::time::Duration;

use armored_mpc::error::{Error as MpcError, TransportError};
use armored_mpc::functions::contact_tracing::{run_party, PartyInputs, Track};
use armored_mpc::job::Function;
use armored_mpc::shamir::Party;

use crate::checks::{admissible, Admission, Admitted};
use crate::config::Keys;
use crate::net::PeerNet;
use crate::shares::ShareStore;

/// A failed attempt: bounded reason and detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Bounded label.
    pub reason: &'static str,
    /// Detail (indices and rounds only).
    pub detail: String,
}

/// A completed attempt.
#[derive(Debug)]
pub struct Completed {
    /// Signed `EncryptedOutputShare`.
    pub sealed: Vec<u8>,
    /// Engine rounds.
    pub rounds: u32,
    /// Peer channel bytes this node sent.
    pub bytes_sent: u64,
}

/// This node's inputs for an admitted job: per twin, the stored share of each window slot if it
/// satisfies the participant's token and arrived before the cut-off.
pub fn gather(store: &ShareStore, a: &Admitted) -> PartyInputs {
    let Function::ContactTracingV1(p) = &a.job.function else {
        return PartyInputs::default();
    };
    let w = p.window;
    let track = |adm: &Admission| {
        Track::new(
            (0..u64::from(w.slots))
                .map(|i| {
                    store
                        .get(&adm.twin_id, w.first_slot + i)
                        .filter(|s| s.received_ms <= a.cutoff_ms)
                        .filter(|s| admissible(adm, &s.attributes, &s.owner_sig_key_id))
                        .map(|s| s.point)
                })
                .collect(),
        )
    };
    PartyInputs {
        reference: track(&a.reference),
        users: a.participants.iter().map(track).collect(),
    }
}

fn presence(inputs: &PartyInputs) -> Vec<u8> {
    let bits: Vec<bool> = std::iter::once(&inputs.reference)
        .chain(&inputs.users)
        .flat_map(|t| t.slots().iter().map(Option::is_some))
        .collect();
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, b)| acc | (u8::from(*b) << i))
        })
        .collect()
}

fn restrict(inputs: &PartyInputs, keep: &[u8]) -> PartyInputs {
    let mut k = 0usize;
    let mut cut = |t: &Track| {
        Track::new(
            t.slots()
                .iter()
                .map(|s| {
                    let bit = keep.get(k / 8).is_some_and(|b| b >> (k % 8) & 1 == 1);
                    k += 1;
                    s.filter(|_| bit)
                })
                .collect(),
        )
    };
    let reference = cut(&inputs.reference);
    let users = inputs.users.iter().map(&mut cut).collect();
    PartyInputs { reference, users }
}

fn failure(e: &MpcError) -> Failure {
    let reason = match e {
        MpcError::InputMismatch => "inputs_disagree",
        MpcError::Timeout { .. }
        | MpcError::Transport {
            source: TransportError::Timeout,
            ..
        } => "timeout",
        MpcError::Transport { .. } => "peer_message_rejected",
        MpcError::MalformedMessage { .. } | MpcError::ProtocolViolation(_) => "protocol_violation",
        _ => "engine_error",
    };
    Failure {
        reason,
        detail: e.to_string(),
    }
}

fn transport_failure(stage: &str, e: &TransportError) -> Failure {
    Failure {
        reason: match e {
            TransportError::Timeout => "timeout",
            _ => "peer_message_rejected",
        },
        detail: format!("{stage}: {e}"),
    }
}

/// Runs the attempt; blocking.
pub fn run(
    net: &Arc<PeerNet>,
    keys: &Keys,
    admitted: &Admitted,
    inputs: PartyInputs,
    round_timeout: Duration,
    runtime: tokio::runtime::Handle,
) -> Result<Completed, Failure> {
    let party = Party::ALL[(keys.index - 1) as usize];
    let job = &admitted.job;
    let mut transport = net.attempt(
        job.job_hash,
        job.attempt,
        &keys.hpke,
        keys.nodes.clone().map(|n| n.hpke),
        round_timeout,
        runtime,
    );
    let mine = presence(&inputs);
    let (hellos, seeds) = transport
        .handshake(&mine)
        .map_err(|e| transport_failure("opening the peer channels", &e))?;
    if hellos.iter().any(|h| h.len() != mine.len()) {
        return Err(Failure {
            reason: "inputs_disagree",
            detail: "peers hold a job of another shape".into(),
        });
    }
    // Inputs are what all three nodes hold (a share still in flight on one node is left out).
    let keep: Vec<u8> = (0..mine.len())
        .map(|i| hellos[0][i] & hellos[1][i] & hellos[2][i])
        .collect();
    let inputs = restrict(&inputs, &keep);
    let out = run_party(party, job, &inputs, &seeds, &mut transport).map_err(|e| failure(&e))?;
    let sealed = out
        .shares
        .seal(job, &admitted.receiver, &keys.sig, &mut rand_core::OsRng)
        .map_err(|e| Failure {
            reason: "engine_error",
            detail: e.to_string(),
        })?;
    Ok(Completed {
        sealed,
        rounds: out.stats.rounds,
        bytes_sent: transport.bytes_sent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use armored_mpc::field::Fp;
    use armored_mpc::functions::contact_tracing::PointShare;

    fn p() -> Option<PointShare> {
        Some(PointShare {
            x: Fp::new(1),
            y: Fp::new(2),
        })
    }

    #[test]
    fn presence_and_restriction_agree() {
        let inputs = PartyInputs {
            reference: Track::new(vec![p(), None, p()]),
            users: vec![
                Track::new(vec![p(), p(), None]),
                Track::new(vec![None, p(), p()]),
            ],
        };
        let bits = presence(&inputs);
        // 9 slots: 1 0 1 | 1 1 0 | 0 1 1
        assert_eq!(bits, vec![0b1001_1101, 0b1]);
        let keep = vec![0b1111_1110, 0b0];
        let r = restrict(&inputs, &keep);
        assert_eq!(presence(&r), vec![0b1001_1100, 0]);
        assert_eq!(r.users.len(), 2);
    }
}
