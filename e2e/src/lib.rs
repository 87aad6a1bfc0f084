//! Harness of the end-to-end tests: the brokers are the real mosquitto and Apache Kafka started by
//! `infra/start.sh` (addresses and passwords from `infra/env.sh`'s variables or its state dir);
//! every test gets its own topic prefix, consumer groups and twin ids, and runs the services
//! in-process through their `run(config, shutdown)`.
#![forbid(unsafe_code)]

pub mod load;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use armored_base::mqtt::MqttConfig;
use armored_base::Shutdown;
use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_device::link::LinkEvent;
use armored_device::Device;
use armored_runtime::config::KafkaConfig;
use armored_runtime::kafka::{create_topics, Topics};
use armored_runtime::pipeline::Inbound;
use rand_core::RngCore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A random lowercase id with a prefix.
pub fn rand_id(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_core::OsRng.next_u32())
}

fn state_dir() -> PathBuf {
    std::env::var_os("AT_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/armoredtwins/run")
        })
}

fn secret(name: &str, env: &str) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(env) {
        return Ok(v);
    }
    let p = state_dir().join("secrets").join(format!("{name}.password"));
    Ok(std::fs::read_to_string(&p)
        .with_context(|| {
            format!(
                "{} missing: start the brokers with infra/start.sh",
                p.display()
            )
        })?
        .trim()
        .to_string())
}

/// The repository root (for `infra/` scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One test's world: its topics, its directory, broker addresses.
pub struct Env {
    /// Kafka settings with this test's prefix.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: Topics,
    /// MQTT port.
    pub mqtt_port: u16,
    /// The bridge's MQTT password.
    pub ingest_password: String,
    /// The all-access MQTT user's password (plays a raw eavesdropper).
    pub admin_password: String,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Stops everything this test started.
    pub shutdown: Shutdown,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Env({})", self.kafka.topic_prefix)
    }
}

/// A running service.
pub struct Running {
    /// Stops it.
    pub shutdown: Shutdown,
    /// Its task.
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Its `/metrics` address.
    pub metrics: std::net::SocketAddr,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Running({})", self.metrics)
    }
}

impl Running {
    /// The value of one sample of `/metrics` (`name{labels}` exactly as exposed), 0 if absent.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        metric_at(self.metrics, sample).await
    }
}

/// `GET path` on a service's HTTP endpoint: (status line, whole response).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A service started a moment ago may not listen yet (it asks the broker for metadata first).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of one `/metrics` sample at `addr`, 0 if absent.
pub async fn metric_at(addr: std::net::SocketAddr, sample: &str) -> anyhow::Result<f64> {
    Ok(http_get(addr, "/metrics")
        .await?
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Whether `/healthz` at `addr` answers 200.
pub async fn healthy(addr: std::net::SocketAddr) -> bool {
    http_get(addr, "/healthz")
        .await
        .is_ok_and(|r| r.split_whitespace().nth(1) == Some("200"))
}

/// A free local port (bound and released).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
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
        };
        armored_runtime::kafka::wait_for_broker(&kafka)
            .context("the Kafka-protocol broker is not running: infra/start.sh")?;
        let topics = Topics::new(&prefix);
        create_topics(&kafka, &topics.all()).await?;
        let dir = std::env::temp_dir().join(rand_id("at-e2e"));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            kafka,
            topics,
            mqtt_port: std::env::var("AT_MQTT_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(1883),
            ingest_password: secret("at-ingest", "AT_MQTT_INGEST_PASSWORD")?,
            admin_password: secret("at-admin", "AT_MQTT_ADMIN_PASSWORD")?,
            dir,
            shutdown: Shutdown::new(),
        })
    }

    /// An `atctl` client on this test's topics.
    pub fn ctl(&self) -> anyhow::Result<Ctl> {
        Ok(Ctl::with_config(self.kafka.clone())?)
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
        }
    }

    /// Starts a bridge.
    pub fn start_ingest(&self) -> Running {
        let addr = free_addr();
        let cfg = at_ingest::Config {
            kafka: self.kafka.clone(),
            mqtt: self.mqtt("at-ingest", &self.ingest_password, &rand_id("ingest")),
            ingest: at_ingest::IngestConfig {
                metrics_addr: addr,
                max_envelope_bytes: armored_schemas::limits::MAX_ENVELOPE_BYTES,
                skew_ms: 300_000,
                downlink_group: rand_id("down"),
                max_in_flight: 1024,
            },
        };
        self.spawn(addr, |sd| at_ingest::run(cfg, sd))
    }

    /// Starts a re-encryption worker in consumer group `group`.
    pub fn start_worker(&self, group: &str) -> Running {
        self.start_worker_with(group, at_reencrypt::requests::RequestConfig::default())
    }

    /// Starts a worker with its request rate limit set to `requests`.
    pub fn start_worker_with(
        &self,
        group: &str,
        requests: at_reencrypt::requests::RequestConfig,
    ) -> Running {
        let addr = free_addr();
        let cfg = at_reencrypt::Config {
            kafka: self.kafka.clone(),
            worker: at_reencrypt::WorkerConfig {
                metrics_addr: addr,
                group: group.into(),
                state_dir: self.dir.join(rand_id("worker")).display().to_string(),
                cache_entries: 10_000,
                max_envelope_bytes: armored_schemas::limits::MAX_ENVELOPE_BYTES,
            },
            requests,
        };
        self.spawn(addr, |sd| at_reencrypt::run(cfg, sd))
    }

    fn spawn<F, Fut>(&self, metrics: std::net::SocketAddr, f: F) -> Running
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let sd = self.shutdown.child_token();
        let run = f(sd.clone());
        // A service that stops by itself says why (tests otherwise only see it gone).
        let task = tokio::spawn(async move {
            let r = run.await;
            if let Err(e) = &r {
                tracing::error!(error = format!("{e:#}"), %metrics, "service stopped with an error");
            }
            r
        });
        Running {
            shutdown: sd,
            task,
            metrics,
        }
    }

    /// Adds an MQTT login (infra/mqtt-user.sh) and waits until the broker accepts it.
    pub async fn add_mqtt_user(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let out = std::process::Command::new("bash")
            .arg(repo_root().join("infra/mqtt-user.sh"))
            .args(["add", user, password])
            .output()?;
        if !out.status.success() {
            bail!(
                "mqtt-user.sh add {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // mosquitto reloads its password file on SIGHUP, asynchronously: wait until a login works.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if mqtt_login_ok(&self.mqtt(user, password, &rand_id("probe"))).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the broker did not accept the new login {user} within 10 s")
    }

    /// Phase 1 for a simulated device: keys, pinned owner, enrollment and re-key by the owner,
    /// an MQTT login; then connects it. Returns the running device.
    pub async fn device(
        &self,
        owner: &Owner,
        ctl: &Ctl,
        twin: &str,
        name: &str,
    ) -> anyhow::Result<TestDevice> {
        let dir = self.dir.join(format!("{twin}-{name}"));
        let card = armored_device::setup(&dir, twin, name, 3_600_000)?;
        armored_device::pin_owner(&dir, &owner.identity()?)?;
        owner.enroll_device(ctl, &card).await?;
        let password = rand_id("pw");
        self.add_mqtt_user(&format!("{twin}/{name}"), &password)
            .await?;
        TestDevice::start(self, &dir, &password).await
    }

    /// Phase 1 without MQTT: a device set up and enrolled (for tests that write to the log directly).
    pub async fn enrolled_device(
        &self,
        owner: &Owner,
        ctl: &Ctl,
        twin: &str,
        name: &str,
    ) -> anyhow::Result<Device> {
        let dir = self.dir.join(format!("{twin}-{name}"));
        let card = armored_device::setup(&dir, twin, name, 3_600_000)?;
        armored_device::pin_owner(&dir, &owner.identity()?)?;
        owner.enroll_device(ctl, &card).await?;
        Ok(Device::open(&dir)?)
    }

    /// Dead letters written so far (reason, source key, payload), reading the DLQ topic to its end.
    pub fn dead_letters(&self) -> anyhow::Result<Vec<DeadLetter>> {
        read_all(&self.kafka, &self.topics.dlq())?
            .into_iter()
            .map(
                |Inbound {
                     key,
                     payload,
                     headers,
                     ..
                 }| {
                    let h = |n: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k == n)
                            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    };
                    Ok(DeadLetter {
                        reason: h("at-reason").unwrap_or_default(),
                        service: h("at-service").unwrap_or_default(),
                        source_topic: h("at-source-topic").unwrap_or_default(),
                        key: key.unwrap_or_default(),
                        payload,
                    })
                },
            )
            .collect()
    }

    /// Waits until `pred` holds for the dead letters, or fails after `timeout`.
    pub async fn wait_dead_letter(
        &self,
        timeout: Duration,
        pred: impl Fn(&DeadLetter) -> bool,
    ) -> anyhow::Result<DeadLetter> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(d) = self.dead_letters()?.into_iter().find(|d| pred(d)) {
                return Ok(d);
            }
            if Instant::now() > deadline {
                bail!(
                    "no matching dead letter within {timeout:?}; have {:?}",
                    self.dead_letters()?
                        .iter()
                        .map(|d| d.reason.clone())
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every record on `topic` (key, payload).
    pub fn records(&self, topic: &str) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(read_all(&self.kafka, topic)?
            .into_iter()
            .map(|r| (r.key.unwrap_or_default(), r.payload))
            .collect())
    }

    /// Every record on `topic`, with where it is.
    pub fn located(&self, topic: &str) -> anyhow::Result<Vec<Inbound>> {
        read_all(&self.kafka, topic)
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

/// A dead-letter record.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// `at-reason` header.
    pub reason: String,
    /// `at-service` header.
    pub service: String,
    /// `at-source-topic` header.
    pub source_topic: String,
    /// Record key.
    pub key: Vec<u8>,
    /// The refused bytes.
    pub payload: Vec<u8>,
}

fn read_all(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<Inbound>> {
    Ok(armored_runtime::reader::read_to_end(
        kafka,
        topic,
        Duration::from_secs(20),
    )?)
}

/// Whether `cfg` can log in to the MQTT broker.
pub async fn mqtt_login_ok(cfg: &MqttConfig) -> bool {
    let mut o = armored_base::mqtt::options(cfg, false);
    o.set_clean_session(true);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    let r = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                    return a.code == rumqttc::ConnectReturnCode::Success
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.disconnect().await;
    r
}

/// A simulated device running its MQTT link.
#[allow(missing_debug_implementations)]
pub struct TestDevice {
    /// The device.
    pub device: Arc<Mutex<Device>>,
    /// Envelopes to publish.
    pub outbox: mpsc::Sender<Vec<u8>>,
    /// What the link reports.
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Stops the link.
    pub shutdown: Shutdown,
    /// The link task.
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Directory.
    pub dir: PathBuf,
    /// MQTT password.
    pub password: String,
}

impl TestDevice {
    /// Opens the device in `dir` and connects it.
    pub async fn start(env: &Env, dir: &Path, password: &str) -> anyhow::Result<Self> {
        let d = Device::open(dir)?;
        let id = format!("{}/{}", d.card().twin_id, d.card().device_id);
        let device = Arc::new(Mutex::new(d));
        let (tx, rx) = mpsc::channel(1024);
        let (etx, mut erx) = mpsc::unbounded_channel();
        let shutdown = env.shutdown.child_token();
        let cfg = env.mqtt(&id, password, &format!("dev-{}", id.replace('/', "-")));
        let task = tokio::spawn(armored_device::link::run(
            device.clone(),
            cfg,
            rx,
            etx,
            shutdown.clone(),
        ));
        // Wait for the connection (and so the subscription) before the test goes on.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, erx.recv()).await {
                Ok(Some(LinkEvent::Connected)) => break,
                Ok(Some(_)) => {}
                _ => bail!("device {id} did not connect within 10 s"),
            }
        }
        Ok(Self {
            device,
            outbox: tx,
            events: erx,
            shutdown,
            task,
            dir: dir.to_path_buf(),
            password: password.into(),
        })
    }

    /// Records and publishes a state change.
    pub async fn publish(&self, attrs: &[&str], delta: serde_json::Value) -> anyhow::Result<()> {
        let env = self
            .device
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .record(attrs, delta, armored_base::time::now_ms())?;
        self.outbox.send(env).await?;
        Ok(())
    }

    /// Collects link events until `pred` says stop or `timeout` passes; returns what it saw.
    pub async fn collect_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&[LinkEvent]) -> bool,
    ) -> Vec<LinkEvent> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + timeout;
        while !pred(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(e)) => seen.push(e),
                _ => break,
            }
        }
        seen
    }

    /// Stops the link.
    pub async fn stop(self) -> Arc<Mutex<Device>> {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.device
    }
}
