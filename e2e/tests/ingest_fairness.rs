//! The bridge keeps serving other devices while one device's messages wait (issue 15): a device
//! that is not enrolled makes the bridge wait for a registry sync on each of its uplinks (a fresh
//! end-offset query, at least `follower::MIN_QUERY_INTERVAL` apart), and an enrolled device's
//! changes published after that burst still reach `at.sync.v1` before the burst is all handled.
//! The order is read from the records' producer timestamps (one producer, one clock), not from
//! wall-clock thresholds. Needs `infra/start.sh`.

use std::time::Duration;

use armored_base::time::now_ms;
use armored_device::link::LinkEvent;
use armored_e2e::{rand_id, Env, TestDevice};
use serde_json::json;

/// The slow device's burst. With the good device's changes it stays within mosquitto's default
/// window of unacknowledged messages per client (`max_inflight_messages` 20; infra/ sets 1024): the
/// bridge holds each PUBACK until its record is written, so with the default a longer burst would
/// stop the broker from sending the good device's messages at all, whatever the bridge does.
const BURST: usize = 14;
const GOOD: usize = 4;
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_slow_device_does_not_stall_the_others() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let ingest = env.start_ingest().await?;
    let owner = env.owner(&ctl).await?;

    // The slow device: an MQTT login, never enrolled.
    let slow_twin = rand_id("slow");
    let slow_dir = env.dir.join("slow");
    armored_device::setup(&slow_dir, &slow_twin, "d", 3_600_000)?;
    armored_device::pin_owner(&slow_dir, &owner.identity()?)?;
    env.add_mqtt_user(&format!("{slow_twin}/d"), "slow-pw")
        .await?;
    let mut slow = TestDevice::start(&env, &slow_dir, "slow-pw").await?;
    // The good device, on another lane than the slow one (a shared lane is served in order).
    let good_twin = rand_id("good");
    let slow_lane = at_ingest::lanes::lane(&format!("at/v1/up/{slow_twin}/d"));
    let name = (0..)
        .map(|i| format!("g{i}"))
        .find(|n| at_ingest::lanes::lane(&format!("at/v1/up/{good_twin}/{n}")) != slow_lane)
        .unwrap_or_default();
    let good = env.device(&owner, &ctl, &good_twin, &name).await?;
    // Once this one is through, the bridge knows the good device.
    good.publish(&["sync"], json!({"warm": 0})).await?;
    let out = "at_ingest_messages_out_total{path=\"up\"}";
    ingest.wait_metric(out, 1.0, WAIT).await?;

    // Sealed beforehand, so that the burst and the good changes leave back to back.
    let seal = |dev: &TestDevice, delta: serde_json::Value| -> anyhow::Result<Vec<u8>> {
        let mut d = dev.device.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(d.record(&["sync"], delta, now_ms())?)
    };
    let burst = (0..BURST)
        .map(|i| seal(&slow, json!({"slow": i})))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let changes = (0..GOOD)
        .map(|i| seal(&good, json!({"good": i})))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for env in burst {
        slow.outbox.send(env).await?;
    }
    // All of the burst is at the broker, queued for the bridge before anything of the good device.
    let acked = slow
        .collect_until(WAIT, |e| {
            e.iter().filter(|x| matches!(x, LinkEvent::Acked)).count() >= BURST
        })
        .await;
    assert!(
        acked
            .iter()
            .filter(|x| matches!(x, LinkEvent::Acked))
            .count()
            >= BURST
    );
    for env in changes {
        good.outbox.send(env).await?;
    }
    ingest.wait_metric(out, (1 + GOOD) as f64, WAIT).await?;
    let unknown = "at_ingest_dead_letters_total{reason=\"unknown_device\"}";
    ingest.wait_metric(unknown, BURST as f64, WAIT).await?;

    // Both sets are in Kafka; compare when the bridge produced them.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (good_stamps, slow_stamps) = loop {
        let good_stamps: Vec<i64> = env
            .located(&env.topics.sync())?
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(good_twin.as_bytes()))
            .filter_map(|r| r.timestamp_ms)
            .collect();
        let slow_topic = format!("at/v1/up/{slow_twin}/d");
        let slow_stamps: Vec<i64> = env
            .located(&env.topics.dlq())?
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(slow_topic.as_bytes()))
            .filter_map(|r| r.timestamp_ms)
            .collect();
        if good_stamps.len() > GOOD && slow_stamps.len() >= BURST {
            break (good_stamps, slow_stamps);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "records missing: {} good, {} slow",
            good_stamps.len(),
            slow_stamps.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let good_done = good_stamps.iter().copied().max().unwrap_or(i64::MAX);
    let slow_before = slow_stamps.iter().filter(|t| **t <= good_done).count();
    eprintln!(
        "{slow_before} of {BURST} slow dead letters written before the good device's last record"
    );
    assert!(
        slow_before < BURST,
        "the good device's changes waited for the whole slow burst ({slow_before} of {BURST} \
         dead letters were written before its last record)"
    );
    env.stop().await;
    Ok(())
}
