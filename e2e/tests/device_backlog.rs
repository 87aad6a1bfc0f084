//! A device that comes back to a backlog: the broker holds its persistent session's queued
//! deliveries and sends up to its in-flight window (1024 in infra/) right after the ConnAck, each
//! needing an acknowledgement. The link used to await the client's request queue (256) inside the
//! loop that drains it: it stopped for good after ~256 (no more pings; the broker dropped it, and
//! it never reconnected). Here it must handle every one, connect, and publish afterwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use armored_base::mqtt;
use armored_base::time::now_ms;
use armored_device::link::{self, LinkEvent};
use armored_device::Device;
use armored_e2e::{rand_id, Env, SERIAL};
use rumqttc::{Event, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

/// More than the link's request queue (256) and the broker's in-flight window (1024).
const BACKLOG: usize = 1_500;
/// Changes the device publishes while the backlog comes in.
const CHANGES: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_back_to_a_backlog_handles_all_of_it_and_goes_on() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("backlog");
    let dev = env.device(&owner, &ctl, &twin, "d0").await?;
    let (dir, password) = (dev.dir.clone(), dev.password.clone());
    // Offline: its session (clean session off) keeps what the broker receives for it.
    drop(dev.stop().await);

    // The backlog: junk the device must refuse, each one acknowledged all the same.
    let admin = env.admin_login().await?;
    let (client, mut events) = mqtt::connect(&admin, false, 64)?;
    let topic = format!("at/v1/down/{twin}/d0");
    let publisher = tokio::spawn(async move {
        for i in 0..BACKLOG {
            client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, vec![i as u8; 200])
                .await?;
        }
        anyhow::Ok(client)
    });
    let mut acked = 0;
    while acked < BACKLOG {
        match tokio::time::timeout(Duration::from_secs(30), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("the admin's MQTT link failed after {acked} PUBACKs: {e}"),
            Err(_) => bail!("only {acked} of {BACKLOG} junk downlinks acknowledged in 30 s"),
        }
    }
    let _ = publisher.await??.disconnect().await;

    // Back online (the link itself, not `TestDevice::start`, which drops what comes before the
    // subscription's acknowledgement): the whole backlog is refused and acknowledged, the link
    // connects, and every change the device publishes meanwhile is acknowledged.
    let device = Arc::new(Mutex::new(Device::open(&dir)?));
    let (outbox, outbox_rx) = mpsc::channel(16);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let stop = env.shutdown.child_token();
    let cfg = env.mqtt(&format!("{twin}/d0"), &password, &format!("dev-{twin}-d0"));
    let link = tokio::spawn(link::run(device.clone(), cfg, outbox_rx, etx, stop.clone()));
    // Meanwhile the device has changes of its own to send: CHANGES of them, as fast as the link
    // takes them.
    let writer = {
        let device = device.clone();
        tokio::spawn(async move {
            for i in 0..CHANGES {
                let env = device
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .record(&["sync"], json!({ "i": i }), now_ms())?;
                outbox.send(env).await?;
            }
            anyhow::Ok(())
        })
    };
    let (mut refused, mut connected, mut acked) = (0, false, 0);
    while !(refused == BACKLOG && connected && acked == CHANGES) {
        match tokio::time::timeout(Duration::from_secs(30), erx.recv()).await {
            Ok(Some(LinkEvent::Rejected { .. })) => refused += 1,
            Ok(Some(LinkEvent::Connected)) => connected = true,
            Ok(Some(LinkEvent::Acked)) => acked += 1,
            Ok(Some(_)) => {}
            Ok(None) => bail!("the link stopped after {refused} of {BACKLOG} queued downlinks"),
            Err(_) => bail!(
                "the link is stuck: {refused} of {BACKLOG} queued downlinks handled, \
                 connected {connected}, {acked} of {CHANGES} changes acknowledged"
            ),
        }
    }
    writer.await??;
    stop.cancel();
    link.await??;
    env.stop().await;
    Ok(())
}
