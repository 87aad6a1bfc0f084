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

mod fleet;
mod procs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::identity::PartyKind;
use armored_device::sim::Sim;
use armored_mpc::functions::contact_tracing::cleartext;
use armored_runtime::config::KafkaConfig;
use armored_runtime::kafka::{create_topics, Topics};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use self::fleet::{Broker, Phone};
use self::procs::{free_addr, Service};
use armored_client::kafka::Ctl;
use armored_client::mpc::{build_job, Collector, JobRequest, Outcome, Submission};
use armored_client::owner::{Owner, ProcessTokenRequest, CONTACT_TRACING};
use armored_client::service::Service as ServiceDir;

/// Slot length of the phones: one point per second.
const SLOT_MS: u64 = 1_000;
/// Contact distance (grid units of the simulator's map).
const DISTANCE: u32 = 20;
/// Seed of the simulated paths.
const SEED: u64 = 2026;

/// Table 2 of the paper, per user (ms), and the row we compare with it.
const PAPER: [(&str, &str, f64); 5] = [
    (
        "device",
        "3+ device: split + seal (PRE.Enc x 150, phone)",
        7_672.41,
    ),
    (
        "workers",
        "6+ cloud: check + ReEnc (PRE.ReEnc x 150)",
        678.0,
    ),
    ("node_fold", "6+ nodes: Dec² + verify of each share", 352.5),
    (
        "node_job",
        "6+ nodes: MPC.Compute + output shares",
        6_530.58,
    ),
    ("service", "6+ receiver: open + Combine", 0.44),
];
/// Table 2's whole processing cost per user and its constant (ms).
const PAPER_PER_USER_MS: f64 = 8_242.24;
const PAPER_CONSTANT_MS: f64 = 12_433.61;

/// What to run and where.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Participants per run (each run adds the reference twin).
    pub users: Vec<usize>,
    /// Location points per phone (the job's window in slots).
    pub points: u32,
    /// Re-encryption worker processes.
    pub workers: usize,
    /// Phones connected at a time.
    pub wave: usize,
    /// Where at-ingest, at-reencrypt and at-mpc-node are (default: next to atctl).
    pub bin_dir: PathBuf,
    /// Scratch directory (parties' keys, service logs).
    pub dir: PathBuf,
    /// infra/ (mqtt-user.sh).
    pub infra_dir: PathBuf,
    /// infra/'s state directory (broker pid files).
    pub state_dir: PathBuf,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// MQTT broker.
    pub mqtt_host: String,
    /// MQTT port.
    pub mqtt_port: u16,
    /// The bridge's MQTT password.
    pub ingest_password: String,
    /// JSON output; `None`: print only.
    pub out: Option<PathBuf>,
}

/// CPU ms per user of one run, by phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Phases {
    /// Phones: split, sign, seal, publish (atctl's own CPU during the upload).
    pub device: f64,
    /// Re-encryption workers (capsule check + ReEnc of every share, Kafka I/O).
    pub workers: f64,
    /// The three nodes while folding their share topics (Dec² + verification of every share).
    pub node_fold: f64,
    /// The three nodes during the job (admission, MPC over the peer channel, output shares).
    pub node_job: f64,
    /// The receiver: collecting, opening and combining the output shares.
    pub service: f64,
}

impl Phases {
    fn total(&self) -> f64 {
        self.device + self.workers + self.node_fold + self.node_job + self.service
    }
    fn get(&self, name: &str) -> f64 {
        match name {
            "device" => self.device,
            "workers" => self.workers,
            "node_fold" => self.node_fold,
            "node_job" => self.node_job,
            _ => self.service,
        }
    }
}

/// Infrastructure outside Table 2 (CPU ms per user).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Infra {
    /// The MQTT ⇄ Kafka bridge.
    pub ingest: f64,
    /// The Kafka node(s) and mosquitto, over the whole run.
    pub brokers: f64,
}

/// One JSON row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Participants N (the reference twin comes on top).
    pub users: usize,
    /// Job latency: submit to combined result, seconds.
    pub seconds: f64,
    /// Whole cost (Table 2's sum) per participant: device + workers + nodes + service, ms.
    pub cpu_ms_per_user: f64,
    /// That cost by phase.
    pub phases_ms_per_user: Phases,
    /// Outside Table 2.
    pub infra_ms_per_user: Infra,
    /// Engine rounds of the job (node 1).
    pub rounds: f64,
    /// Peer-channel bytes node 1 sent in the job.
    pub peer_bytes_sent_node1: f64,
    /// Upload wall time: first publish to the last share on every node topic, seconds.
    pub upload_seconds: f64,
    /// The nodes' fold wall time (start to healthy), seconds.
    pub fold_seconds: f64,
    /// Group backend of this build.
    pub backend: &'static str,
    /// Re-encryption worker processes.
    pub workers: usize,
}

/// Runs every N of `cfg.users` and reports.
pub async fn run(cfg: &BenchConfig, shutdown: &Shutdown) -> anyhow::Result<Vec<Row>> {
    std::fs::create_dir_all(&cfg.dir)?;
    let mut rows = Vec::new();
    for &n in &cfg.users {
        println!(
            "== N = {n} users x {} points ({} workers, {} backend) ==",
            cfg.points,
            cfg.workers,
            armored_crypto::group::BACKEND
        );
        let row = run_one(cfg, n, shutdown).await?;
        println!(
            "   job latency {:.3} s; whole cost {:.1} ms CPU per user",
            row.seconds, row.cpu_ms_per_user
        );
        rows.push(row);
    }
    report(cfg, &rows)?;
    Ok(rows)
}

fn rid() -> String {
    format!(
        "{:06x}",
        rand_core::RngCore::next_u32(&mut rand_core::OsRng) & 0xff_ffff
    )
}

fn env(kafka: &KafkaConfig, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut v = vec![
        ("AT__KAFKA__BROKERS".to_string(), kafka.brokers.clone()),
        (
            "AT__KAFKA__TOPIC_PREFIX".to_string(),
            kafka.topic_prefix.clone(),
        ),
        ("AT__KAFKA__SESSION_TIMEOUT_MS".to_string(), "6000".into()),
    ];
    v.extend(extra.iter().map(|(k, val)| (k.to_string(), val.clone())));
    v
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

struct Parties {
    nodes: [String; 3],
    node_dirs: Vec<PathBuf>,
    ha: PathBuf,
    phones: Vec<Phone>,
}

/// Phases 1, 2 and 2+ for N + 1 users: owners, phones, node grants, process tokens, MQTT logins.
async fn setup(cfg: &BenchConfig, ctl: &Ctl, dir: &Path, n: usize) -> anyhow::Result<Parties> {
    let tag = rid();
    let mut node_dirs = Vec::new();
    let mut identities = Vec::new();
    for j in 1..=3 {
        let d = dir.join(format!("node-{j}"));
        identities.push(std::fs::read(ServiceDir::init(
            &d,
            &format!("node{j}-{tag}"),
            PartyKind::MpcNode,
        )?)?);
        node_dirs.push(d);
    }
    let ha = dir.join("health-authority");
    let ha_identity = std::fs::read(ServiceDir::init(
        &ha,
        &format!("health-{tag}"),
        PartyKind::Service,
    )?)?;
    // The parties' identities go to the registry once; every owner pins them.
    let first = Owner::init(&dir.join("owners/o0"), &format!("o0-{tag}"), ctl).await?;
    let mut nodes: Vec<String> = Vec::new();
    for id in identities.iter().chain([&ha_identity]) {
        nodes.push(first.trust(ctl, id).await?.0.party_id);
    }
    let nodes: [String; 3] = [nodes[0].clone(), nodes[1].clone(), nodes[2].clone()];
    let (identities, ha_identity) = (&identities, &ha_identity);
    let setup_one = |i: usize| {
        let (nodes, tag) = (nodes.clone(), tag.clone());
        async move {
            let owner = if i == 0 {
                Owner::open(&dir.join("owners/o0"))?
            } else {
                Owner::init(
                    &dir.join(format!("owners/o{i}")),
                    &format!("o{i}-{tag}"),
                    ctl,
                )
                .await?
            };
            for id in identities.iter().chain([ha_identity]) {
                owner.pin(id)?;
            }
            owner.grant_mpc(ctl, &nodes).await?;
            let twin = format!("p{i}-{tag}");
            owner
                .process_token(
                    ctl,
                    &ProcessTokenRequest {
                        receiver_identity: ha_identity.clone(),
                        designator_identity: ha_identity.clone(),
                        function: CONTACT_TRACING.to_string(),
                        distance: DISTANCE,
                        slot_len_ms: SLOT_MS,
                        window_alignment: 1,
                        min_window_slots: 1,
                        max_jobs_per_window: 1,
                        not_after_ms: now_ms() + 24 * 3_600_000,
                        policy: None,
                        twins: vec![twin.clone()],
                    },
                )
                .await?;
            let pdir = dir.join(format!("phones/{twin}"));
            let card = armored_device::setup_with_slot_len(&pdir, &twin, "p", 3_600_000, SLOT_MS)?;
            armored_device::pin_owner(&pdir, &owner.identity()?)?;
            owner.enroll_device(ctl, &card).await?;
            Ok::<_, anyhow::Error>(Phone {
                user: format!("{twin}/p"),
                password: format!("pw{}", rid()),
                twin,
                dir: pdir,
            })
        }
    };
    let phones: Vec<Phone> = stream::iter(0..=n)
        .map(setup_one)
        .buffered(8)
        .try_collect()
        .await?;
    // One reload of mosquitto's password file for all of them.
    let mut child = std::process::Command::new("bash")
        .arg(cfg.infra_dir.join("mqtt-user.sh"))
        .arg("add-batch")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("running infra/mqtt-user.sh")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("mqtt-user.sh stdin")?;
        for p in &phones {
            writeln!(stdin, "{} {}", p.user, p.password)?;
        }
    }
    if !child.wait()?.success() {
        bail!("infra/mqtt-user.sh add-batch failed");
    }
    Ok(Parties {
        nodes,
        node_dirs,
        ha,
        phones,
    })
}

fn node_config(
    kafka: &KafkaConfig,
    j: usize,
    dirs: &[PathBuf],
    metrics: std::net::SocketAddr,
    cutoff_skew_ms: u64,
) -> String {
    let peers: Vec<String> = dirs
        .iter()
        .map(|d| format!("{:?}", d.join("identity").display().to_string()))
        .collect();
    format!(
        "[kafka]\nbrokers = {:?}\ntopic_prefix = {:?}\nsession_timeout_ms = 6000\n\
         [node]\nindex = {j}\ndir = {:?}\npeers = [{}]\nmetrics_addr = \"{metrics}\"\n\
         cutoff_skew_ms = {cutoff_skew_ms}\nround_timeout_ms = 60000\n",
        kafka.brokers,
        kafka.topic_prefix,
        dirs[j - 1].display().to_string(),
        peers.join(", "),
    )
}

async fn sum_cpu(services: &[Service]) -> f64 {
    services.iter().map(Service::cpu_ms).sum()
}

async fn run_one(cfg: &BenchConfig, n: usize, shutdown: &Shutdown) -> anyhow::Result<Row> {
    let dir = cfg.dir.join(format!("n{n}-{}", rid()));
    std::fs::create_dir_all(&dir)?;
    let kafka = KafkaConfig {
        brokers: cfg.brokers.clone(),
        topic_prefix: format!("bench-{}.", rid()),
        session_timeout_ms: 6000,
        linger_ms: 1,
        fetch_wait_max_ms: 5,
        connect_timeout_ms: 10_000,
    };
    let topics = Topics::new(&kafka.topic_prefix);
    create_topics(&kafka, &topics.all()).await?;
    let ctl = Ctl::with_config(kafka.clone())?;

    // The window: `points` slots that ended before the upload starts (the bridge's skew bound is
    // widened so that a long upload is not refused as stale; the nodes' cut-off is set after it).
    let window_start = now_ms() / SLOT_MS - u64::from(cfg.points) - 2;
    let slots = window_start..window_start + u64::from(cfg.points);
    let window_end_ms = slots.end * SLOT_MS;

    let t = Instant::now();
    let parties = setup(cfg, &ctl, &dir, n).await?;
    println!(
        "   set-up: {} owners, phones, grants and tokens in {:.1} s",
        n + 1,
        t.elapsed().as_secs_f64()
    );

    let ingest_addr = free_addr()?;
    let ingest_client = format!("bench-ingest-{}", rid());
    let mut ingest = vec![Service::start(
        &cfg.bin_dir,
        "at-ingest",
        &env(
            &kafka,
            &[
                ("AT__MQTT__HOST", cfg.mqtt_host.clone()),
                ("AT__MQTT__PORT", cfg.mqtt_port.to_string()),
                ("AT__MQTT__PASSWORD", cfg.ingest_password.clone()),
                ("AT__MQTT__CLIENT_ID", ingest_client.clone()),
                ("AT__INGEST__METRICS_ADDR", ingest_addr.to_string()),
                ("AT__INGEST__SKEW_MS", (6 * 3_600_000u64).to_string()),
                (
                    "AT__INGEST__DOWNLINK_GROUP",
                    format!("bench-down-{}", rid()),
                ),
            ],
        ),
        ingest_addr,
        &dir.join("ingest.log"),
    )?];
    let group = format!("bench-reencrypt-{}", rid());
    let mut workers = Vec::new();
    for i in 0..cfg.workers {
        let addr = free_addr()?;
        workers.push(Service::start(
            &cfg.bin_dir,
            "at-reencrypt",
            &env(
                &kafka,
                &[
                    ("AT__WORKER__METRICS_ADDR", addr.to_string()),
                    ("AT__WORKER__GROUP", group.clone()),
                    (
                        "AT__WORKER__STATE_DIR",
                        dir.join(format!("worker-{i}")).display().to_string(),
                    ),
                ],
            ),
            addr,
            &dir.join(format!("reencrypt-{i}.log")),
        )?);
    }
    for s in ingest.iter_mut().chain(workers.iter_mut()) {
        s.wait_healthy(Duration::from_secs(120)).await?;
    }
    let brokers = procs::broker_pids(&cfg.state_dir);
    let brokers0 = procs::brokers_cpu_ms(&brokers);
    let (ingest0, workers0) = (sum_cpu(&ingest).await, sum_cpu(&workers).await);
    let self0 = procs::self_cpu_ms();

    // Phase 3+ through MQTT, the bridge and the workers, until every node topic holds its shares.
    let sim = Sim {
        grid: 200,
        ..Sim::new(SEED)
    };
    let broker = Broker {
        host: cfg.mqtt_host.clone(),
        port: cfg.mqtt_port,
    };
    let up = Instant::now();
    let pace = std::sync::Arc::new(fleet::Pace::new(5_000));
    let poller = {
        let (pace, addr, stop) = (pace.clone(), ingest[0].metrics, shutdown.child_token());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = procs::metric_at(addr, "at_ingest_messages_in_total{path=\"up\"}").await;
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
            (
                "at-ingest".to_string(),
                cfg.ingest_password.clone(),
                format!("{ingest_client}-{s}"),
            )
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
    for j in 1..=3 {
        let addr = free_addr()?;
        let config = parties.node_dirs[j - 1].join("node.toml");
        std::fs::write(
            &config,
            node_config(&kafka, j, &parties.node_dirs, addr, cutoff_skew_ms),
        )?;
        nodes.push(Service::start(
            &cfg.bin_dir,
            "at-mpc-node",
            &[("AT_CONFIG".to_string(), config.display().to_string())],
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
    let (key, job) = build_job(&ctl, &parties.ha, &req).await?;
    let cutoff = window_end_ms + cutoff_skew_ms;
    tokio::time::sleep(Duration::from_millis(cutoff.saturating_sub(now_ms()))).await;
    // The receiver's side is ready before the job goes out (its registry and keys are loaded),
    // so the latency is the nodes' and the brokers'.
    let submission = Submission::sign(&key, &job, 1)?;
    let mut collector = Collector::new(&ctl, &parties.ha, submission.job.clone(), true).await?;
    let (nodes1, self2) = (sum_cpu(&nodes).await, procs::self_cpu_ms());
    let submitted = Instant::now();
    submission.send(&ctl).await?;
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

    let expected = cleartext(
        DISTANCE,
        &sim.path(&twins[0], slots.clone()),
        &twins[1..]
            .iter()
            .map(|t| sim.path(t, slots.clone()))
            .collect::<Vec<_>>(),
    );
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
    })
}

/// Least-squares fit `seconds = a + b·users`: (b in ms per user, a in s).
pub fn linear_fit(rows: &[Row]) -> Option<(f64, f64)> {
    let n = rows.len() as f64;
    if rows.len() < 2 {
        return None;
    }
    let mx = rows.iter().map(|r| r.users as f64).sum::<f64>() / n;
    let my = rows.iter().map(|r| r.seconds).sum::<f64>() / n;
    let sxx: f64 = rows.iter().map(|r| (r.users as f64 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = rows
        .iter()
        .map(|r| (r.users as f64 - mx) * (r.seconds - my))
        .sum();
    let b = sxy / sxx;
    Some((b * 1000.0, my - b * mx))
}

fn report(cfg: &BenchConfig, rows: &[Row]) -> anyhow::Result<()> {
    println!(
        "\n{:>6} | {:>9} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9} | {:>7} {:>8} | {:>6} {:>10}",
        "users",
        "latency s",
        "device",
        "workers",
        "Dec²",
        "MPC",
        "Combine",
        "ms/user",
        "ingest",
        "brokers",
        "rounds",
        "MB sent/n1"
    );
    for r in rows {
        let p = &r.phases_ms_per_user;
        println!(
            "{:>6} | {:>9.3} | {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.2} | {:>9.1} | {:>7.1} {:>8.1} | {:>6} {:>10.2}",
            r.users,
            r.seconds,
            p.device,
            p.workers,
            p.node_fold,
            p.node_job,
            p.service,
            r.cpu_ms_per_user,
            r.infra_ms_per_user.ingest,
            r.infra_ms_per_user.brokers,
            r.rounds,
            r.peer_bytes_sent_node1 / 1e6
        );
    }
    println!("(CPU ms per participant; ingest and brokers are outside Table 2's sum)");
    let fit = linear_fit(rows);
    if let Some((per_user_ms, constant_s)) = fit {
        println!(
            "\njob latency: {per_user_ms:.2} ms per user + {constant_s:.3} s \
             (targets: <= 10 ms per user, <= 1 s; paper: 6,530.58 ms per user + 12.43 s for MPC.Compute alone)"
        );
    }
    if let Some(last) = rows.iter().max_by_key(|r| r.users) {
        println!(
            "\nper user at N = {}, ms of CPU (paper: Table 2, phone for the device, Ryzen 5600X for the rest):",
            last.users
        );
        for (field, name, paper) in PAPER {
            println!(
                "  {name:<50} ours {:>9.1}   paper {paper:>9.2}",
                last.phases_ms_per_user.get(field)
            );
        }
        println!(
            "  {:<50} ours {:>9.1}   paper {PAPER_PER_USER_MS:>9.2} (+ {PAPER_CONSTANT_MS:.2} const.)",
            "whole cost (target <= 400)", last.cpu_ms_per_user
        );
    }
    let Some(out) = &cfg.out else {
        return Ok(());
    };
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(out, serde_json::to_vec_pretty(rows)?)?;
    let fit_path = out.with_file_name("mpc-pipeline-fit.json");
    std::fs::write(
        &fit_path,
        serde_json::to_vec_pretty(&serde_json::json!({
            "latency_ms_per_user": fit.map(|f| f.0),
            "latency_constant_s": fit.map(|f| f.1),
            "users": rows.iter().map(|r| r.users).collect::<Vec<_>>(),
            "targets": {"ms_per_user": 10.0, "constant_s": 1.0, "cpu_ms_per_user": 400.0},
        }))?,
    )?;
    println!("\nwrote {} and {}", out.display(), fit_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(users: usize, seconds: f64) -> Row {
        Row {
            users,
            seconds,
            cpu_ms_per_user: 0.0,
            phases_ms_per_user: Phases::default(),
            infra_ms_per_user: Infra::default(),
            rounds: 0.0,
            peer_bytes_sent_node1: 0.0,
            upload_seconds: 0.0,
            fold_seconds: 0.0,
            backend: "test",
            workers: 1,
        }
    }

    #[test]
    fn the_fit_recovers_a_line() {
        let rows: Vec<Row> = [10, 50, 100, 1000]
            .iter()
            .map(|&u| row(u, 0.25 + 0.004 * u as f64))
            .collect();
        let (b, a) = linear_fit(&rows).unwrap_or_default();
        assert!((b - 4.0).abs() < 1e-9, "{b}");
        assert!((a - 0.25).abs() < 1e-9, "{a}");
        assert!(linear_fit(&rows[..1]).is_none());
    }
}
