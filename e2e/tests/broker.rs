//! What the pipeline assumes of the broker (Apache Kafka), checked on the real one: a consumer group
//! resumes exactly at the committed offset, including inside a produced batch; concurrent idempotent
//! producers lose nothing and store each record once, in each producer's order.

use std::time::Duration;

use armored_e2e::{rand_id, Env};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn consumer(env: &Env, group: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = armored_runtime::kafka::base_config(&env.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()?;
    c.subscribe(&[topic])?;
    Ok(c)
}

fn next_offset(c: &BaseConsumer) -> anyhow::Result<i64> {
    for _ in 0..200 {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            return Ok(m?.offset());
        }
    }
    anyhow::bail!("nothing consumed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_exactly_at_its_committed_offset() -> anyhow::Result<()> {
    let env = Env::new().await?;
    // The probe topic is the test's own: written as the super user (no principal has an ACL on it).
    let ctl = armored_client::kafka::Ctl::with_config(env.kafka.clone())?;
    let topic = env.topics.name("probe");
    armored_runtime::kafka::create_topics(&env.kafka, &[(topic.clone(), 1)]).await?;
    // One batch of 20 records (linger lets the producer batch them).
    let mut acks = Vec::new();
    for i in 0..20u32 {
        acks.push(
            armored_runtime::kafka::enqueue(&ctl.producer, &topic, b"k", &i.to_be_bytes(), None)
                .await,
        );
    }
    for a in acks {
        a.await.map_err(anyhow::Error::msg)?;
    }
    // A second batch, so that the last record of the first one is not the end of the log.
    let mut acks = Vec::new();
    for i in 20..40u32 {
        acks.push(
            armored_runtime::kafka::enqueue(&ctl.producer, &topic, b"k", &i.to_be_bytes(), None)
                .await,
        );
    }
    for a in acks {
        a.await.map_err(anyhow::Error::msg)?;
    }
    let group = rand_id("g");
    for commit in [5i64, 6, 13, 19, 20, 39] {
        {
            let c = consumer(&env, &group, &topic)?;
            next_offset(&c)?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Offset(commit))?;
            c.commit(&tpl, CommitMode::Sync)?;
        }
        let c = consumer(&env, &group, &topic)?;
        assert_eq!(
            next_offset(&c)?,
            commit,
            "resumed after committing {commit}"
        );
    }
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_producers_to_one_partition_lose_nothing_and_store_each_record_once(
) -> anyhow::Result<()> {
    let env = Env::new().await?;
    let topic = env.topics.name("race");
    armored_runtime::kafka::create_topics(&env.kafka, &[(topic.clone(), 1)]).await?;
    const EACH: u32 = 3000;
    let mut tasks = Vec::new();
    for p in 0..3u32 {
        let mut k = env.kafka.clone();
        k.linger_ms = p * 2;
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let producer = armored_runtime::kafka::producer(&k)?;
            let mut acks = Vec::new();
            for i in 0..EACH {
                let v = (p * EACH + i).to_be_bytes();
                acks.push(
                    armored_runtime::kafka::enqueue(&producer, &topic, b"same-key", &v, None).await,
                );
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            for a in acks {
                a.await.map_err(anyhow::Error::msg)?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let stored: Vec<u32> = env
        .records(&topic)?
        .into_iter()
        .filter_map(|(_, v)| v.try_into().ok().map(u32::from_be_bytes))
        .collect();
    let got: std::collections::BTreeSet<u32> = stored.iter().copied().collect();
    assert_eq!(
        got.len() as u32,
        3 * EACH,
        "every acknowledged record is on the topic"
    );
    // The idempotent producer: no record stored twice, and each producer's records in its order.
    assert_eq!(stored.len(), got.len(), "no record stored twice");
    for p in 0..3u32 {
        let mine: Vec<u32> = stored.iter().copied().filter(|v| v / EACH == p).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "producer {p}'s records in the order it sent them"
        );
    }
    env.stop().await;
    Ok(())
}
