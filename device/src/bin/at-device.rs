//! `at-device`: a simulated device on the real MQTT broker (phases 1, 3 and 4).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use armored_base::mqtt::MqttConfig;
use armored_base::time::now_ms;
use armored_crypto::identity::ShareSlots;
use armored_device::link::{run, LinkEvent};
use armored_device::{pin_owner, setup_with_slots, Device};
use clap::{Parser, Subcommand};
use rand_core::RngCore;

/// The MQTT password of user {twin}/{device}: never an argument (a command line is visible to
/// every user of the machine in `ps`).
#[derive(clap::Args, Debug)]
struct Login {
    /// A file holding the MQTT password (`-`: read it from standard input); or set
    /// AT_DEVICE_PASSWORD.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

impl Login {
    fn password(&self) -> anyhow::Result<String> {
        let text = match &self.password_file {
            Some(p) if p.as_os_str() == "-" => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the MQTT password from standard input")?;
                line
            }
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading the MQTT password from {}", p.display()))?,
            None => std::env::var("AT_DEVICE_PASSWORD").map_err(|_| {
                anyhow::anyhow!(
                    "no MQTT password: give --password-file FILE (or -) or set AT_DEVICE_PASSWORD"
                )
            })?,
        };
        let password = text.trim_end_matches(['\r', '\n']).to_owned();
        anyhow::ensure!(!password.is_empty(), "the MQTT password is empty");
        Ok(password)
    }
}

/// A simulated ArmoredTwins device.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Phase 1: make the device's keys in DIR and write its public card (device.json) for the owner.
    Setup {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        twin: String,
        #[arg(long)]
        device: String,
        /// Epoch length of the twin.
        #[arg(long, default_value_t = 3_600_000)]
        epoch_len_ms: u64,
        /// Length of the global MPC location slots (phase 3+; the owner enrolls it).
        #[arg(long, default_value_t = armored_device::DEFAULT_SLOT_LEN_MS)]
        slot_len_ms: u64,
        /// Slots per share epoch: a share epoch's points travel under one capsule per node; 1 is
        /// the paper's accounting (a capsule per point). The owner enrolls it.
        #[arg(long, default_value_t = armored_crypto::shares::DEFAULT_SLOTS_PER_SHARE_EPOCH,
              value_parser = clap::value_parser!(u64).range(1..=armored_crypto::shares::MAX_SLOTS_PER_SHARE_EPOCH))]
        slots_per_share_epoch: u64,
    },
    /// Phase 1: pin the owner's identity file (received out of band).
    PinOwner {
        #[arg(long)]
        dir: PathBuf,
        /// The owner identity file (atctl owner init writes it).
        identity: PathBuf,
    },
    /// Phases 3 and 4: connect, publish COUNT state changes, print what arrives (JSON lines).
    Run {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        login: Login,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 1883)]
        port: u16,
        /// The broker's TLS CA (PEM): set, the device connects over TLS (give `--port` of the TLS
        /// listener, 8883 in infra/).
        #[arg(long, env = "AT_MQTT_CA")]
        ca_file: Option<String>,
        /// State changes to publish.
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Between two changes.
        #[arg(long, default_value_t = 200)]
        every_ms: u64,
        /// Attributes of the changes (comma-separated; the twin attribute is added).
        #[arg(long, default_value = "sync,location")]
        attrs: String,
        /// Keep listening this long after the last publish (0: until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        linger_ms: u64,
    },
    /// Phase 3+: share the simulated location of each slot with the three MPC nodes (one point
    /// per global slot, three share envelopes on the uplink). A slot is shared once it has begun.
    Share {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        login: Login,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 1883)]
        port: u16,
        /// The broker's TLS CA (PEM): set, the device connects over TLS (give `--port` of the TLS
        /// listener, 8883 in infra/).
        #[arg(long, env = "AT_MQTT_CA")]
        ca_file: Option<String>,
        /// Global slots FROM..TO (TO excluded).
        #[arg(long, conflicts_with = "recent")]
        slots: Option<String>,
        /// Or the N slots ending with the current one.
        #[arg(long)]
        recent: Option<u64>,
        /// Seed of the location simulator (the same for every device of a demo).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long to wait for the broker's acknowledgements at the end.
        #[arg(long, default_value_t = 10_000)]
        ack_timeout_ms: u64,
    },
    /// Print the device's persisted state.
    State {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("device");
    armored_base::telemetry::exit_quietly_on_broken_pipe();
    armored_base::telemetry::exit_code(run_cli().await)
}

async fn run_cli() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Setup {
            dir,
            twin,
            device,
            epoch_len_ms,
            slot_len_ms,
            slots_per_share_epoch,
        } => {
            let slots = ShareSlots {
                slot_len_ms,
                slots_per_share_epoch,
            };
            let card = setup_with_slots(&dir, &twin, &device, epoch_len_ms, slots)?;
            println!(
                "device {}/{} set up in {}",
                card.twin_id,
                card.device_id,
                dir.display()
            );
            println!(
                "give {} to the owner (atctl owner enroll-device)",
                dir.join("device.json").display()
            );
        }
        Cmd::PinOwner { dir, identity } => {
            let bytes = std::fs::read(&identity)
                .with_context(|| format!("reading {}", identity.display()))?;
            let owner = pin_owner(&dir, &bytes)?;
            println!("pinned owner {owner:?} (signature and proof of knowledge verified)");
        }
        Cmd::Share {
            dir,
            login,
            host,
            port,
            ca_file,
            slots,
            recent,
            seed,
            ack_timeout_ms,
        } => {
            let password = login.password()?;
            let mqtt = |id: &str| MqttConfig {
                host,
                port,
                username: id.to_owned(),
                password,
                client_id: format!("dev-{}", id.replace('/', "-")),
                keep_alive_s: 30,
                ca_file: ca_file.clone(),
            };
            share(&dir, mqtt, slots.as_deref(), recent, seed, ack_timeout_ms).await?;
        }
        Cmd::State { dir } => {
            let d = Device::open(&dir)?;
            println!("{}", serde_json::to_string_pretty(d.state())?);
        }
        Cmd::Run {
            dir,
            login,
            host,
            port,
            ca_file,
            count,
            every_ms,
            attrs,
            linger_ms,
        } => {
            let password = login.password()?;
            let device = Device::open(&dir)?;
            let id = format!("{}/{}", device.card().twin_id, device.card().device_id);
            let device = Arc::new(Mutex::new(device));
            let cfg = MqttConfig {
                host,
                port,
                username: id.clone(),
                password,
                client_id: format!("dev-{}", id.replace('/', "-")),
                keep_alive_s: 30,
                ca_file: ca_file.clone(),
            };
            let shutdown = armored_base::shutdown::on_signals();
            let (out_tx, out_rx) = tokio::sync::mpsc::channel(64);
            let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
            let link = tokio::spawn(run(device.clone(), cfg, out_rx, ev_tx, shutdown.clone()));
            let attrs: Vec<String> = attrs
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let printer = tokio::spawn(async move {
                while let Some(ev) = ev_rx.recv().await {
                    let line = match ev {
                        LinkEvent::Connected => serde_json::json!({"event": "connected"}),
                        LinkEvent::Downlink(armored_device::Event::Applied {
                            writer,
                            seq,
                            delta,
                        }) => {
                            serde_json::json!({"event": "applied", "writer": format!("{writer:?}"), "seq": seq, "delta": delta})
                        }
                        LinkEvent::Downlink(armored_device::Event::Request {
                            request_id,
                            op,
                            ok,
                            state_change,
                            ..
                        }) => {
                            serde_json::json!({"event": "request", "request_id": request_id, "op": op, "ok": ok, "synced": state_change.is_some()})
                        }
                        LinkEvent::Downlink(e) => serde_json::json!({"event": format!("{e:?}")}),
                        LinkEvent::Acked => continue,
                        LinkEvent::Rejected { reason, detail } => {
                            serde_json::json!({"event": "rejected", "reason": reason, "detail": detail})
                        }
                    };
                    println!("{line}");
                }
            });
            let mut pos = (rand_core::OsRng.next_u32() % 1000) as i64;
            for i in 0..count {
                if shutdown.is_cancelled() {
                    break;
                }
                pos += (rand_core::OsRng.next_u32() % 3) as i64 - 1;
                let a: Vec<&str> = attrs.iter().map(String::as_str).collect();
                let env = device
                    .lock()
                    .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
                    .record(&a, serde_json::json!({"x": pos, "n": i}), now_ms())?;
                out_tx.send(env).await?;
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
            if linger_ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(linger_ms)) => shutdown.cancel(),
                    _ = shutdown.cancelled() => {}
                }
            }
            link.await??;
            printer.abort();
        }
    }
    Ok(())
}

/// `FROM..TO` (TO excluded).
fn parse_slots(text: &str) -> anyhow::Result<std::ops::Range<u64>> {
    let (a, b) = text
        .split_once("..")
        .context("--slots takes FROM..TO (TO excluded)")?;
    let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a < b, "--slots {text}: empty range");
    Ok(a..b)
}

async fn share(
    dir: &std::path::Path,
    mqtt: impl FnOnce(&str) -> MqttConfig,
    slots: Option<&str>,
    recent: Option<u64>,
    seed: u64,
    ack_timeout_ms: u64,
) -> anyhow::Result<()> {
    use armored_device::sim::Sim;
    let device = Device::open(dir)?;
    let slot_len = device.slot_len_ms();
    anyhow::ensure!(
        slot_len > 0,
        "this device's card has no slot length: set it up again with --slot-len-ms"
    );
    let current = now_ms() / slot_len;
    let range = match (slots, recent) {
        (Some(s), _) => parse_slots(s)?,
        (None, Some(n)) => current.saturating_sub(n.saturating_sub(1))..current + 1,
        (None, None) => anyhow::bail!("give --slots FROM..TO or --recent N"),
    };
    let twin = device.card().twin_id.clone();
    let id = format!("{}/{}", twin, device.card().device_id);
    let device = Arc::new(Mutex::new(device));
    let shutdown = armored_base::shutdown::on_signals();
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(64);
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let link = tokio::spawn(run(
        device.clone(),
        mqtt(&id),
        out_rx,
        ev_tx,
        shutdown.clone(),
    ));
    let sim = Sim::new(seed);
    let (mut sent, mut shared, mut skipped) = (0u64, 0u64, 0u64);
    for slot in range.clone() {
        // A device knows a slot's position only once the slot has begun.
        let start = slot.saturating_mul(slot_len);
        let wait = start.saturating_sub(now_ms());
        if wait > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let (x, y) = sim.point(&twin, slot);
        let r = device
            .lock()
            .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
            .share_point(slot, x, y);
        match r {
            Ok(envs) => {
                for e in envs {
                    out_tx.send(e).await?;
                    sent += 1;
                }
                shared += 1;
            }
            Err(armored_device::DeviceError::SlotAlreadyShared(_)) => skipped += 1,
            Err(e) => return Err(e.into()),
        }
    }
    // Wait until the broker acknowledged every publish (QoS 1), or give up after the timeout.
    let mut acked = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ack_timeout_ms);
    while acked < sent {
        match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
            Ok(Some(LinkEvent::Acked)) => acked += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    shutdown.cancel();
    link.await??;
    println!(
        "{}",
        serde_json::json!({
            "slots": format!("{}..{}", range.start, range.end),
            "shared": shared,
            "skipped": skipped,
            "envelopes": sent,
            "acked": acked,
        })
    );
    anyhow::ensure!(
        acked >= sent,
        "only {acked} of {sent} envelopes acknowledged"
    );
    Ok(())
}
