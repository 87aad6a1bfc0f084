//! The demo's Protocol 2 part: N simulated phones upload location shares over MQTT, the workers
//! route share j to node j, three `at-mpc-node` processes (started here, next to `at-demo`) compute
//! contact tracing for a health authority, which combines the result; the demo checks it against
//! the cleartext computation from the simulator's seed and prints the job time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use armored_base::time::now_ms;
use armored_base::Shutdown;
use armored_crypto::identity::PartyKind;
use armored_device::sim::Sim;

use super::parties::{rid, start_device_with, step, DemoConfig};
use armored_client::kafka::Ctl;
use armored_client::mpc::{build_job, Collector, JobRequest, Outcome, Submission};
use armored_client::owner::Owner;
use armored_client::service::Service as ServiceDir;

use crate::contacts::{in_the_clear, token_request, DISTANCE, SEED, SLOT_MS};
use crate::procs::Service;

/// The nodes' cut-off after the window's end (the deployment default is the 5-minute skew bound):
/// long enough for the last slot's shares to cross the bridge and the workers on this machine.
const CUTOFF_SKEW_MS: u64 = 60_000;

fn node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("at-mpc-node");
    if !bin.exists() {
        bail!(
            "{} not found: build it (cargo build -p at-mpc-node) or run the demo with --phones 0",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts the three nodes next to `at-demo`, each on its configuration (written to `node.toml`
/// in its key directory), `/metrics` on 9131, 9141, 9151, logs in `log_dir`.
fn start_nodes(ctl: &Ctl, dirs: &[PathBuf; 3], log_dir: &Path) -> anyhow::Result<Vec<Service>> {
    let bin = node_binary()?;
    let bin_dir = bin.parent().unwrap_or(Path::new("."));
    let mut nodes = Vec::new();
    for (j, dir) in (1..=3u32).zip(dirs) {
        let metrics = SocketAddr::from(([127, 0, 0, 1], 9131 + 10 * (j as u16 - 1)));
        let kafka = ctl.kafka.as_local_principal(&format!("at-mpc-node-{j}"))?;
        let mut cfg = at_mpc_node::Config::for_node(kafka, j, dirs, metrics)?;
        cfg.node.cutoff_skew_ms = CUTOFF_SKEW_MS;
        nodes.push(Service::start(
            bin_dir,
            "at-mpc-node",
            &cfg,
            &dir.join("node.toml"),
            &[],
            metrics,
            &log_dir.join(format!("mpc-node-{j}.log")),
        )?);
    }
    Ok(nodes)
}

/// Runs the contact-tracing scenario; returns whether every expectation held.
pub async fn run(
    cfg: &DemoConfig,
    ctl: &Ctl,
    owner: &Owner,
    shutdown: &Shutdown,
) -> anyhow::Result<bool> {
    let tag = rid();
    step(15, "Protocol 2: three MPC nodes and a health authority are pinned; alice grants share j to node j");
    let node_dirs = [1, 2, 3].map(|j| cfg.dir.join(format!("mpc-node-{j}")));
    let mut node_ids = Vec::new();
    for (j, dir) in (1..=3).zip(&node_dirs) {
        let id = ServiceDir::init(dir, &format!("node{j}-{tag}"), PartyKind::MpcNode)?;
        let (p, _) = owner.trust(ctl, &std::fs::read(id)?).await?;
        node_ids.push(p.party_id);
    }
    let nodes: [String; 3] = [
        node_ids[0].clone(),
        node_ids[1].clone(),
        node_ids[2].clone(),
    ];
    owner.grant_mpc(ctl, &nodes).await?;
    let ha = cfg.dir.join("health-authority");
    let ha_identity = std::fs::read(ServiceDir::init(
        &ha,
        &format!("health-{tag}"),
        PartyKind::Service,
    )?)?;
    owner.trust(ctl, &ha_identity).await?;
    let ha_id = ServiceDir::open(&ha)?.id;
    let ha_ctl = crate::procs::service_ctl(&cfg.infra_dir, ctl, &ha_id).await?;
    let window = cfg.points;
    let (token, _) = owner
        .process_token(
            ctl,
            &token_request(&ha_identity, window, 3_600_000, Vec::new()),
        )
        .await?;
    println!("    process token {token}: contact-tracing/v1, d = {DISTANCE}, one job per window");
    let mut node_procs = start_nodes(ctl, &node_dirs, &cfg.dir)?;

    step(
        16,
        &format!(
            "Phase 3+: {} phones upload {window} location points each, as three shares per point",
            cfg.phones
        ),
    );
    let twins: Vec<String> = (0..cfg.phones)
        .map(|i| format!("phone{i:02}-{tag}"))
        .collect();
    let mut phones = Vec::new();
    for t in &twins {
        let (phone, _) =
            start_device_with(cfg, owner, ctl, t, "p", SLOT_MS, true, shutdown).await?;
        phones.push(phone);
    }
    // The window: the next of the grant's windows (tiles of `window` slots, so that no two jobs
    // can be differenced). Every phone shares its point when the slot begins (a share of a slot
    // that has not begun is refused at the edge), all phones at once.
    let len = u64::from(window.max(1));
    let start = (now_ms() / SLOT_MS + 2).div_ceil(len) * len;
    let begins_in = (start * SLOT_MS).saturating_sub(now_ms());
    if begins_in > 3_000 {
        println!(
            "    the next window of {window} slots begins in {:.0} s",
            begins_in as f64 / 1000.0
        );
    }
    let slots = start..start + u64::from(window);
    let sim = Sim {
        grid: 200,
        ..Sim::new(SEED)
    };
    let mut uploads = Vec::new();
    for (t, p) in twins.iter().zip(&phones) {
        let (t, device, outbox, slots) =
            (t.clone(), p.device.clone(), p.outbox.clone(), slots.clone());
        uploads.push(tokio::spawn(async move {
            for slot in slots {
                let begins = slot * SLOT_MS;
                tokio::time::sleep(Duration::from_millis(begins.saturating_sub(now_ms()))).await;
                let (x, y) = sim.point(&t, slot);
                let envs = device
                    .lock()
                    .map_err(|_| anyhow::anyhow!("device lock poisoned"))?
                    .share_point(slot, x, y)?;
                for e in envs {
                    outbox.send(e).await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    println!("    recording for {window} s …");
    for u in uploads {
        u.await??;
    }
    let uploaded = Instant::now();
    let want = twins.len() * window as usize;
    let deadline = uploaded + Duration::from_millis(CUTOFF_SKEW_MS);
    // The nodes' share topics are closed to owners and services: an operator's view.
    let operator = Ctl::with_config(ctl.kafka.as_local_principal("at-kafka")?)?;
    // A header's epoch is the slot's share epoch (the phones' cards take the default).
    use armored_crypto::shares::{share_epoch, DEFAULT_SLOTS_PER_SHARE_EPOCH as SPE};
    let epochs = share_epoch(slots.start, SPE)..=share_epoch(slots.end.saturating_sub(1), SPE);
    loop {
        let mut have = usize::MAX;
        for j in 1..=3 {
            // Only this run's shares count (a persistent broker keeps earlier runs' records).
            let records = armored_client::kafka::read_topic(&operator, &ctl.topics.mpc_shares(j))?;
            let ours = records
                .iter()
                .filter_map(|r| {
                    let d = armored_schemas::decode_strict::<armored_schemas::v1::Delivery>(
                        "Delivery",
                        r,
                        armored_schemas::limits::MAX_DELIVERY_BYTES,
                    )
                    .ok()?;
                    armored_crypto::envelope::parse_header(&d.envelope_header).ok()
                })
                .filter(|h| epochs.contains(&h.epoch) && twins.contains(&h.twin_id))
                .count();
            have = have.min(ours);
        }
        if have >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {have} of {want} shares reached the node topics before the cut-off");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "    {} envelopes published; every node topic holds its {want} shares after {:.1} s",
        want * 3,
        uploaded.elapsed().as_secs_f64()
    );

    step(
        17,
        &format!(
            "Phase 6+: the health authority names {} as the reference and submits the job",
            twins[0]
        ),
    );
    let designation = armored_client::mpc::designate::designate(&ha, &twins[0], start, window)?;
    let req = JobRequest {
        job_id: Some(format!("contacts-{tag}")),
        reference: twins[0].clone(),
        distance: DISTANCE,
        window_start_slot: start,
        window_slots: window,
        participants: twins[1..].to_vec(),
        nodes,
        designation,
    };
    // Ready once each has folded its share topic.
    for n in &mut node_procs {
        n.wait_healthy(Duration::from_secs(300)).await?;
    }
    let (key, job) = build_job(&ha_ctl, &ha, &req).await?;
    let submission = Submission::sign(&key, &job, 1)?;
    let mut collector = Collector::new(&ha_ctl, &ha, submission.job.clone(), true).await?;
    let submitted = Instant::now();
    let cutoff_wait_ms =
        ((start + u64::from(window)) * SLOT_MS + CUTOFF_SKEW_MS).saturating_sub(now_ms());
    submission.send(&ha_ctl).await?;
    let outcome = collector.wait(Duration::from_secs(120)).await?;
    let job_time = submitted.elapsed();
    // A scraping Prometheus (infra/demo.sh, every 5 s) sees the nodes' final counters first.
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(node_procs);
    let expected = in_the_clear(&sim, DISTANCE, &twins[0], &twins[1..], slots.clone());
    let Outcome::Completed { counts, total, .. } = outcome else {
        println!("    the job failed: {outcome:?}");
        return Ok(false);
    };
    println!("\n    {:<20} {:>10} {:>12}", "phone", "MPC", "cleartext");
    let mut ok = true;
    for ((t, c), e) in counts.iter().zip(&expected) {
        ok &= c == e;
        println!("    {t:<20} {c:>10} {e:>12}");
    }
    ok &= total == expected.iter().sum::<u64>();
    println!(
        "    total contacts {total}; job time {:.2} s from submit to combined result, of which \
         {:.2} s the nodes waited for the window's cut-off; result {}",
        job_time.as_secs_f64(),
        cutoff_wait_ms as f64 / 1000.0,
        if ok {
            "equals the cleartext computation"
        } else {
            "DIFFERS from the cleartext computation"
        }
    );
    Ok(ok)
}
