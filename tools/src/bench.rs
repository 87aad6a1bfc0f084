//! `at-bench`: Protocol 2's job path end to end on the real brokers, for N users x 50
//! points (the paper's Table 2 scenario). For each N, on fresh topics: N + 1 owners (each phone's
//! user is its owner, as in the paper) grant node j share j and issue a process token; N + 1 phones
//! (the reference and N participants) split and seal their points and publish them over MQTT;
//! the bridge and the re-encryption workers (separate processes) route share j to node j; three
//! `at-mpc-node` processes fold and verify their shares, then a health authority submits the job
//! and combines the result, which is checked against the cleartext computation.
//!
//! Measured per N: the job latency from submit to combined result, and the CPU time of every
//! process by phase, read from `/proc` (measured, not estimated), per user. Writes
//! `target/bench-results/mpc-pipeline.json` (rows `{"users", "seconds", "cpu_ms_per_user", …}`)
//! and the latency's linear fit to `mpc-pipeline-fit.json`.

pub(crate) mod configs;
pub(crate) mod fleet;
mod parties;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_client::kafka::{Ctl, OWNER_PRINCIPAL};
use armored_client::mpc::{build_job, Collector, JobRequest, Outcome, Submission};
use armored_device::sim::Sim;
use armored_runtime::config::KafkaConfig;
use armored_runtime::kafka::{create_topics, Topics};

use self::fleet::Broker;
use self::report::report;
use crate::contacts::{in_the_clear, DISTANCE, SEED, SLOT_MS};
use crate::procs::{self, free_addr, Service};

pub use self::report::{linear_fit, Infra, Phases, Row};

/// What to run and where.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Participants per run (each run adds the reference twin).
    pub users: Vec<usize>,
    /// Location points per phone (the job's window in slots).
    pub points: u32,
    /// Slots per share epoch to run every N with: the default share epoch (one capsule per phone
    /// and node for a whole window) and 1, the paper's accounting (a capsule per point).
    pub share_epochs: Vec<u64>,
    /// Re-encryption worker processes.
    pub workers: usize,
    /// Phones connected at a time.
    pub wave: usize,
    /// Where the services and brokers are.
    pub site: crate::site::Site,
    /// JSON output; `None`: print only.
    pub out: Option<PathBuf>,
}

/// Runs every N of `cfg.users` and reports.
pub async fn run(cfg: &BenchConfig, shutdown: &Shutdown) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(&cfg.site.dir)?;
    let mut rows = Vec::new();
    for &spe in &cfg.share_epochs {
        for &n in &cfg.users {
            println!(
                "== N = {n} users x {} points, {spe} slots per share epoch ({} workers, {} backend) ==",
                cfg.points,
                cfg.workers,
                armored_crypto::group::BACKEND
            );
            let row = run_one(cfg, n, spe, shutdown).await?;
            println!(
                "   job latency {:.3} s; whole cost {:.1} ms CPU per user",
                row.seconds, row.cpu_ms_per_user
            );
            rows.push(row);
        }
    }
    report(cfg.out.as_deref(), &rows)?;
    Ok(rows)
}

/// A short random tag for names of one run.
pub(crate) fn rid() -> String {
    format!(
        "{:06x}",
        rand_core::RngCore::next_u32(&mut rand_core::OsRng) & 0xff_ffff
    )
}

/// Records on every partition of `topic` (sum of the partitions' end offsets).
fn topic_len(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = armored_runtime::kafka::base_config(kafka)
        .set("group.id", "unused-no-commits")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut n = 0;
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
        n += hi - lo;
    }
    Ok(n)
}

async fn sum_cpu(services: &[Service]) -> f64 {
    services.iter().map(Service::cpu_ms).sum()
}

async fn run_one(
    cfg: &BenchConfig,
    n: usize,
    spe: u64,
    shutdown: &Shutdown,
) -> anyhow::Result<Row> {
    let dir = cfg.site.dir.join(format!("n{n}-{}", rid()));
    std::fs::create_dir_all(&dir)?;
    let kafka = KafkaConfig {
        brokers: cfg.site.brokers.clone(),
        topic_prefix: format!("bench-{}.", rid()),
        session_timeout_ms: 6000,
        linger_ms: 1,
        fetch_wait_max_ms: 5,
        connect_timeout_ms: 10_000,
        sasl: None,
    }
    // The run itself (topics, raw reads) is the super user; its services and its owner their
    // own principals.
    .as_local_principal("at-kafka")?;
    let topics = Topics::new(&kafka.topic_prefix);
    create_topics(&kafka, &topics.all()).await?;
    procs::grant_kafka_acls(&cfg.site.infra_dir, &kafka.topic_prefix)?;
    let ctl = Ctl::with_config(kafka.as_local_principal(OWNER_PRINCIPAL)?)?;

    // The window: `points` slots that ended before the upload starts (the bridge's skew bound is
    // widened so that a long upload is not refused as stale; the nodes' cut-off is set after it).
    // A past window, on a multiple of its length (the grant's windows are tiles of that length).
    let len = u64::from(cfg.points.max(1));
    let window_start = (now_ms() / SLOT_MS - len - 2) / len * len;
    let slots = window_start..window_start + u64::from(cfg.points);
    let window_end_ms = slots.end * SLOT_MS;

    let t = Instant::now();
    let parties = parties::setup(cfg, &ctl, &dir, n, spe).await?;
    println!(
        "   set-up: {} owners, phones, grants and tokens in {:.1} s",
        n + 1,
        t.elapsed().as_secs_f64()
    );

    // The services' logs: AT_BENCH_LOG, or warnings and the nodes' progress.
    let log_filter = [(
        "RUST_LOG",
        std::env::var("AT_BENCH_LOG").unwrap_or_else(|_| "warn,at_mpc_node=info".into()),
    )];
    let ingest_addr = free_addr()?;
    // The bridge's users of its own (bench-ingest-…-up/-down, the bridge's password): with client
    // ids bound to users, a bridge as at-ingest would take over a running demo's bridge sessions.
    let ingest_user = format!("bench-ingest-{}", rid());
    procs::add_mqtt_bridge(&cfg.site.infra_dir, &ingest_user, &cfg.site.ingest_password)?;
    let mut ingest = vec![Service::start(
        &cfg.site.bin_dir,
        "at-ingest",
        &configs::ingest(&cfg.site, &kafka, &ingest_user, ingest_addr)?,
        &dir.join("ingest.toml"),
        &log_filter,
        ingest_addr,
        &dir.join("ingest.log"),
    )?];
    let group = format!("reencrypt-bench-{}", rid());
    let mut workers = Vec::new();
    for i in 0..cfg.workers {
        let addr = free_addr()?;
        let state_dir = dir.join(format!("worker-{i}"));
        workers.push(Service::start(
            &cfg.site.bin_dir,
            "at-reencrypt",
            &configs::worker(&kafka, &group, &state_dir, addr)?,
            &dir.join(format!("reencrypt-{i}.toml")),
            &log_filter,
            addr,
            &dir.join(format!("reencrypt-{i}.log")),
        )?);
    }
    for s in ingest.iter_mut().chain(workers.iter_mut()) {
        s.wait_healthy(Duration::from_secs(120)).await?;
    }
    let brokers = procs::broker_pids(&cfg.site.state_dir);
    let brokers0 = procs::brokers_cpu_ms(&brokers);
    let (ingest0, workers0) = (sum_cpu(&ingest).await, sum_cpu(&workers).await);
    let self0 = procs::self_cpu_ms();

    // Phase 3+ through MQTT, the bridge and the workers, until every node topic holds its shares.
    let sim = Sim {
        grid: 200,
        ..Sim::new(SEED)
    };
    let broker = Broker {
        host: cfg.site.mqtt_host.clone(),
        port: cfg.site.mqtt_port,
    };
    let up = Instant::now();
    let pace = std::sync::Arc::new(fleet::Pace::new(5_000));
    let poller = {
        let (pace, addr, stop) = (pace.clone(), ingest[0].metrics, shutdown.child_token());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = armored_runtime::scrape::metric(
                    addr,
                    "at_ingest_messages_in_total{path=\"up\"}",
                )
                .await
                .unwrap_or(0.0);
                pace.forwarded
                    .store(n as u64, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let uploaded = fleet::upload(
        &parties.phones,
        &broker,
        sim,
        slots.clone(),
        cfg.wave,
        pace,
        shutdown,
    )
    .await;
    poller.abort();
    uploaded?;
    let self1 = procs::self_cpu_ms();
    let want = ((n + 1) * cfg.points as usize) as i64;
    let mut last = (Instant::now(), -1i64);
    loop {
        let mut have = i64::MAX;
        for j in 1..=3 {
            have = have.min(topic_len(&kafka, &topics.mpc_shares(j))?);
        }
        if have >= want {
            break;
        }
        if have != last.1 {
            last = (Instant::now(), have);
        } else if last.0.elapsed() > Duration::from_secs(120) {
            let mut why = Vec::new();
            for s in ingest.iter().chain(&workers) {
                why.extend(s.samples("at_ingest_dead_letters_total").await);
                why.extend(s.samples("at_reencrypt_dead_letters_total").await);
            }
            bail!("node topics stalled at {have} of {want} shares; dead letters: {why:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let upload_seconds = up.elapsed().as_secs_f64();
    println!(
        "   upload: {} envelopes, every node topic holds its {want} shares after {upload_seconds:.1} s",
        want * 3
    );
    for s in ingest.iter_mut().chain(workers.iter_mut()) {
        s.stop();
    }
    let ingest_ms = sum_cpu(&ingest).await - ingest0;
    let workers_ms = sum_cpu(&workers).await - workers0;
    let mut logins: Vec<(String, String, String)> = ["up", "down"]
        .iter()
        .map(|s| {
            let user = format!("{ingest_user}-{s}");
            (user.clone(), cfg.site.ingest_password.clone(), user)
        })
        .collect();
    logins.extend(
        parties
            .phones
            .iter()
            .map(|p| (p.user.clone(), p.password.clone(), p.client_id())),
    );
    fleet::forget_sessions(&broker, &logins).await;

    // The nodes start after the upload (as after a restart: they fold their share topics from
    // the beginning), with the cut-off just behind the last share.
    let cutoff_skew_ms = now_ms().saturating_sub(window_end_ms) + 1_000;
    let fold = Instant::now();
    let mut nodes = Vec::new();
    for j in 1..=3u32 {
        let addr = free_addr()?;
        let node_dir = &parties.node_dirs[j as usize - 1];
        nodes.push(Service::start(
            &cfg.site.bin_dir,
            "at-mpc-node",
            &configs::node(&kafka, j, &parties.node_dirs, addr, cutoff_skew_ms)?,
            &node_dir.join("node.toml"),
            &log_filter,
            addr,
            &dir.join(format!("mpc-node-{j}.log")),
        )?);
    }
    for s in &mut nodes {
        s.wait_healthy(Duration::from_secs(3_600)).await?;
    }
    let fold_seconds = fold.elapsed().as_secs_f64();
    let nodes_fold = sum_cpu(&nodes).await;
    println!("   nodes: shares folded and verified in {fold_seconds:.1} s");

    // Phase 6+: the job, from submit to the combined result.
    let twins: Vec<String> = parties.phones.iter().map(|p| p.twin.clone()).collect();
    let designation = armored_client::mpc::designate::designate(
        &parties.ha,
        &twins[0],
        window_start,
        cfg.points,
    )?;
    let req = JobRequest {
        job_id: Some(format!("bench-{n}-{}", rid())),
        reference: twins[0].clone(),
        distance: DISTANCE,
        window_start_slot: window_start,
        window_slots: cfg.points,
        participants: twins[1..].to_vec(),
        nodes: parties.nodes.clone(),
        designation,
    };
    // The health authority is a service: its own principal submits and collects.
    let ha_id = armored_client::service::Service::open(&parties.ha)?.id;
    let ha_ctl = procs::service_ctl(&cfg.site.infra_dir, &ctl, &ha_id).await?;
    let (key, job) = build_job(&ha_ctl, &parties.ha, &req).await?;
    let cutoff = window_end_ms + cutoff_skew_ms;
    tokio::time::sleep(Duration::from_millis(cutoff.saturating_sub(now_ms()))).await;
    // The receiver's side is ready before the job goes out (its registry and keys are loaded),
    // so the latency is the nodes' and the brokers'.
    let submission = Submission::sign(&key, &job, 1)?;
    let mut collector = Collector::new(&ha_ctl, &parties.ha, submission.job.clone(), true).await?;
    let (nodes1, self2) = (sum_cpu(&nodes).await, procs::self_cpu_ms());
    let submitted = Instant::now();
    submission.send(&ha_ctl).await?;
    let outcome = collector.wait(Duration::from_secs(1_800)).await?;
    let seconds = submitted.elapsed().as_secs_f64();
    let self3 = procs::self_cpu_ms();
    let rounds = nodes[0].metric("at_mpc_rounds_total").await;
    let bytes = nodes[0].metric("at_mpc_peer_bytes_sent_total").await;
    for s in &mut nodes {
        s.stop();
    }
    let nodes2 = sum_cpu(&nodes).await;
    let brokers_ms = procs::brokers_cpu_ms(&brokers) - brokers0;

    let expected = in_the_clear(&sim, DISTANCE, &twins[0], &twins[1..], slots.clone());
    let Outcome::Completed { counts, total, .. } = outcome else {
        bail!("the job failed: {outcome:?} (logs in {})", dir.display());
    };
    let got: Vec<u64> = counts.iter().map(|(_, c)| *c).collect();
    if got != expected || total != expected.iter().sum::<u64>() {
        bail!("the result differs from the cleartext computation: {got:?} vs {expected:?}");
    }
    println!("   result equals the cleartext computation ({total} contacts over {n} users)");

    let per = |ms: f64| ms / n as f64;
    let phases = Phases {
        device: per(self1 - self0),
        workers: per(workers_ms),
        node_fold: per(nodes_fold),
        node_job: per(nodes2 - nodes1),
        service: per(self3 - self2),
    };
    // Keys and logs of this run are no longer needed (the next N makes its own), nor are its
    // topics: the broker keeps files and memory for every partition.
    let _ = std::fs::remove_dir_all(dir.join("phones"));
    if let Err(e) =
        armored_runtime::kafka::delete_topics_with_prefix(&kafka, &kafka.topic_prefix).await
    {
        println!("   (could not delete this run's topics: {e})");
    }
    Ok(Row {
        users: n,
        seconds,
        cpu_ms_per_user: phases.total(),
        phases_ms_per_user: phases,
        infra_ms_per_user: Infra {
            ingest: per(ingest_ms),
            brokers: per(brokers_ms),
        },
        rounds,
        peer_bytes_sent_node1: bytes,
        upload_seconds,
        fold_seconds,
        backend: armored_crypto::group::BACKEND,
        workers: cfg.workers,
        slots_per_share_epoch: spe,
    })
}
