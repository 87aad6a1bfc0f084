//! Broker faults on the three-node cluster (`infra/start.sh --brokers 3`: replication factor 3,
//! `min.insync.replicas=2`), each during a run of 10,000 state changes from 10 devices through
//! MQTT → at-ingest → Kafka → two workers → a receiver that counts and de-duplicates:
//!   (a) SIGKILL of the broker leading most `at.sync.v1` partitions;
//!   (b) a rolling restart of all three brokers.
//! Every change must arrive, no service is restarted by hand, nothing valid is dead-lettered; the
//! duplicate count is printed.
//!
//! These tests are `#[ignore]`d in the main run (which has one broker) and run right after it by
//! `infra/test.sh`, on a cluster of their own: `cargo test -p armored-e2e --test faults -- --ignored`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use armored_e2e::load::{self, Load};
use armored_e2e::{Env, SERIAL};

const RUN: Load = Load {
    twins: 5,
    devices_per_twin: 2,
    changes: 10_000,
    fault_after: 2_000,
    idle: Duration::from_secs(90),
};

fn cluster() -> anyhow::Result<()> {
    ensure!(
        load::kafka_nodes() == 3,
        "these tests need the three-node cluster (infra/start.sh --brokers 3; infra/test.sh runs them)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the three-broker cluster: infra/test.sh runs it after the main suite"]
async fn sigkill_of_the_leader_of_most_sync_partitions_loses_nothing() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    cluster()?;
    let env = Env::new().await?;
    let sync = env.topics.sync();
    let report = load::run(&env, RUN, |progress| {
        let env = &env;
        async move {
            let mut led: BTreeMap<i32, usize> = BTreeMap::new();
            for (_, leader, _) in load::leaders(env, &sync).await? {
                *led.entry(leader).or_default() += 1;
            }
            let (victim, count) = led
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(l, n)| (*l, *n))
                .ok_or_else(|| anyhow::anyhow!("no leaders for {sync}"))?;
            eprintln!("leaders of {sync}: {led:?}; killing node {victim} ({count} partitions)");
            load::infra("stop.sh", &["--kafka-node", &victim.to_string(), "--kill"]).await?;
            // The pipeline goes on with two brokers (min.insync.replicas=2).
            let at_kill = progress.get();
            progress
                .wait_for(at_kill + 1_000, Duration::from_secs(120))
                .await?;
            eprintln!("1,000 more changes delivered with node {victim} dead");
            load::infra("start.sh", &["--brokers", "3"]).await?;
            load::wait_in_sync(env, 3, Duration::from_secs(120)).await
        }
    })
    .await?;
    eprintln!("SIGKILL of the leader: {report:?}");
    load::assert_complete(&report);
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the three-broker cluster: infra/test.sh runs it after the main suite"]
async fn a_rolling_restart_of_all_three_brokers_loses_nothing() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    cluster()?;
    let env = Env::new().await?;
    let report = load::run(&env, RUN, |progress| {
        let env = &env;
        async move {
            for node in 1..=3 {
                let before = progress.get();
                load::infra("stop.sh", &["--kafka-node", &node.to_string()]).await?;
                load::infra("start.sh", &["--brokers", "3"]).await?;
                // Rolling: the next node goes only when this one has caught up.
                load::wait_in_sync(env, 3, Duration::from_secs(120)).await?;
                eprintln!(
                    "node {node} restarted; {} changes delivered meanwhile",
                    progress.get() - before
                );
            }
            Ok(())
        }
    })
    .await?;
    eprintln!("rolling restart: {report:?}");
    load::assert_complete(&report);
    env.stop().await;
    Ok(())
}
