//! A consumer group whose coordinator stays lost is given a new consumer (runtime/src/pipeline.rs,
//! `coordinator_lost`), and nothing is lost: the single broker is stopped for longer than the
//! pipeline's coordinator timeout (30 s) and started again; every record written before and after
//! is handled, and the replacement is counted. (Seen in CI: after a broker restart librdkafka kept
//! one coordinator request queued for minutes and the group stood still; that stall cannot be
//! caused at will, a coordinator that is away for as long can.) This binary holds one test, so no
//! other test shares the broker while it is down.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use armored_e2e::load;
use armored_e2e::{rand_id, Env};
use armored_runtime::pipeline::{run_group, GroupMetrics, GroupSpec, Handler};
use futures::FutureExt;
use prometheus::{IntCounter, IntGauge};

/// Writes records `from..to` (numbers, big-endian) to `topic`, each acknowledged.
async fn write(env: &Env, topic: &str, from: u32, to: u32) -> anyhow::Result<()> {
    let producer = armored_runtime::kafka::producer(&env.kafka)?;
    let mut acks = Vec::new();
    for i in from..to {
        let key = i.to_string();
        acks.push(
            armored_runtime::kafka::enqueue(
                &producer,
                topic,
                key.as_bytes(),
                &i.to_be_bytes(),
                None,
            )
            .await,
        );
    }
    for a in acks {
        a.await.map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Waits until `seen` holds every number below `n`.
async fn all_seen(seen: &Mutex<BTreeSet<u32>>, n: u32, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let have = seen.lock().map(|s| s.range(..n).count()).unwrap_or(0);
        if have == n as usize {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{have} of {n} records handled after {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_its_coordinator_gets_a_new_consumer_and_loses_nothing(
) -> anyhow::Result<()> {
    let env = Env::new().await?;
    let nodes = load::kafka_nodes().to_string();
    anyhow::ensure!(
        nodes == "1",
        "this test stops the one broker of the single-node cluster"
    );
    let topic = env.topics.sync();
    write(&env, &topic, 0, 200).await?;

    let seen: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let handler: Handler = {
        let seen = seen.clone();
        Arc::new(move |m| {
            let seen = seen.clone();
            async move {
                if let Ok(b) = <[u8; 4]>::try_from(m.payload.as_slice()) {
                    if let Ok(mut s) = seen.lock() {
                        s.insert(u32::from_be_bytes(b));
                    }
                }
                Vec::new()
            }
            .boxed()
        })
    };
    let restarts = IntCounter::new("restarts", "consumer restarts")?;
    let metrics = GroupMetrics {
        lag: IntGauge::new("lag", "lag")?,
        consumer_restarts: restarts.clone(),
    };
    let spec = GroupSpec {
        group: rand_id("coord"),
        topics: vec![topic.clone()],
        queue_depth: 64,
        drain_timeout: Duration::from_secs(5),
    };
    let pipeline = {
        let kafka = env.kafka.clone();
        let stop = env.shutdown.child_token();
        tokio::spawn(async move { run_group(&kafka, spec, metrics, handler, stop).await })
    };
    all_seen(&seen, 200, Duration::from_secs(60)).await?;
    assert_eq!(
        restarts.get(),
        0,
        "no replacement while the coordinator answers"
    );

    // Away for longer than the coordinator timeout (30 s) plus a statistics interval (5 s).
    load::infra("stop.sh", &["--kafka-node", "1"]).await?;
    tokio::time::sleep(Duration::from_secs(42)).await;
    load::infra("start.sh", &["--brokers", &nodes]).await?;
    anyhow::ensure!(
        restarts.get() >= 1,
        "the consumer was not replaced while its coordinator was away for 42 s"
    );
    eprintln!(
        "consumer replaced {} time(s) while the broker was down",
        restarts.get()
    );

    // The new consumer joins the group and goes on from its last commit.
    write(&env, &topic, 200, 400).await?;
    all_seen(&seen, 400, Duration::from_secs(90)).await?;
    env.shutdown.cancel();
    pipeline.await??;
    Ok(())
}
