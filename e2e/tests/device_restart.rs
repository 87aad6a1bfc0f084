//! A device restarted while a sibling wrote (the hardening issue, item 6). A restarted device used
//! to trust only the owner and itself until the retained roster came again; its persistent
//! session's queued deliveries arrive before that, so the sibling's change was refused as
//! `unknown_signer`, acknowledged, and lost for good. Now the device keeps its roster on disk (and
//! holds a delivery from a writer it does not know yet until the next roster). Also: what a device
//! sealed before a crash is published when it comes back (its outbox on disk).

use std::time::{Duration, Instant};

use anyhow::ensure;
use armored_e2e::{Env, Pair, TestDevice};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_device_applies_what_a_sibling_wrote_meanwhile() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let Pair { ingest, d1, d2, .. } = env.pair("boiler").await?;
    let (dir, password) = (d2.dir.clone(), d2.password.clone());
    // The device process ends: everything it had in memory is gone.
    drop(d2.stop().await);

    // Meanwhile d1 writes; the bridge hands the delivery for d2 to the broker, which queues it.
    let out_before = ingest
        .metric("at_ingest_messages_out_total{path=\"down\"}")
        .await?;
    d1.publish(&["sync"], json!({ "written": "while d2 was away" }))
        .await?;
    ingest
        .wait_metric(
            "at_ingest_messages_out_total{path=\"down\"}",
            out_before + 1.0,
            WAIT,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A new process opens the device again: it applies d1's change.
    let d2 = TestDevice::start(&env, &dir, &password).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let (value, refused) = {
            let d = d2.device.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            (
                d.state().fields.get("written").cloned(),
                d.state()
                    .counters
                    .get("rejected_unknown_signer")
                    .copied()
                    .unwrap_or(0),
            )
        };
        if value == Some(json!("while d2 was away")) {
            ensure!(
                refused == 0,
                "{refused} deliveries refused as unknown_signer"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "d2 never applied d1's change ({refused} refused as unknown_signer)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.stop().await;
    Ok(())
}

/// A device that seals changes and crashes before they leave (they were only in a channel in
/// memory) publishes them when it comes back: they wait in its outbox on disk until the broker's
/// PUBACK (the hardening issue, item 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_sealed_before_a_crash_are_published_when_the_device_comes_back(
) -> anyhow::Result<()> {
    let env = Env::new().await?;
    let Pair { d1, mut d2, .. } = env.pair("kettle").await?;
    let (dir, password) = (d1.dir.clone(), d1.password.clone());
    let device = d1.stop().await;
    // Sealed and recorded in the state, then the process dies before publishing anything.
    for i in 0..3 {
        device.lock().map_err(|_| anyhow::anyhow!("lock"))?.record(
            &["sync"],
            json!({ "before_crash": i }),
            armored_base::time::now_ms(),
        )?;
    }
    drop(device);
    ensure!(
        armored_device::outbox::pending(&dir)?.len() == 3,
        "the three envelopes wait in the outbox"
    );

    let _d1 = TestDevice::start(&env, &dir, &password).await?;
    let seen = d2
        .collect_until(WAIT, |e| {
            armored_e2e::applied(e)
                .iter()
                .filter(|(_, d)| d.get("before_crash").is_some())
                .count()
                == 3
        })
        .await;
    let got = armored_e2e::applied(&seen)
        .iter()
        .filter(|(_, d)| d.get("before_crash").is_some())
        .count();
    ensure!(
        got == 3,
        "d2 applied {got} of the 3 changes sealed before the crash"
    );
    // And once the broker has them, the outbox is empty.
    let deadline = Instant::now() + WAIT;
    while !armored_device::outbox::pending(&dir)?.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "the outbox kept acknowledged envelopes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.stop().await;
    Ok(())
}
