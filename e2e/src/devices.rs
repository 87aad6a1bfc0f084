//! Simulated devices: set up, enrolled by an owner and given an MQTT login ([`Env::device`],
//! [`Env::phone`]), connected through the device library's own link ([`TestDevice`]); and what a
//! test reads from their link events.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use armored_base::Shutdown;
use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_crypto::envelope::Writer;
use armored_device::link::LinkEvent;
use armored_device::sim::Sim;
use armored_device::{Device, Event};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::env::{rand_id, Env};

/// Epoch length of every test device.
const EPOCH_MS: u64 = 3_600_000;

impl Env {
    /// Phase 1 for a simulated device: keys, pinned owner, enrollment and re-key by the owner,
    /// an MQTT login; then connects it. Returns the running device.
    pub async fn device(
        &self,
        owner: &Owner,
        ctl: &Ctl,
        twin: &str,
        name: &str,
    ) -> anyhow::Result<TestDevice> {
        let dir = self.set_up_device(owner, ctl, twin, name, None).await?;
        self.connect(&dir, &format!("{twin}/{name}")).await
    }

    /// A phone: device `d1` of `twin` enrolled with MPC slots of `slot_ms`, connected over MQTT.
    pub async fn phone(
        &self,
        owner: &Owner,
        ctl: &Ctl,
        twin: &str,
        slot_ms: u64,
    ) -> anyhow::Result<TestDevice> {
        let dir = self
            .set_up_device(owner, ctl, twin, "d1", Some(slot_ms))
            .await?;
        self.connect(&dir, &format!("{twin}/d1")).await
    }

    /// Phase 1 without MQTT: a device set up and enrolled (for tests that write to the log directly).
    pub async fn enrolled_device(
        &self,
        owner: &Owner,
        ctl: &Ctl,
        twin: &str,
        name: &str,
    ) -> anyhow::Result<Device> {
        let dir = self.set_up_device(owner, ctl, twin, name, None).await?;
        Ok(Device::open(&dir)?)
    }

    /// Keys in `{twin}-{name}` of the test's directory, the owner pinned, the owner's enrollment.
    async fn set_up_device(
        &self,
        owner: &Owner,
        ctl: &Ctl,
        twin: &str,
        name: &str,
        slot_ms: Option<u64>,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(format!("{twin}-{name}"));
        let card = match slot_ms {
            Some(ms) => armored_device::setup_with_slot_len(&dir, twin, name, EPOCH_MS, ms)?,
            None => armored_device::setup(&dir, twin, name, EPOCH_MS)?,
        };
        armored_device::pin_owner(&dir, &owner.identity()?)?;
        owner.enroll_device(ctl, &card).await?;
        Ok(dir)
    }

    /// A new MQTT login `user` for the device in `dir`, then its link.
    async fn connect(&self, dir: &Path, user: &str) -> anyhow::Result<TestDevice> {
        let password = rand_id("pw");
        self.add_mqtt_user(user, &password).await?;
        TestDevice::start(self, dir, &password).await
    }
}

/// A simulated device running its MQTT link.
#[allow(missing_debug_implementations)]
pub struct TestDevice {
    /// The device.
    pub device: Arc<Mutex<Device>>,
    /// Envelopes to publish.
    pub outbox: mpsc::Sender<Vec<u8>>,
    /// What the link reports.
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Stops the link.
    pub shutdown: Shutdown,
    /// The link task.
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Directory.
    pub dir: PathBuf,
    /// MQTT password.
    pub password: String,
}

impl TestDevice {
    /// Opens the device in `dir` and connects it.
    pub async fn start(env: &Env, dir: &Path, password: &str) -> anyhow::Result<Self> {
        let d = Device::open(dir)?;
        let id = format!("{}/{}", d.card().twin_id, d.card().device_id);
        let device = Arc::new(Mutex::new(d));
        let (tx, rx) = mpsc::channel(1024);
        let (etx, mut erx) = mpsc::unbounded_channel();
        let shutdown = env.shutdown.child_token();
        let cfg = env.mqtt(&id, password, &format!("dev-{}", id.replace('/', "-")));
        let task = tokio::spawn(armored_device::link::run(
            device.clone(),
            cfg,
            rx,
            etx,
            shutdown.clone(),
        ));
        // Wait for the connection (and so the subscription) before the test goes on.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, erx.recv()).await {
                Ok(Some(LinkEvent::Connected)) => break,
                Ok(Some(_)) => {}
                _ => bail!("device {id} did not connect within 10 s"),
            }
        }
        Ok(Self {
            device,
            outbox: tx,
            events: erx,
            shutdown,
            task,
            dir: dir.to_path_buf(),
            password: password.into(),
        })
    }

    /// Records and publishes a state change.
    pub async fn publish(&self, attrs: &[&str], delta: serde_json::Value) -> anyhow::Result<()> {
        let env = self
            .device
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .record(attrs, delta, armored_base::time::now_ms())?;
        self.outbox.send(env).await?;
        Ok(())
    }

    /// Phase 3+: splits the simulator's point of this device's twin for each slot into three
    /// share bundles and publishes them.
    pub async fn upload_shares(&self, sim: &Sim, slots: Range<u64>) -> anyhow::Result<()> {
        for slot in slots {
            let envs = {
                let mut d = self
                    .device
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?;
                let (x, y) = sim.point(&d.card().twin_id, slot);
                d.share_point(slot, x, y)?
            };
            for e in envs {
                self.outbox.send(e).await?;
            }
        }
        Ok(())
    }

    /// Collects link events until `pred` says stop or `timeout` passes; returns what it saw.
    pub async fn collect_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&[LinkEvent]) -> bool,
    ) -> Vec<LinkEvent> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + timeout;
        while !pred(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(e)) => seen.push(e),
                _ => break,
            }
        }
        seen
    }

    /// Waits (at most `timeout`) until this device has applied a change whose delta is `delta`;
    /// fails saying `what` otherwise.
    pub async fn wait_applied(
        &mut self,
        delta: &serde_json::Value,
        timeout: Duration,
        what: &str,
    ) -> anyhow::Result<()> {
        let has = |e: &[LinkEvent]| applied(e).iter().any(|(_, d)| d == delta);
        let seen = self.collect_until(timeout, has).await;
        anyhow::ensure!(has(&seen), "{what}: {delta} not applied within {timeout:?}");
        Ok(())
    }

    /// Waits (at most `timeout`) until the twin's roster names `devices` devices: from then on this
    /// device accepts their changes.
    pub async fn wait_roster(&mut self, devices: usize, timeout: Duration) -> Vec<LinkEvent> {
        self.collect_until(timeout, |e| {
            e.iter().any(
                |x| matches!(x, LinkEvent::Downlink(Event::Roster { devices: n }) if *n == devices),
            )
        })
        .await
    }

    /// Stops the link.
    pub async fn stop(self) -> Arc<Mutex<Device>> {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.device
    }
}

/// The changes a device applied, with their writers, in the order it applied them.
pub fn applied(events: &[LinkEvent]) -> Vec<(Writer, serde_json::Value)> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Downlink(Event::Applied { writer, delta, .. }) => {
                Some((writer.clone(), delta.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Whether the device refused something with `reason`.
pub fn rejected(events: &[LinkEvent], reason: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, LinkEvent::Rejected { reason: r, .. } if *r == reason))
}
