//! A bounded run of state changes through the whole pipeline with a fault injected half-way: D
//! devices over MQTT → `at-ingest` → `at.sync.v1` → two `at-reencrypt` workers (one group) →
//! `at.deliver.v1` → a service granted `sync` that verifies, decrypts and de-duplicates. Used by the
//! broker fault tests (`tests/broker_restart.rs` on the single node, `tests/faults.rs` on the
//! three-node cluster).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use armored_client::service::{Outcome, Service, Stats};
use armored_crypto::identity::PartyKind;
use armored_device::link::LinkEvent;
use armored_runtime::scrape;
use serde_json::json;

use crate::devices::TestDevice;
use crate::env::{rand_id, repo_root, Env};

/// Unacknowledged publishes a device keeps in flight: below rumqttc's window (100) and its
/// request queue (256), so the link's event loop never waits on a full queue.
const WINDOW: usize = 64;

/// The shape of a run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Twins (each with `devices_per_twin` devices).
    pub twins: usize,
    /// Devices of each twin.
    pub devices_per_twin: usize,
    /// State changes in all (split evenly over the devices).
    pub changes: usize,
    /// The fault is injected once the receiver has this many unique changes.
    pub fault_after: usize,
    /// How long the receiver waits with nothing new before giving up.
    pub idle: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    /// Changes published by the devices.
    pub published: usize,
    /// Unique changes the receiver verified and decrypted.
    pub unique: usize,
    /// Copies it saw again and dropped (at-least-once redelivery).
    pub duplicates: u64,
    /// The receiver's statistics (refusals by reason).
    pub stats: Stats,
    /// Records on the dead-letter topic.
    pub dead_letters: Vec<String>,
    /// Seconds from the first publish to the last delivery.
    pub seconds: f64,
    /// Unique changes seen when the fault was injected, and when it was over.
    pub fault_window: (usize, usize),
}

/// A progress counter the fault waits on.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicUsize>);

impl Progress {
    /// Unique changes received so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    /// Waits until at least `n` were received, or fails after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.get() < n {
            ensure!(
                Instant::now() < deadline,
                "only {} of {n} changes received within {timeout:?}",
                self.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Runs `load` in `env`, calling `fault` once `load.fault_after` changes arrived; returns what was
/// measured. The services run in-process and are never restarted: a run fails if one of them
/// stopped by itself.
pub async fn run<F, Fut>(env: &Env, load: Load, fault: F) -> anyhow::Result<Report>
where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let ctl = env.owner_ctl()?;
    let ingest = env.start_ingest().await?;
    let group = rand_id("reenc");
    let workers = [env.start_worker(&group), env.start_worker(&group)];
    for s in std::iter::once(&ingest).chain(&workers) {
        s.wait_healthy(Duration::from_secs(30)).await?;
    }

    let owner = env.owner(&ctl).await?;
    let svc_dir = env.dir.join("receiver");
    let id = Service::init(&svc_dir, &rand_id("svc"), PartyKind::Service)?;
    let (party, _) = owner.trust(&ctl, &std::fs::read(id)?).await?;
    owner.grant(&ctl, &party.party_id, "sync", None).await?;

    let mut devices = Vec::new();
    for t in 0..load.twins {
        let twin = format!("{}-{t}", rand_id("fleet"));
        for d in 0..load.devices_per_twin {
            devices.push(env.device(&owner, &ctl, &twin, &format!("d{d}")).await?);
        }
    }
    let per_device = load.changes / devices.len();
    let published = per_device * devices.len();

    // The receiver runs throughout, counting unique changes.
    let progress = Progress::default();
    let seen: Arc<std::sync::Mutex<BTreeSet<(String, String, u64)>>> = Arc::default();
    let receiver = {
        let mut svc = Service::open(&svc_dir)?;
        let ctl = env.service_ctl(&svc.id).await?;
        let progress = progress.clone();
        let seen = seen.clone();
        let stop = env.shutdown.child_token();
        tokio::spawn(async move {
            // Its idle limit is longer than the stall check below, which reports where things stand.
            let idle = load.idle + Duration::from_secs(30);
            svc.consume(&ctl, Some(published as u64), Some(idle), stop, |o| {
                if let Outcome::Received(r) = o {
                    if let Ok(mut s) = seen.lock() {
                        s.insert((r.twin_id.clone(), r.device_id.clone(), r.seq));
                        progress.0.store(s.len(), Ordering::Relaxed);
                    }
                }
            })
            .await
        })
    };

    let t0 = Instant::now();
    let mut publishers = Vec::new();
    let mut counters = Vec::new();
    for dev in devices {
        let c = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        counters.push(c.clone());
        publishers.push(tokio::spawn(publish_all(dev, per_device, c)));
    }
    progress
        .wait_for(load.fault_after, Duration::from_secs(120))
        .await
        .context("before the fault")?;
    let before = progress.get();
    fault(progress.clone())
        .await
        .context("injecting the fault")?;
    let after = progress.get();
    // Every change delivered, or a stall: then say where the pipeline stands.
    let mut last = (progress.get(), Instant::now());
    while progress.get() < published && !receiver.is_finished() {
        if progress.get() != last.0 {
            last = (progress.get(), Instant::now());
        } else if last.1.elapsed() > load.idle {
            let mut state = String::from("\n  devices (published/acknowledged):");
            for c in &counters {
                state.push_str(&format!(
                    " {}/{}",
                    c[0].load(Ordering::Relaxed),
                    c[1].load(Ordering::Relaxed)
                ));
            }
            for s in std::iter::once(&ingest).chain(&workers) {
                let text = scrape::get(s.metrics, "/metrics")
                    .await
                    .map(|r| r.body)
                    .unwrap_or_default();
                for l in text.lines().filter(|l| {
                    !l.starts_with('#')
                        && (l.contains("_total") || l.contains("lag") || l.contains("in_flight"))
                }) {
                    state.push_str(&format!("\n  {} {l}", s.metrics));
                }
            }
            // AT_STALL_PAUSE: keep the stalled services up a minute longer, for a debugger.
            if std::env::var_os("AT_STALL_PAUSE").is_some() {
                eprintln!("STALL-PAUSE pid {}", std::process::id());
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            bail!(
                "stalled: {} of {published} changes after {:?} without progress; services:{state}",
                progress.get(),
                load.idle
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in publishers {
        p.await??;
    }
    let stats = receiver.await??;
    let seconds = t0.elapsed().as_secs_f64();

    for s in std::iter::once(&ingest).chain(&workers) {
        if s.task.is_finished() {
            bail!(
                "a service stopped by itself during the run (metrics {})",
                s.metrics
            );
        }
    }
    let dead_letters = env
        .dead_letters()?
        .into_iter()
        .map(|d| format!("{}:{}", d.service, d.reason))
        .collect();
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(Report {
        published,
        unique: seen.len(),
        duplicates: stats.duplicates,
        stats,
        dead_letters,
        seconds,
        fault_window: (before, after),
    })
}

/// Records and publishes `n` changes, keeping at most [`WINDOW`] unacknowledged; counts both in
/// `progress` (published, acknowledged by the MQTT broker).
async fn publish_all(
    mut dev: TestDevice,
    n: usize,
    progress: Arc<[AtomicUsize; 2]>,
) -> anyhow::Result<()> {
    let mut acked = 0usize;
    for i in 0..n {
        while i - acked >= WINDOW {
            match tokio::time::timeout(Duration::from_secs(120), dev.events.recv()).await {
                Ok(Some(LinkEvent::Acked)) => {
                    acked += 1;
                    progress[1].store(acked, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("the device link stopped"),
                Err(_) => bail!("no PUBACK for 120 s ({acked} of {i} acknowledged)"),
            }
        }
        dev.publish(&["sync"], json!({ "i": i })).await?;
        progress[0].store(i + 1, Ordering::Relaxed);
    }
    Ok(())
}

/// `infra/stop.sh ARGS` or `infra/start.sh ARGS` on the brokers this test runs against (the
/// environment's `AT_STATE_DIR` and ports). Awaited, not blocked on: a node's start takes ~20 s,
/// and a runtime worker held that long stalls the tasks queued on it (devices missed their MQTT
/// keep-alive and were disconnected in a CI run).
pub async fn infra(script: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("bash")
        .arg(repo_root().join("infra").join(script))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await?;
    eprintln!(
        "infra/{script} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    ensure!(out.status.success(), "infra/{script} {args:?} failed");
    Ok(())
}

/// How many Kafka nodes the running cluster has (`AT_KAFKA_NODES`, set by `infra/env.sh`).
pub fn kafka_nodes() -> usize {
    std::env::var("AT_KAFKA_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The leader node id of each partition of `topic` (partition, leader, in-sync replicas).
pub async fn leaders(env: &Env, topic: &str) -> anyhow::Result<Vec<(i32, i32, usize)>> {
    let topic = topic.to_string();
    metadata(env, move |md| {
        md.topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions())
            .map(|p| (p.id(), p.leader(), p.isr().len()))
            .collect()
    })
    .await
}

/// Waits until every partition of this test's topics and of the group offsets topic has a leader
/// and `isr` in-sync replicas (a restarted node has caught up).
pub async fn wait_in_sync(env: &Env, isr: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let prefix = env.kafka.topic_prefix.clone();
        let lagging = metadata(env, move |md| {
            md.topics()
                .iter()
                .filter(|t| t.name().starts_with(&prefix) || t.name() == "__consumer_offsets")
                .flat_map(|t| t.partitions())
                .filter(|p| p.leader() < 0 || p.isr().len() < isr)
                .count()
        })
        .await
        .unwrap_or(usize::MAX);
        if lagging == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{lagging} partitions not back to {isr} in-sync replicas within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The cluster's metadata (at most 10 s), read off the runtime's workers, and `f` of it.
async fn metadata<T: Send + 'static>(
    env: &Env,
    f: impl FnOnce(&rdkafka::metadata::Metadata) -> T + Send + 'static,
) -> anyhow::Result<T> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = armored_runtime::kafka::base_config(&env.kafka).create()?;
    tokio::task::spawn_blocking(move || {
        let md = c.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(f(&md))
    })
    .await?
}

/// Every change arrived once after de-duplication, the receiver refused none, nothing was
/// dead-lettered (every record of the run is valid).
pub fn assert_complete(report: &Report) {
    assert_eq!(
        report.unique, report.published,
        "every published change delivered after de-duplication: {report:?}"
    );
    assert!(
        report.stats.rejected.is_empty(),
        "the receiver refused nothing: {report:?}"
    );
    assert!(
        report.dead_letters.is_empty(),
        "no valid record was dead-lettered: {report:?}"
    );
}
