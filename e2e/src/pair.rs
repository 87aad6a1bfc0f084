//! The usual cast of a pipeline test: a bridge and a worker on the test's topics, an owner, and
//! one twin with two enrolled, connected devices that know each other.

use std::time::Duration;

use armored_client::kafka::Ctl;
use armored_client::owner::Owner;

use crate::devices::TestDevice;
use crate::env::{rand_id, Env};
use crate::services::Running;

/// A running bridge and worker, an owner, and twin `twin` with devices `d1` and `d2`.
#[allow(missing_debug_implementations)]
pub struct Pair {
    /// The test's Kafka client.
    pub ctl: Ctl,
    /// The bridge.
    pub ingest: Running,
    /// One re-encryption worker.
    pub worker: Running,
    /// The twins' owner.
    pub owner: Owner,
    /// The twin (`{prefix}-…`).
    pub twin: String,
    /// Device d1.
    pub d1: TestDevice,
    /// Device d2; its roster names both.
    pub d2: TestDevice,
}

impl Env {
    /// Starts a bridge and a worker, makes an owner and a twin named after `prefix`, and connects
    /// its devices d1 and d2 (returned once d2's roster names both).
    pub async fn pair(&self, prefix: &str) -> anyhow::Result<Pair> {
        let ctl = self.owner_ctl()?;
        let ingest = self.start_ingest().await?;
        let worker = self.start_worker(&rand_id("reenc"));
        let owner = self.owner(&ctl).await?;
        let twin = rand_id(prefix);
        let d1 = self.device(&owner, &ctl, &twin, "d1").await?;
        let mut d2 = self.device(&owner, &ctl, &twin, "d2").await?;
        d2.wait_roster(2, Duration::from_secs(20)).await;
        Ok(Pair {
            ctl,
            ingest,
            worker,
            owner,
            twin,
            d1,
            d2,
        })
    }
}
