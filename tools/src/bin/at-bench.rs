//! `at-bench`: Protocol 2's job path benchmarked on the running brokers (`infra/bench.sh` runs it).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use armored_client::kafka::{Ctl, OWNER_PRINCIPAL};
use armored_tools::bench::{run, BenchConfig};
use clap::Parser;

/// For each N, N + 1 phones upload their shares over MQTT; the bridge, workers and three MPC nodes
/// run as processes; prints job latency and CPU per user by phase beside the paper's Table 2.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kafka bootstrap servers (default from AT__KAFKA__BROKERS or 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
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
    /// Scratch directory (default: a new one under $AT_STATE_DIR).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where at-ingest, at-reencrypt and at-mpc-node are (default: next to at-bench).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[arg(long, env = "AT_MQTT_HOST", default_value = "127.0.0.1")]
    mqtt_host: String,
    #[arg(long, env = "AT_MQTT_PORT", default_value_t = 1883)]
    mqtt_port: u16,
    /// The bridge's MQTT password.
    #[arg(long, env = "AT_MQTT_INGEST_PASSWORD", hide_env_values = true)]
    ingest_password: String,
    /// The infra/ directory (for mqtt-user.sh).
    #[arg(long, env = "AT_INFRA_DIR", default_value = "infra")]
    infra_dir: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("at-bench");
    armored_base::telemetry::exit_quietly_on_broken_pipe();
    armored_base::telemetry::exit_code(bench().await)
}

async fn bench() -> anyhow::Result<()> {
    let a = Args::parse();
    let state = PathBuf::from(std::env::var("AT_STATE_DIR").unwrap_or_else(|_| ".".into()));
    let exe = std::env::current_exe()?;
    let brokers = Ctl::connect(a.brokers.as_deref(), None, OWNER_PRINCIPAL)?
        .kafka
        .brokers
        .clone();
    let cfg = BenchConfig {
        users: a.users,
        points: a.points,
        share_epochs: a.share_epochs,
        workers: a.workers,
        wave: a.wave,
        bin_dir: a
            .bin_dir
            .or_else(|| exe.parent().map(PathBuf::from))
            .unwrap_or_default(),
        dir: a.dir.unwrap_or_else(|| {
            state.join(format!("bench-{}", armored_base::time::now_ms() / 1000))
        }),
        infra_dir: a.infra_dir,
        state_dir: state,
        brokers,
        mqtt_host: a.mqtt_host,
        mqtt_port: a.mqtt_port,
        ingest_password: a.ingest_password,
        out: a.out,
    };
    run(&cfg, &armored_base::Shutdown::new()).await?;
    Ok(())
}
