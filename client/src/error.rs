//! The client library's errors. Their messages reach the `atctl` user: each says what failed on
//! which file, id or topic, and what to do when there is something to do; the cause, if any, is the
//! error's `source` (printed after it by `atctl`).

use std::path::Path;

use armored_crypto::backup::BackupError;

/// Everything that can go wrong in `armored-client`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A file or directory could not be read or written; `what` names it.
    #[error("{what}")]
    Io {
        /// What was being done, with the path (`reading /x/grants.json`).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file or value that does not parse or serialise; `what` names it.
    #[error("{what}")]
    Json {
        /// Which file or value.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A key or identity that does not load or verify; `what` says which and what to do.
    #[error("{what}")]
    Key {
        /// Which key or identity (`no signing key in /x (atctl service init)`).
        what: String,
        /// Why.
        #[source]
        source: armored_crypto::Error,
    },
    /// A cryptographic check or operation failed.
    #[error(transparent)]
    Crypto(#[from] armored_crypto::Error),
    /// A policy text that does not parse.
    #[error("policy {text:?}: {reason}")]
    Policy {
        /// The text given.
        text: String,
        /// Why it does not parse.
        reason: armored_crypto::Error,
    },
    /// A key backup that cannot be sealed or opened.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The directory already holds an identity (`what` says which kind; nothing is overwritten).
    #[error("{dir} already holds {what}")]
    Occupied {
        /// The directory.
        dir: String,
        /// What it holds (and what to do).
        what: &'static str,
    },
    /// An argument that is not acceptable (a flag, an id, a time); says what is expected.
    #[error("{0}")]
    Invalid(String),
    /// An argument that does not parse; `what` says what was expected.
    #[error("{what}")]
    Parse {
        /// What was expected.
        what: String,
        /// The parser's reason.
        #[source]
        source: ParseCause,
    },
    /// A twin, device, party or job that the registry or a topic does not hold.
    #[error("{0}")]
    NotFound(String),
    /// The owner's rules refuse the step (e.g. one node holding two share numbers).
    #[error("{0}")]
    Refused(String),
    /// No answer, result or job within the time given.
    #[error("{0}")]
    TimedOut(String),
    /// Combining the nodes' output shares failed.
    #[error(transparent)]
    Mpc(#[from] armored_mpc::Error),
    /// The cluster could not be reached, read or written.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A blocking task was cancelled or panicked.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A dead letter that cannot be found or re-driven, or the DLQ could not be read.
    #[error("{0}")]
    Dlq(String),
}

/// The cause of a [`ClientError::Parse`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseCause {
    /// Not hex.
    #[error(transparent)]
    Hex(#[from] hex::FromHexError),
    /// Not a (non-negative, small enough) integer.
    #[error(transparent)]
    Int(#[from] std::num::ParseIntError),
    /// Another reason.
    #[error("{0}")]
    Other(String),
}

/// Why the client could not use the Kafka cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The `[kafka]` configuration does not load.
    #[error(transparent)]
    Config(#[from] armored_runtime::config::ConfigError),
    /// The broker is unreachable, or a client could not be made.
    #[error(transparent)]
    Setup(#[from] armored_runtime::kafka::KafkaSetupError),
    /// A consumer call failed.
    #[error("Kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A write the broker did not acknowledge.
    #[error("write to {topic} not acknowledged: {reason}")]
    NotAcknowledged {
        /// The topic.
        topic: String,
        /// Why.
        reason: armored_runtime::kafka::AckError,
    },
    /// A topic without partitions (not created: `infra/topics.sh`).
    #[error("topic {topic} has no partitions{hint}")]
    NoPartitions {
        /// The topic.
        topic: String,
        /// What to do, if anything (starts with a space).
        hint: &'static str,
    },
    /// The registry was not read to its end in time.
    #[error("reading the registry")]
    Registry(#[source] armored_runtime::follower::SyncTimeout),
    /// A control topic was not read to its end in time.
    #[error(transparent)]
    Sync(#[from] armored_runtime::follower::SyncTimeout),
    /// A thread holding the registry panicked.
    #[error("registry lock poisoned")]
    Poisoned,
    /// The brokers refuse this principal what it asked for (its ACLs): retrying will not help.
    #[error(transparent)]
    Refused(Box<AclRefusal>),
}

/// What the brokers refused to whom.
#[derive(Debug, thiserror::Error)]
#[error("Kafka refuses {principal} ({what}): {source}; a service's principal is signed up by infra/kafka-acl.sh --service ID PREFIX")]
pub struct AclRefusal {
    /// The principal signed in as (or "no principal").
    pub principal: String,
    /// What was asked.
    pub what: String,
    /// The broker's answer.
    pub source: rdkafka::error::KafkaError,
}

/// Result alias of the client library.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl From<rdkafka::error::KafkaError> for ClientError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e.into())
    }
}

impl From<armored_runtime::kafka::KafkaSetupError> for ClientError {
    fn from(e: armored_runtime::kafka::KafkaSetupError) -> Self {
        Self::Kafka(e.into())
    }
}

impl From<armored_runtime::follower::SyncTimeout> for ClientError {
    fn from(e: armored_runtime::follower::SyncTimeout) -> Self {
        Self::Kafka(e.into())
    }
}

/// `map_err` for an I/O error on `path`: `ClientError::Io` saying `{doing} {path}`.
pub(crate) fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClientError {
    let what = format!("{doing} {}", path.display());
    move |source| ClientError::Io { what, source }
}

/// `map_err` for a key or identity that does not load: `ClientError::Key` saying `what`.
pub(crate) fn key(what: impl Into<String>) -> impl FnOnce(armored_crypto::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Key { what, source }
}

/// `map_err` for a value that does not parse: `ClientError::Parse` saying what was expected.
pub(crate) fn parse<E: Into<ParseCause>>(what: impl Into<String>) -> impl FnOnce(E) -> ClientError {
    let what = what.into();
    move |e| ClientError::Parse {
        what,
        source: e.into(),
    }
}
