//! The bench's phones (phase 3+): each one a real `armored-device` with its own MQTT login, which
//! splits and seals its points and publishes them through mosquitto to the bridge. Phones connect
//! in waves so that a thousand of them do not hold a thousand connections at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use armored_base::mqtt::MqttConfig;
use armored_base::Shutdown;
use armored_device::link::{run as link, LinkEvent};
use armored_device::sim::Sim;
use armored_device::Device;
use tokio::sync::mpsc;

/// One phone: its device directory and MQTT login.
#[derive(Clone, Debug)]
pub struct Phone {
    /// Twin id.
    pub twin: String,
    /// Device directory (keys, card, state).
    pub dir: PathBuf,
    /// MQTT user `{twin}/{device}`.
    pub user: String,
    /// MQTT password.
    pub password: String,
}

impl Phone {
    /// The phone's MQTT client id.
    pub fn client_id(&self) -> String {
        format!("bench-{}", self.user.replace('/', "-"))
    }
}

/// Where the phones connect.
#[derive(Clone, Debug)]
pub struct Broker {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Flow control: phones get their PUBACK from mosquitto, which queues for the bridge, so phones
/// wait while more than `max_backlog` envelopes are published but not yet taken by the bridge
/// (its counter, polled by the caller into `forwarded`). This keeps mosquitto's queue for the
/// bridge bounded whatever N is.
#[derive(Debug)]
pub struct Pace {
    published: AtomicU64,
    /// Envelopes the bridge has taken (its `at_ingest_messages_in_total{path="up"}`).
    pub forwarded: AtomicU64,
    max_backlog: u64,
}

impl Pace {
    /// A pace allowing `max_backlog` envelopes in mosquitto's queue.
    pub fn new(max_backlog: u64) -> Self {
        Self {
            published: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            max_backlog,
        }
    }

    async fn admit(&self, n: u64) {
        while self.published.load(Ordering::Relaxed)
            > self.forwarded.load(Ordering::Relaxed) + self.max_backlog
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.published.fetch_add(n, Ordering::Relaxed);
    }
}

/// Shares `slots` of every phone's simulated path, `wave` phones at a time; returns once every
/// envelope was acknowledged by the broker.
pub async fn upload(
    phones: &[Phone],
    broker: &Broker,
    sim: Sim,
    slots: std::ops::Range<u64>,
    wave: usize,
    pace: Arc<Pace>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut done = 0usize;
    for chunk in phones.chunks(wave.max(1)) {
        let mut tasks = Vec::with_capacity(chunk.len());
        for p in chunk {
            let (p, broker, slots, stop, pace) = (
                p.clone(),
                broker.clone(),
                slots.clone(),
                shutdown.child_token(),
                pace.clone(),
            );
            tasks.push(tokio::spawn(async move {
                one(&p, &broker, sim, slots, &pace, stop)
                    .await
                    .with_context(|| format!("phone {}", p.user))
            }));
        }
        for t in tasks {
            t.await??;
        }
        done += chunk.len();
        println!(
            "      {done}/{} phones uploaded ({:.0} s)",
            phones.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn one(
    p: &Phone,
    broker: &Broker,
    sim: Sim,
    slots: std::ops::Range<u64>,
    pace: &Pace,
    stop: Shutdown,
) -> anyhow::Result<()> {
    let device = Arc::new(Mutex::new(Device::open(&p.dir)?));
    let (tx, rx) = mpsc::channel(256);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let cfg = MqttConfig {
        host: broker.host.clone(),
        port: broker.port,
        username: p.user.clone(),
        password: p.password.clone(),
        client_id: p.client_id(),
        keep_alive_s: 30,
        ca_file: None,
    };
    let task = tokio::spawn(link(device.clone(), cfg, rx, etx, stop.clone()));
    let wait = |d: u64| Instant::now() + Duration::from_secs(d);
    let deadline = wait(30);
    loop {
        match tokio::time::timeout_at(deadline.into(), erx.recv()).await {
            Ok(Some(LinkEvent::Connected)) => break,
            Ok(Some(_)) => {}
            _ => bail!("could not connect to the MQTT broker"),
        }
    }
    let mut sent = 0usize;
    for slot in slots {
        pace.admit(3).await;
        let (x, y) = sim.point(&p.twin, slot);
        let envs = device
            .lock()
            .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
            .share_point(slot, x, y)?;
        for e in envs {
            tx.send(e).await?;
            sent += 1;
        }
    }
    let mut acked = 0usize;
    let deadline = wait(300);
    while acked < sent {
        match tokio::time::timeout_at(deadline.into(), erx.recv()).await {
            Ok(Some(LinkEvent::Acked)) => acked += 1,
            Ok(Some(_)) => {}
            _ => bail!("only {acked} of {sent} envelopes acknowledged"),
        }
    }
    stop.cancel();
    let _ = task.await;
    Ok(())
}

/// Ends the persistent MQTT sessions of `logins` (user, password, client id): a clean-session
/// connect discards what the broker keeps for a client id, so a bench run leaves no session that
/// would queue later runs' messages.
pub async fn forget_sessions(broker: &Broker, logins: &[(String, String, String)]) {
    for chunk in logins.chunks(100) {
        let mut tasks = Vec::new();
        for (user, password, client_id) in chunk.iter().cloned() {
            let broker = broker.clone();
            tasks.push(tokio::spawn(async move {
                let mut o = rumqttc::MqttOptions::new(client_id, broker.host, broker.port);
                o.set_clean_session(true)
                    .set_credentials(user, password)
                    .set_keep_alive(Duration::from_secs(5));
                let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    loop {
                        match el.poll().await {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) | Err(_) => {
                                break
                            }
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                let _ = client.disconnect().await;
                let _ = tokio::time::timeout(Duration::from_secs(1), el.poll()).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
