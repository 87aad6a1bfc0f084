//! The pipeline of one configuration: the devices publish their sealed changes over MQTT to
//! `bridges` at-ingest processes (sharing the uplink when more than one), `workers` at-reencrypt
//! processes (one consumer group) route them, and every service receiver verifies, decrypts and
//! de-duplicates what it is delivered; each device also gets its twin's changes on its downlink.
//!
//! Three phases: a warm-up change per device (groups assigned, caches of the epoch's capsule
//! filled), then the maximum rate (publishers held only by the flow control of [`Pace`]), then
//! half that rate, evenly paced, for the latency of each change from the device's publish to its
//! decryption at the first service.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use armored_base::Shutdown;
use armored_client::service::{Outcome, Service as ServiceDir};
use rumqttc::QoS;

use super::fleet::{Dev, Fleet};
use super::pace::Pace;
use super::raw::client;
use super::SyncConfig;
use crate::procs::{self, free_addr, Service};

/// The processes of one configuration.
#[derive(Clone, Copy, Debug)]
pub struct Topology {
    /// at-ingest processes.
    pub bridges: usize,
    /// at-reencrypt processes.
    pub workers: usize,
}

/// What the pipeline measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Changes per second at the maximum rate (every service received each).
    pub msgs_per_s: f64,
    /// Changes of the maximum-rate phase.
    pub changes: u64,
    /// CPU ms per 1,000 changes in the maximum-rate phase, by process.
    pub cpu: Cpu,
    /// Latency in ms at half the maximum rate: p50, p99, p99.9 (and how many changes).
    pub latency: Option<Latency>,
    /// Copies the services dropped as duplicates (at-least-once redelivery).
    pub duplicates: u64,
    /// Deliveries the devices got on their downlinks (their siblings' changes and their own echo).
    pub device_deliveries: u64,
    /// Deliveries the workers produced per change (`at_reencrypt_deliveries_total` / changes).
    pub deliveries_per_change: f64,
    /// Uplink publishes each bridge took in the maximum-rate phase.
    pub per_bridge: Vec<f64>,
    /// Records each worker consumed in the maximum-rate phase.
    pub per_worker: Vec<f64>,
}

/// Latency percentiles.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Latency {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Changes measured.
    pub samples: usize,
    /// The rate they were published at, per second.
    pub rate_per_s: f64,
    /// The cloud's part, mean ms: from the bridge receiving a change to the worker's delivery
    /// for a service written to Kafka (the workers' `at_reencrypt_end_to_end_seconds`).
    pub cloud_mean_ms: f64,
}

/// CPU ms per 1,000 changes.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Cpu {
    /// Each bridge.
    pub bridges: Vec<f64>,
    /// Each worker.
    pub workers: Vec<f64>,
    /// Apache Kafka (every node).
    pub kafka: f64,
    /// mosquitto.
    pub mosquitto: f64,
    /// This process: the simulated devices' MQTT clients and the service receivers.
    pub bench: f64,
}

impl Cpu {
    /// Bridges and workers: the cloud's own CPU per change, in µs.
    pub fn cloud_us_per_msg(&self) -> f64 {
        self.bridges.iter().chain(&self.workers).sum::<f64>()
    }
}

/// Monotonic nanoseconds since the run's start, shared by publishers and receivers.
#[derive(Clone, Debug)]
struct Clock(Instant);

impl Clock {
    fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Publish times of the latency phase, by device and seq offset; arrival latencies at service 0.
#[derive(Debug, Default)]
struct Stamps {
    published: Vec<Vec<AtomicU64>>,
    latencies_ms: Mutex<Vec<f64>>,
}

/// Runs the pipeline on `fleet` with `topo`; `kafka` is the run's super-user config.
pub async fn run(
    cfg: &SyncConfig,
    kafka: &armored_runtime::config::KafkaConfig,
    fleet: &Fleet,
    topo: Topology,
    dir: &Path,
    shutdown: &Shutdown,
) -> anyhow::Result<Measured> {
    let devices = &fleet.devices;
    let per_device = devices.first().map_or(0, |d| d.envelopes.len());
    let (warm, max_n) = (1usize, cfg.changes / devices.len().max(1));
    if per_device < warm + max_n + max_n / 2 {
        bail!("too few sealed changes per device ({per_device})");
    }
    let log = [(
        "RUST_LOG",
        std::env::var("AT_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
    )];
    // Bridges: users of their own each; sharing the uplink (and the downlink group) if several.
    let tag = crate::bench::rid();
    let mut bridges = Vec::new();
    let mut bridge_users = Vec::new();
    for i in 0..topo.bridges {
        let user = format!("bench-sync-{tag}-{i}");
        procs::add_mqtt_bridge(&cfg.site.infra_dir, &user, &cfg.site.ingest_password)?;
        let addr = free_addr()?;
        let mut c = crate::bench::configs::ingest(&cfg.site, kafka, &user, addr)?;
        c.ingest.downlink_group = format!("ingest-sync-down-{tag}");
        if topo.bridges > 1 {
            c.ingest.shared_group = format!("bench-{tag}");
        }
        bridges.push(Service::start(
            &cfg.site.bin_dir,
            "at-ingest",
            &c,
            &dir.join(format!("ingest-{i}.toml")),
            &log,
            addr,
            &dir.join(format!("ingest-{i}.log")),
        )?);
        bridge_users.push(user);
    }
    let group = format!("reencrypt-sync-{tag}");
    let mut workers = Vec::new();
    for i in 0..topo.workers {
        let addr = free_addr()?;
        workers.push(Service::start(
            &cfg.site.bin_dir,
            "at-reencrypt",
            &crate::bench::configs::worker(kafka, &group, &dir.join(format!("worker-{i}")), addr)?,
            &dir.join(format!("reencrypt-{i}.toml")),
            &log,
            addr,
            &dir.join(format!("reencrypt-{i}.log")),
        )?);
    }
    for s in bridges.iter_mut().chain(workers.iter_mut()) {
        s.wait_healthy(Duration::from_secs(120)).await?;
    }

    // The receivers: each service verifies, decrypts and de-duplicates its deliveries.
    let clock = Clock(Instant::now());
    let stamps = Arc::new(Stamps {
        published: devices
            .iter()
            .map(|d| (0..d.envelopes.len()).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        ..Stamps::default()
    });
    let index: Arc<HashMap<(String, String), (usize, u64)>> = Arc::new(
        devices
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.twin.clone(), d.device.clone()), (i, d.first_seq)))
            .collect(),
    );
    let latency_from = (warm + max_n) as u64;
    let stop = shutdown.child_token();
    let mut counters = Vec::new();
    let mut receivers = Vec::new();
    for (k, r) in fleet.receivers.iter().enumerate() {
        let count = Arc::new(AtomicU64::new(0));
        counters.push(count.clone());
        let mut svc = ServiceDir::open(&r.dir)?;
        let (ctl, stop) = (r.ctl.clone(), stop.clone());
        let (stamps, index, clock) = (stamps.clone(), index.clone(), clock.clone());
        receivers.push(tokio::spawn(async move {
            svc.consume(&ctl, None, None, stop, |o| {
                let Outcome::Received(r) = o else { return };
                count.fetch_add(1, Ordering::Relaxed);
                if k != 0 {
                    return;
                }
                let Some(&(i, first)) = index.get(&(r.twin_id.clone(), r.device_id.clone())) else {
                    return;
                };
                let off = r.seq.saturating_sub(first);
                if off < latency_from {
                    return;
                }
                let sent = stamps
                    .published
                    .get(i)
                    .and_then(|v| v.get(off as usize))
                    .map_or(0, |a| a.load(Ordering::Relaxed));
                if sent > 0 {
                    let ms = clock.ns().saturating_sub(sent) as f64 / 1e6;
                    if let Ok(mut l) = stamps.latencies_ms.lock() {
                        l.push(ms);
                    }
                }
            })
            .await
        }));
    }

    // The devices' connections: each also counts what its downlink brings.
    let downlink = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for d in devices {
        let n = downlink.clone();
        let (c, task) = client(
            &cfg.site.mqtt_host,
            cfg.site.mqtt_port,
            &d.login,
            move |_| {
                n.fetch_add(1, Ordering::Relaxed);
            },
        );
        c.subscribe(&d.down, QoS::AtLeastOnce).await?;
        clients.push((c, task));
    }

    let total_for = |upto: usize| (upto * devices.len()) as u64;
    let publish = |range: std::ops::Range<usize>, pace: Arc<Pace>, gap: Option<Duration>| {
        let mut tasks = Vec::new();
        for (i, (d, (c, _))) in devices.iter().zip(&clients).enumerate() {
            let (c, pace, stamps, clock) = (c.clone(), pace.clone(), stamps.clone(), clock.clone());
            let envs: Vec<Vec<u8>> = d.envelopes[range.clone()].to_vec();
            let (topic, start) = (d.up.clone(), range.start);
            tasks.push(tokio::spawn(async move {
                // Paced publishers start spread over one gap, so they do not publish in bursts.
                let mut next = Instant::now()
                    + gap.map_or(Duration::ZERO, |g| g.mul_f64(i as f64 / 1000.0 % 1.0));
                for (k, e) in envs.into_iter().enumerate() {
                    if let Some(g) = gap {
                        tokio::time::sleep_until(next.into()).await;
                        next += g;
                    }
                    pace.admit().await?;
                    if let Some(s) = stamps.published.get(i).and_then(|v| v.get(start + k)) {
                        s.store(clock.ns().max(1), Ordering::Relaxed);
                    }
                    c.publish(&topic, QoS::AtLeastOnce, false, e).await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        tasks
    };
    let wait_all = |want: u64, what: &'static str| {
        let counters = counters.clone();
        async move {
            let min = || {
                counters
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0)
            };
            let mut last = (min(), Instant::now());
            while min() < want {
                if min() != last.0 {
                    last = (min(), Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "{what}: stalled at {} of {want} changes at the slowest service",
                        min()
                    );
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(())
        }
    };

    // Warm-up.
    let unpaced = Arc::new(Pace::new(u64::MAX / 2, counters.clone(), 0));
    for t in publish(0..warm, unpaced.clone(), None) {
        t.await??;
    }
    wait_all(total_for(warm), "warm-up").await?;

    // Maximum rate.
    let brokers = procs::broker_pids(&cfg.site.state_dir);
    let cpu0 = snapshot(&bridges, &workers, &brokers);
    let counts0 = Counts::read(&bridges, &workers).await;
    let pace = Arc::new(Pace::new(cfg.backlog, counters.clone(), total_for(warm)));
    let t0 = Instant::now();
    let tasks = publish(warm..warm + max_n, pace, None);
    wait_all(total_for(warm + max_n), "maximum rate").await?;
    let secs = t0.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    let cpu1 = snapshot(&bridges, &workers, &brokers);
    let counts1 = Counts::read(&bridges, &workers).await;
    let minus = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a - b).collect::<Vec<f64>>();
    let per_worker = minus(&counts1.per_worker, &counts0.per_worker);
    let per_bridge = minus(&counts1.per_bridge, &counts0.per_bridge);
    let changes = total_for(max_n);
    let rate = changes as f64 / secs;
    println!(
        "      pipeline: {changes} changes in {secs:.2} s = {rate:.0}/s at every one of {} services; uplinks per bridge {per_bridge:?}, records per worker {per_worker:?}",
        fleet.receivers.len()
    );

    // Half the maximum rate, evenly paced, for the latency.
    let half_n = max_n / 2;
    let latency = if half_n > 0 && cfg.latency {
        let paced = cfg.latency_rate.unwrap_or(rate / 2.0).max(1.0);
        let gap = Duration::from_secs_f64(devices.len() as f64 / paced);
        let pace = Arc::new(Pace::new(
            cfg.backlog,
            counters.clone(),
            total_for(warm + max_n),
        ));
        let from = warm + max_n;
        let cloud0 = cloud_latency(&workers).await;
        let tasks = publish(from..from + half_n, pace, Some(gap));
        wait_all(total_for(from + half_n), "half rate").await?;
        for t in tasks {
            t.await??;
        }
        let cloud1 = cloud_latency(&workers).await;
        let cloud_mean_ms = (cloud1.0 - cloud0.0) * 1000.0 / (cloud1.1 - cloud0.1).max(1.0);
        let mut l = stamps
            .latencies_ms
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        l.sort_by(f64::total_cmp);
        let q = |p: f64| {
            l.get(
                ((l.len() as f64 * p).ceil() as usize)
                    .saturating_sub(1)
                    .min(l.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or(f64::NAN)
        };
        Some(Latency {
            p50_ms: q(0.50),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            samples: l.len(),
            rate_per_s: paced,
            cloud_mean_ms,
        })
    } else {
        None
    };
    if let Some(l) = latency {
        println!(
            "      latency at {:.0}/s: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms ({} changes); bridge → delivery in Kafka {:.1} ms mean",
            l.rate_per_s, l.p50_ms, l.p99_ms, l.p999_ms, l.samples, l.cloud_mean_ms
        );
    }
    // The devices' downlinks drain (their deliveries are counted, not waited for by the clock).
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut duplicates = 0;
    for r in receivers {
        duplicates += r.await?.context("a service receiver")?.duplicates;
    }
    for (c, task) in clients {
        let _ = c.disconnect().await;
        task.abort();
    }
    for s in bridges.iter_mut().chain(workers.iter_mut()) {
        s.stop();
    }
    let mut logins = Vec::new();
    for u in &bridge_users {
        for part in ["up", "down"] {
            let user = format!("{u}-{part}");
            logins.push((user.clone(), cfg.site.ingest_password.clone(), user));
        }
    }
    let broker = crate::bench::fleet::Broker {
        host: cfg.site.mqtt_host.clone(),
        port: cfg.site.mqtt_port,
    };
    crate::bench::fleet::forget_sessions(&broker, &logins).await;

    let per_k = |ms: f64| ms * 1000.0 / changes as f64;
    let cpu = Cpu {
        bridges: cpu0
            .bridges
            .iter()
            .zip(&cpu1.bridges)
            .map(|(a, b)| per_k(b - a))
            .collect(),
        workers: cpu0
            .workers
            .iter()
            .zip(&cpu1.workers)
            .map(|(a, b)| per_k(b - a))
            .collect(),
        kafka: per_k(cpu1.kafka - cpu0.kafka),
        mosquitto: per_k(cpu1.mosquitto - cpu0.mosquitto),
        bench: per_k(cpu1.bench - cpu0.bench),
    };
    Ok(Measured {
        msgs_per_s: rate,
        changes,
        cpu,
        latency,
        duplicates,
        device_deliveries: downlink.load(Ordering::Relaxed),
        deliveries_per_change: (counts1.deliveries - counts0.deliveries) / changes as f64,
        per_bridge,
        per_worker,
    })
}

/// CPU ms so far of each process.
fn snapshot(bridges: &[Service], workers: &[Service], brokers: &[(String, u32)]) -> Cpu {
    let of = |name: &str| {
        brokers
            .iter()
            .filter(|(n, _)| n.starts_with(name))
            .filter_map(|(_, p)| procs::cpu_ms(*p))
            .sum()
    };
    Cpu {
        bridges: bridges.iter().map(Service::cpu_ms).collect(),
        workers: workers.iter().map(Service::cpu_ms).collect(),
        kafka: of("kafka"),
        mosquitto: of("mosquitto"),
        bench: procs::self_cpu_ms(),
    }
}

/// The value of `sample` at each of `services`.
async fn each(services: &[Service], sample: &str) -> Vec<f64> {
    let mut v = Vec::with_capacity(services.len());
    for s in services {
        v.push(s.metric(sample).await);
    }
    v
}

/// The workers' service deliveries' end-to-end histogram: (sum in s, count).
async fn cloud_latency(workers: &[Service]) -> (f64, f64) {
    let h = "at_reencrypt_end_to_end_seconds";
    (
        each(workers, &format!("{h}_sum{{kind=\"service\"}}"))
            .await
            .iter()
            .sum(),
        each(workers, &format!("{h}_count{{kind=\"service\"}}"))
            .await
            .iter()
            .sum(),
    )
}

/// Counters read at both ends of the maximum-rate phase.
struct Counts {
    /// Deliveries the workers produced, every kind.
    deliveries: f64,
    /// Records each worker consumed.
    per_worker: Vec<f64>,
    /// Uplinks each bridge took.
    per_bridge: Vec<f64>,
}

impl Counts {
    async fn read(bridges: &[Service], workers: &[Service]) -> Self {
        let mut deliveries = 0.0;
        for kind in ["device", "service", "mpc-node"] {
            let sample = format!("at_reencrypt_deliveries_total{{kind=\"{kind}\"}}");
            deliveries += each(workers, &sample).await.iter().sum::<f64>();
        }
        Self {
            deliveries,
            per_worker: each(workers, "at_reencrypt_messages_in_total").await,
            per_bridge: each(bridges, "at_ingest_messages_in_total{path=\"up\"}").await,
        }
    }
}

/// The devices of `fleet` (for the raw run): each login and its uplink topic.
pub fn logins(devices: &[Dev]) -> Vec<(super::raw::Login, String)> {
    devices
        .iter()
        .map(|d| (d.login.clone(), d.up.clone()))
        .collect()
}
