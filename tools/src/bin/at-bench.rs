//! `at-bench`: Protocol 2's job path benchmarked on the running brokers (`infra/bench.sh` runs it).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use armored_tools::bench::{run, BenchConfig};
use armored_tools::site::SiteArgs;
use clap::Parser;

/// For each N, N + 1 phones upload their shares over MQTT; the bridge, workers and three MPC nodes
/// run as processes; prints job latency and CPU per user by phase beside the paper's Table 2.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Participants per run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,1000")]
    users: Vec<usize>,
    /// Location points per phone.
    #[arg(long, default_value_t = 50)]
    points: u32,
    /// Slots per share epoch, comma-separated: each N runs once per value. 50 (one share epoch
    /// per 50-slot window) is the default share epoch, 1 the paper's accounting (#epochs = 50).
    #[arg(long, value_delimiter = ',', default_value = "50,1",
          value_parser = clap::value_parser!(u64).range(1..=armored_crypto::shares::MAX_SLOTS_PER_SHARE_EPOCH))]
    share_epochs: Vec<u64>,
    /// Re-encryption worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Phones connected at a time.
    #[arg(long, default_value_t = 100)]
    wave: usize,
    /// JSON rows (`[]` of {users, seconds, cpu_ms_per_user, …}); the fit goes beside it.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    site: SiteArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("at-bench");
    armored_base::telemetry::exit_quietly_on_broken_pipe();
    armored_base::telemetry::exit_code(bench().await)
}

async fn bench() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = BenchConfig {
        users: a.users,
        points: a.points,
        share_epochs: a.share_epochs,
        workers: a.workers,
        wave: a.wave,
        site: a.site.resolve("bench")?,
        out: a.out,
    };
    run(&cfg, &armored_base::Shutdown::new()).await?;
    Ok(())
}
