//! `at-reencrypt`: parse configuration, run a worker until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use clap::Parser;

/// A re-encryption worker of ArmoredTwins (run several: they share the partitions).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Configuration file (defaults, then this file, then AT__… environment variables).
    #[arg(long, env = "AT_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("reencrypt");
    armored_base::telemetry::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg: at_reencrypt::Config =
        armored_runtime::config::load(&at_reencrypt::defaults(), args.config.as_deref())?;
    // Unless [kafka.sasl] is configured: the workers' principal of the local brokers (infra/).
    cfg.kafka = cfg.kafka.or_local_principal("at-reencrypt");
    at_reencrypt::run(cfg, armored_base::shutdown::on_signals()).await
}
