//! The engine: one party's view of the three-party computation. Every primitive is vectorised (one
//! call, one batch, a constant number of rounds whatever its length) and works on this party's
//! shares only. Local operations (add, subtract, scale, add a constant) are plain `Fp` arithmetic
//! on the share vectors; adding a public constant means every party adds it.
//!
//! Rounds: `mul`/`reshare` 1, `open`/`open2` 1, `random_bits` 1 (plus one per retry, probability
//! ~2^-61 per bit), `ltz` 9 (bits, masked opening, 6 carry-tree levels, the final XOR).

mod compare;
mod mul;
mod open;
mod random_bits;

pub use compare::LTZ_ROUNDS;

use crate::error::{Error, Result, TransportError};
use crate::field::Fp;
use crate::prss::{PartySeeds, Prf};
use crate::shamir::Party;
use crate::transport::Transport;

/// Raw messages received in a round from (next, prev); `None` where none was expected.
type Received = (Option<Vec<u8>>, Option<Vec<u8>>);

/// What one party did: rounds it took part in and what it sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Communication rounds.
    pub rounds: u32,
    /// Payload bytes sent to the two peers together.
    pub bytes_sent: u64,
    /// Messages sent.
    pub messages_sent: u64,
}

/// One party's engine for one job attempt.
pub struct Engine<T: Transport> {
    party: Party,
    prf: Prf,
    transport: T,
    round: u32,
    batch: u64,
    stats: RunStats,
}

impl<T: Transport> core::fmt::Debug for Engine<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("party", &self.party)
            .field("round", &self.round)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Engine<T> {
    /// The engine of `seeds.party()` for attempt `attempt` of the job `job_hash`. The seeds must be
    /// fresh for this attempt; the PRF keys are bound to (job_hash, attempt) as well.
    pub fn new(seeds: &PartySeeds, job_hash: &[u8; 32], attempt: u32, transport: T) -> Self {
        Engine {
            party: seeds.party(),
            prf: Prf::new(seeds, job_hash, attempt),
            transport,
            round: 0,
            batch: 0,
            stats: RunStats::default(),
        }
    }

    /// This party.
    pub fn party(&self) -> Party {
        self.party
    }

    /// Rounds and traffic so far.
    pub fn stats(&self) -> RunStats {
        self.stats
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// This party's shares of n uniformly random values (PRSS, no communication).
    pub fn random(&mut self, n: usize) -> Vec<Fp> {
        let b = self.next_batch();
        self.prf.random(b, n)
    }

    /// This party's shares of n degree-2 sharings of zero (PRZS, no communication).
    pub fn zero2(&mut self, n: usize) -> Vec<Fp> {
        let mut z = vec![Fp::ZERO; n];
        let b = self.next_batch();
        self.prf.add_zero2(b, &mut z);
        z
    }

    /// Broadcasts a digest of public metadata and checks both peers sent the same (1 round).
    pub fn agree(&mut self, digest: &[u8; 32]) -> Result<()> {
        let (from_next, from_prev) =
            self.exchange_raw(Some(digest.to_vec()), Some(digest.to_vec()), true, true)?;
        let same = |m: Option<Vec<u8>>| m.is_some_and(|m| m.as_slice() == digest.as_slice());
        if same(from_next) && same(from_prev) {
            Ok(())
        } else {
            Err(Error::InputMismatch)
        }
    }

    fn next_batch(&mut self) -> u64 {
        self.batch += 1;
        self.batch
    }

    /// One round: sends the given batches, then receives what is expected from each peer.
    fn exchange_raw(
        &mut self,
        to_next: Option<Vec<u8>>,
        to_prev: Option<Vec<u8>>,
        from_next: bool,
        from_prev: bool,
    ) -> Result<Received> {
        let round = self.round;
        self.round += 1;
        self.stats.rounds += 1;
        for (peer, payload) in [(self.party.next(), to_next), (self.party.prev(), to_prev)] {
            if let Some(payload) = payload {
                self.stats.bytes_sent += payload.len() as u64;
                self.stats.messages_sent += 1;
                self.transport
                    .send(peer, round, payload)
                    .map_err(|e| transport_error(e, round, peer))?;
            }
        }
        let mut recv = |peer: Party, want: bool| -> Result<Option<Vec<u8>>> {
            if !want {
                return Ok(None);
            }
            self.transport
                .recv(peer, round)
                .map(Some)
                .map_err(|e| transport_error(e, round, peer))
        };
        let a = recv(self.party.next(), from_next)?;
        let b = recv(self.party.prev(), from_prev)?;
        Ok((a, b))
    }

    /// One round of field elements; `n_next`/`n_prev` elements are expected from each peer (0: no
    /// message). Empty outgoing vectors are not sent: message sizes are public and symmetric.
    fn exchange(
        &mut self,
        to_next: &[Fp],
        to_prev: &[Fp],
        n_next: usize,
        n_prev: usize,
    ) -> Result<(Vec<Fp>, Vec<Fp>)> {
        let round = self.round;
        let enc = |v: &[Fp]| (!v.is_empty()).then(|| encode(v));
        let (a, b) = self.exchange_raw(enc(to_next), enc(to_prev), n_next > 0, n_prev > 0)?;
        let next = decode(a, n_next, round, self.party.next())?;
        let prev = decode(b, n_prev, round, self.party.prev())?;
        Ok((next, prev))
    }
}

fn transport_error(e: TransportError, round: u32, peer: Party) -> Error {
    match e {
        TransportError::Timeout => Error::Timeout {
            round,
            peer: peer.index(),
        },
        source => Error::Transport {
            round,
            peer: peer.index(),
            source,
        },
    }
}

fn encode(v: &[Fp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.value().to_le_bytes());
    }
    out
}

fn decode(bytes: Option<Vec<u8>>, n: usize, round: u32, peer: Party) -> Result<Vec<Fp>> {
    let bad = || Error::MalformedMessage {
        round,
        peer: peer.index(),
    };
    let Some(bytes) = bytes else {
        return if n == 0 { Ok(Vec::new()) } else { Err(bad()) };
    };
    if bytes.len() != n * 8 {
        return Err(bad());
    }
    bytes
        .chunks_exact(8)
        .map(|w| {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            Fp::from_canonical(u64::from_le_bytes(b)).ok_or_else(bad)
        })
        .collect()
}
