//! The peer channel under the engine, and an in-memory implementation for tests and benches.
//!
//! The trait is synchronous and blocking on purpose: the engine is a straight line of rounds
//! (send this round's batches, then wait for the peers' batches of the same round), so a blocking
//! `recv` with a per-round timeout keeps it free of any runtime. A node service runs `run_party`
//! on a blocking thread (`spawn_blocking`) and implements this trait over its Kafka peer channel
//! with two channels (outgoing queue, per-peer inbox); splitting messages under the broker's size
//! limit and sealing them in the attempt's HPKE contexts are that transport's job.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::error::TransportError;
use crate::shamir::Party;

/// Moves one batch per (round, peer). Messages between two parties arrive in the order sent.
pub trait Transport {
    /// Sends this party's batch for `round` to `to`.
    fn send(&mut self, to: Party, round: u32, payload: Vec<u8>) -> Result<(), TransportError>;
    /// Waits for `from`'s batch for `round`, at most the transport's round timeout.
    fn recv(&mut self, from: Party, round: u32) -> Result<Vec<u8>, TransportError>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(&mut self, to: Party, round: u32, payload: Vec<u8>) -> Result<(), TransportError> {
        (**self).send(to, round, payload)
    }
    fn recv(&mut self, from: Party, round: u32) -> Result<Vec<u8>, TransportError> {
        (**self).recv(from, round)
    }
}

/// Settings of the in-memory network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InMemoryConfig {
    /// Delay added to every message (half the round-trip time to simulate).
    pub one_way_delay: Duration,
    /// How long `recv` waits before `Timeout` (mpc.md: 10 s per round by default).
    pub round_timeout: Duration,
}

impl Default for InMemoryConfig {
    fn default() -> Self {
        InMemoryConfig {
            one_way_delay: Duration::ZERO,
            round_timeout: Duration::from_secs(10),
        }
    }
}

impl InMemoryConfig {
    /// A network with round-trip time `rtt` (each message delayed by rtt/2).
    pub fn with_rtt(rtt: Duration) -> Self {
        InMemoryConfig {
            one_way_delay: rtt / 2,
            ..Self::default()
        }
    }
}

struct Message {
    round: u32,
    deliver_at: Instant,
    payload: Vec<u8>,
}

/// One party's end of an in-memory network of three parties (channels per ordered pair).
pub struct InMemoryTransport {
    party: Party,
    config: InMemoryConfig,
    /// Indexed by destination slot; `None` at this party's own slot.
    outbox: [Option<Sender<Message>>; 3],
    /// Indexed by source slot.
    inbox: [Option<Receiver<Message>>; 3],
}

impl core::fmt::Debug for InMemoryTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InMemoryTransport")
            .field("party", &self.party)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl InMemoryTransport {
    /// The three ends of a fresh network.
    pub fn network(config: InMemoryConfig) -> [InMemoryTransport; 3] {
        let mut ends = Party::ALL.map(|party| InMemoryTransport {
            party,
            config,
            outbox: [None, None, None],
            inbox: [None, None, None],
        });
        for from in Party::ALL {
            for to in Party::ALL {
                if from != to {
                    let (tx, rx) = channel();
                    ends[from.slot()].outbox[to.slot()] = Some(tx);
                    ends[to.slot()].inbox[from.slot()] = Some(rx);
                }
            }
        }
        ends
    }

    /// The party this end belongs to.
    pub fn party(&self) -> Party {
        self.party
    }
}

impl Transport for InMemoryTransport {
    fn send(&mut self, to: Party, round: u32, payload: Vec<u8>) -> Result<(), TransportError> {
        let tx = self.outbox[to.slot()]
            .as_ref()
            .ok_or(TransportError::Other("no link to self"))?;
        let deliver_at = Instant::now() + self.config.one_way_delay;
        tx.send(Message {
            round,
            deliver_at,
            payload,
        })
        .map_err(|_| TransportError::Disconnected)
    }

    fn recv(&mut self, from: Party, round: u32) -> Result<Vec<u8>, TransportError> {
        let rx = self.inbox[from.slot()]
            .as_ref()
            .ok_or(TransportError::Other("no link to self"))?;
        let msg = rx
            .recv_timeout(self.config.round_timeout)
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => TransportError::Timeout,
                RecvTimeoutError::Disconnected => TransportError::Disconnected,
            })?;
        if msg.round != round {
            return Err(TransportError::OutOfOrder {
                expected: round,
                got: msg.round,
            });
        }
        let now = Instant::now();
        if msg.deliver_at > now {
            std::thread::sleep(msg.deliver_at - now);
        }
        Ok(msg.payload)
    }
}
