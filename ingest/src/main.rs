//! `at-ingest`: parse configuration, run the bridge until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use clap::Parser;

/// The MQTT <-> Kafka bridge of ArmoredTwins.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Configuration file (defaults, then this file, then AT__… environment variables).
    #[arg(long, env = "AT_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("ingest");
    armored_base::telemetry::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg: at_ingest::Config =
        armored_runtime::config::load(&at_ingest::defaults(), args.config.as_deref())?;
    // Unless [kafka.sasl] is configured: the bridge's principal of the local brokers (infra/).
    cfg.kafka = cfg.kafka.or_local_principal("at-ingest");
    at_ingest::run(cfg, armored_base::shutdown::on_signals()).await
}
