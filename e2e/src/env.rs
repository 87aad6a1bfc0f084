//! One test's world ([`Env`]): the brokers' addresses (from `infra/env.sh`'s variables), a random
//! topic prefix with its topics created, a scratch
//! directory, and the shutdown token of everything the test starts. Dropping it cleans up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use armored_base::mqtt::MqttConfig;
use armored_base::Shutdown;
use armored_client::kafka::{service_principal, Ctl, OWNER_PRINCIPAL};
use armored_client::owner::Owner;
use armored_runtime::config::KafkaConfig;
use armored_runtime::kafka::{create_topics, Topics};
use rand_core::RngCore;

/// Held by the tests of one binary that must not overlap (they share mosquitto's logins and
/// sessions): `let _g = SERIAL.lock().await;`.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A random lowercase id with a prefix.
pub fn rand_id(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_core::OsRng.next_u32())
}

/// The repository root (for `infra/` scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free local port (bound and released).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// infra/kafka-acl.sh with `args` (one JVM, ~1.5 s): `[prefix]` grants infra/kafka-acls.tsv on the
/// topics under it, `["--service", id, prefix]` signs a service's principal up.
async fn run_kafka_acl(args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("bash")
        .arg(repo_root().join("infra/kafka-acl.sh"))
        .args(args)
        .output()
        .await
        .context("running infra/kafka-acl.sh")?;
    anyhow::ensure!(
        out.status.success(),
        "infra/kafka-acl.sh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// One test's world: its topics, its directory, broker addresses.
pub struct Env {
    /// Kafka settings with this test's prefix.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: Topics,
    /// MQTT port.
    pub mqtt_port: u16,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Stops everything this test started.
    pub shutdown: Shutdown,
    /// The services whose principals are signed up on this test's topics.
    signed_up: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Env({})", self.kafka.topic_prefix)
    }
}

impl Env {
    /// A fresh world: random topic prefix, topics created.
    pub async fn new() -> anyhow::Result<Self> {
        armored_base::telemetry::init("e2e");
        let prefix = format!("{}.", rand_id("t"));
        let kafka = KafkaConfig {
            brokers: std::env::var("AT_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            topic_prefix: prefix.clone(),
            session_timeout_ms: 6000,
            linger_ms: 0,
            fetch_wait_max_ms: 5,
            connect_timeout_ms: 10_000,
            sasl: None,
        }
        // The test itself (creating and deleting topics, reading them raw) is the super user.
        .as_local_principal("at-kafka")?;
        armored_runtime::kafka::wait_for_broker(&kafka)
            .context("the Kafka-protocol broker is not running: infra/start.sh")?;
        let topics = Topics::new(&prefix);
        create_topics(&kafka, &topics.all()).await?;
        run_kafka_acl(&[&prefix]).await?;
        let dir = std::env::temp_dir().join(rand_id("at-e2e"));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            kafka,
            topics,
            mqtt_port: std::env::var("AT_MQTT_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(1883),
            dir,
            shutdown: Shutdown::new(),
            signed_up: Default::default(),
        })
    }

    /// An owner's `atctl` client on this test's topics (principal `at-owner`).
    pub fn owner_ctl(&self) -> anyhow::Result<Ctl> {
        Ok(Ctl::with_config(self.kafka_as(OWNER_PRINCIPAL)?)?)
    }

    /// Service `id`'s `atctl` client on this test's topics: its own principal `at-service-<id>`,
    /// signed up first (infra/kafka-acl.sh --service; one JVM, ~1.5 s).
    pub async fn service_ctl(&self, id: &str) -> anyhow::Result<Ctl> {
        let known = self.signed_up.lock().is_ok_and(|s| s.contains(id));
        if !known {
            run_kafka_acl(&["--service", id, &self.kafka.topic_prefix]).await?;
            if let Ok(mut s) = self.signed_up.lock() {
                s.insert(id.to_string());
            }
        }
        Ok(Ctl::with_config(self.kafka_as(&service_principal(id))?)?)
    }

    /// A client signed in as the bridge's principal `at-ingest`: it writes to at.sync.v1 what the
    /// bridge would, or what a compromised bridge could (the workers' own checks are under test).
    pub fn bridge_ctl(&self) -> anyhow::Result<Ctl> {
        Ok(Ctl::with_config(self.kafka_as("at-ingest")?)?)
    }

    /// A client signed in as the super user, for a test that plays an insider: it writes where
    /// only a service's principal may (a forged delivery, a peer message).
    pub fn insider_ctl(&self) -> anyhow::Result<Ctl> {
        Ok(Ctl::with_config(self.kafka.clone())?)
    }

    /// This test's Kafka settings signed in as `principal` (infra/kafka-acls.tsv).
    pub fn kafka_as(&self, principal: &str) -> anyhow::Result<KafkaConfig> {
        Ok(self.kafka.as_local_principal(principal)?)
    }

    /// A new owner (`alice-…`) in `owner/` of the test's directory, registered on its topics.
    pub async fn owner(&self, ctl: &Ctl) -> anyhow::Result<Owner> {
        Ok(Owner::init(&self.dir.join("owner"), &rand_id("alice"), ctl).await?)
    }

    /// MQTT settings for `user`.
    pub fn mqtt(&self, user: &str, password: &str, client_id: &str) -> MqttConfig {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: self.mqtt_port,
            username: user.into(),
            password: password.into(),
            client_id: client_id.into(),
            keep_alive_s: 10,
            ca_file: None,
        }
    }

    /// MQTT settings for `user` over the broker's TLS listener (`AT_MQTT_TLS_PORT`), trusting
    /// only infra/'s test CA (`AT_MQTT_CA`).
    pub fn mqtt_tls(
        &self,
        user: &str,
        password: &str,
        client_id: &str,
    ) -> anyhow::Result<MqttConfig> {
        let port = std::env::var("AT_MQTT_TLS_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(8883);
        let ca = std::env::var("AT_MQTT_CA")
            .context("AT_MQTT_CA (source infra/env.sh): the broker's TLS CA")?;
        Ok(MqttConfig {
            port,
            ca_file: Some(ca),
            ..self.mqtt(user, password, client_id)
        })
    }

    /// Stops every service and device of this test (then dropping it deletes its topics).
    pub async fn stop(self) {
        self.shutdown.cancel();
        // Services drain and commit on shutdown; give them a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl Drop for Env {
    /// Also when a test fails half-way: its services stop, and its topics and directory go (Kafka
    /// keeps files and memory for every partition; ~75 per test would pile up over a run).
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
        let kafka = self.kafka.clone();
        // A thread of its own: dropping may happen inside a tokio runtime, where blocking on a
        // future is not allowed; the admin client's futures need no runtime.
        let deleted = std::thread::spawn(move || {
            futures::executor::block_on(armored_runtime::kafka::delete_topics_with_prefix(
                &kafka,
                &kafka.topic_prefix,
            ))
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!(
                "could not delete the topics of {}: {e}",
                self.kafka.topic_prefix
            );
        }
    }
}
