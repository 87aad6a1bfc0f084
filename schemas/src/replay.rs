//! History replay progress (M3): the JSON records a re-encryption worker writes on
//! `at.control.v1` (key = request id, header [`STATUS_HEADER`]) and `atctl owner replay` reads.

use serde::{Deserialize, Serialize};

/// Header marking a worker's progress record on `at.control.v1`.
pub const STATUS_HEADER: &str = "at-replay-status";
/// Header naming the replay request on its deliveries.
pub const REQUEST_HEADER: &str = "at-replay-request-id";

/// A worker's progress report on one replay.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayStatus {
    /// Hex request id.
    pub request_id: String,
    /// Hex rk_id.
    pub rk_id: String,
    /// The re-key's receiver.
    pub receiver: String,
    /// First epoch replayed.
    pub from_epoch: u64,
    /// `running`, `done`, `revoked` or `failed`; a client reports `refused` when the request was
    /// dead-lettered.
    pub state: String,
    /// Records of `at.sync.v1` up to the end offsets taken at the start.
    pub total: u64,
    /// Records read so far.
    pub scanned: u64,
    /// Records of the owner's twins from the epoch on (before the policy check).
    pub matched: u64,
    /// Deliveries produced and acknowledged.
    pub delivered: u64,
    /// Stored records that could not be re-encrypted (they were dead-lettered when first routed).
    pub skipped: u64,
    /// Failure detail, if any (left out of the JSON when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl ReplayStatus {
    /// Whether the worker is finished with it.
    pub fn is_final(&self) -> bool {
        self.state != "running"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_the_worker_writes() -> Result<(), serde_json::Error> {
        let s = ReplayStatus {
            request_id: "ab".into(),
            state: "done".into(),
            total: 3,
            ..ReplayStatus::default()
        };
        let json = serde_json::to_string(&s)?;
        assert_eq!(
            json,
            r#"{"request_id":"ab","rk_id":"","receiver":"","from_epoch":0,"state":"done","total":3,"scanned":0,"matched":0,"delivered":0,"skipped":0}"#
        );
        assert_eq!(serde_json::from_str::<ReplayStatus>(&json)?, s);
        let failed = ReplayStatus {
            detail: "x".into(),
            ..s
        };
        assert!(serde_json::to_string(&failed)?.ends_with(r#","detail":"x"}"#));
        Ok(())
    }
}
