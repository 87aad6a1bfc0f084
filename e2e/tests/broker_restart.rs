//! The single-node default (`infra/start.sh`): the Kafka broker is stopped and started again in the
//! middle of a run (its storage persists); the services reconnect by themselves and nothing is
//! lost. Also: an idempotent producer writing through the restart stores every record once and in
//! order. This binary holds one test, so no other test shares the broker while it restarts.

use std::time::Duration;

use armored_e2e::load::{self, Load};
use armored_e2e::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_broker_stopped_and_started_mid_run_loses_nothing() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let nodes = load::kafka_nodes().to_string();

    // A producer that writes numbered records to one partition through the whole run.
    let probe = env.topics.name("seq");
    armored_runtime::kafka::create_topics(&env.kafka, &[(probe.clone(), 1)]).await?;
    let stop_probe = env.shutdown.child_token();
    let writer = {
        let (kafka, probe, stop) = (env.kafka.clone(), probe.clone(), stop_probe.clone());
        tokio::spawn(async move {
            let producer = armored_runtime::kafka::producer(&kafka)?;
            let mut acks = Vec::new();
            let mut n = 0u32;
            while !stop.is_cancelled() {
                let v = n.to_be_bytes();
                acks.push(armored_runtime::kafka::enqueue(&producer, &probe, b"k", &v, None).await);
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            for a in acks {
                a.await.map_err(anyhow::Error::msg)?;
            }
            anyhow::Ok(n)
        })
    };

    let run = Load {
        twins: 4,
        devices_per_twin: 2,
        changes: 4_000,
        fault_after: 800,
        idle: Duration::from_secs(120),
    };
    let report = load::run(&env, run, |progress| async move {
        load::infra("stop.sh", &["--kafka-node", "1"]).await?;
        let at_stop = progress.get();
        tokio::time::sleep(Duration::from_secs(3)).await;
        load::infra("start.sh", &["--brokers", &nodes]).await?;
        eprintln!(
            "broker down and up again; {} changes arrived meanwhile (published before the stop)",
            progress.get() - at_stop
        );
        Ok(())
    })
    .await?;
    eprintln!("{report:?}");
    load::assert_complete(&report);

    stop_probe.cancel();
    let written = writer.await??;
    let got: Vec<u32> = env
        .records(&probe)?
        .into_iter()
        .filter_map(|(_, v)| v.try_into().ok().map(u32::from_be_bytes))
        .collect();
    assert_eq!(
        got,
        (0..written).collect::<Vec<_>>(),
        "every acknowledged record once, in order, across the restart"
    );
    eprintln!(
        "the idempotent producer's {written} records across the restart: each stored once, in order"
    );
    env.stop().await;
    Ok(())
}
