//! `at-sync-bench`: the state-sync path's throughput, latency and CPU on the real brokers, against
//! the raw brokers measured in the same run (issue 17). For each configuration, on fresh topics:
//! - the raw MQTT ceiling (the devices' logins publishing payloads of an envelope's size, QoS 1,
//!   to one subscriber) and the raw Kafka ceiling (records of that size, `acks=all`, through a
//!   topic with `at.sync.v1`'s partitions, to one consumer);
//! - the pipeline: the devices publish sealed changes over MQTT; bridges, workers and services as
//!   in production (bridges and workers as processes, so that each one's CPU is read from /proc);
//!   the rate counted at services that verify and decrypt; then the latency at half that rate.
//!
//! The configurations: every (bridges, workers) pair at the fewest receivers (the scaling), then
//! the base pair at each other receiver count (the cost curve). Writes one JSON object per
//! configuration and an SVG plot beside it.

mod fleet;
mod pace;
mod pipeline;
mod raw;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use armored_base::Shutdown;
use armored_client::kafka::{Ctl, OWNER_PRINCIPAL};
use armored_runtime::config::KafkaConfig;
use armored_runtime::kafka::{create_topics, Topics};

use self::fleet::Shape;
use self::pipeline::Topology;
pub use self::report::{plot, SyncRow};
use crate::bench::rid;

/// What to run and where.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Devices publishing (spread evenly over `twins`).
    pub devices: usize,
    /// Twins.
    pub twins: usize,
    /// Changes of the maximum-rate phase (split evenly over the devices); the latency phase
    /// publishes half as many again.
    pub changes: usize,
    /// Messages published and not yet received (by the slowest receiver) at most.
    pub backlog: u64,
    /// Bridge counts of the scaling runs.
    pub bridges: Vec<usize>,
    /// Worker counts of the scaling runs.
    pub workers: Vec<usize>,
    /// Services granted per twin: the first for the scaling runs, each other one with the base
    /// topology (the first bridge count and 2 workers, if listed).
    pub receivers: Vec<usize>,
    /// Measure the latency at half the maximum rate.
    pub latency: bool,
    /// Measure it at this rate (changes per second) instead of half the maximum.
    pub latency_rate: Option<f64>,
    /// Where the services and brokers are.
    pub site: crate::site::Site,
    /// JSON output (the plot goes beside it); `None`: print only.
    pub out: Option<PathBuf>,
}

impl SyncConfig {
    /// (bridges, workers, receivers) of every configuration, in the order they run.
    pub fn configurations(&self) -> Vec<(usize, usize, usize)> {
        let r0 = self.receivers.first().copied().unwrap_or(1);
        let mut v = Vec::new();
        for &b in &self.bridges {
            for &w in &self.workers {
                v.push((b, w, r0));
            }
        }
        let b0 = self.bridges.first().copied().unwrap_or(1);
        let w0 = if self.workers.contains(&2) {
            2
        } else {
            self.workers.first().copied().unwrap_or(1)
        };
        for &r in self.receivers.iter().skip(1) {
            v.push((b0, w0, r));
        }
        v
    }
}

/// Runs every configuration and reports.
pub async fn run(cfg: &SyncConfig, shutdown: &Shutdown) -> anyhow::Result<Vec<SyncRow>> {
    if cfg.devices == 0 || cfg.twins == 0 || cfg.devices < cfg.twins {
        bail!(
            "need at least one device per twin ({} devices, {} twins)",
            cfg.devices,
            cfg.twins
        );
    }
    if cfg.changes < cfg.devices {
        bail!(
            "need at least one change per device ({} changes, {} devices)",
            cfg.changes,
            cfg.devices
        );
    }
    std::fs::create_dir_all(&cfg.site.dir)?;
    let probe = raw::Login {
        user: format!("bench-probe-{}", rid()),
        password: cfg.site.ingest_password.clone(),
    };
    crate::procs::add_mqtt_bridge(&cfg.site.infra_dir, &probe.user, &probe.password)?;
    let down = raw::Login {
        user: format!("{}-down", probe.user),
        ..probe
    };
    let stored = raw::broker_stored(&cfg.site.mqtt_host, cfg.site.mqtt_port, &down).await;
    match stored {
        Some(n) if n > 10_000 => println!(
            "!! mosquitto holds {n} messages (old persistent sessions?): expect slow publishes and latency spikes at its autosaves; `infra/stop.sh && infra/start.sh --fresh` starts clean"
        ),
        Some(n) => println!("   mosquitto holds {n} messages"),
        None => println!("   (mosquitto's stored-message count was not read)"),
    }
    let mut rows = Vec::new();
    for (b, w, r) in cfg.configurations() {
        println!(
            "== {b} bridge(s), {w} worker(s), {r} service(s) per twin; {} devices on {} twins, {} changes ==",
            cfg.devices, cfg.twins, cfg.changes
        );
        let mut row = run_one(
            cfg,
            Topology {
                bridges: b,
                workers: w,
            },
            r,
            shutdown,
        )
        .await?;
        row.mqtt_stored_at_start = stored;
        rows.push(row);
    }
    report::report(cfg.out.as_deref(), &rows)?;
    Ok(rows)
}

async fn run_one(
    cfg: &SyncConfig,
    topo: Topology,
    receivers: usize,
    shutdown: &Shutdown,
) -> anyhow::Result<SyncRow> {
    let dir = cfg.site.dir.join(format!(
        "b{}w{}r{receivers}-{}",
        topo.bridges,
        topo.workers,
        rid()
    ));
    std::fs::create_dir_all(&dir)?;
    let kafka = KafkaConfig {
        brokers: cfg.site.brokers.clone(),
        topic_prefix: format!("sync-{}.", rid()),
        session_timeout_ms: 6000,
        linger_ms: 1,
        fetch_wait_max_ms: 5,
        connect_timeout_ms: 10_000,
        sasl: None,
    }
    .as_local_principal("at-kafka")?;
    let topics = Topics::new(&kafka.topic_prefix);
    create_topics(&kafka, &topics.all()).await?;
    crate::procs::grant_kafka_acls(&cfg.site.infra_dir, &kafka.topic_prefix)?;
    let ctl = Ctl::with_config(kafka.as_local_principal(OWNER_PRINCIPAL)?)?;

    let t = Instant::now();
    let max_n = cfg.changes / cfg.devices;
    let shape = Shape {
        twins: cfg.twins,
        devices: cfg.devices,
        receivers,
        per_device: 1 + max_n + max_n / 2,
    };
    let fleet = fleet::setup(&ctl, &cfg.site.infra_dir, &dir, shape).await?;
    let size = fleet
        .devices
        .first()
        .and_then(|d| d.envelopes.get(1))
        .map_or(0, Vec::len);
    println!(
        "   set-up: {} devices enrolled, {} changes sealed ({size} B each), {receivers} services granted in {:.1} s",
        fleet.devices.len(),
        fleet.devices.len() * shape.per_device,
        t.elapsed().as_secs_f64()
    );

    // The raw ceilings, right before the pipeline.
    let reader = raw::Login {
        user: format!("bench-raw-{}", rid()),
        password: cfg.site.ingest_password.clone(),
    };
    crate::procs::add_mqtt_bridge(&cfg.site.infra_dir, &reader.user, &reader.password)?;
    let reader_up = raw::Login {
        user: format!("{}-up", reader.user),
        ..reader.clone()
    };
    let raw_mqtt = raw::mqtt(
        &cfg.site.mqtt_host,
        cfg.site.mqtt_port,
        &pipeline::logins(&fleet.devices),
        &reader_up,
        max_n,
        size,
        cfg.backlog,
    )
    .await?;
    println!("      raw MQTT: {raw_mqtt:.0}/s");
    let partitions = topics
        .all()
        .into_iter()
        .find(|(n, _)| *n == topics.sync())
        .map_or(12, |(_, p)| p);
    let raw_kafka = raw::kafka(
        &kafka,
        &format!("{}raw-ceiling", kafka.topic_prefix),
        partitions,
        (max_n * cfg.devices) as u64,
        size,
        cfg.twins,
        cfg.backlog,
    )
    .await?;
    println!("      raw Kafka: {raw_kafka:.0}/s");

    let m = pipeline::run(cfg, &kafka, &fleet, topo, &dir, shutdown).await?;
    let ceiling = raw_mqtt.min(raw_kafka);
    let row = SyncRow {
        bridges: topo.bridges,
        workers: topo.workers,
        receivers_per_twin: receivers,
        raw_mqtt_msgs_per_s: raw_mqtt,
        raw_kafka_msgs_per_s: raw_kafka,
        pipeline_msgs_per_s: m.msgs_per_s,
        ratio: m.msgs_per_s / ceiling,
        p50_ms: m.latency.map(|l| l.p50_ms),
        p99_ms: m.latency.map(|l| l.p99_ms),
        p999_ms: m.latency.map(|l| l.p999_ms),
        cloud_cpu_us_per_msg: m.cpu.cloud_us_per_msg(),
        cpu_ms_per_1000: m.cpu,
        devices: fleet.devices.len(),
        twins: cfg.twins,
        devices_per_twin: cfg.devices.div_ceil(cfg.twins),
        changes: m.changes,
        payload_bytes: size,
        deliveries_per_change: m.deliveries_per_change,
        device_deliveries: m.device_deliveries,
        duplicates: m.duplicates,
        uplinks_per_bridge: m.per_bridge,
        records_per_worker: m.per_worker,
        latency_rate_per_s: m.latency.map(|l| l.rate_per_s),
        latency_samples: m.latency.map(|l| l.samples),
        backend: armored_crypto::group::BACKEND.to_string(),
        mqtt_stored_at_start: None,
    };
    // Nothing of this configuration is needed by the next: its keys, its topics.
    let _ = std::fs::remove_dir_all(dir.join("devices"));
    if let Err(e) =
        armored_runtime::kafka::delete_topics_with_prefix(&kafka, &kafka.topic_prefix).await
    {
        println!("   (could not delete this run's topics: {e})");
    }
    Ok(row)
}
