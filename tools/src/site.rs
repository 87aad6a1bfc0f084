//! Where a benchmark's services and brokers are: shared by `at-bench` (the job path) and
//! `at-sync-bench` (the sync path), with the command-line flags that set it.

use std::path::PathBuf;

use armored_client::kafka::{Ctl, OWNER_PRINCIPAL};

/// The binaries, directories, brokers and bridge login of a benchmark run.
#[derive(Clone, Debug)]
pub struct Site {
    /// Where at-ingest, at-reencrypt and at-mpc-node are.
    pub bin_dir: PathBuf,
    /// Scratch directory (parties' keys, service logs).
    pub dir: PathBuf,
    /// infra/ (mqtt-user.sh, kafka-acl.sh).
    pub infra_dir: PathBuf,
    /// infra/'s state directory (broker pid files).
    pub state_dir: PathBuf,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// MQTT broker host.
    pub mqtt_host: String,
    /// MQTT port.
    pub mqtt_port: u16,
    /// The bridges' MQTT password.
    pub ingest_password: String,
}

/// The flags of [`Site`].
#[derive(clap::Args, Debug)]
pub struct SiteArgs {
    /// Kafka bootstrap servers (default from AT__KAFKA__BROKERS or 127.0.0.1:9092).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Scratch directory (default: a new one under $AT_STATE_DIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where at-ingest, at-reencrypt and at-mpc-node are (default: next to this binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// MQTT broker host.
    #[arg(long, env = "AT_MQTT_HOST", default_value = "127.0.0.1")]
    pub mqtt_host: String,
    /// MQTT port.
    #[arg(long, env = "AT_MQTT_PORT", default_value_t = 1883)]
    pub mqtt_port: u16,
    /// The bridges' MQTT password.
    #[arg(long, env = "AT_MQTT_INGEST_PASSWORD", hide_env_values = true)]
    pub ingest_password: Option<String>,
    /// The infra/ directory (for mqtt-user.sh and kafka-acl.sh).
    #[arg(long, env = "AT_INFRA_DIR", default_value = "infra")]
    pub infra_dir: PathBuf,
}

impl SiteArgs {
    /// The site: the scratch directory defaults to `$AT_STATE_DIR/<scratch>-<unix seconds>`.
    pub fn resolve(self, scratch: &str) -> anyhow::Result<Site> {
        let state = PathBuf::from(std::env::var("AT_STATE_DIR").unwrap_or_else(|_| ".".into()));
        let exe = std::env::current_exe()?;
        let brokers = Ctl::connect(self.brokers.as_deref(), None, OWNER_PRINCIPAL)?
            .kafka
            .brokers
            .clone();
        Ok(Site {
            bin_dir: self
                .bin_dir
                .or_else(|| exe.parent().map(PathBuf::from))
                .unwrap_or_default(),
            dir: self.dir.unwrap_or_else(|| {
                state.join(format!("{scratch}-{}", armored_base::time::now_ms() / 1000))
            }),
            infra_dir: self.infra_dir,
            state_dir: state,
            brokers,
            mqtt_host: self.mqtt_host,
            mqtt_port: self.mqtt_port,
            ingest_password: self.ingest_password.ok_or_else(|| {
                anyhow::anyhow!(
                    "no bridge password: --ingest-password or AT_MQTT_INGEST_PASSWORD (infra/env.sh exports it)"
                )
            })?,
        })
    }
}
