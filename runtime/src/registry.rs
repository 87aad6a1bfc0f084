//! The registry of owners, devices and parties ([`armored_crypto::registry`]) kept up to date from
//! `at.registry.v1`.

use armored_crypto::registry::{Applied, Registry, RegistryError};

/// A registry kept up to date from the registry topic, and the follower that feeds it.
pub type Followed = (crate::follower::Shared<Registry>, crate::follower::Follower);

/// Folds `topic` into a shared [`Registry`] and keeps following it; `on` sees every record with the
/// outcome of folding it (to dead-letter conflicts, or to react to enrollments). Returns once the
/// follower runs; wait for [`crate::follower::Follower::synced_since`] before relying on it.
pub fn follow(
    kafka: &crate::config::KafkaConfig,
    topic: &str,
    shutdown: armored_base::Shutdown,
    mut on: impl FnMut(&crate::pipeline::Inbound, Result<Applied, RegistryError>) + Send + 'static,
) -> Result<Followed, crate::kafka::KafkaSetupError> {
    let shared: crate::follower::Shared<Registry> = Default::default();
    let r = shared.clone();
    let follower = crate::follower::Follower::start(
        kafka,
        topic,
        Box::new(move |rec| {
            let outcome = match r.write() {
                Ok(mut reg) => reg.apply(&rec.payload),
                Err(_) => return,
            };
            on(rec, outcome);
        }),
        shutdown,
    )?;
    Ok((shared, follower))
}
