//! The whole cost of contact tracing per user, phase by phase, beside the paper's Table 2
//! (8242.24 ms per user + 12433.61 ms): every cryptographic step of the job path runs here for N
//! users x 50 points with the real code — the device's split and sealing of three share bundles per
//! point (one capsule per slot and node), the worker's capsule check and ReEnc of every bundle, node
//! j's Dec² and verification of its shares, the three-party computation (in-memory transport, no
//! delay), the output shares sealed for the receiver, and Combine. Brokers are not involved: the
//! job path on the real brokers (latency, and every process's CPU) is `at-bench`
//! (`infra/bench.sh`); this one isolates the cryptography's share of it.
//!
//! `cargo bench -p at-mpc-node --bench pipeline` (users: `AT_BENCH_USERS=10,50,100,1000`).
//! Writes `target/bench-results/mpc-pipeline-crypto.json`.

use std::time::Instant;

use armored_crypto::envelope::{decode_envelope, make_delivery, Receiver, TrustStore};
use armored_crypto::epoch::EpochKeyManager;
use armored_crypto::hpke::HpkeSecretKey;
use armored_crypto::kpcpre::{reencrypt, Capsule1, Policy, ReKey, SecretKey};
use armored_crypto::shares::{seal_share_bundle, share_attributes, ShareInput};
use armored_crypto::sig::SigningKey;
use armored_device::sim::Sim;
use armored_mpc::field::Fp;
use armored_mpc::functions::contact_tracing::{
    split_point, ContactTracingResult, EngineConfig, PartyInputs, PointShare, Track,
};
use armored_mpc::job::{ContactTracingParams, Function, Job, SlotWindow};
use armored_mpc::output::open_and_combine;
use armored_mpc::prss::PartySeeds;
use armored_mpc::transport::InMemoryConfig;
use rand_core::OsRng;

const POINTS: u64 = 50;
/// Records a worker routes together at most (reencrypt-worker's MAX_BATCH).
const WORKER_BATCH: usize = 32;
const DISTANCE: u32 = 20;

/// Table 2, per user (ms): the phone's sync (PRE.Enc x 50 epochs x 3 nodes, Split, AES), the
/// cloud's ReEnc (x 50 x 3), the nodes' Dec (x 50, on each node), MPC.Compute.
const PAPER: [(&str, f64); 4] = [
    ("device: split + seal (3+)", 7672.41),
    ("worker: check + ReEnc", 678.0),
    ("nodes: Dec² + verify", 352.5),
    ("MPC compute + output + combine", 6530.58),
];

/// Process CPU time (user + system) in ms, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    (t(11) + t(12)) * 10.0
}

fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs this binary without `--bench`: a two-user smoke pass.
    let quick = !std::env::args().any(|a| a == "--bench");
    let default = if quick { "2" } else { "10,50,100,1000" };
    let users: Vec<usize> = std::env::var("AT_BENCH_USERS")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let mut rng = OsRng;
    let owner = SecretKey::generate(&mut rng);
    let owner_sig = SigningKey::generate(&mut rng);
    let mut receivers: Vec<Receiver> = (0..3)
        .map(|_| Receiver::new(SecretKey::generate(&mut rng)))
        .collect();
    let rks: Vec<ReKey> = (1..=3)
        .map(|j| {
            let policy = Policy::parse(&format!("mpc-share AND node-{j} AND location"))?;
            ReKey::generate(
                &owner,
                &policy,
                receivers[j - 1].secret_key().public(),
                &mut rng,
            )
        })
        .collect::<Result<_, _>>()?;
    let node_sig: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate(&mut rng)).collect();
    let receiver_hpke = HpkeSecretKey::generate(&mut rng);
    let sim = Sim::new(7);

    println!(
        "{:>6} | {:>12} {:>12} {:>12} {:>12} | {:>12} | {:>10}",
        "users", "device", "ReEnc", "Dec²", "MPC+out", "ms/user", "MPC wall s"
    );
    let mut rows = Vec::new();
    for &n in &users {
        let mut phase = [0.0f64; 4];
        let mut inputs: [PartyInputs; 3] = Default::default();
        for u in 0..=n {
            let twin = format!("u{u}");
            let device = SigningKey::generate(&mut rng);
            let mut trust = TrustStore::new(*owner_sig.verifying_key());
            trust.add_device(&twin, *device.verifying_key());
            let mut keys = EpochKeyManager::new(owner.public().clone(), &twin)?;
            let mut tracks: [Vec<Option<PointShare>>; 3] = Default::default();
            let t = Instant::now();
            let mut bundles = Vec::with_capacity(3 * POINTS as usize);
            for slot in 0..POINTS {
                let (x, y) = sim.point(&twin, slot);
                let shares = split_point(x, y, &mut rng)?;
                for j in 0..3u8 {
                    let attrs = share_attributes(j + 1)?;
                    let a: Vec<&str> = attrs.iter().map(String::as_str).collect();
                    let key = keys.key_for(slot, &a, &mut rng)?;
                    let input = ShareInput {
                        device_id: "p".into(),
                        item_id: slot,
                        slot,
                        node_index: j + 1,
                        values: vec![shares[j as usize].x.value(), shares[j as usize].y.value()],
                        seq: slot * 3 + u64::from(j),
                    };
                    bundles.push((
                        j as usize,
                        // One slot per share epoch: the paper's accounting (Table 2).
                        seal_share_bundle(key, &device, &input, 1, &mut rng)?,
                    ));
                }
            }
            phase[0] += t.elapsed().as_secs_f64() * 1000.0;

            // The worker checks the capsules of a partition's queued records in one batch (up
            // to its MAX_BATCH of 32), then re-encrypts each.
            let t = Instant::now();
            let mut deliveries = Vec::with_capacity(bundles.len());
            for chunk in bundles.chunks(WORKER_BATCH) {
                let mut decoded = Vec::with_capacity(chunk.len());
                for (j, b) in chunk {
                    decoded.push((*j, decode_envelope(b)?));
                }
                let capsules = decoded.iter().map(|(_, (_, _, c1))| c1.clone()).collect();
                for ((j, (env, _, _)), checked) in decoded
                    .iter()
                    .zip(Capsule1::check_batch(capsules, &mut rng))
                {
                    let c2 = reencrypt(&rks[*j], &checked?)?;
                    deliveries.push((*j, make_delivery(env, &c2, None)));
                }
            }
            phase[1] += t.elapsed().as_secs_f64() * 1000.0;

            let t = Instant::now();
            for (j, d) in &deliveries {
                let item =
                    receivers[*j].open_share_delivery(d, &trust, *j as u8 + 1, 1, &mut rng)?;
                let fp = |v: u64| Fp::from_canonical(v).ok_or_else(|| anyhow::anyhow!("share"));
                tracks[*j].push(Some(PointShare {
                    x: fp(item.values[0])?,
                    y: fp(item.values[1])?,
                }));
            }
            phase[2] += t.elapsed().as_secs_f64() * 1000.0;
            for (j, t) in tracks.into_iter().enumerate() {
                if u == 0 {
                    inputs[j].reference = Track::new(t);
                } else {
                    inputs[j].users.push(Track::new(t));
                }
            }
        }
        let job = Job {
            job_id: format!("bench-{n}"),
            job_hash: [n as u8; 32],
            attempt: 1,
            function: Function::ContactTracingV1(ContactTracingParams {
                reference: "u0".into(),
                distance: DISTANCE,
                window: SlotWindow {
                    first_slot: 0,
                    slots: POINTS as u32,
                },
            }),
            participants: (1..=n).map(|u| format!("u{u}")).collect(),
        };
        // The three parties run in parallel threads: count their CPU, not the wall time.
        let (c0, w0) = (cpu_ms(), Instant::now());
        let outs = armored_mpc::local::contact_tracing(
            &EngineConfig::default(),
            InMemoryConfig::default(),
            &job,
            &inputs,
            PartySeeds::deal(&mut rng),
        )?;
        let sealed: Vec<Vec<u8>> = outs
            .iter()
            .zip(&node_sig)
            .map(|(o, k)| o.shares.seal(&job, receiver_hpke.public(), k, &mut rng))
            .collect::<Result<_, _>>()?;
        let values = open_and_combine(
            &receiver_hpke,
            [
                node_sig[0].verifying_key(),
                node_sig[1].verifying_key(),
                node_sig[2].verifying_key(),
            ],
            &job.job_hash,
            1,
            [&sealed[0], &sealed[1], &sealed[2]],
        )?;
        ContactTracingResult::from_values(&values, n, POINTS as u32)?;
        let mpc_wall = w0.elapsed().as_secs_f64();
        phase[3] = cpu_ms() - c0;
        let per_user: Vec<f64> = phase.iter().map(|p| p / (n + 1) as f64).collect();
        let total: f64 = per_user.iter().sum();
        println!(
            "{n:>6} | {:>12.2} {:>12.2} {:>12.2} {:>12.2} | {total:>12.2} | {mpc_wall:>10.3}",
            per_user[0], per_user[1], per_user[2], per_user[3]
        );
        rows.push(serde_json::json!({
            "users": n,
            "seconds": mpc_wall,
            "cpu_ms_per_user": total,
            "phases_ms_per_user": {
                "device_split_seal": per_user[0],
                "worker_check_reenc": per_user[1],
                "node_dec2_verify": per_user[2],
                "mpc_output_combine_cpu": per_user[3],
            },
            "scope": "in-process, no brokers; seconds = wall time of the MPC, output sealing and Combine",
        }));
    }
    println!("\nper user, ms (paper: Table 2, phone for the device, Ryzen 5600X for the rest):");
    if let Some(last) = rows.last() {
        let p = &last["phases_ms_per_user"];
        let ours = [
            p["device_split_seal"].as_f64(),
            p["worker_check_reenc"].as_f64(),
            p["node_dec2_verify"].as_f64(),
            p["mpc_output_combine_cpu"].as_f64(),
        ];
        for ((name, paper), o) in PAPER.iter().zip(ours) {
            println!(
                "  {name:<34} ours {:>10.2}   paper {paper:>10.2}",
                o.unwrap_or(f64::NAN)
            );
        }
        println!(
            "  {:<34} ours {:>10.2}   paper {:>10.2}",
            "whole cost",
            last["cpu_ms_per_user"].as_f64().unwrap_or(f64::NAN),
            8242.24
        );
    }
    if quick {
        println!(
            "(smoke pass: not writing results; run `cargo bench -p at-mpc-node --bench pipeline`)"
        );
        return Ok(());
    }
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("mpc-pipeline-crypto.json"),
        serde_json::to_vec_pretty(&rows)?,
    )?;
    println!("wrote {}", dir.join("mpc-pipeline-crypto.json").display());
    Ok(())
}
