//! Protocol 2 end to end on the real brokers: phones upload location shares over MQTT, the workers
//! route share j to node j, three `at-mpc-node` processes check each job against the owners'
//! process tokens and compute contact tracing over the HPKE peer channel, and the service combines
//! the result — compared with the cleartext computation. Then every way a job must fail, fails on
//! every node with its reason; forged and replayed peer messages fail the attempt cleanly; a node
//! killed mid-job never yields a wrong result. Needs `infra/start.sh`.
//!
//! Longer than 500 lines on purpose: it is one scenario whose steps build on each other (the
//! budget step counts the jobs before it; the kill, the restart and the node replacement reuse
//! the same nodes, tokens and uploads), so it stays one test in one file; the harness
//! (`armored-e2e`) holds what other tests share.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_client::kafka::Ctl;
use armored_client::mpc::{build_job, collect, submit_job, JobRequest, Outcome};
use armored_client::owner::{ProcessTokenRequest, CONTACT_TRACING};
use armored_client::replay;
use armored_client::service::Service;
use armored_crypto::hpke::HpkeSecretKey;
use armored_crypto::identity::PartyKind;
use armored_crypto::keyfile::load_hpke_key;
use armored_crypto::mpcjob::{sign_job, verify_job};
use armored_crypto::peer::{ChannelId, PeerSender};
use armored_device::sim::Sim;
use armored_e2e::{rand_id, wait_healthy, Env, MpcNodes, NodeProcess, TestDevice};
use armored_mpc::functions::contact_tracing::cleartext;
use armored_schemas::v1;
use prost::Message;
use rand_core::OsRng;

const SLOT_MS: u64 = 1_000;
const WINDOW: u32 = 10;
const DISTANCE: u32 = 25;
const ROUND_TIMEOUT_MS: u64 = 2_000;
/// The nodes' cut-off after a window's end: long enough for step 1's late shares to land.
const CUTOFF_SKEW_MS: u64 = 3_000;

/// Starts the three nodes of `dirs` as processes, with short rounds and cut-offs.
fn start_nodes(env: &Env, dirs: &[PathBuf; 3]) -> anyhow::Result<Vec<NodeProcess>> {
    (1..=3)
        .map(|j| {
            let mut cfg = env.node_config(j, dirs)?;
            cfg.node.round_timeout_ms = ROUND_TIMEOUT_MS;
            cfg.node.cutoff_skew_ms = CUTOFF_SKEW_MS;
            NodeProcess::start(Path::new(env!("CARGO_BIN_EXE_at-mpc-node")), &cfg)
        })
        .collect()
}

async fn healthy(nodes: &[NodeProcess]) -> anyhow::Result<()> {
    wait_healthy(nodes.iter().map(|n| n.metrics), Duration::from_secs(60)).await
}

/// The contact counts of `participants` with `reference` over `slots`, computed in the clear.
fn contacts(sim: &Sim, reference: &str, participants: &[String], slots: Range<u64>) -> Vec<u64> {
    cleartext(
        DISTANCE,
        &sim.path(reference, slots.clone()),
        &participants
            .iter()
            .map(|u| sim.path(u, slots.clone()))
            .collect::<Vec<_>>(),
    )
}

fn failed_reasons(o: &Outcome) -> Vec<(u32, String)> {
    match o {
        Outcome::Failed { failures, .. } => {
            failures.iter().map(|(n, r, _)| (*n, r.clone())).collect()
        }
        Outcome::Completed { .. } => Vec::new(),
    }
}

/// Waits until all three nodes reported the attempt (or one completed and the rest did too).
async fn outcome_all(ctl: &Ctl, ha: &Path, job_id: &str) -> anyhow::Result<Outcome> {
    outcome_of(ctl, ha, job_id, 1).await
}

/// Like `outcome_all`, for attempt `attempt` or later.
async fn outcome_of(ctl: &Ctl, ha: &Path, job_id: &str, attempt: u32) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = collect(ctl, ha, job_id, Duration::from_secs(30)).await?;
        let a = match &o {
            Outcome::Completed { attempt, .. } | Outcome::Failed { attempt, .. } => *attempt,
        };
        let settled = matches!(o, Outcome::Completed { .. }) || failed_reasons(&o).len() == 3;
        if (a >= attempt && settled) || Instant::now() > deadline {
            return Ok(o);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contact_tracing_end_to_end_and_every_refusal() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let insider = env.insider_ctl()?;
    let _ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;

    // Three nodes and the health authority (receiver and designator), pinned by the owner.
    let MpcNodes {
        dirs: node_dirs,
        ids: node_ids,
    } = env.mpc_nodes(&owner, &ctl).await?;
    let nodes_arr = node_ids.clone();
    let ha = env.dir.join("health");
    let ha_id = rand_id("health");
    let ha_identity = std::fs::read(Service::init(&ha, &ha_id, PartyKind::Service)?)?;
    owner.trust(&ctl, &ha_identity).await?;
    // The health authority submits and collects as its own principal.
    let ha_ctl = env.service_ctl(&ha_id).await?;
    let other = env.dir.join("other-svc");
    let other_id = rand_id("other");
    let other_identity = std::fs::read(Service::init(&other, &other_id, PartyKind::Service)?)?;
    owner.trust(&ctl, &other_identity).await?;

    // Phones: a patient and four users on a small map (contacts are likely).
    let patient = rand_id("patient");
    let users: Vec<String> = (0..4).map(|i| rand_id(&format!("user{i}"))).collect();
    let mut phones = Vec::new();
    for t in std::iter::once(&patient).chain(&users) {
        phones.push(env.phone(&owner, &ctl, t, SLOT_MS).await?);
    }
    let token_req = |distance: u32, until: u64, max_jobs: u32| ProcessTokenRequest {
        receiver_identity: ha_identity.clone(),
        designator_identity: ha_identity.clone(),
        function: CONTACT_TRACING.to_string(),
        distance,
        slot_len_ms: SLOT_MS,
        window_slots: WINDOW,
        max_jobs_per_window: max_jobs,
        not_after_ms: until,
        policy: None,
        twins: Vec::new(),
    };
    owner
        .process_token(&ctl, &token_req(DISTANCE, now_ms() + 3_600_000, 4))
        .await?;

    // Phase 3+: every phone uploads its simulated location for each slot of the window.
    let sim = Sim {
        grid: 120,
        hotspots: 2,
        ..Sim::new(7)
    };
    // The window is the grant's tile of WINDOW slots after next, some seconds ahead: phones upload
    // before the window's cut-off (its end plus the skew bound; the edge takes slots up to its
    // skew bound ahead); the nodes defer the job to the cut-off. The tile after it is uploaded too
    // (steps 5 and 6). Phones seal a share epoch's slots under one capsule per node (the default
    // 50 slots per share epoch), and the window holds every case that must still equal the
    // cleartext: user 1 misses slots 3..6; user 2's phone is replaced after slot 3 (its old
    // shares stay valid up to the revocation's last seq, the new phone's capsules are its own);
    // user 3 uploads slots 5.. late, after the window ended but before its cut-off.
    let w = u64::from(WINDOW);
    let start = (now_ms() / SLOT_MS + 2) / w * w + 2 * w;
    let slots = start..start + w;
    let (missing, replaced_at, late_from) = (start + 3..start + 6, start + 4, start + 5);
    for (i, dev) in phones.iter().enumerate() {
        match i {
            2 => {
                dev.upload_shares(&sim, start..missing.start).await?;
                dev.upload_shares(&sim, missing.end..start + 2 * w).await?;
            }
            3 => dev.upload_shares(&sim, start..replaced_at).await?,
            4 => dev.upload_shares(&sim, start..late_from).await?,
            _ => dev.upload_shares(&sim, start..start + 2 * w).await?,
        }
    }
    // User 2's replacement (M3 without the replay): the old phone's last seq bounds its shares.
    let old = phones.remove(3).stop().await;
    let last_valid = old
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .state()
        .next_seq
        .checked_sub(1)
        .ok_or_else(|| anyhow::anyhow!("the old phone shared nothing"))?;
    let dir = env.dir.join(format!("{}-d2", users[2]));
    let card = armored_device::setup_with_slot_len(&dir, &users[2], "d2", 3_600_000, SLOT_MS)?;
    armored_device::pin_owner(&dir, &owner.identity()?)?;
    env.add_mqtt_user(&format!("{}/d2", users[2]), "pw-d2")
        .await?;
    let mut new_phone = TestDevice::start(&env, &dir, "pw-d2").await?;
    replay::replace_device(&owner, &ctl, "d1", &card, Some(last_valid)).await?;
    // Once the new phone has its roster (the old phone with its bound, itself), the edge knows it.
    new_phone.wait_roster(2, Duration::from_secs(30)).await;
    new_phone
        .upload_shares(&sim, replaced_at..start + 2 * w)
        .await?;
    phones.insert(3, new_phone);
    let mut paths: Vec<_> = users.iter().map(|u| sim.path(u, slots.clone())).collect();
    for s in missing.clone() {
        paths[1][(s - start) as usize] = None;
    }
    let expected = cleartext(DISTANCE, &sim.path(&patient, slots.clone()), &paths);
    // Wait until each node topic holds every share but the missing and the late ones.
    let want = (users.len() + 1) * 2 * WINDOW as usize
        - missing.clone().count()
        - (start + 2 * w - late_from) as usize;
    for j in 1..=3 {
        let topic = env.topics.mpc_shares(j);
        let have = env
            .wait_records(&topic, want, Duration::from_secs(60))
            .await?;
        anyhow::ensure!(have.len() >= want, "shares did not reach the node topics");
    }

    let mut nodes = start_nodes(&env, &node_dirs)?;
    healthy(&nodes).await?;

    let designation = armored_client::mpc::designate::designate(&ha, &patient, start, WINDOW)?;
    let request = |job_id: &str| JobRequest {
        job_id: Some(job_id.to_string()),
        reference: patient.clone(),
        distance: DISTANCE,
        window_start_slot: start,
        window_slots: WINDOW,
        participants: users.clone(),
        nodes: nodes_arr.clone(),
        designation: designation.clone(),
    };

    // 1. The job completes and equals the cleartext computation, late shares included.
    let (key, job) = build_job(&ha_ctl, &ha, &request("ok")).await?;
    submit_job(&ha_ctl, &key, &job, 1).await?;
    let window_end_ms = (start + w) * SLOT_MS;
    tokio::time::sleep(Duration::from_millis(
        window_end_ms.saturating_sub(now_ms()) + 100,
    ))
    .await;
    phones[4]
        .upload_shares(&sim, late_from..start + 2 * w)
        .await?;
    anyhow::ensure!(
        now_ms() + 1_000 < window_end_ms + CUTOFF_SKEW_MS,
        "the late shares were sent too close to the cut-off to show that they count"
    );
    let o = collect(&ha_ctl, &ha, "ok", Duration::from_secs(60)).await?;
    let Outcome::Completed { counts, total, .. } = o else {
        anyhow::bail!("job failed: {o:?}")
    };
    assert_eq!(counts.iter().map(|(_, c)| *c).collect::<Vec<_>>(), expected);
    assert_eq!(total, expected.iter().sum::<u64>());
    assert!(
        total > 0,
        "the map is small enough for contacts: {expected:?}"
    );
    assert_eq!(
        counts.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
        users
    );
    // Idempotent by job id: the same attempt again is skipped, a different body is refused.
    submit_job(&ha_ctl, &key, &job, 1).await?;
    let mut changed = job.clone();
    changed.distance = DISTANCE + 1;
    submit_job(&ha_ctl, &key, &changed, 1).await?;

    let all = |reason: &str| {
        vec![
            (1, reason.to_string()),
            (2, reason.to_string()),
            (3, reason.to_string()),
        ]
    };
    let expect_fail = |o: &Outcome, reason: &str| {
        assert_eq!(failed_reasons(o), all(reason), "{o:?}");
    };

    // 2. Parameters outside the grant: distance, window alignment, undesignated reference.
    let mut r = request("far");
    r.distance = DISTANCE + 5;
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "far").await?,
        "parameters_not_granted",
    );

    let mut r = request("unaligned");
    r.window_start_slot = start + 1;
    r.designation = armored_client::mpc::designate::designate(&ha, &patient, start + 1, WINDOW)?;
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "unaligned").await?,
        "window_not_granted",
    );

    // Windows cannot be differenced: [start, start + WINDOW + 1) after [start, start + WINDOW) is
    // refused (it would tell one slot's contacts), on every node.
    let mut r = request("one-longer");
    r.window_slots = WINDOW + 1;
    r.designation = armored_client::mpc::designate::designate(&ha, &patient, start, WINDOW + 1)?;
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "one-longer").await?,
        "window_not_granted",
    );
    // A window over the nodes' maximum (2016 slots by default) is refused before any token is
    // looked at: every node would allocate (participants + 1) × slots inputs.
    let mut r = request("huge");
    r.window_slots = 1_000_000;
    r.designation = armored_client::mpc::designate::designate(&ha, &patient, start, 1_000_000)?;
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(&outcome_all(&ha_ctl, &ha, "huge").await?, "window_too_long");

    let mut r = request("other-ref");
    r.reference = users[0].clone();
    r.participants = std::iter::once(patient.clone())
        .chain(users[1..].iter().cloned())
        .collect();
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "other-ref").await?,
        "reference_not_designated",
    );

    // 3. Tokens: missing, wrong receiver, wrong function, expired, revoked.
    let (k, mut j) = build_job(&ha_ctl, &ha, &request("missing")).await?;
    j.participants[1].token_id = vec![7; 16];
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "missing").await?,
        "missing_token",
    );

    // Another service presenting the health authority's tokens.
    let (_, mut j) = build_job(&ha_ctl, &ha, &request("thief")).await?;
    let ok = Service::open(&other)?;
    j.service_id = ok.id.clone();
    let other_key = armored_crypto::keyfile::load_signing_key(&other.join("sig.key"))?;
    let other_ctl = env.service_ctl(&other_id).await?;
    submit_job(&other_ctl, &other_key, &j, 1).await?;
    // The thief cannot read the results, so read the failures with the health authority's view
    // of the same job (the nodes sign failures regardless of who asked).
    let failures = wait_failures(&ha_ctl, &j, &other_key).await?;
    assert_eq!(failures, all("wrong_receiver"));

    let (_, short) = owner
        .process_token(&ctl, &token_req(DISTANCE, now_ms() + 1_500, 4))
        .await?;
    let short_id = peek_token_id(&short)?;
    let (k, mut j) = build_job(&ha_ctl, &ha, &request("expired")).await?;
    j.participants[0].token_id = short_id;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "expired").await?,
        "expired_token",
    );

    let (k, j) = build_job(&ha_ctl, &ha, &request("revoked")).await?;
    owner
        .revoke_process_token(&ctl, &hex::encode(&j.participants[2].token_id))
        .await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "revoked").await?,
        "revoked_token",
    );
    // A new token for the rest of the test.
    owner
        .process_token(&ctl, &token_req(DISTANCE, now_ms() + 3_600_000, 4))
        .await?;

    // 4. A forged peer message (not from node 2's key) and a replayed one (from another attempt)
    // waiting in node 1's inbox fail the attempt cleanly.
    for (job_id, replay) in [("forged", false), ("replayed", true)] {
        let (k, j) = build_job(&ha_ctl, &ha, &request(job_id)).await?;
        let hash = verify_job(&sign_job(&k, &j), k.verifying_key())?.job_hash;
        let node1 = load_hpke_key(&node_dirs[0].join("hpke.key"))?;
        let node2 = load_hpke_key(&node_dirs[1].join("hpke.key"))?;
        let sender = if replay {
            node2
        } else {
            HpkeSecretKey::generate(&mut OsRng)
        };
        let id = ChannelId {
            job_hash: hash,
            attempt: if replay { 1 } else { 2 },
            from: 2,
            to: 1,
        };
        let mut m = PeerSender::open(&sender, node1.public(), id, &mut OsRng)?.seal(
            u32::MAX,
            0,
            1,
            b"hello",
        )?;
        m.attempt = 2; // the replay is rewritten into attempt 2
                       // Partition 0 carries what is sent to node 1.
                       // (Only the nodes' principals may write peer messages: the test plays a node.)
        send_to_partition(&insider, &env.topics.mpc_peer(), 0, &m.encode_to_vec()).await?;
        submit_job(&ha_ctl, &k, &j, 2).await?;
        let o = outcome_all(&ha_ctl, &ha, job_id).await?;
        let reasons = failed_reasons(&o);
        assert!(
            reasons.contains(&(1, "peer_message_rejected".to_string())),
            "{o:?}"
        );
        assert!(
            reasons
                .iter()
                .all(|(_, r)| r == "peer_message_rejected" || r == "timeout"),
            "{o:?}"
        );
        // A retry with fresh seeds completes.
        submit_job(&ha_ctl, &k, &j, 3).await?;
        let o = outcome_of(&ha_ctl, &ha, job_id, 3).await?;
        assert!(
            matches!(o, Outcome::Completed { attempt: 3, ref counts, .. } if counts.iter().map(|(_, c)| *c).collect::<Vec<_>>() == expected),
            "{o:?}"
        );
    }

    // 5. Budget: four jobs per (participant, window); "ok", "forged", "replayed" were charged.
    let (k, j) = build_job(&ha_ctl, &ha, &request("fourth")).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    assert!(matches!(
        outcome_all(&ha_ctl, &ha, "fourth").await?,
        Outcome::Completed { .. }
    ));
    let (k, j) = build_job(&ha_ctl, &ha, &request("fifth")).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    expect_fail(
        &outcome_all(&ha_ctl, &ha, "fifth").await?,
        "budget_exhausted",
    );

    // 5b. A job whose window's cut-off is ahead is deferred, not waited for: a later job over a
    // complete window (the tile after the first) completes first, while it waits; node 3 restarts
    // while it is deferred and resumes it from its ledger; at the cut-off it completes on all three.
    let start_f = (now_ms() / SLOT_MS + 20).div_ceil(w) * w;
    let slots_f = start_f..start_f + w;
    for dev in &phones {
        dev.upload_shares(&sim, slots_f.clone()).await?;
    }
    let cutoff_f_ms = (start_f + w) * SLOT_MS + CUTOFF_SKEW_MS;
    let mut r = request("later");
    r.window_start_slot = start_f;
    r.designation = armored_client::mpc::designate::designate(&ha, &patient, start_f, WINDOW)?;
    let (k_f, j_f) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k_f, &j_f, 1).await?;
    let mut r = request("meanwhile");
    r.window_start_slot = start + w;
    r.designation = armored_client::mpc::designate::designate(&ha, &patient, start + w, WINDOW)?;
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    let o = outcome_all(&ha_ctl, &ha, "meanwhile").await?;
    anyhow::ensure!(matches!(o, Outcome::Completed { .. }), "meanwhile: {o:?}");
    anyhow::ensure!(
        now_ms() < cutoff_f_ms,
        "the later job's cut-off passed before the test could see it deferred; nothing was shown"
    );
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.metric("at_mpc_jobs_deferred").await? < 1.0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "a node did not defer the later job"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    nodes[2].restart()?;
    healthy(&nodes).await?;
    anyhow::ensure!(
        now_ms() < cutoff_f_ms,
        "node 3 restarted after the later job's cut-off: the resume was not shown"
    );
    assert_eq!(
        nodes[2].metric("at_mpc_jobs_deferred").await?,
        1.0,
        "resumed from the ledger"
    );
    let o = collect(&ha_ctl, &ha, "later", Duration::from_secs(120)).await?;
    let Outcome::Completed { counts, .. } = o else {
        anyhow::bail!("the deferred job: {o:?}")
    };
    assert!(now_ms() >= cutoff_f_ms, "computed before its cut-off");
    assert_eq!(
        counts.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        contacts(&sim, &patient, &users, slots_f.clone())
    );
    for n in &nodes {
        assert_eq!(n.metric("at_mpc_jobs_deferred").await?, 0.0);
    }

    // 6. A node killed mid-job: the attempt fails or completes, never a wrong result; after the
    // restart a new attempt completes. (Budgets survive the restart: a new window is used.)
    let start2 = start + w;
    let mut r = request("killed");
    r.window_start_slot = start2;
    r.designation = armored_client::mpc::designate::designate(&ha, &patient, start2, WINDOW)?;
    let expected2 = contacts(&sim, &patient, &users, start2..start2 + w);
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    let state = nodes[2].dir.join("state").join("node-state.json");
    submit_job(&ha_ctl, &k, &j, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"killed\""))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    nodes[2].restart()?;
    healthy(&nodes).await?;
    let o = outcome_all(&ha_ctl, &ha, "killed").await?;
    match &o {
        Outcome::Completed { counts, .. } => {
            assert_eq!(
                counts.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
                expected2
            )
        }
        Outcome::Failed { failures, .. } => assert!(!failures.is_empty()),
    }
    submit_job(&ha_ctl, &k, &j, 2).await?;
    let o = outcome_of(&ha_ctl, &ha, "killed", 2).await?;
    let Outcome::Completed {
        attempt: 2, counts, ..
    } = o
    else {
        anyhow::bail!("retry after restart: {o:?}")
    };
    assert_eq!(
        counts.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        expected2
    );

    // Metrics: jobs and failures by reason are counted.
    let completed = nodes[0]
        .metric("at_mpc_jobs_total{outcome=\"completed\"}")
        .await?;
    assert!(completed >= 4.0, "completed {completed}");
    let conflicts = nodes[0]
        .metric("at_mpc_job_failures_total{reason=\"job_conflict\"}")
        .await?;
    assert_eq!(conflicts, 1.0);

    // 7. M2: node 3 is replaced by node 4. A node that held another share number is refused; the
    // old node's re-key is revoked, so every new share on node-3's topic is for node 4's key, and
    // a job on nodes 1, 2, 4 computes the right result.
    let dir4 = env.dir.join("node4");
    let id4 = Service::init(&dir4, &rand_id("node4"), PartyKind::MpcNode)?;
    let (p4, _) = owner.trust(&ctl, &std::fs::read(id4)?).await?;
    let refused = owner.replace_node(&ctl, 2, &node_ids[0]).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("held node-1")));
    let (revoked, _) = owner.replace_node(&ctl, 3, &p4.party_id).await?;
    assert_eq!(revoked.len(), 1, "node 3's re-key");
    drop(nodes);
    let dirs2 = [node_dirs[0].clone(), node_dirs[1].clone(), dir4.clone()];
    let nodes = start_nodes(&env, &dirs2)?;
    healthy(&nodes).await?;
    let start3 = (now_ms() / SLOT_MS + 2) / w * w + w;
    let slots3 = start3..start3 + w;
    // What node-3's topic held before (records come partition by partition, and a share epoch
    // spans several windows: the new ones are told apart by content).
    let before: std::collections::HashSet<Vec<u8>> = env
        .records(&env.topics.mpc_shares(3))?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    for dev in &phones {
        dev.upload_shares(&sim, slots3.clone()).await?;
    }
    let want = (users.len() + 1) * WINDOW as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_records = loop {
        let mut r = env.records(&env.topics.mpc_shares(3))?;
        r.retain(|(_, p)| !before.contains(p));
        if r.len() >= want {
            break r;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "new shares did not reach node-3's topic"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let key4 = p4.pre.key_id();
    for (_, payload) in &new_records {
        let d = v1::Delivery::decode(payload.as_slice())?;
        assert_eq!(
            d.receiver_key_id,
            key4.0.to_vec(),
            "a new share for the replaced node"
        );
    }
    let nodes3: [String; 3] = [
        node_ids[0].clone(),
        node_ids[1].clone(),
        p4.party_id.clone(),
    ];
    let mut r = request("replaced");
    r.window_start_slot = start3;
    r.nodes = nodes3;
    r.designation = armored_client::mpc::designate::designate(&ha, &patient, start3, WINDOW)?;
    let (k, j) = build_job(&ha_ctl, &ha, &r).await?;
    submit_job(&ha_ctl, &k, &j, 1).await?;
    let expected3 = contacts(&sim, &patient, &users, slots3.clone());
    let o = outcome_all(&ha_ctl, &ha, "replaced").await?;
    let Outcome::Completed { counts, .. } = o else {
        anyhow::bail!("job on the replaced node: {o:?}")
    };
    assert_eq!(
        counts.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        expected3
    );
    // Node 4 skipped node 3's old deliveries (not for its key) without dead-lettering them.
    let skipped = nodes[2]
        .metric("at_mpc_shares_rejected_total{reason=\"not_for_this_node\"}")
        .await?;
    assert!(
        skipped >= 1.0,
        "old deliveries on node-3's topic: {skipped}"
    );

    for p in phones {
        p.stop().await;
    }
    drop(nodes);
    env.stop().await;
    Ok(())
}

fn peek_token_id(signed: &[u8]) -> anyhow::Result<Vec<u8>> {
    let s = v1::Signed::decode(signed)?;
    Ok(v1::ProcessToken::decode(s.body.as_slice())?.token_id)
}

async fn send_to_partition(
    ctl: &Ctl,
    topic: &str,
    partition: i32,
    payload: &[u8],
) -> anyhow::Result<()> {
    let rec = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .payload(payload);
    ctl.producer
        .active()?
        .send(rec, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The verified failures of the job `j` signed by `key` (a service that cannot open results).
async fn wait_failures(
    ctl: &Ctl,
    j: &v1::MpcJob,
    key: &armored_crypto::sig::SigningKey,
) -> anyhow::Result<Vec<(u32, String)>> {
    let hash = verify_job(&sign_job(key, j), key.verifying_key())?.job_hash;
    let registry = ctl.registry().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Vec::new();
        for r in armored_client::kafka::read_topic(ctl, &ctl.topics.mpc_results())? {
            let Ok(rec) = v1::MpcResult::decode(r.as_slice()) else {
                continue;
            };
            if let Some(v1::mpc_result::Result::JobFailed(b)) = rec.result {
                for (i, n) in j.node_ids.iter().enumerate() {
                    let Some(p) = registry.party(n) else { continue };
                    if let Ok(f) = armored_crypto::mpcjob::verify_job_failed(&b, &p.sig) {
                        if f.job_hash == hash && f.node_index == i as u32 + 1 {
                            out.push((f.node_index, f.reason.clone()));
                        }
                    }
                }
            }
        }
        out.sort();
        if out.len() >= 3 || Instant::now() > deadline {
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
