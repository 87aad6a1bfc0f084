//! The raw ceilings of one run, measured right before the pipeline on the same machine: the same
//! number of MQTT clients publishing payloads of an envelope's size at QoS 1 into mosquitto and
//! out to one subscriber (rumqttc), and records of that size produced (`acks=all`) and consumed
//! through a topic with `at.sync.v1`'s partitions (rdkafka). Both under the same flow control as
//! the pipeline: at most `backlog` messages published and not yet received.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use armored_runtime::config::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::pace::Pace;

/// One MQTT login of the run.
#[derive(Clone, Debug)]
pub struct Login {
    /// User (and client id: the broker binds them).
    pub user: String,
    /// Password.
    pub password: String,
}

/// An MQTT client with a clean session (nothing is left queued after the run) and `inflight`
/// unacknowledged publishes at most, polled by a task of its own that hands incoming publishes
/// (not retained ones) to `on_publish`.
pub fn client(
    host: &str,
    port: u16,
    login: &Login,
    on_publish: impl Fn(&rumqttc::Publish) + Send + 'static,
) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut o = MqttOptions::new(login.user.clone(), host, port);
    o.set_clean_session(true)
        .set_credentials(login.user.clone(), login.password.clone())
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(100)
        .set_max_packet_size(300 * 1024, 300 * 1024);
    let (c, mut el) = AsyncClient::new(o, 256);
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if !p.retain => on_publish(&p),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "bench MQTT client: connection error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    (c, task)
}

/// Raw MQTT: `logins` publish `per_client` payloads of `size` bytes each on their own uplink
/// topics (`topics`), which `reader` (a bridge-role user) receives through one subscription.
/// Returns messages per second from the first publish to the last arrival.
pub async fn mqtt(
    host: &str,
    port: u16,
    logins: &[(Login, String)],
    reader: &Login,
    per_client: usize,
    size: usize,
    backlog: u64,
) -> anyhow::Result<f64> {
    let total = (per_client * logins.len()) as u64;
    let received = Arc::new(AtomicU64::new(0));
    let (sub, sub_task) = {
        let received = received.clone();
        client(host, port, reader, move |_| {
            received.fetch_add(1, Ordering::Relaxed);
        })
    };
    sub.subscribe(at_ingest::UPLINK_FILTER, QoS::AtLeastOnce)
        .await?;
    // The subscription is in place once a probe published after it arrives.
    let (probe, probe_task) = client(host, port, &logins[0].0, |_| {});
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            bail!("raw MQTT: the reader's subscription never delivered a probe");
        }
        probe
            .publish(&logins[0].1, QoS::AtLeastOnce, false, vec![0u8; 8])
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    probe_task.abort();
    let _ = probe.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = received.load(Ordering::Relaxed);
    let pace = Arc::new(Pace::new(backlog, vec![received.clone()], base));
    let payload = vec![0x5au8; size];
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (login, topic) in logins {
        let (c, task) = client(host, port, login, |_| {});
        let (pace, payload, topic) = (pace.clone(), payload.clone(), topic.clone());
        tasks.push((
            tokio::spawn(async move {
                for _ in 0..per_client {
                    pace.admit().await?;
                    c.publish(&topic, QoS::AtLeastOnce, false, payload.clone())
                        .await?;
                }
                // Leave the connection up until the reader has everything (PUBACKs in flight).
                Ok::<_, anyhow::Error>(c)
            }),
            task,
        ));
    }
    let want = base + total;
    let mut last = (received.load(Ordering::Relaxed), Instant::now());
    while received.load(Ordering::Relaxed) < want {
        let now = received.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            bail!(
                "raw MQTT stalled: {} of {total} received",
                now.saturating_sub(base)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    for (t, poll) in tasks {
        let c = t.await??;
        let _ = c.disconnect().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        poll.abort();
    }
    sub_task.abort();
    Ok(total as f64 / secs)
}

/// Raw Kafka: `total` records of `size` bytes (keys spread like twins) produced with `acks=all`
/// into a new topic of `partitions` partitions and consumed by one consumer. Messages per
/// second from the first send to the last record consumed.
pub async fn kafka(
    run: &KafkaConfig,
    topic: &str,
    partitions: i32,
    total: u64,
    size: usize,
    keys: usize,
    backlog: u64,
) -> anyhow::Result<f64> {
    armored_runtime::kafka::create_topics(run, &[(topic.to_string(), partitions)]).await?;
    let producer: FutureProducer = armored_runtime::kafka::base_config(run)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", run.linger_ms.to_string())
        .create()
        .context("raw Kafka producer")?;
    let consumer: StreamConsumer = armored_runtime::kafka::base_config(run)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", run.fetch_wait_max_ms.to_string())
        .create()
        .context("raw Kafka consumer")?;
    consumer.subscribe(&[topic])?;
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            while received.load(Ordering::Relaxed) < total + keys.max(1) as u64 {
                match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
                    Ok(Ok(m)) => {
                        if m.payload().is_some() {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "raw Kafka consumer"),
                    Err(_) => bail!(
                        "raw Kafka stalled: {} of {total} consumed",
                        received.load(Ordering::Relaxed)
                    ),
                }
            }
            Ok(())
        })
    };
    let payload = vec![0xa5u8; size];
    let names: Vec<String> = (0..keys.max(1)).map(|k| format!("twin-{k}")).collect();
    // The clock starts once the producer has its id and the consumer its partitions: a first
    // record per key was acknowledged and read back.
    let warm = names.len() as u64;
    for k in &names {
        let rec = FutureRecord::to(topic).key(k).payload(&payload);
        if let Err((e, _)) = producer.send(rec, Duration::from_secs(30)).await {
            bail!("raw Kafka warm-up produce failed: {e}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < warm {
        if Instant::now() > deadline || reader.is_finished() {
            bail!("raw Kafka: the consumer never read the warm-up records");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pace = Arc::new(Pace::new(backlog, vec![received.clone()], warm));
    let t0 = Instant::now();
    let mut acks = std::collections::VecDeque::new();
    for i in 0..total {
        pace.admit().await?;
        if reader.is_finished() {
            break;
        }
        let mut rec = FutureRecord::to(topic)
            .key(&names[i as usize % names.len()])
            .payload(&payload);
        // Enqueued at once (librdkafka's queue); its acknowledgement is awaited later.
        loop {
            match producer.send_result(rec) {
                Ok(ack) => {
                    acks.push_back(ack);
                    break;
                }
                Err((e, back)) => {
                    if !matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ) {
                        bail!("raw Kafka produce failed: {e}");
                    }
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        // Acknowledgements are awaited oldest first once `backlog` wait, so they do not pile up.
        while acks.len() > backlog as usize {
            if let Some(ack) = acks.pop_front() {
                if let Ok(Err((e, _))) = ack.await {
                    bail!("raw Kafka produce failed: {e}");
                }
            }
        }
    }
    for ack in acks {
        if let Ok(Err((e, _))) = ack.await {
            bail!("raw Kafka produce failed: {e}");
        }
    }
    reader.await??;
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

/// Messages mosquitto holds (`$SYS/broker/store/messages/count`, read as `login`, a bridge's
/// downlink user, which may read `$SYS/broker/#`): queued for offline persistent sessions,
/// retained ones. A broker holding many (old sessions of stopped bridges or tests) spends time on
/// each publish and on every autosave, which shows as latency spikes; `None` if not read in 15 s.
pub async fn broker_stored(host: &str, port: u16, login: &Login) -> Option<u64> {
    let mut o = MqttOptions::new(login.user.clone(), host, port);
    o.set_clean_session(true)
        .set_credentials(login.user.clone(), login.password.clone())
        .set_keep_alive(Duration::from_secs(30));
    let (c, mut el) = AsyncClient::new(o, 16);
    // $SYS topics are retained and published again only when they change: the retained copy the
    // subscription brings is the current value.
    let _ = c
        .subscribe("$SYS/broker/store/messages/count", QoS::AtMostOnce)
        .await;
    let got = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    return String::from_utf8_lossy(&p.payload).trim().parse().ok();
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .ok()
    .flatten();
    let _ = c.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), el.poll()).await;
    got
}
