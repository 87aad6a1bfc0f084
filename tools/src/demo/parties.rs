//! The demo's parties: its configuration, its devices (each a `Device` on its own MQTT link), and
//! the step printer shared by every part of the demo.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use armored_base::mqtt::MqttConfig;
use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_device::link::{run as link, LinkEvent};
use armored_device::{Device, Event};
use rand_core::RngCore;
use tokio::sync::mpsc;

/// Where the demo finds the MQTT broker and keeps its files.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Scratch directory (keys of the demo's parties).
    pub dir: PathBuf,
    /// MQTT host.
    pub mqtt_host: String,
    /// MQTT port.
    pub mqtt_port: u16,
    /// The broker's TLS listener (port, CA file): set, the demo's devices connect over TLS.
    pub mqtt_tls: Option<(u16, String)>,
    /// Password of the all-access MQTT user (the raw eavesdropper).
    pub admin_password: String,
    /// infra/ directory (mqtt-user.sh).
    pub infra_dir: PathBuf,
    /// Protocol 2: simulated phones (0 skips contact tracing).
    pub phones: usize,
    /// Protocol 2: location points per phone (the job's window, in slots).
    pub points: u32,
    /// The running workers' audit keys (files or hex), pinned by the owner to verify the trail.
    pub worker_keys: Vec<String>,
}

pub struct Dev {
    pub name: String,
    pub device: Arc<Mutex<Device>>,
    pub outbox: mpsc::Sender<Vec<u8>>,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Stops this device's link (the others keep running).
    pub stop: Shutdown,
}

pub fn step(n: usize, text: &str) {
    println!("[{n}] {text}");
}

pub fn rid() -> String {
    format!("{:06x}", rand_core::OsRng.next_u32() & 0xff_ffff)
}

impl Dev {
    pub async fn publish(&self, attrs: &[&str], delta: serde_json::Value) -> anyhow::Result<()> {
        let env = self
            .device
            .lock()
            .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
            .record(attrs, delta, now_ms())?;
        self.outbox.send(env).await?;
        Ok(())
    }

    /// Applied changes seen within `wait`, stopping early once `want` arrived.
    pub async fn applied(&mut self, want: usize, wait: Duration) -> Vec<serde_json::Value> {
        let mut got = Vec::new();
        let deadline = Instant::now() + wait;
        while got.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(LinkEvent::Downlink(Event::Applied { delta, .. }))) => got.push(delta),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        got
    }
}

pub async fn start_device(
    cfg: &DemoConfig,
    owner: &Owner,
    ctl: &Ctl,
    twin: &str,
    name: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<Dev> {
    let slot = armored_device::DEFAULT_SLOT_LEN_MS;
    Ok(
        start_device_with(cfg, owner, ctl, twin, name, slot, true, shutdown)
            .await?
            .0,
    )
}

/// Sets a device up (MPC slots of `slot_len_ms`), gives it an MQTT login and connects it; the
/// owner enrolls it only if `enroll` (a replacement is enrolled by `replace-device`).
#[allow(clippy::too_many_arguments)]
pub async fn start_device_with(
    cfg: &DemoConfig,
    owner: &Owner,
    ctl: &Ctl,
    twin: &str,
    name: &str,
    slot_len_ms: u64,
    enroll: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<(Dev, armored_device::Card)> {
    let dir = cfg.dir.join(format!("{twin}-{name}"));
    let card = armored_device::setup_with_slot_len(&dir, twin, name, 3_600_000, slot_len_ms)?;
    armored_device::pin_owner(&dir, &owner.identity()?)?;
    if enroll {
        owner.enroll_device(ctl, &card).await?;
    }
    let password = format!("pw-{}", rid());
    let user = format!("{twin}/{name}");
    crate::procs::add_mqtt_users(&cfg.infra_dir, [(user.as_str(), password.as_str())])?;
    let device = Arc::new(Mutex::new(Device::open(&dir)?));
    let (tx, rx) = mpsc::channel(64);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let stop = shutdown.child_token();
    let mqtt = MqttConfig {
        host: cfg.mqtt_host.clone(),
        port: cfg.mqtt_tls.as_ref().map_or(cfg.mqtt_port, |(p, _)| *p),
        username: user.clone(),
        password,
        client_id: format!("demo-{twin}-{name}"),
        keep_alive_s: 30,
        ca_file: cfg.mqtt_tls.as_ref().map(|(_, ca)| ca.clone()),
    };
    // mosquitto reloads its password file asynchronously: the link retries until it is in.
    tokio::spawn(link(device.clone(), mqtt, rx, etx, stop.clone()));
    loop {
        match tokio::time::timeout(Duration::from_secs(15), erx.recv()).await {
            Ok(Some(LinkEvent::Connected)) => break,
            Ok(Some(_)) => {}
            _ => bail!("device {user} could not connect to the MQTT broker"),
        }
    }
    let dev = Dev {
        name: name.into(),
        device,
        outbox: tx,
        events: erx,
        stop,
    };
    Ok((dev, card))
}

/// The demo's default directory.
pub fn default_dir(state: &Path) -> PathBuf {
    state.join(format!("demo-{}", now_ms()))
}
