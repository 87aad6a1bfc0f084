//! Table 2's MPC.Compute line, reproduced: contact tracing of one reference twin against N users ×
//! 50 points, three parties on threads over the in-memory transport, with 0 ms and 30 ms injected
//! round-trip time (the paper's Docker setup). Prints seconds per job, the linear fit (seconds per
//! user plus a constant), rounds and bytes sent per party beside the paper's 6.53 s/user + 12.43 s,
//! and writes `target/bench-results/mpc.json` and `mpc.svg` (seconds vs users, ours and the paper's).
//!
//! Run: `cargo bench -p armored-mpc --bench mpc`. `MPC_BENCH_MAX_USERS=1000` skips larger N.
//! Without `--bench` (e.g. `cargo test --all-targets`) it makes a quick pass and writes nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench aborts on a broken setup

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use armored_mpc::functions::contact_tracing::{
    cleartext, share_inputs, ContactTracingResult, EngineConfig,
};
use armored_mpc::shamir::combine_all;
use armored_mpc::{
    local, ContactTracingParams, Function, InMemoryConfig, Job, PartySeeds, SlotWindow,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// The paper's fit (Table 2, Section 6.2; SCALE-MAMBA, Ryzen 5600X, 30 ms RTT).
const PAPER_PER_USER: f64 = 6.53058;
const PAPER_CONST: f64 = 12.43361;
/// Targets of the issue on this machine.
const TARGET_PER_USER: f64 = 0.005;
const TARGET_CONST_30MS: f64 = 0.5;

const SLOTS: u32 = 50;
const DISTANCE: u32 = 20;

type Path = Vec<Option<(u32, u32)>>;

struct Sample {
    users: usize,
    rtt_ms: u64,
    seconds: f64,
    rounds: u32,
    bytes_per_party: u64,
}

fn walk(r: &mut ChaCha20Rng, start: (u32, u32)) -> Path {
    let (mut x, mut y) = start;
    (0..SLOTS)
        .map(|_| {
            x = (x + r.next_u32() % 41).saturating_sub(20).min(65535);
            y = (y + r.next_u32() % 41).saturating_sub(20).min(65535);
            Some((x, y))
        })
        .collect()
}

/// One job: the reference and n users, half of them walking near it. Returns the median time of
/// `reps` runs and the first run's statistics; every run's result is checked against cleartext.
fn run(n: usize, rtt_ms: u64, reps: usize) -> Sample {
    let mut r = ChaCha20Rng::seed_from_u64(n as u64 * 31 + rtt_ms);
    let reference = walk(&mut r, (30000, 30000));
    let users: Vec<Path> = (0..n)
        .map(|u| {
            let start = if u % 2 == 0 {
                (30005, 29995)
            } else {
                (30300, 30300)
            };
            walk(&mut r, start)
        })
        .collect();
    let inputs = share_inputs(&reference, &users, &mut r).expect("coordinates in range");
    let expect = cleartext(DISTANCE, &reference, &users);
    let job = Job {
        job_id: format!("bench-{n}-{rtt_ms}"),
        job_hash: [n as u8; 32],
        attempt: 0,
        function: Function::ContactTracingV1(ContactTracingParams {
            reference: "reference".into(),
            distance: DISTANCE,
            window: SlotWindow {
                first_slot: 0,
                slots: SLOTS,
            },
        }),
        participants: (0..n).map(|u| format!("user-{u}")).collect(),
    };
    let net = InMemoryConfig::with_rtt(Duration::from_millis(rtt_ms));
    let mut times = Vec::new();
    let mut stats = None;
    for _ in 0..reps {
        let seeds = PartySeeds::deal(&mut r);
        let start = Instant::now();
        let out = local::contact_tracing(&EngineConfig::default(), net, &job, &inputs, seeds)
            .expect("the job runs");
        times.push(start.elapsed().as_secs_f64());
        let values = combine_all([
            out[0].shares.values(),
            out[1].shares.values(),
            out[2].shares.values(),
        ])
        .expect("consistent output shares");
        let result = ContactTracingResult::from_values(&values, n, SLOTS).expect("well-formed");
        assert_eq!(result.counts, expect, "MPC result differs from cleartext");
        stats.get_or_insert(out.map(|o| o.stats));
    }
    times.sort_by(f64::total_cmp);
    let stats = stats.expect("at least one run");
    Sample {
        users: n,
        rtt_ms,
        seconds: times[times.len() / 2],
        rounds: stats.iter().map(|s| s.rounds).max().unwrap_or(0),
        bytes_per_party: stats.iter().map(|s| s.bytes_sent).max().unwrap_or(0),
    }
}

/// Least squares: seconds = slope·users + intercept.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|&(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, my - slope * mx)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Seconds vs users on log-log axes: our two series and the paper's line.
fn svg(samples: &[Sample], max_users: usize) -> String {
    let (w, h, l, r, t, b) = (760.0, 480.0, 70.0, 20.0, 30.0, 50.0);
    let (x_lo, x_hi) = (0.0f64, (max_users as f64).log10().ceil().max(1.0));
    let paper = |n: f64| PAPER_PER_USER * n + PAPER_CONST;
    let y_min = samples.iter().map(|s| s.seconds).fold(f64::MAX, f64::min);
    let (y_lo, y_hi) = (
        y_min.log10().floor().min(-2.0),
        paper(10f64.powf(x_hi)).log10().ceil(),
    );
    let px = |n: f64| l + (n.log10() - x_lo) / (x_hi - x_lo) * (w - l - r);
    let py = |s: f64| t + (y_hi - s.log10()) / (y_hi - y_lo) * (h - t - b);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="14">Contact tracing, 50 points per user: seconds per job vs users (log-log)</text>
"#,
        w / 2.0
    );
    for d in (x_lo as i32)..=(x_hi as i32) {
        let x = px(10f64.powi(d));
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            h - b,
            h - b + 16.0,
            10f64.powi(d)
        );
    }
    for d in (y_lo as i32)..=(y_hi as i32) {
        let y = py(10f64.powi(d));
        let _ = writeln!(
            o,
            r##"<line x1="{l}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">1e{d} s</text>"##,
            w - r,
            l - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">users</text>"#,
        (l + w - r) / 2.0,
        h - 12.0
    );
    let paper_pts: Vec<String> = (0..=40)
        .map(|k| {
            let n = 10f64.powf(x_lo + (x_hi - x_lo) * k as f64 / 40.0);
            format!("{:.1},{:.1}", px(n), py(paper(n)))
        })
        .collect();
    let _ = writeln!(
        o,
        r##"<polyline points="{}" fill="none" stroke="#c0392b" stroke-width="2" stroke-dasharray="6 4"/>"##,
        paper_pts.join(" ")
    );
    for (rtt, color) in [(0u64, "#2471a3"), (30, "#27ae60")] {
        let pts: Vec<&Sample> = samples.iter().filter(|s| s.rtt_ms == rtt).collect();
        let line: Vec<String> = pts
            .iter()
            .map(|s| format!("{:.1},{:.1}", px(s.users as f64), py(s.seconds)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            line.join(" ")
        );
        for s in pts {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                px(s.users as f64),
                py(s.seconds)
            );
        }
    }
    let legend = [
        ("#c0392b", "paper (SCALE-MAMBA): 6.53 s/user + 12.43 s"),
        ("#2471a3", "armored-mpc, in-memory, 0 ms RTT"),
        ("#27ae60", "armored-mpc, in-memory, 30 ms RTT"),
    ];
    for (k, (color, text)) in legend.iter().enumerate() {
        let y = t + 16.0 + 18.0 * k as f64;
        let _ = writeln!(
            o,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{text}</text>"#,
            l + 12.0,
            l + 40.0,
            l + 46.0,
            y + 4.0
        );
    }
    o.push_str("</svg>\n");
    o
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let max_users: usize = std::env::var("MPC_BENCH_MAX_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10 } else { 10_000 });
    let users: Vec<usize> = [1, 10, 25, 50, 100, 1000, 10_000]
        .into_iter()
        .filter(|&n| n <= max_users)
        .collect();
    let rtts: &[u64] = if quick { &[0] } else { &[0, 30] };

    println!(
        "contact tracing, {SLOTS} points per user, d = {DISTANCE}, 3 parties on threads, in-memory transport ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>7} {:>7} {:>11} {:>8} {:>16} {:>14} {:>12}",
        "users", "rtt_ms", "seconds", "rounds", "bytes/party", "ms/user", "paper s"
    );
    let mut samples = Vec::new();
    for &rtt in rtts {
        for &n in &users {
            let reps = if quick {
                1
            } else if n <= 100 {
                5
            } else {
                1
            };
            let s = run(n, rtt, reps);
            println!(
                "{:>7} {:>7} {:>11.4} {:>8} {:>16} {:>14.3} {:>12.2}",
                s.users,
                s.rtt_ms,
                s.seconds,
                s.rounds,
                s.bytes_per_party,
                1000.0 * s.seconds / s.users as f64,
                PAPER_PER_USER * n as f64 + PAPER_CONST
            );
            samples.push(s);
        }
    }
    println!();
    println!(
        "{:>7} {:>10} {:>16} {:>12}   {:>16} {:>12}",
        "rtt_ms", "fit over", "s/user", "const s", "paper s/user", "paper const"
    );
    for &rtt in rtts {
        for (label, limit) in [("N<=100", 100usize), ("all N", usize::MAX)] {
            let pts: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.rtt_ms == rtt && s.users <= limit)
                .map(|s| (s.users as f64, s.seconds))
                .collect();
            if pts.len() < 2 {
                continue;
            }
            let (slope, c) = fit(&pts);
            println!(
                "{rtt:>7} {label:>10} {slope:>16.6} {c:>12.4}   {PAPER_PER_USER:>16.2} {PAPER_CONST:>12.2}"
            );
        }
    }
    println!(
        "targets: slope <= {TARGET_PER_USER} s/user; constant <= {TARGET_CONST_30MS} s at 30 ms RTT; peak RSS {:.0} MiB",
        peak_rss_mib().unwrap_or(f64::NAN)
    );

    if quick {
        println!("(quick pass: not writing results; run `cargo bench -p armored-mpc --bench mpc`)");
        return;
    }
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bench-results");
    std::fs::create_dir_all(&dir).expect("create bench-results");
    let json: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({
                "users": s.users,
                "rtt_ms": s.rtt_ms,
                "seconds": s.seconds,
                "rounds": s.rounds,
                "bytes_per_party": s.bytes_per_party,
            })
        })
        .collect();
    let json = serde_json::to_string_pretty(&json).expect("serialise");
    std::fs::write(dir.join("mpc.json"), json + "\n").expect("write mpc.json");
    std::fs::write(dir.join("mpc.svg"), svg(&samples, max_users)).expect("write mpc.svg");
    println!("wrote {}/mpc.json and mpc.svg", dir.display());
}
