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
    /// Milliseconds spent on the hello (opening the channels) and on the engine's rounds.
    pub hello_ms: u64,
    /// Milliseconds in the engine (all rounds, output shares).
    pub mpc_ms: u64,
    /// Of the attempt: milliseconds sealing and queueing records, and waiting for the peers'.
    pub send_ms: u64,
    /// See `send_ms`.
    pub wait_ms: u64,
}

/// This node's inputs for an admitted job, with the hello that describes them.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Per twin, the stored share of each window slot.
    pub inputs: PartyInputs,
    /// Per (twin, slot) in the same order, which point the share belongs to (0: none), see
    /// [`crate::shares::StoredShare::fingerprint`].
    pub fingerprints: Vec<u64>,
}

/// This node's inputs for an admitted job: per twin, the stored share of each window slot if it
/// satisfies the participant's token, was shared by a device enrolled with the granted slot length,
/// and arrived before the cut-off.
pub fn gather(store: &ShareStore, a: &Admitted) -> Gathered {
    let Function::ContactTracingV1(p) = &a.job.function else {
        return Gathered::default();
    };
    let w = p.window;
    let mut fingerprints = Vec::new();
    let mut track = |adm: &Admission| {
        Track::new(
            (0..u64::from(w.slots))
                .map(|i| {
                    let slot = w.first_slot + i;
                    let s = store
                        .get(&adm.twin_id, slot)
                        .filter(|s| s.received_ms <= a.cutoff_ms)
                        .filter(|s| s.slot_len_ms == a.slot_len_ms)
                        .filter(|s| admissible(adm, &s.attributes, &s.owner_sig_key_id));
                    fingerprints.push(s.map_or(0, |s| s.fingerprint(&adm.twin_id, slot)));
                    s.map(|s| s.point)
                })
                .collect(),
        )
    };
    let reference = track(&a.reference);
    let users = a.participants.iter().map(&mut track).collect();
    Gathered {
        inputs: PartyInputs { reference, users },
        fingerprints,
    }
}

/// The hello: the fingerprints, 8 bytes each. Presence is public metadata (devices publish per
/// slot anyway), and a fingerprint names a (device, item), never a value.
fn hello(fingerprints: &[u64]) -> Vec<u8> {
    fingerprints.iter().flat_map(|f| f.to_be_bytes()).collect()
}

/// Which (twin, slot) positions all three nodes hold shares of the same point for.
fn agreed(hellos: &[Vec<u8>; 3]) -> Vec<bool> {
    let [a, b, c] = hellos;
    a.chunks(8)
        .zip(b.chunks(8))
        .zip(c.chunks(8))
        .map(|((x, y), z)| x == y && y == z && x.iter().any(|v| *v != 0))
        .collect()
}

fn restrict(inputs: &PartyInputs, keep: &[bool]) -> PartyInputs {
    let mut k = 0usize;
    let mut cut = |t: &Track| {
        Track::new(
            t.slots()
                .iter()
                .map(|s| {
                    let bit = keep.get(k).copied().unwrap_or(false);
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
    gathered: Gathered,
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
    let started = std::time::Instant::now();
    let mine = hello(&gathered.fingerprints);
    let (hellos, seeds) = transport
        .handshake(&mine)
        .map_err(|e| transport_failure("opening the peer channels", &e))?;
    if hellos.iter().any(|h| h.len() != mine.len()) {
        return Err(Failure {
            reason: "inputs_disagree",
            detail: "peers hold a job of another shape".into(),
        });
    }
    // Inputs are the slots where all three nodes hold shares of the same point (a share still in
    // flight on one node, or another device's point of the same slot, is left out).
    let inputs = restrict(&gathered.inputs, &agreed(&hellos));
    let hello_ms = started.elapsed().as_millis() as u64;
    let out = run_party(party, job, &inputs, &seeds, &mut transport).map_err(|e| failure(&e))?;
    transport
        .flush()
        .map_err(|e| transport_failure("closing the peer channels", &e))?;
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
        hello_ms,
        mpc_ms: (started.elapsed().as_millis() as u64).saturating_sub(hello_ms),
        send_ms: transport.send_time.as_millis() as u64,
        wait_ms: transport.wait_time.as_millis() as u64,
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

    fn present(inputs: &PartyInputs) -> Vec<bool> {
        std::iter::once(&inputs.reference)
            .chain(&inputs.users)
            .flat_map(|t| t.slots().iter().map(Option::is_some))
            .collect()
    }

    #[test]
    fn only_slots_where_all_three_hold_the_same_point_are_kept() {
        let inputs = PartyInputs {
            reference: Track::new(vec![p(), None, p()]),
            users: vec![Track::new(vec![p(), p(), p()])],
        };
        // Six positions. Node 1 holds all but position 1; node 2 misses position 5; node 3 holds
        // another device's point at position 3.
        let mine = hello(&[7, 0, 9, 4, 5, 6]);
        let two = hello(&[7, 0, 9, 4, 5, 0]);
        let three = hello(&[7, 3, 9, 8, 5, 6]);
        let keep = agreed(&[mine, two, three]);
        assert_eq!(keep, vec![true, false, true, false, true, false]);
        let r = restrict(&inputs, &keep);
        assert_eq!(present(&r), vec![true, false, true, false, true, false]);
        assert_eq!(r.users.len(), 1);
    }

    #[test]
    fn an_absent_slot_is_never_agreed() {
        let z = hello(&[0, 0]);
        assert_eq!(agreed(&[z.clone(), z.clone(), z]), vec![false, false]);
    }
}
