//! `at-ingest`, the MQTT edge of the cloud (DESIGN, "Data flow"): device uplink
//! `at/v1/up/{twin}/{device}` → checks → `at.sync.v1`, acknowledged to the device only after Kafka
//! acknowledged the write; deliveries for devices `at.deliver.v1` → `at/v1/down/{twin}/{device}`,
//! QoS 1, committed only after the broker's PUBACK; and each twin's roster (owner-signed
//! enrollments and device revocations) kept as a retained message on its devices' downlink topics.
#![forbid(unsafe_code)]

mod broker_stats;
pub mod checks;
mod downlink;
pub mod lanes;
pub mod metrics;
pub mod responses;
mod uplink;
mod write_tokens;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use armored_base::mqtt::MqttConfig;
use armored_base::Shutdown;
use armored_crypto::registry::{Applied, Registry};
use armored_runtime::config::KafkaConfig;
use armored_runtime::dlq::DeadLetters;
use armored_runtime::kafka::{self, Topics};
use serde::{Deserialize, Serialize};

/// Configuration of the bridge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Kafka.
    pub kafka: KafkaConfig,
    /// MQTT (the bridge's own user U: it connects as `U-up` and `U-down`, one user per connection;
    /// `client_id` is not used).
    pub mqtt: MqttConfig,
    /// Bridge settings.
    pub ingest: IngestConfig,
}

/// Bridge settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IngestConfig {
    /// `/metrics` and `/healthz`.
    pub metrics_addr: SocketAddr,
    /// `max_envelope_bytes`.
    pub max_envelope_bytes: usize,
    /// Clock-skew bound for epochs.
    pub skew_ms: u64,
    /// Consumer group of the downlink.
    pub downlink_group: String,
    /// Uplink messages in flight (waiting for Kafka) before the bridge stops reading MQTT.
    pub max_in_flight: usize,
    /// Scale-out of the edge: bridges configured with the same group share the uplink through the
    /// MQTT shared subscription `$share/{group}/…`, so the broker hands each publish to one of them
    /// (round robin in mosquitto), and share the downlink as one Kafka consumer group
    /// (`downlink_group`), so each delivery is published by one of them. Empty: this bridge alone
    /// reads every uplink (a plain subscription). Each bridge needs MQTT users of its own
    /// (`infra/mqtt-user.sh add-bridge NAME`). A device's changes may then reach Kafka in another
    /// order than its seq: receivers order each writer's changes by seq (README, "Scale-out").
    #[serde(default)]
    pub shared_group: String,
}

/// Built-in defaults (the first configuration layer).
pub fn defaults() -> String {
    format!(
        r#"{kafka}
[mqtt]
host = "127.0.0.1"
port = 1883
username = "at-ingest"
password = ""
client_id = "at-ingest"
keep_alive_s = 30

[ingest]
metrics_addr = "127.0.0.1:9101"
max_envelope_bytes = {max}
skew_ms = 300000
downlink_group = "ingest-downlink"
max_in_flight = 1024
shared_group = ""
"#,
        kafka = armored_runtime::config::KAFKA_DEFAULTS,
        max = armored_schemas::limits::MAX_ENVELOPE_BYTES,
    )
}

/// The login of one of the bridge's two MQTT connections (`part` is `up` or `down`): the
/// configured user U connects as `U-up` and `U-down`, each a user of its own with the same
/// password. The broker binds client ids to usernames (infra/mosquitto.conf.in,
/// `use_username_as_clientid`): one user = one session, so the two connections cannot share a user,
/// and nobody else can take over their sessions. The client id is set to the same name (the broker
/// replaces whatever is sent with the username anyway); `mqtt.client_id` is not used.
pub(crate) fn connection(mqtt: &MqttConfig, part: &str) -> MqttConfig {
    let user = format!("{}-{part}", mqtt.username);
    MqttConfig {
        client_id: user.clone(),
        username: user,
        ..mqtt.clone()
    }
}

/// The uplink's MQTT topic filters: every device's uplink and its responses, each under
/// `$share/{group}/` when the bridge shares the uplink with others (`shared_group`).
pub fn uplink_filters(shared_group: &str) -> Vec<String> {
    [UPLINK_FILTER, responses::RESPONSE_FILTER]
        .into_iter()
        .map(|f| match shared_group {
            "" => f.to_string(),
            g => format!("$share/{g}/{f}"),
        })
        .collect()
}

/// MQTT topic filter of every device's uplink.
pub const UPLINK_FILTER: &str = "at/v1/up/+/+";

/// The registry's lock was poisoned (a thread panicked while holding it): the bridge cannot check
/// anything any more. The publish is answered with this failure, which stops the bridge without
/// acknowledging it (the device sends it again to the restarted bridge), instead of dropping it.
#[derive(Debug, thiserror::Error)]
#[error("the registry lock is poisoned (a thread panicked while holding it)")]
pub(crate) struct Poisoned;

impl Poisoned {
    /// The failed output that stops the bridge.
    pub(crate) fn ack() -> kafka::Ack {
        kafka::failed(kafka::AckError::service(Poisoned))
    }
}

/// Shared parts of the running bridge.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub cfg: Config,
    pub topics: Topics,
    pub producer: kafka::AtProducer,
    pub dlq: DeadLetters,
    pub metrics: metrics::Metrics,
    pub registry: Arc<RwLock<Registry>>,
    /// Write tokens and their revocations, per twin (pushed in the roster).
    pub write_tokens: Arc<RwLock<write_tokens::WriteTokens>>,
}

/// Runs the bridge until `shutdown`. Fails fast if a broker is unreachable.
pub async fn run(cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(config = %armored_runtime::config::redacted_json(&cfg), "at-ingest starting");
    let metrics = metrics::Metrics::new()?;
    let base = armored_runtime::service::start(
        "ingest",
        &cfg.kafka,
        cfg.ingest.metrics_addr,
        metrics.registry.clone(),
        metrics.dead_letters.clone(),
        &shutdown,
    )
    .await?;
    let (topics, producer, dlq, health) = (base.topics, base.producer, base.dlq, base.health);
    let (roster_tx, roster_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let tokens_roster_tx = roster_tx.clone();
    let (registry, reg_follower) = armored_runtime::registry::follow(
        &cfg.kafka,
        &topics.registry(),
        shutdown.clone(),
        move |_, outcome| match outcome {
            Ok(Applied::Enrolled { twin_id, .. }) | Ok(Applied::DeviceRevoked { twin_id }) => {
                let _ = roster_tx.send(twin_id);
            }
            Ok(_) => {}
            // The workers dead-letter registry conflicts; the bridge just skips them.
            Err(e) => tracing::debug!(error = %e, "registry record skipped"),
        },
    )?;
    reg_follower
        .synced_since(
            std::time::Instant::now(),
            Duration::from_millis(cfg.kafka.connect_timeout_ms),
        )
        .await?;
    // Write-token revocations join the twin's roster; the tokens topic is folded like the registry.
    let write_tokens = Arc::new(RwLock::new(write_tokens::WriteTokens::default()));
    let _tokens_follower = {
        let (tokens, registry, roster_tx) =
            (write_tokens.clone(), registry.clone(), tokens_roster_tx);
        armored_runtime::follower::Follower::start(
            &cfg.kafka,
            &topics.tokens(),
            Box::new(move |rec| {
                let (Ok(reg), Ok(mut t)) = (registry.read(), tokens.write()) else {
                    return;
                };
                if let Some(twin) = t.apply(&rec.payload, &reg) {
                    let _ = roster_tx.send(twin);
                }
            }),
            shutdown.clone(),
        )?
    };
    let ctx = Ctx {
        cfg: cfg.clone(),
        topics,
        producer: producer.clone(),
        dlq,
        metrics,
        registry,
        write_tokens,
    };
    let down = downlink::start(ctx.clone(), roster_rx, shutdown.clone()).await?;
    let up = tokio::spawn(uplink::run(
        ctx.clone(),
        reg_follower,
        health,
        shutdown.clone(),
    ));
    tracing::info!("at-ingest started; ready once the uplink's subscription is acknowledged");
    let (up, down) = tokio::join!(up, down);
    kafka::flush(&producer);
    up??;
    down??;
    tracing::info!("at-ingest stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_logs_in_as_a_user_of_its_own() {
        let mqtt = MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            username: "at-ingest".into(),
            password: "pw".into(),
            client_id: "ignored".into(),
            keep_alive_s: 30,
            ca_file: None,
        };
        for part in ["up", "down"] {
            let c = connection(&mqtt, part);
            assert_eq!(c.username, format!("at-ingest-{part}"));
            assert_eq!(c.client_id, c.username);
            assert_eq!(c.password, "pw");
        }
    }
}
