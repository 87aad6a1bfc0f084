//! The receiving side of a test: a processing service pinned by the owner, and what it receives
//! from `at.deliver.v1` (verified, decrypted, de-duplicated by `armored-client`).

use std::time::Duration;

use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_client::service::{Outcome, Received, Service};
use armored_crypto::identity::PartyKind;

use crate::env::{rand_id, Env};

impl Env {
    /// A new service (keys in a directory of its own) pinned by `owner`: its party id and itself.
    pub async fn service(&self, owner: &Owner, ctl: &Ctl) -> anyhow::Result<(String, Service)> {
        let dir = self.dir.join(rand_id("svc"));
        let id_file = Service::init(&dir, &rand_id("svc"), PartyKind::Service)?;
        let (party, _) = owner.trust(ctl, &std::fs::read(id_file)?).await?;
        Ok((party.party_id, Service::open(&dir)?))
    }
}

/// What `svc` receives until it has `max` changes (all it gets, if `None`) or nothing new came for
/// `idle`.
pub async fn consume(
    env: &Env,
    svc: &mut Service,
    max: Option<u64>,
    idle: Duration,
) -> anyhow::Result<Vec<Received>> {
    let mut got = Vec::new();
    let ctl = env.service_ctl(&svc.id).await?;
    svc.consume(&ctl, max, Some(idle), env.shutdown.child_token(), |o| {
        if let Outcome::Received(r) = o {
            got.push(r.clone());
        }
    })
    .await?;
    Ok(got)
}
