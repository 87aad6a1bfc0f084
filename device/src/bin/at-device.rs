//! `at-device`: a simulated device on the real MQTT broker (phases 1, 3 and 4).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use armored_device::link::{run, LinkEvent};
use armored_device::{pin_owner, setup, Device};
use armored_runtime::config::MqttConfig;
use armored_runtime::time::now_ms;
use clap::{Parser, Subcommand};
use rand_core::RngCore;

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
        /// MQTT password of user {twin}/{device}.
        #[arg(long, env = "AT_DEVICE_PASSWORD")]
        password: String,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 1883)]
        port: u16,
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
    /// Print the device's persisted state.
    State {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_runtime::telemetry::init("device");
    armored_runtime::telemetry::exit_code(run_cli().await)
}

async fn run_cli() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Setup {
            dir,
            twin,
            device,
            epoch_len_ms,
        } => {
            let card = setup(&dir, &twin, &device, epoch_len_ms)?;
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
        Cmd::State { dir } => {
            let d = Device::open(&dir)?;
            println!("{}", serde_json::to_string_pretty(d.state())?);
        }
        Cmd::Run {
            dir,
            password,
            host,
            port,
            count,
            every_ms,
            attrs,
            linger_ms,
        } => {
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
            };
            let shutdown = armored_runtime::shutdown::on_signals();
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
