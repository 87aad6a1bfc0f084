//! The cloud services run in-process for a test (through their `run(config, shutdown)`), each a
//! [`Running`] with its `/metrics` address; their configurations are the services' own `Config`
//! types, on this test's topics, so a test can also write one out for a service process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use armored_base::Shutdown;
use armored_runtime::scrape;
use tokio::task::JoinHandle;

use crate::env::{free_addr, rand_id, Env};

/// A running service.
pub struct Running {
    /// Stops it.
    pub shutdown: Shutdown,
    /// Its task.
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Its `/metrics` address.
    pub metrics: SocketAddr,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Running({})", self.metrics)
    }
}

impl Running {
    /// The value of one sample of `/metrics` (`name{labels}` exactly as exposed), 0 if absent.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        // A service started a moment ago may not listen yet (it asks the broker for metadata first).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match scrape::metric(self.metrics, sample).await {
                Err(e) if e.is_refused() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => return Ok(r?),
            }
        }
    }

    /// Waits until `sample` reaches `want`, or fails after `timeout`.
    pub async fn wait_metric(
        &self,
        sample: &str,
        want: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(sample).await?;
            if v >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{sample} = {v}, expected {want}");
            }
            // A counter of records received moves before they are handled: wait on one of handled
            // work (deliveries, dead letters) when the order matters (history.rs).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/healthz` answers 200, or fails after `timeout`.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !scrape::healthy(self.metrics).await {
            ensure!(
                Instant::now() < deadline,
                "service {} not healthy within {timeout:?}",
                self.metrics
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

impl Env {
    /// This test's Kafka settings as a service's `principal`; if infra/ has no such principal,
    /// plaintext (logged here; the broker then refuses the service's first connection).
    pub fn service_kafka(&self, principal: &str) -> armored_runtime::config::KafkaConfig {
        self.kafka_as(principal).unwrap_or_else(|e| {
            tracing::error!(error = format!("{e:#}"), "no Kafka principal {principal}");
            armored_runtime::config::KafkaConfig {
                sasl: None,
                ..self.kafka.clone()
            }
        })
    }

    /// A bridge's configuration on this test's topics and broker, `/metrics` on a free port, with
    /// MQTT users of its own ([`Env::bridge_login`]).
    pub async fn ingest_config(&self) -> anyhow::Result<at_ingest::Config> {
        Ok(at_ingest::Config {
            kafka: self.service_kafka("at-ingest"),
            mqtt: self.bridge_login().await?,
            ingest: at_ingest::IngestConfig {
                metrics_addr: free_addr(),
                max_envelope_bytes: armored_schemas::limits::MAX_ENVELOPE_BYTES,
                skew_ms: 300_000,
                // Its principal may use groups `ingest…` only (infra/kafka-acls.tsv).
                downlink_group: rand_id("ingest-down"),
                max_in_flight: 1024,
                shared_group: String::new(),
            },
        })
    }

    /// A worker's configuration in consumer group `group` on this test's topics, `/metrics` on a
    /// free port, its state in a directory of its own.
    pub fn worker_config(&self, group: &str) -> at_reencrypt::Config {
        at_reencrypt::Config {
            kafka: self.service_kafka("at-reencrypt"),
            worker: at_reencrypt::WorkerConfig {
                metrics_addr: free_addr(),
                // Its principal may use groups `reenc…` only (infra/kafka-acls.tsv).
                group: if group.starts_with("reenc") {
                    group.into()
                } else {
                    format!("reenc-{group}")
                },
                state_dir: self.dir.join(rand_id("worker")).display().to_string(),
                cache_entries: 10_000,
                max_envelope_bytes: armored_schemas::limits::MAX_ENVELOPE_BYTES,
                instance: String::new(),
            },
            requests: at_reencrypt::requests::RequestConfig::default(),
        }
    }

    /// The audit keys (`worker-audit.pub`) of the workers this test started, once they have
    /// started (each writes its key into its state directory).
    pub fn worker_audit_keys(&self) -> anyhow::Result<Vec<std::path::PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path().join(at_reencrypt::audit::PUB_FILE);
            if p.is_file() {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Starts a bridge and waits until it is ready: subscribed to the uplink, so that no publish
    /// made after this is missed.
    pub async fn start_ingest(&self) -> anyhow::Result<Running> {
        self.start_ingest_with(self.ingest_config().await?).await
    }

    /// [`Env::start_ingest`] with a configuration of the caller's.
    pub async fn start_ingest_with(&self, cfg: at_ingest::Config) -> anyhow::Result<Running> {
        let ingest = self.spawn(cfg.ingest.metrics_addr, |sd| at_ingest::run(cfg, sd));
        ingest.wait_healthy(Duration::from_secs(30)).await?;
        Ok(ingest)
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
        let cfg = at_reencrypt::Config {
            requests,
            ..self.worker_config(group)
        };
        self.spawn(cfg.worker.metrics_addr, |sd| at_reencrypt::run(cfg, sd))
    }

    /// Runs a service's `run(config, shutdown)` as a task that stops with this test.
    pub(crate) fn spawn<F, Fut>(&self, metrics: SocketAddr, f: F) -> Running
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
}
