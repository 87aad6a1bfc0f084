//! Scale-out of the edge: two at-ingest bridges share the uplink through an MQTT shared
//! subscription (`$share/{group}/…`, mosquitto hands each publish to one of them) and the downlink
//! as one Kafka consumer group. Checked on the real brokers: both bridges carry uplink traffic;
//! every change reaches the service and the sibling device exactly once after de-duplication; and
//! each device's order holds as specified (README, "Scale-out"): a device's changes may reach the
//! log out of seq order (two bridges write them), and every receiver orders a writer's changes by
//! seq, so the sibling ends with each writer's last value.
//! Needs `infra/start.sh` (infra/test.sh runs it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use armored_device::link::LinkEvent;
use armored_e2e::{consume, rand_id, Env, TestDevice, SERIAL};
use serde_json::json;

/// Changes each device publishes.
const CHANGES: u64 = 150;
/// Unacknowledged publishes a device keeps in flight (several, so that both bridges hold some
/// of one device's changes at once).
const WINDOW: u64 = 32;
const WAIT: Duration = Duration::from_secs(60);

/// Publishes `CHANGES` changes setting `field` to 0, 1, …, keeping at most `WINDOW` in flight.
async fn publish_all(d: &mut TestDevice, field: &str) -> anyhow::Result<()> {
    let mut acked = 0u64;
    for i in 0..CHANGES {
        while i - acked >= WINDOW {
            match tokio::time::timeout(WAIT, d.events.recv()).await {
                Ok(Some(LinkEvent::Acked)) => acked += 1,
                Ok(Some(_)) => {}
                _ => anyhow::bail!("{field}: no PUBACK ({acked} of {i} acknowledged)"),
            }
        }
        d.publish(&["sync"], json!({ field: i })).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_bridges_share_the_uplink_and_the_downlink() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let (group, down) = (rand_id("share"), rand_id("ingest-down"));
    let mut bridges = Vec::new();
    for _ in 0..2 {
        let mut cfg = env.ingest_config().await?;
        cfg.ingest.shared_group = group.clone();
        cfg.ingest.downlink_group = down.clone();
        bridges.push(env.start_ingest_with(cfg).await?);
    }
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("fleet");
    let mut d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    let (party, mut svc) = env.service(&owner, &ctl).await?;
    owner.grant(&ctl, &party, "sync", None).await?;
    d1.wait_roster(2, Duration::from_secs(10)).await;
    d2.wait_roster(2, Duration::from_secs(10)).await;

    // d1 and d2 publish at once, each with several changes in flight.
    let (p1, p2) = tokio::join!(publish_all(&mut d1, "a"), publish_all(&mut d2, "b"));
    p1?;
    p2?;

    // The service: every change exactly once after de-duplication.
    let got = consume(&env, &mut svc, Some(2 * CHANGES), WAIT).await?;
    let mut by_device: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &got {
        by_device
            .entry(r.device_id.clone())
            .or_default()
            .push(r.seq);
    }
    for (dev, seqs) in &by_device {
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), seqs.len(), "{dev}: a copy was not dropped");
        assert_eq!(unique.len() as u64, CHANGES, "{dev}: {seqs:?}");
        // Informational: how often two bridges put a device's changes out of seq order.
        let inversions = seqs.windows(2).filter(|w| w[1] < w[0]).count();
        println!("{dev}: {inversions} changes read before an earlier seq of the same device");
    }
    assert_eq!(by_device.len(), 2, "{by_device:?}");

    // Both bridges carried uplink traffic; together every publish.
    let mut up = Vec::new();
    for b in &bridges {
        up.push(b.metric("at_ingest_messages_in_total{path=\"up\"}").await?);
    }
    assert!(up.iter().all(|&n| n > 0.0), "one bridge idle: {up:?}");
    assert!(up.iter().sum::<f64>() >= (2 * CHANGES) as f64, "{up:?}");

    // The siblings: each applied the other's last value, whatever order the changes came in.
    for (d, field) in [(&mut d1, "b"), (&mut d2, "a")] {
        let last = json!(CHANGES - 1);
        let deadline = std::time::Instant::now() + WAIT;
        while d.device.lock().expect("lock").state().fields.get(field) != Some(&last)
            && std::time::Instant::now() < deadline
        {
            let _ = d.collect_until(Duration::from_millis(200), |_| false).await;
        }
        // Let whatever is still on its way arrive: it must not roll the field back.
        let _ = d.collect_until(Duration::from_secs(2), |_| false).await;
        let now = d
            .device
            .lock()
            .expect("lock")
            .state()
            .fields
            .get(field)
            .cloned();
        assert_eq!(now, Some(last), "{field} at the sibling");
    }
    // The downlink: each delivery published by one bridge (at least once; never lost).
    let mut out = 0.0;
    for b in &bridges {
        out += b
            .metric("at_ingest_messages_out_total{path=\"down\"}")
            .await?;
    }
    assert!(out >= (2 * CHANGES) as f64, "downlink publishes {out}");
    println!(
        "uplink per bridge {up:?}; downlink publishes {out} for {} deliveries",
        2 * CHANGES
    );
    env.stop().await;
    Ok(())
}
