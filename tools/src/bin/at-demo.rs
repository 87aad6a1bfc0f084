//! `at-demo`: Protocols 1 and 2 played on the running brokers and services (`infra/demo.sh` starts
//! them and runs this).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use armored_client::kafka::{Ctl, OWNER_PRINCIPAL};
use armored_tools::demo::{default_dir, run, DemoConfig};
use clap::Parser;

/// Play the paper's protocols on the running brokers and services; fails if an expectation fails.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kafka bootstrap servers (default from AT__KAFKA__BROKERS or 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
    /// Topic name prefix.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Directory for the demo's parties (default: a new one under $AT_STATE_DIR).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, env = "AT_MQTT_HOST", default_value = "127.0.0.1")]
    mqtt_host: String,
    #[arg(long, env = "AT_MQTT_PORT", default_value_t = 1883)]
    mqtt_port: u16,
    /// The broker's TLS listener: the demo's devices connect there when a CA is given.
    #[arg(long, env = "AT_MQTT_TLS_PORT", default_value_t = 8883)]
    mqtt_tls_port: u16,
    /// The broker's TLS CA (PEM; infra/env.sh sets AT_MQTT_CA): the devices use TLS with it.
    #[arg(long, env = "AT_MQTT_CA")]
    mqtt_ca: Option<String>,
    /// Password of the all-access MQTT user (plays the raw eavesdropper).
    #[arg(long, env = "AT_MQTT_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// Protocol 2: simulated phones for contact tracing (0 skips it; needs at-mpc-node next to
    /// at-demo).
    #[arg(long, default_value_t = 20)]
    phones: usize,
    /// Protocol 2: location points per phone.
    #[arg(long, default_value_t = 50)]
    points: u32,
    /// The infra/ directory (for mqtt-user.sh).
    #[arg(long, env = "AT_INFRA_DIR", default_value = "infra")]
    infra_dir: PathBuf,
    /// A running worker's audit key (its state directory's worker-audit.pub, or the hex key),
    /// repeated per worker: the owner pins them and verifies the audit trail (without: the trail
    /// is shown, not verified).
    #[arg(long = "worker-key", value_name = "FILE_OR_HEX")]
    worker_keys: Vec<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("at-demo");
    armored_base::telemetry::exit_quietly_on_broken_pipe();
    armored_base::telemetry::exit_code(demo().await)
}

async fn demo() -> anyhow::Result<()> {
    let a = Args::parse();
    let state = PathBuf::from(std::env::var("AT_STATE_DIR").unwrap_or_else(|_| ".".into()));
    let ctl = Ctl::connect(
        a.brokers.as_deref(),
        a.topic_prefix.as_deref(),
        OWNER_PRINCIPAL,
    )?;
    let cfg = DemoConfig {
        dir: a.dir.unwrap_or_else(|| default_dir(&state)),
        mqtt_host: a.mqtt_host,
        mqtt_port: a.mqtt_port,
        mqtt_tls: a.mqtt_ca.map(|ca| (a.mqtt_tls_port, ca)),
        admin_password: a.admin_password,
        infra_dir: a.infra_dir,
        phones: a.phones,
        points: a.points,
        worker_keys: a.worker_keys,
    };
    run(cfg, &ctl).await
}
