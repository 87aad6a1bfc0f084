//! Scale and faults on the real brokers: two `at-reencrypt` processes share the partitions; one is
//! killed with SIGKILL in the middle of a 5,000-message run; the receiver still gets every message
//! (at-least-once, de-duplicated by (twin, writer key, seq)). Needs `infra/start.sh`.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use armored_client::service::{Outcome, Service};
use armored_crypto::identity::PartyKind;
use armored_e2e::{rand_id, Env};
use armored_runtime::scrape;
use serde_json::json;

const MESSAGES: usize = 5_000;
const TWINS: usize = 12;

/// A worker process in `group`, on the harness's worker configuration written as its file.
fn worker(env: &Env, group: &str) -> anyhow::Result<(Child, std::net::SocketAddr)> {
    let mut cfg = env.worker_config(group);
    cfg.kafka.linger_ms = 1;
    let addr = cfg.worker.metrics_addr;
    let config = env.dir.join(format!("{}.toml", rand_id("worker")));
    armored_runtime::config::write_toml(&cfg, &config)?;
    let child = Command::new(env!("CARGO_BIN_EXE_at-reencrypt"))
        .env("AT_CONFIG", &config)
        .env(
            "RUST_LOG",
            std::env::var("AT_KILL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var("AT_KILL_TEST_LOGDIR") {
            Ok(d) => Stdio::from(std::fs::File::create(format!(
                "{d}/{group}-{}.log",
                addr.port()
            ))?),
            Err(_) => Stdio::inherit(),
        })
        .spawn()?;
    Ok((child, addr))
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    scrape::metric(addr, name).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_run_loses_nothing() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let owner = env.owner(&ctl).await?;
    let svc_dir = env.dir.join("svc");
    let id = Service::init(&svc_dir, &rand_id("svc"), PartyKind::Service)?;
    let (party, _) = owner.trust(&ctl, &std::fs::read(id)?).await?;
    owner.grant(&ctl, &party.party_id, "sync", None).await?;

    // 5,000 state changes of 12 twins, written to the log as the bridge would.
    let mut devices = Vec::new();
    for t in 0..TWINS {
        devices.push((format!("{}-{t}", rand_id("fleet")), None));
    }
    for (twin, dev) in devices.iter_mut() {
        *dev = Some(env.enrolled_device(&owner, &ctl, twin, "d1").await?);
    }
    let now = armored_base::time::now_ms();
    let mut acks = Vec::new();
    for i in 0..MESSAGES {
        let (twin, dev) = &mut devices[i % TWINS];
        let Some(dev) = dev.as_mut() else {
            unreachable!()
        };
        let e = dev.record(&["sync"], json!({"i": i}), now)?;
        acks.push(
            armored_runtime::kafka::enqueue(
                &bridge.producer,
                &bridge.topics.sync(),
                twin.as_bytes(),
                &e,
                None,
            )
            .await,
        );
    }
    for a in acks {
        a.await.map_err(anyhow::Error::msg)?;
    }

    // Two workers in one group; kill one once deliveries are under way.
    let group = rand_id("reenc");
    let (mut a, a_addr) = worker(&env, &group)?;
    let (mut b, b_addr) = worker(&env, &group)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(scrape::healthy(a_addr).await && scrape::healthy(b_addr).await) {
        anyhow::ensure!(Instant::now() < deadline, "workers did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliver = env.topics.deliver();
    // Kill a worker while it is busy: once one of them has consumed a few hundred records (each
    // has ~2,500 to do when the partitions are split evenly), SIGKILL it: no drain, no commit.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (victim, survivor) = loop {
        let (na, nb) = (
            metric(a_addr, "at_reencrypt_messages_in_total").await,
            metric(b_addr, "at_reencrypt_messages_in_total").await,
        );
        if na >= 300.0 {
            break ((&mut a, na), (&mut b, b_addr));
        }
        if nb >= 300.0 {
            break ((&mut b, nb), (&mut a, a_addr));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no progress: workers consumed {na} and {nb}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    victim.0.kill()?;
    let _ = victim.0.wait();
    let killed_at = env.records(&deliver)?.len();
    eprintln!(
        "killed a worker after it consumed {} records; {killed_at} deliveries on the topic",
        victim.1
    );
    let survivor_addr = survivor.1;

    let mut svc = Service::open(&svc_dir)?;
    let svc_ctl = env.service_ctl(&svc.id).await?;
    let mut seen = BTreeSet::new();
    let stats = svc
        .consume(
            &svc_ctl,
            Some(MESSAGES as u64),
            Some(Duration::from_secs(40)),
            env.shutdown.child_token(),
            |o| {
                if let Outcome::Received(r) = o {
                    seen.insert((r.twin_id.clone(), r.seq));
                }
            },
        )
        .await?;
    let survivor_consumed = metric(survivor_addr, "at_reencrypt_messages_in_total").await;
    let _ = survivor.0.kill();
    let _ = survivor.0.wait();
    if seen.len() != MESSAGES {
        // Where did the missing ones go? Look for them on the delivery topic itself.
        let mut on_topic = BTreeSet::new();
        for (_, p) in env.records(&deliver)? {
            if let Ok(d) = <armored_schemas::v1::Delivery as prost::Message>::decode(p.as_slice()) {
                if let Ok(h) = armored_crypto::envelope::parse_header(&d.envelope_header) {
                    on_topic.insert((h.twin_id, h.seq));
                }
            }
        }
        let missing: Vec<_> = (0..MESSAGES)
            .map(|i| (devices[i % TWINS].0.clone(), (i / TWINS) as u64))
            .filter(|k| !seen.contains(k))
            .collect();
        let sync = env.records(&env.topics.sync())?.len();
        for r in env.located(&env.topics.sync())? {
            if let Ok((_, h, _)) = armored_crypto::envelope::decode_envelope(&r.payload) {
                if missing.contains(&(h.twin_id.clone(), h.seq)) {
                    eprintln!(
                        "missing record at partition {} offset {}",
                        r.partition, r.offset
                    );
                }
            }
        }
        let dl: Vec<String> = env
            .dead_letters()?
            .iter()
            .map(|d| format!("{}:{}", d.service, d.reason))
            .collect();
        eprintln!("dead letters: {dl:?}");
        eprintln!(
            "missing {missing:?}; on the delivery topic: {:?}; sync records {sync}",
            missing
                .iter()
                .map(|k| on_topic.contains(k))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(
        seen.len(),
        MESSAGES,
        "every message delivered (killed after {killed_at} deliveries); {stats:?}"
    );
    assert!(stats.rejected.is_empty(), "{stats:?}");
    eprintln!(
        "killed one of two workers after {killed_at} of {MESSAGES} deliveries; the survivor consumed {survivor_consumed}; received {} unique, {} duplicates",
        seen.len(),
        stats.duplicates
    );
    env.stop().await;
    Ok(())
}
