//! `at-mpc-node`: parse configuration, run node j until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use clap::Parser;

/// An MPC node of ArmoredTwins (run three, with indices 1, 2 and 3).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Configuration file (defaults, then this file, then AT__… environment variables).
    #[arg(long, env = "AT_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// This node's index (overrides node.index).
    #[arg(long)]
    index: Option<u32>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("mpc-node");
    armored_base::telemetry::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg: at_mpc_node::Config =
        armored_runtime::config::load(&at_mpc_node::defaults(), args.config.as_deref())?;
    if let Some(j) = args.index {
        cfg.node.index = j;
    }
    // Unless [kafka.sasl] is configured: node j's principal of the local brokers (infra/).
    cfg.kafka = cfg
        .kafka
        .or_local_principal(&format!("at-mpc-node-{}", cfg.node.index));
    at_mpc_node::run(cfg, armored_base::shutdown::on_signals()).await
}
