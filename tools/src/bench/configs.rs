//! The configurations of the services a bench run starts: each service's own `Config`, from its
//! built-in defaults, with the run's topics and what the run needs set on top (written as the
//! file the process reads by `procs::Service::start`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use armored_runtime::config::{from_defaults, KafkaConfig};

use super::rid;
use crate::site::Site;

/// The run's brokers, topic prefix and session timeout (a stopped member is noticed fast), over
/// a service's own Kafka defaults.
/// Signed in as `principal` of the local brokers (infra/kafka-acls.tsv).
fn kafka(defaults: KafkaConfig, run: &KafkaConfig, principal: &str) -> anyhow::Result<KafkaConfig> {
    Ok(KafkaConfig {
        brokers: run.brokers.clone(),
        topic_prefix: run.topic_prefix.clone(),
        session_timeout_ms: run.session_timeout_ms,
        ..defaults
    }
    .as_local_principal(principal)?)
}

/// The bridge: MQTT user `user` (its connections log in as `{user}-up` and `{user}-down`), and a
/// clock-skew bound of six hours, so that a long
/// upload of shares for slots that already ended is not refused as stale.
pub fn ingest(
    site: &Site,
    run: &KafkaConfig,
    user: &str,
    metrics: SocketAddr,
) -> anyhow::Result<at_ingest::Config> {
    let mut c: at_ingest::Config = from_defaults(&at_ingest::defaults())?;
    c.kafka = kafka(c.kafka, run, "at-ingest")?;
    c.mqtt.host = site.mqtt_host.clone();
    c.mqtt.port = site.mqtt_port;
    c.mqtt.password = site.ingest_password.clone();
    c.mqtt.username = user.to_string();
    c.mqtt.client_id = user.to_string();
    c.ingest.metrics_addr = metrics;
    c.ingest.skew_ms = 6 * 3_600_000;
    c.ingest.downlink_group = format!("ingest-bench-down-{}", rid());
    Ok(c)
}

/// A re-encryption worker of consumer group `group`, its state in `state_dir`.
pub fn worker(
    run: &KafkaConfig,
    group: &str,
    state_dir: &Path,
    metrics: SocketAddr,
) -> anyhow::Result<at_reencrypt::Config> {
    let mut c: at_reencrypt::Config = from_defaults(&at_reencrypt::defaults())?;
    c.kafka = kafka(c.kafka, run, "at-reencrypt")?;
    c.worker.metrics_addr = metrics;
    c.worker.group = group.to_string();
    c.worker.state_dir = state_dir.display().to_string();
    Ok(c)
}

/// Node `j` of the three in `dirs`, its inputs cut off `cutoff_skew_ms` after the window's end,
/// and a minute per round (a thousand participants' rounds are long).
pub fn node(
    run: &KafkaConfig,
    j: u32,
    dirs: &[PathBuf; 3],
    metrics: SocketAddr,
    cutoff_skew_ms: u64,
) -> anyhow::Result<at_mpc_node::Config> {
    let defaults: at_mpc_node::Config = from_defaults(&at_mpc_node::defaults())?;
    let mut c = at_mpc_node::Config::for_node(
        kafka(defaults.kafka, run, &format!("at-mpc-node-{j}"))?,
        j,
        dirs,
        metrics,
    )?;
    c.node.cutoff_skew_ms = cutoff_skew_ms;
    c.node.round_timeout_ms = 60_000;
    Ok(c)
}
