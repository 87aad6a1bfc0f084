//! MQTT size limits and retained uplinks on the real broker and bridge (the hardening issue, item 2):
//! - an oversized uplink (600 KB, by an enrolled device's own user on its own topic) is refused by
//!   mosquitto, which disconnects only that client: the bridge never sees it and keeps serving
//!   (with the broker's limit above the bridge's, it reconnected for ever and no uplink moved);
//! - a retained uplink is dropped, acknowledged and dead-lettered by a bridge that gets it from its
//!   new subscription (every bridge restart would otherwise ingest it again);
//! - a device delivery too big for an MQTT packet is dead-lettered by the bridge's downlink, which
//!   goes on delivering.
//!
//! The broker's and the clients' limits are one value, checked here against the broker's config.

use std::time::Duration;

use anyhow::{ensure, Context};
use armored_base::mqtt;
use armored_base::time::now_ms;
use armored_e2e::{rand_id, repo_root, Env, Pair, TestDevice};
use armored_runtime::kafka::enqueue;
use rdkafka::message::{Header, OwnedHeaders};
use rumqttc::QoS;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn the_broker_and_the_clients_have_one_packet_limit() -> anyhow::Result<()> {
    let conf = std::fs::read_to_string(repo_root().join("infra/mosquitto.conf.in"))?;
    let broker: usize = conf
        .lines()
        .find_map(|l| l.strip_prefix("max_packet_size "))
        .context("max_packet_size in infra/mosquitto.conf.in")?
        .trim()
        .parse()?;
    assert_eq!(broker, mqtt::MAX_PACKET_BYTES, "broker = clients");
    Ok(())
}

/// Publishes `payload` once (QoS 1) as `user` on `topic` with a client of its own whose limits
/// are above the broker's, and waits briefly for the broker's answer (a PUBACK or a disconnect).
async fn raw_publish(
    env: &Env,
    user: &str,
    password: &str,
    topic: &str,
    retain: bool,
    payload: Vec<u8>,
) -> anyhow::Result<bool> {
    let mut o = mqtt::options(&env.mqtt(user, password, &rand_id("raw")), false)?;
    o.set_clean_session(true)
        .set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut events) = rumqttc::AsyncClient::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await?;
    let acked = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.disconnect().await;
    Ok(acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_and_retained_mqtt_messages_stop_nothing() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let Pair {
        ingest,
        twin,
        d1,
        mut d2,
        ..
    } = env.pair("limits").await?;
    let sync = env.topics.sync();
    let d1_user = format!("{twin}/d1");
    let d1_up = format!("at/v1/up/{twin}/d1");
    // The raw publishes below log in as d1 on its own uplink. One user = one session (client ids
    // are bound to users): d1's link is stopped meanwhile, or it would take its session back and
    // drop the raw client (the broker's refusal would then prove nothing), and started again after.
    let (d1_dir, d1_password) = (d1.dir.clone(), d1.password.clone());
    let d1_device = d1.stop().await;

    // 1. 600 KB on d1's own uplink: the broker refuses it (no PUBACK; the client is dropped).
    let acked = raw_publish(
        &env,
        &d1_user,
        &d1_password,
        &d1_up,
        false,
        vec![7; 600_000],
    )
    .await?;
    ensure!(!acked, "the broker took a 600 KB publish");
    let before = env.records(&sync)?.len();
    d2.publish(&["sync"], json!({ "after": "oversized" }))
        .await?;
    let after = env.wait_records(&sync, before + 1, WAIT).await?;
    ensure!(
        after.len() > before,
        "a good uplink did not reach Kafka after the oversized one"
    );
    let reconnects = ingest
        .metric("at_ingest_mqtt_reconnects_total{client=\"up\"}")
        .await?;
    ensure!(
        reconnects == 0.0,
        "the bridge's uplink reconnected {reconnects} times"
    );

    // 2. A valid change of d1, published retained: the live bridge ingests it (live copies carry
    // no retain flag); a bridge started afterwards gets the retained copy and drops it.
    let change = d1_device
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .record(&["sync"], json!({ "retained": 1 }), now_ms())?;
    let retained_case = async {
        ensure!(
            raw_publish(&env, &d1_user, &d1_password, &d1_up, true, change).await?,
            "the broker did not acknowledge the retained publish"
        );
        let second = env.start_ingest().await?;
        env.wait_dead_letter(WAIT, |d| {
            d.reason == "retained_uplink" && d.service == "ingest"
        })
        .await?;
        second
            .wait_metric(
                "at_ingest_dead_letters_total{reason=\"retained_uplink\"}",
                1.0,
                WAIT,
            )
            .await
    }
    .await;
    // Clear the retained message whatever happened: a later test's bridge would get it too.
    raw_publish(&env, &d1_user, &d1_password, &d1_up, true, Vec::new()).await?;
    retained_case?;
    drop(d1_device);
    let d1 = TestDevice::start(&env, &d1_dir, &d1_password).await?;

    // 3. A device delivery over the packet limit, written to the delivery topic directly: the
    // downlink dead-letters it and goes on delivering.
    let headers = OwnedHeaders::new().insert(Header {
        key: "at-receiver-kind",
        value: Some("device"),
    });
    // (Only the workers' principal may write deliveries: the test plays one.)
    enqueue(
        &env.insider_ctl()?.producer,
        &env.topics.deliver(),
        format!("{twin}/d2").as_bytes(),
        &vec![1u8; mqtt::MAX_PACKET_BYTES],
        Some(headers),
    )
    .await
    .await
    .map_err(anyhow::Error::msg)?;
    env.wait_dead_letter(WAIT, |d| d.reason == "oversized_downlink")
        .await?;
    deliver_one(&d1, &mut d2).await?;
    Ok(())
}

/// d1 writes a change; d2 applies it (the whole path, downlink included, still moves).
async fn deliver_one(d1: &TestDevice, d2: &mut TestDevice) -> anyhow::Result<()> {
    d1.publish(&["sync"], json!({ "still": "flowing" })).await?;
    d2.wait_applied(
        &json!({ "still": "flowing" }),
        WAIT,
        "d2, after the oversized delivery",
    )
    .await
}
