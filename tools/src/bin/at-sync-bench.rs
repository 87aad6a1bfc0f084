//! `at-sync-bench`: the state-sync path's throughput, latency and CPU against the raw brokers in
//! the same run (`infra/bench.sh --sync` runs it).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use armored_tools::site::SiteArgs;
use armored_tools::sync_bench::{plot, run, SyncConfig, SyncRow};
use clap::Parser;

/// Measures, per configuration: raw MQTT and raw Kafka ceilings, then devices → bridges → workers
/// → services (verify + decrypt) at the maximum rate and the latency at half of it; prints a table
/// with the ratio pipeline / min(raw) and writes JSON and an SVG plot.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Devices publishing, spread evenly over the twins.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    devices: u64,
    /// Twins (each device receives its twin's changes: 2 devices per twin = one sibling each).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    twins: u64,
    /// Changes of the maximum-rate phase; the latency phase publishes half as many again.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    changes: u64,
    /// Messages published and not yet received at most (the publishers' flow control).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    backlog: u64,
    /// Bridge counts of the scaling runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    bridges: Vec<usize>,
    /// Worker counts of the scaling runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
    /// Services per twin: the first for the scaling runs, the others at 1 bridge and 2 workers.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    receivers: Vec<usize>,
    /// Skip the latency phase.
    #[arg(long)]
    no_latency: bool,
    /// The latency phase's rate in changes per second (default: half the measured maximum).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    latency_rate: Option<u64>,
    /// A short pass (CI): 20 devices on 10 twins, 400 changes, 2 bridges, 1 worker, 1 service.
    #[arg(long)]
    smoke: bool,
    /// JSON output (the SVG plot is written beside it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only draw the plot again from a JSON file this bench wrote (the SVG goes beside it).
    #[arg(long, value_name = "JSON")]
    replot: Option<PathBuf>,
    #[command(flatten)]
    site: SiteArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("at-sync-bench");
    armored_base::telemetry::exit_quietly_on_broken_pipe();
    armored_base::telemetry::exit_code(bench().await)
}

async fn bench() -> anyhow::Result<()> {
    let a = Args::parse();
    if let Some(json) = &a.replot {
        let rows: Vec<SyncRow> = serde_json::from_slice(&std::fs::read(json)?)
            .map_err(|e| anyhow::anyhow!("{}: not this bench's JSON: {e}", json.display()))?;
        let svg = json.with_extension("svg");
        std::fs::write(&svg, plot(&rows))?;
        println!("wrote {}", svg.display());
        return Ok(());
    }
    let mut cfg = SyncConfig {
        devices: a.devices as usize,
        twins: a.twins as usize,
        changes: a.changes as usize,
        backlog: a.backlog,
        bridges: a.bridges,
        workers: a.workers,
        receivers: a.receivers,
        latency: !a.no_latency,
        latency_rate: a.latency_rate.map(|r| r as f64),
        site: a.site.resolve("sync-bench")?,
        out: a.out,
    };
    if a.smoke {
        (cfg.devices, cfg.twins, cfg.changes, cfg.backlog) = (20, 10, 400, 200);
        (cfg.bridges, cfg.workers, cfg.receivers) = (vec![2], vec![1], vec![1]);
    }
    for (what, v) in [
        ("bridges", &cfg.bridges),
        ("workers", &cfg.workers),
        ("receivers", &cfg.receivers),
    ] {
        if v.is_empty() || v.iter().any(|&n| n == 0 || n > 64) {
            anyhow::bail!("--{what}: each count must be 1..=64 ({v:?})");
        }
    }
    let rows = run(&cfg, &armored_base::Shutdown::new()).await?;
    // Every configuration's every change reached every service (the run fails otherwise).
    anyhow::ensure!(!rows.is_empty(), "no configuration ran");
    Ok(())
}
