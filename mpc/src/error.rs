//! The crate's error type. No variant carries a share or a value: only indices, rounds, counts and
//! static reasons, so an error can be logged and published in a `JobFailed` as it is.

/// Failures of the transport under the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Nothing arrived from the peer within the round timeout.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The peer's link is gone (it aborted or was shut down).
    #[error("peer disconnected")]
    Disconnected,
    /// A message for another round arrived: out of order, replayed or lost.
    #[error("message for round {got} while expecting round {expected}")]
    OutOfOrder {
        /// Round the engine waits for.
        expected: u32,
        /// Round the message carries.
        got: u32,
    },
    /// A transport-specific failure (e.g. a peer message that does not open).
    #[error("transport failure: {0}")]
    Other(&'static str),
}

/// Everything that can go wrong in `armored-mpc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The nodes disagree on the admitted inputs (their hashes of the public metadata differ).
    #[error("the nodes' admitted input sets differ")]
    InputMismatch,
    /// A round did not complete within its timeout.
    #[error("round {round} timed out waiting for party {peer}")]
    Timeout {
        /// The round.
        round: u32,
        /// The party (1..=3) that did not answer.
        peer: u8,
    },
    /// The three output shares do not lie on one line (a faulty node).
    #[error("output shares are inconsistent")]
    InconsistentShares,
    /// A caller-supplied parameter or input is out of range or malformed.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// A peer message has the wrong length or a non-canonical element.
    #[error("malformed message from party {peer} in round {round}")]
    MalformedMessage {
        /// The round.
        round: u32,
        /// The sending party (1..=3).
        peer: u8,
    },
    /// An opened value that must be a nonzero square is not: a peer deviated.
    #[error("protocol check failed: {0}")]
    ProtocolViolation(&'static str),
    /// The transport failed (other than a timeout).
    #[error("transport failure with party {peer} in round {round}: {source}")]
    Transport {
        /// The round.
        round: u32,
        /// The peer (1..=3).
        peer: u8,
        /// What failed.
        source: TransportError,
    },
    /// Sealing or opening an output share failed.
    #[error(transparent)]
    Crypto(#[from] armored_crypto::Error),
}

/// Result alias.
pub type Result<T, E = Error> = core::result::Result<T, E>;
