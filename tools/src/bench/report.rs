//! What a bench run reports: a row per N (latency, CPU per user by phase), the table printed beside
//! the paper's Table 2, the latency's linear fit, and the JSON files.

use std::path::Path;

use serde::Serialize;

/// Table 2 of the paper, per user (ms), and the row we compare with it.
const PAPER: [(&str, &str, f64); 5] = [
    (
        "device",
        "3+ device: split + seal (paper: PRE.Enc x 150, phone)",
        7_672.41,
    ),
    (
        "workers",
        "6+ cloud: check + ReEnc (paper: PRE.ReEnc x 150)",
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
    /// The whole cost: every phase.
    pub fn total(&self) -> f64 {
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
    /// Slots per share epoch the phones sealed with (1: the paper's accounting, a capsule per
    /// point and node).
    pub slots_per_share_epoch: u64,
}

/// The whole cost per user the issue asks for at the default share epoch (ms CPU).
const TARGET_CPU_MS_PER_USER: f64 = 100.0;

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

/// Prints the table beside the paper's Table 2, and writes the rows and the latency's fit to
/// `out` (and `mpc-pipeline-fit.json` beside it) if given.
pub fn report(out: Option<&Path>, rows: &[Row]) -> anyhow::Result<()> {
    println!(
        "\n{:>6} {:>5} | {:>9} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9} | {:>7} {:>8} | {:>6} {:>10}",
        "users",
        "s/ep",
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
            "{:>6} {:>5} | {:>9.3} | {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.2} | {:>9.1} | {:>7.1} {:>8.1} | {:>6} {:>10.2}",
            r.users,
            r.slots_per_share_epoch,
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
    println!(
        "(CPU ms per participant; s/ep = slots per share epoch, 1 = the paper's accounting; \
         ingest and brokers are outside Table 2's sum)"
    );
    // Per share epoch setting, in the order run: the latency's fit and the comparison with
    // Table 2 at the largest N.
    let mut fits = Vec::new();
    let mut seen = Vec::new();
    for spe in rows.iter().map(|r| r.slots_per_share_epoch) {
        if seen.contains(&spe) {
            continue;
        }
        seen.push(spe);
        let group: Vec<Row> = rows
            .iter()
            .filter(|r| r.slots_per_share_epoch == spe)
            .cloned()
            .collect();
        let fit = linear_fit(&group);
        if let Some((per_user_ms, constant_s)) = fit {
            println!(
                "\n{spe} slots per share epoch: job latency {per_user_ms:.2} ms per user + {constant_s:.3} s \
                 (targets: <= 5 ms per user, <= 0.5 s; paper: 6,530.58 ms per user + 12.43 s for MPC.Compute alone)"
            );
        }
        fits.push(serde_json::json!({
            "slots_per_share_epoch": spe,
            "latency_ms_per_user": fit.map(|f| f.0),
            "latency_constant_s": fit.map(|f| f.1),
            "users": group.iter().map(|r| r.users).collect::<Vec<_>>(),
        }));
        if let Some(last) = group.iter().max_by_key(|r| r.users) {
            println!(
                "per user at N = {}, {spe} slots per share epoch, ms of CPU (paper: Table 2, phone for the device, Ryzen 5600X for the rest):",
                last.users
            );
            for (field, name, paper) in PAPER {
                println!(
                    "  {name:<55} ours {:>9.1}   paper {paper:>9.2}",
                    last.phases_ms_per_user.get(field)
                );
            }
            let target = if spe > 1 {
                format!("whole cost (target <= {TARGET_CPU_MS_PER_USER})")
            } else {
                "whole cost (paper's parameters: no target)".to_string()
            };
            println!(
                "  {target:<55} ours {:>9.1}   paper {PAPER_PER_USER_MS:>9.2} (+ {PAPER_CONSTANT_MS:.2} const.)",
                last.cpu_ms_per_user
            );
        }
    }
    let Some(out) = out else {
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
            "fits": fits,
            "targets": {
                "ms_per_user": 5.0,
                "constant_s": 0.5,
                "cpu_ms_per_user_at_default_share_epoch": TARGET_CPU_MS_PER_USER,
            },
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
            slots_per_share_epoch: 50,
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
