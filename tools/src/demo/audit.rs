//! Issue 19, item 3: the owner reads the workers' signed audit trail of a twin (`atctl owner audit
//! --verify`): who received its data, when, under which grant. With the workers' keys pinned,
//! every batch must be signed by one of them and every delivery of the owner's twins must have its
//! entry.

use std::time::Duration;

use armored_client::kafka::Ctl;
use armored_client::owner::audit::{self, AuditFilter, AuditOptions, AuditReport, AuditRow};
use armored_client::owner::Owner;
use armored_client::when::format_utc;

use super::parties::{step, DemoConfig};

/// Rows printed (the rest are counted).
const SHOWN: usize = 8;

async fn scan(
    ctl: &Ctl,
    owner: &Owner,
    twin: &str,
    verify: bool,
) -> anyhow::Result<(Vec<AuditRow>, AuditReport)> {
    let mut rows = Vec::new();
    let filter = AuditFilter {
        twin: Some(twin.to_string()),
        ..AuditFilter::default()
    };
    let opts = AuditOptions {
        verify,
        ..AuditOptions::default()
    };
    let report = audit::scan(owner, ctl, &filter, &opts, |r| rows.push(r), |_, _, _| {}).await?;
    Ok((rows, report))
}

/// The step: pin the workers' keys, show the twin's trail, verify it. Whether it held.
pub async fn run(cfg: &DemoConfig, ctl: &Ctl, owner: &Owner, twin: &str) -> anyhow::Result<bool> {
    step(
        12,
        &format!("alice audits twin {twin}: the workers' signed trail of every re-encryption (atctl owner audit --verify)"),
    );
    for k in &cfg.worker_keys {
        audit::trust_worker(owner, k, "at-demo")?;
    }
    let verify = !cfg.worker_keys.is_empty();
    // A batch is acknowledged with its deliveries, not before them: a delivery that just arrived
    // may wait a moment for its entry.
    let mut tries = 0;
    let (mut rows, report) = loop {
        let (rows, report) = scan(ctl, owner, twin, verify).await?;
        tries += 1;
        if report.gap_count == 0 || tries >= 5 {
            break (rows, report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    rows.sort_by_key(|r| r.at_ms);
    for r in rows.iter().take(SHOWN) {
        println!(
            "    {}  {:<9} {:<24} epoch {:<7} grant {:<32} by {}",
            format_utc(r.at_ms),
            r.receiver_kind,
            r.receiver,
            r.epoch,
            r.grant.as_deref().unwrap_or("-"),
            r.worker
        );
    }
    if rows.len() > SHOWN {
        println!("    … {} more entries", rows.len() - SHOWN);
    }
    if !verify {
        println!("    (no worker keys given with --worker-key: the trail is shown, not verified)");
        return Ok(!rows.is_empty());
    }
    println!(
        "    {} entries for the twin ({} for all of alice's twins, in {} signed batches); {} of its deliveries checked: {} without an entry, {} unknown signers, {} malformed",
        rows.len(),
        report.entries,
        report.batches,
        report.deliveries_checked,
        report.gap_count,
        report.unknown_signers.len(),
        report.malformed + report.bad_signatures
    );
    Ok(!rows.is_empty() && !report.flagged())
}
