//! MQTT over TLS (the hardening issue, item 10): the bridge and a device connect to the broker's
//! TLS listener, checking its certificate against infra/'s test CA, and the pipeline runs over it
//! both ways; a client that trusts another CA does not connect at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure};
use armored_base::time::now_ms;
use armored_device::link::{self, LinkEvent};
use armored_device::{Device, Event};
use armored_e2e::{mqtt_login_ok, rand_id, Env};
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bridge_and_a_device_over_tls_carry_changes_both_ways() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let mut cfg = env.ingest_config().await?;
    cfg.mqtt = env.mqtt_tls(&cfg.mqtt.username, &cfg.mqtt.password, &cfg.mqtt.client_id)?;
    let _ingest = env.start_ingest_with(cfg).await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("tls");
    let mut d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    // d2 set up as usual, then connected over TLS.
    let d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    let (dir, password) = (d2.dir.clone(), d2.password.clone());
    drop(d2.stop().await);
    let device = Arc::new(Mutex::new(Device::open(&dir)?));
    let (outbox, outbox_rx) = mpsc::channel(16);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let stop = env.shutdown.child_token();
    let tls = env.mqtt_tls(&format!("{twin}/d2"), &password, &format!("dev-{twin}-d2"))?;
    let link = tokio::spawn(link::run(device.clone(), tls, outbox_rx, etx, stop.clone()));

    // d1 (plain) → bridge (TLS) → worker → bridge → d2 (TLS).
    d1.publish(&["sync"], json!({ "from": "d1" })).await?;
    let (mut got_d1, mut acked) = (false, false);
    let mut published = false;
    while !(got_d1 && acked) {
        match tokio::time::timeout(WAIT, erx.recv()).await {
            Ok(Some(LinkEvent::Downlink(Event::Applied { delta, .. }))) => {
                got_d1 |= delta == json!({ "from": "d1" });
            }
            Ok(Some(LinkEvent::Connected)) if !published => {
                // d2 (TLS) → bridge → worker → d1 (plain).
                let env = device.lock().map_err(|_| anyhow::anyhow!("lock"))?.record(
                    &["sync"],
                    json!({ "from": "d2" }),
                    now_ms(),
                )?;
                outbox.send(env).await?;
                published = true;
            }
            Ok(Some(LinkEvent::Acked)) => acked = true,
            Ok(Some(_)) => {}
            Ok(None) => bail!("d2's TLS link stopped"),
            Err(_) => {
                bail!("over TLS: d1's change at d2 {got_d1}, d2's publish acknowledged {acked}")
            }
        }
    }
    d1.wait_applied(
        &json!({ "from": "d2" }),
        WAIT,
        "d1, d2's change sent over TLS",
    )
    .await?;

    // A client that trusts another CA never logs in: the broker's certificate does not verify.
    // (Valid credentials of a user of its own, so only the CA can make it fail.)
    let other_ca = env.dir.join("other-ca.pem");
    std::fs::write(&other_ca, OTHER_CA)?;
    let admin = env.admin_login().await?;
    let mut wrong = env.mqtt_tls(&admin.username, &admin.password, &admin.client_id)?;
    wrong.ca_file = Some(other_ca.display().to_string());
    ensure!(
        !mqtt_login_ok(&wrong).await,
        "a client trusting another CA logged in over TLS"
    );
    stop.cancel();
    link.await??;
    env.stop().await;
    Ok(())
}

/// A CA certificate unrelated to infra/'s (made once with `openssl req -x509 -newkey ec …`).
const OTHER_CA: &str = include_str!("fixtures/other-ca.pem");
