//! Services started as child processes by the demo (its MPC nodes) and the benchmark (every
//! service, so that each one's CPU time can be read on its own), each on a configuration file
//! written from its own `Config` type; and CPU accounting from `/proc/<pid>/stat`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use armored_client::kafka::{service_principal, Ctl};
use armored_runtime::config::write_toml;
use armored_runtime::scrape;
use serde::Serialize;

/// Linux reports process times in clock ticks of 1/USER_HZ s; USER_HZ is 100 on every Linux ABI.
const MS_PER_TICK: f64 = 10.0;

/// CPU time (user + system) of process `pid` in ms, `None` once it is gone.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), the 12th and 13th after the name.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * MS_PER_TICK)
}

/// This process's CPU time in ms.
pub fn self_cpu_ms() -> f64 {
    cpu_ms(std::process::id()).unwrap_or(0.0)
}

/// The pid in a pid file, if that process runs.
pub fn pid_from_file(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    cpu_ms(pid).map(|_| pid)
}

/// A free local port (bound and released).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One service process.
#[derive(Debug)]
pub struct Service {
    /// What it is (`at-ingest`, `at-reencrypt`, `at-mpc-node`).
    pub name: String,
    child: Child,
    /// Its `/metrics` and `/healthz` address.
    pub metrics: SocketAddr,
    /// CPU time it had used when it was last stopped or sampled at exit.
    final_cpu_ms: Option<f64>,
}

impl Service {
    /// Writes `config` to `config_file` and starts `bin_dir/name` on it (`AT_CONFIG`), with
    /// `env` besides (e.g. `RUST_LOG`) and its log in `log`; `metrics` is the address the
    /// configuration gives its `/metrics` and `/healthz`.
    pub fn start(
        bin_dir: &Path,
        name: &str,
        config: &impl Serialize,
        config_file: &Path,
        env: &[(&str, String)],
        metrics: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let bin = bin_dir.join(name);
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build --release -p {name}` (infra/bench.sh does)",
                bin.display()
            );
        }
        write_toml(config, config_file)?;
        let child = Command::new(&bin)
            .env("AT_CONFIG", config_file)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            metrics,
            final_cpu_ms: None,
        })
    }

    /// CPU time so far (or at exit, once stopped).
    pub fn cpu_ms(&self) -> f64 {
        self.final_cpu_ms
            .or_else(|| cpu_ms(self.child.id()))
            .unwrap_or(0.0)
    }

    /// Waits until `/healthz` answers 200 (control topics folded; for a node, its share topic too).
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if scrape::healthy(self.metrics).await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}) before becoming healthy", self.name);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} at {} not healthy within {timeout:?}",
                    self.name,
                    self.metrics
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of one `/metrics` sample (`name{labels}` exactly as exposed), 0 if absent or
    /// if the service does not answer.
    pub async fn metric(&self, sample: &str) -> f64 {
        scrape::metric(self.metrics, sample).await.unwrap_or(0.0)
    }

    /// Every sample of a metric family whose name starts with `prefix` (for diagnostics).
    pub async fn samples(&self, prefix: &str) -> Vec<String> {
        scrape::samples(self.metrics, prefix)
            .await
            .unwrap_or_default()
    }

    /// Stops the process: SIGTERM (its CPU time is read just before), then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if self.final_cpu_ms.is_some() {
            return;
        }
        self.final_cpu_ms = cpu_ms(self.child.id());
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The brokers' pids from infra/'s pid files (their CPU is shown apart: infrastructure): every
/// running Kafka node of either cluster shape (`kafka/<N>-node/node-<i>/kafka.pid`) and mosquitto.
pub fn broker_pids(state_dir: &Path) -> Vec<(String, u32)> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for shape in [1, 3] {
        for node in 1..=shape {
            files.push((
                format!("kafka-{shape}n-{node}"),
                state_dir.join(format!("kafka/{shape}-node/node-{node}/kafka.pid")),
            ));
        }
    }
    files.push((
        "mosquitto".to_string(),
        state_dir.join("mosquitto/mosquitto.pid"),
    ));
    files
        .into_iter()
        .filter_map(|(n, p)| pid_from_file(&p).map(|pid| (n, pid)))
        .collect()
}

/// Sum of the brokers' CPU time in ms.
pub fn brokers_cpu_ms(pids: &[(String, u32)]) -> f64 {
    pids.iter().filter_map(|(_, p)| cpu_ms(*p)).sum()
}

/// Adds MQTT logins (`infra/mqtt-user.sh add-batch`, one reload of the broker's password file):
/// the passwords go on its standard input, never on a command line.
pub fn add_mqtt_users<'a>(
    infra_dir: &Path,
    users: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<()> {
    mqtt_user(
        infra_dir,
        &["add-batch"],
        users.into_iter().map(|(u, p)| format!("{u} {p}")),
    )
}

/// Adds a bridge's MQTT users `{name}-up` and `{name}-down` with the bridge's grants
/// (`infra/mqtt-user.sh add-bridge`): a bridge configured with user `name` and `password`. The
/// broker binds client ids to users, so a bridge that runs beside another needs users of its own.
pub fn add_mqtt_bridge(infra_dir: &Path, name: &str, password: &str) -> anyhow::Result<()> {
    mqtt_user(infra_dir, &["add-bridge", name], [password.to_string()])
}

/// Runs `infra/mqtt-user.sh ARGS` with `lines` on its standard input.
fn mqtt_user(
    infra_dir: &Path,
    args: &[&str],
    lines: impl IntoIterator<Item = String>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new("bash")
        .arg(infra_dir.join("mqtt-user.sh"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("running infra/mqtt-user.sh")?;
    {
        let mut stdin = child.stdin.take().context("mqtt-user.sh stdin")?;
        for line in lines {
            writeln!(stdin, "{line}")?;
        }
    }
    if !child.wait()?.success() {
        bail!("infra/mqtt-user.sh {} failed", args.join(" "));
    }
    Ok(())
}

/// Grants the Kafka principals infra/kafka-acls.tsv on the topics under `prefix`
/// (`infra/kafka-acl.sh`; one JVM, ~1.5 s).
pub fn grant_kafka_acls(infra_dir: &Path, prefix: &str) -> anyhow::Result<()> {
    kafka_acl(infra_dir, &[prefix])
}

/// A client for service `id` on `base`'s brokers and topics: signs the service's own principal up
/// (`infra/kafka-acl.sh --service`; one JVM, ~1.5 s, off the runtime's workers) and signs in as it.
pub async fn service_ctl(infra_dir: &Path, base: &Ctl, id: &str) -> anyhow::Result<Ctl> {
    let (infra_dir, id) = (infra_dir.to_path_buf(), id.to_string());
    let kafka = base.kafka.clone();
    tokio::task::spawn_blocking(move || {
        kafka_acl(&infra_dir, &["--service", &id, &kafka.topic_prefix])?;
        let kafka = kafka.as_local_principal(&service_principal(&id))?;
        Ok(Ctl::with_config(kafka)?)
    })
    .await?
}

fn kafka_acl(infra_dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("bash")
        .arg(infra_dir.join("kafka-acl.sh"))
        .args(args)
        .output()
        .context("running infra/kafka-acl.sh")?;
    if !out.status.success() {
        bail!(
            "infra/kafka-acl.sh {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
