//! `atctl owner audit` and `atctl owner trust-worker`: the re-encryption workers' signed audit
//! trail of this owner's twins (`armored_client::owner::audit`).

use std::path::Path;

use armored_client::owner::audit::{self, AuditFilter, AuditOptions, AuditReport, AuditRow};
use armored_client::owner::Owner;
use armored_client::when::{format_utc, parse_since};

use super::Connect;

/// `atctl owner audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this twin.
    #[arg(long)]
    twin: Option<String>,
    /// Only this receiver (a service id, `twin/device`, an MPC node's id).
    #[arg(long)]
    receiver: Option<String>,
    /// Only entries since this time: a duration ago (2h, 7d), unix ms, or `YYYY-MM-DDTHH:MM[:SS]Z`.
    #[arg(long)]
    from: Option<String>,
    /// Only entries up to this time (the forms of --from; a duration is a time ago).
    #[arg(long)]
    to: Option<String>,
    /// One JSON object per entry, then the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Check every batch's signature against the pinned worker keys (others are flagged as
    /// "unknown signer") and every delivery of this owner's twins on at.deliver.v1 and the MPC
    /// share topics against the entries (a delivery without one is flagged as a gap). Exits with
    /// status 2 when anything is flagged.
    #[arg(long)]
    verify: bool,
    /// Trust this worker key for this call too: a worker's worker-audit.pub or the hex key
    /// (repeatable; `owner trust-worker` pins one for good).
    #[arg(long = "worker-key", value_name = "FILE_OR_HEX")]
    worker_keys: Vec<String>,
}

/// Runs `atctl owner trust-worker`.
pub fn trust_worker(dir: &Path, key: &str, note: &str) -> anyhow::Result<()> {
    let o = Owner::open(dir)?;
    let (k, new) = audit::trust_worker(&o, key, note)?;
    if new {
        println!(
            "pinned worker audit key {} (key id {}); its batches on at.audit.v1 now count as a worker's",
            hex::encode(k.to_sec1()),
            k.key_id()
        );
    } else {
        println!("worker audit key {} was pinned already", k.key_id());
    }
    Ok(())
}

/// Runs `atctl owner audit`.
pub async fn run(dir: &Path, a: AuditArgs, connect: &Connect) -> anyhow::Result<()> {
    let o = Owner::open(dir)?;
    let now = armored_base::time::now_ms();
    let at = |s: &Option<String>, flag: &str| {
        s.as_deref()
            .map(|s| parse_since(s, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
            .transpose()
    };
    let filter = AuditFilter {
        twin: a.twin,
        receiver: a.receiver,
        from_ms: at(&a.from, "from")?,
        to_ms: at(&a.to, "to")?,
    };
    let worker_keys = a
        .worker_keys
        .iter()
        .map(|k| audit::parse_worker_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = AuditOptions {
        verify: a.verify,
        worker_keys,
        stall: None,
    };
    let ctl = connect.owner()?;
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("reading {msg} {bar:30} {pos}/{len} records")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !a.json {
        println!(
            "{:<20} {:<16} {:<30} {:>8} {:<34} {:<24} WORKER",
            "TIME", "TWIN", "RECEIVER", "EPOCH", "RK", "GRANT"
        );
    }
    let json = a.json;
    let mut print_err = None;
    let report = audit::scan(
        &o,
        &ctl,
        &filter,
        &opts,
        |r| {
            if let Err(e) = print_row(&r, json) {
                print_err.get_or_insert(e);
            }
        },
        |topic, done, total| {
            bar.set_message(topic.to_string());
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await;
    bar.finish_and_clear();
    let report = report?;
    if let Some(e) = print_err {
        return Err(e);
    }
    eprintln!(
        "read {} audit records in {:.2} s",
        report.records,
        started.elapsed().as_secs_f64()
    );
    print_report(&report, json)?;
    if report.verified && report.flagged() {
        std::process::exit(2);
    }
    Ok(())
}

fn print_row(r: &AuditRow, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:<30} {:>8} {:<34} {:<24} {}{}",
        format_utc(r.at_ms),
        r.twin,
        format!("{}:{}", r.receiver_kind, r.receiver),
        r.epoch,
        r.rk_id,
        r.grant.as_deref().unwrap_or("-"),
        r.worker,
        if r.pinned { "" } else { " (unpinned key)" }
    );
    Ok(())
}

fn print_report(r: &AuditReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::json!({ "report": r }));
        return Ok(());
    }
    println!(
        "{} entries shown of {} for this owner's twins, in {} signed batches",
        r.shown, r.entries, r.batches
    );
    if r.malformed + r.bad_signatures > 0 {
        println!(
            "FLAG: {} records on the audit topic are no audit batch, {} do not verify under the key they name",
            r.malformed, r.bad_signatures
        );
    }
    for (kid, u) in &r.unknown_signers {
        println!(
            "FLAG: unknown signer {kid} (claims instance {:?}): {} batches, {} entries of this owner's twins",
            u.instance, u.batches, u.entries
        );
    }
    if r.verified {
        println!(
            "verified {} deliveries of this owner's twins against the entries: {} without an entry{}",
            r.deliveries_checked,
            r.gap_count,
            if r.deliveries_unreadable > 0 {
                format!(" ({} deliveries unreadable, not attributed)", r.deliveries_unreadable)
            } else {
                String::new()
            }
        );
        for g in &r.gaps {
            println!(
                "FLAG: gap: {}:{}@{} twin {} key {} sha256 {}",
                g.topic, g.partition, g.offset, g.twin, g.key, g.sha256
            );
        }
        if (r.gap_count as usize) > r.gaps.len() {
            println!("… and {} more gaps", r.gap_count as usize - r.gaps.len());
        }
        println!(
            "{}",
            if r.flagged() {
                "verify: FLAGGED (see above)"
            } else {
                "verify: ok, every batch signed by a pinned worker key and every delivery has its entry"
            }
        );
    }
    Ok(())
}
