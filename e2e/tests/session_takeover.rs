//! MQTT session takeover (the hardening issue, item 3). mosquitto keys a session by client id, and
//! client ids used to be predictable (the bridge's `{client_id}-up`/`-down`, a device's
//! `dev-{twin}-{device}`) and not bound to the user: any authenticated user could connect with the
//! bridge's client id (inheriting its subscriptions to every uplink, or with a clean session wiping
//! its queue) or with a device's (kicking it, wiping its queued deliveries). Now the broker replaces
//! the client id with the username (`use_username_as_clientid`, infra/mosquitto.conf.in): a device
//! user asking for someone else's client id gets a session of its own and touches nobody's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use armored_base::mqtt::{self, MqttConfig};
use armored_device::link::LinkEvent;
use armored_e2e::{mqtt_login_ok, rand_id, Env, Pair, TestDevice};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, Packet};
use serde_json::json;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);
const MALLORY_PW: &str = "mallory-pw";

/// The attacker: a device login of the twin, never enrolled.
fn mallory(twin: &str) -> String {
    format!("{twin}/mallory")
}

/// A raw client logged in as one user while asking for another connection's client id.
struct Attacker {
    client: AsyncClient,
    /// The broker said a session was present: it handed over an existing one.
    session_present: bool,
    /// Topics of the publishes it received.
    got: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Attacker {
    /// Connects as mallory asking for `client_id` and waits for the broker's answer (which must be
    /// a success: the user is real).
    async fn connect(env: &Env, twin: &str, client_id: &str, clean: bool) -> anyhow::Result<Self> {
        Self::connect_with(&env.mqtt(&mallory(twin), MALLORY_PW, client_id), clean).await
    }

    /// [`Attacker::connect`] with settings of the caller's (e.g. over TLS).
    async fn connect_with(cfg: &MqttConfig, clean: bool) -> anyhow::Result<Self> {
        let user = &cfg.username;
        let mut o = mqtt::options(cfg, false)?;
        o.set_clean_session(clean);
        let (client, mut el) = AsyncClient::new(o, 10);
        let session_present = tokio::time::timeout(WAIT, async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        ensure!(
                            a.code == ConnectReturnCode::Success,
                            "{user} refused: {:?}",
                            a.code
                        );
                        return Ok(a.session_present);
                    }
                    Ok(_) => {}
                    Err(e) => bail!("{user} could not connect: {e}"),
                }
            }
        })
        .await??;
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = got.clone();
        // Until its connection ends (no reconnect: an attacker that was kicked out stays out).
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(mut g) = seen.lock() {
                            g.push(p.topic);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Self {
            client,
            session_present,
            got,
            task,
        })
    }

    /// Disconnects; returns the topics it received.
    async fn stop(mut self) -> Vec<String> {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.task).await;
        self.task.abort();
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_user_cannot_take_over_the_bridges_sessions() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let cfg = env.ingest_config().await?;
    // The bridge connects as `{bridge}-up` and `{bridge}-down`, its client ids the same.
    let bridge = cfg.mqtt.username.clone();
    let ingest = env.start_ingest_with(cfg).await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("takeover");
    let d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    d2.wait_roster(2, WAIT).await;
    // Two device logins, so that each attempt's session_present says whether it got a session
    // that was not its own (a second persistent login of one user gets its own first session).
    let mallory2 = format!("{twin}/mallory2");
    env.add_mqtt_user(&mallory(&twin), MALLORY_PW).await?;
    env.add_mqtt_user(&mallory2, MALLORY_PW).await?;

    // With the downlink's client id, persistent: no session handed over (it would have been the
    // bridge's, and the bridge would have been disconnected).
    let down = env.mqtt(&mallory2, MALLORY_PW, &format!("{bridge}-down"));
    let down = Attacker::connect_with(&down, false).await?;
    ensure!(
        !down.session_present,
        "mallory got the bridge's downlink session"
    );
    down.stop().await;
    // With the uplink's, persistent: it would inherit the subscriptions to every device's uplink.
    let up = Attacker::connect(&env, &twin, &format!("{bridge}-up"), false).await?;
    ensure!(
        !up.session_present,
        "mallory got the bridge's uplink session"
    );

    // A change of d1 still goes through the bridge (both ways) while mallory is connected.
    let change = json!({ "after": "a takeover attempt" });
    d1.publish(&["sync"], change.clone()).await?;
    d2.wait_applied(&change, WAIT, "d1's change after the attempt")
        .await?;
    let got = up.stop().await;
    ensure!(
        got.is_empty(),
        "mallory received the bridge's messages: {got:?}"
    );
    for part in ["up", "down"] {
        let n = ingest
            .metric(&format!(
                "at_ingest_mqtt_reconnects_total{{client=\"{part}\"}}"
            ))
            .await?;
        ensure!(
            n == 0.0,
            "the bridge's {part} connection was dropped {n} times"
        );
    }
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_user_cannot_take_over_another_device() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let Pair {
        ingest,
        twin,
        d1,
        mut d2,
        ..
    } = env.pair("victim").await?;
    env.add_mqtt_user(&mallory(&twin), MALLORY_PW).await?;
    // The client id d2's link asks for (TestDevice::start).
    let victim = format!("dev-{twin}-d2");

    // 1. While d2 is connected: neither a login as d2 with a wrong password nor mallory with d2's
    // client id (clean), on either listener, disconnects it (its link would connect again and say
    // so).
    ensure!(
        !mqtt_login_ok(&env.mqtt(&format!("{twin}/d2"), "wrong", &victim)).await,
        "a wrong password logged in"
    );
    let attempt = Attacker::connect(&env, &twin, &victim, true).await?;
    ensure!(!attempt.session_present, "mallory got d2's session");
    attempt.stop().await;
    let tls = env.mqtt_tls(&mallory(&twin), MALLORY_PW, &victim)?;
    let attempt = Attacker::connect_with(&tls, true).await?;
    ensure!(
        !attempt.session_present,
        "mallory got d2's session over TLS"
    );
    attempt.stop().await;
    let events = d2
        .collect_until(Duration::from_millis(1500), |e| {
            e.iter().any(|x| matches!(x, LinkEvent::Connected))
        })
        .await;
    ensure!(
        !events.iter().any(|x| matches!(x, LinkEvent::Connected)),
        "d2 was disconnected by the attempt (it connected again)"
    );

    // 2. d2 offline, a delivery for it queued in its persistent session; mallory connecting with a
    // clean session and d2's client id would have wiped that queue.
    let (dir, password) = (d2.dir.clone(), d2.password.clone());
    drop(d2.stop().await);
    let down = "at_ingest_messages_out_total{path=\"down\"}";
    let out_before = ingest.metric(down).await?;
    let change = json!({ "queued": "while d2 was away" });
    d1.publish(&["sync"], change.clone()).await?;
    ingest.wait_metric(down, out_before + 1.0, WAIT).await?;
    let attempt = Attacker::connect(&env, &twin, &victim, true).await?;
    ensure!(!attempt.session_present, "mallory got offline d2's session");
    attempt.stop().await;
    // Its state, not its link events: TestDevice::start consumes the events up to the
    // subscription's acknowledgement, and the queued delivery comes right after the ConnAck.
    let d2 = TestDevice::start(&env, &dir, &password).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let got = {
            let d = d2.device.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            d.state().fields.get("queued").cloned()
        };
        if got == Some(change["queued"].clone()) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "d2's delivery queued while it was away never arrived after the attempt"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.stop().await;
    Ok(())
}
