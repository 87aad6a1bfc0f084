//! `atctl twin`: an owner's twins and their state, decrypted on this machine from the log
//! (`armored_client::twin`).

use std::path::PathBuf;

use armored_client::owner::Owner;
use armored_client::twin::{self, TwinLog, Viewer};
use armored_client::when::{format_utc, parse_until, utc_ms};
use clap::{Args, Subcommand};

use super::Connect;

/// `atctl twin`.
#[derive(Args, Debug)]
pub struct TwinArgs {
    /// Owner directory (keys, identity, ledger of grants, twin checkpoints).
    #[arg(long, env = "AT_OWNER_DIR", default_value = "owner")]
    dir: PathBuf,
    /// Read as this service instead (its directory): its own deliveries, the subset its grants
    /// admit (`show` only).
    #[arg(long, value_name = "DIR")]
    service: Option<PathBuf>,
    #[command(subcommand)]
    cmd: TwinCmd,
}

#[derive(Subcommand, Debug)]
enum TwinCmd {
    /// A twin's current state (or its state at a time, or its history), decrypted with the
    /// owner's key from at.sync.v1. Reads only what came since the last call (a checkpoint in
    /// the owner directory's twins/).
    Show {
        /// The twin id.
        twin: String,
        /// The state as of this time (changes observed up to it): `YYYY-MM-DDTHH:MM[:SS]Z` or unix ms.
        #[arg(long, conflicts_with = "history")]
        at: Option<String>,
        /// Every change instead: time, writer, seq, fields changed.
        #[arg(long)]
        history: bool,
        /// With --history: from this time on.
        #[arg(long, requires = "history")]
        from: Option<String>,
        /// With --history: up to this time.
        #[arg(long, requires = "history")]
        to: Option<String>,
        /// JSON (one object; with --history one change per line).
        #[arg(long)]
        json: bool,
        /// Read the log from its beginning again (a revocation since the checkpoint, say).
        #[arg(long)]
        rescan: bool,
    },
    /// The owner's twins: devices, last change (as far as `twin show` has read) and grants.
    List {
        /// Read each twin's log up to now first (as `twin show` does) for its last change.
        #[arg(long)]
        scan: bool,
    },
}

/// A time for --at/--from/--to: an RFC 3339 UTC time or unix ms.
fn time(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    if t.contains('T') {
        return utc_ms(t).map_err(|why| anyhow::anyhow!("{t:?}: {why} (YYYY-MM-DDTHH:MM[:SS]Z)"));
    }
    parse_until(t, 0)
        .ok()
        .filter(|_| t.len() >= 13)
        .ok_or_else(|| anyhow::anyhow!("{t:?} is neither YYYY-MM-DDTHH:MM[:SS]Z nor unix ms"))
}

async fn read(
    viewer: Viewer<'_>,
    connect: &Connect,
    twin: &str,
    rescan: bool,
) -> anyhow::Result<TwinLog> {
    let ctl = match viewer {
        Viewer::Owner(_) => connect.owner()?,
        Viewer::Service(dir) => connect.service(dir)?,
    };
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("reading the log {bar:30} {pos}/{len} records")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let log = twin::load(viewer, &ctl, twin, rescan, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    let log = log?;
    eprintln!(
        "read {} log records since the last call in {:.2} s",
        log.read_now,
        started.elapsed().as_secs_f64()
    );
    Ok(log)
}

/// Runs `atctl twin …`.
pub async fn run(a: TwinArgs, connect: &Connect) -> anyhow::Result<()> {
    match a.cmd {
        TwinCmd::Show {
            twin,
            at,
            history,
            from,
            to,
            json,
            rescan,
        } => {
            let owner;
            let viewer = match &a.service {
                Some(dir) => Viewer::Service(dir),
                None => {
                    owner = Owner::open(&a.dir)?;
                    Viewer::Owner(&owner)
                }
            };
            let log = read(viewer, connect, &twin, rescan).await?;
            print_show(&twin, &log, at, history, from, to, json)?;
        }
        TwinCmd::List { scan } => {
            if a.service.is_some() {
                anyhow::bail!(
                    "--service works with `twin show` only (a service's list is its grants)"
                );
            }
            let o = Owner::open(&a.dir)?;
            let ctl = connect.owner()?;
            let r = ctl.registry().await?;
            let mine = o.pre_key().key_id();
            let mut twins: Vec<String> = r
                .twin_ids()
                .filter(|t| r.twin_owner(t).is_some_and(|w| w.pre.key_id() == mine))
                .cloned()
                .collect();
            twins.sort();
            let ledger = o.ledger()?;
            println!(
                "{:<24} {:<28} {:<20} GRANTS (active re-keys that can reach it)",
                "TWIN", "DEVICES", "LAST CHANGE"
            );
            for t in twins {
                let devices: Vec<String> = r
                    .twin(&t)
                    .map(|e| {
                        e.devices
                            .keys()
                            .map(|d| {
                                let revoked = r.device(&t, d).is_none();
                                format!("{d}{}", if revoked { " (revoked)" } else { "" })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let last = if scan {
                    read(Viewer::Owner(&o), connect, &t, false)
                        .await?
                        .last_change_ms()
                } else {
                    twin::checkpoint(&o, &t)?.and_then(|l| l.last_change_ms())
                };
                let scope = format!("twin:{t}");
                let grants: Vec<String> = ledger
                    .iter()
                    .filter(|e| !e.revoked && e.receiver_kind != "device")
                    .filter(|e| {
                        // A re-key reaches the twin if its policy names it, or names no twin.
                        let mut tokens = e
                            .policy
                            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':'));
                        tokens.any(|tok| tok == scope) || !e.policy.contains("twin:")
                    })
                    .map(|e| format!("{} ({})", e.receiver_id, e.policy))
                    .collect();
                println!(
                    "{t:<24} {:<28} {:<20} {}",
                    devices.join(", "),
                    last.map_or_else(|| "-".into(), format_utc),
                    grants.join("; ")
                );
            }
        }
    }
    Ok(())
}

/// Prints what `twin show` shows: the state (now or `--at`), or the history.
fn print_show(
    twin: &str,
    log: &TwinLog,
    at: Option<String>,
    history: bool,
    from: Option<String>,
    to: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    if history {
        let (from, to) = (from.as_deref().map(time), to.as_deref().map(time));
        let changes = log.history(from.transpose()?, to.transpose()?);
        for c in changes {
            if json {
                println!("{}", serde_json::to_string(c)?);
            } else {
                let fields: Vec<String> =
                    c.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "{}  {:<24} seq {:<6} {}",
                    format_utc(c.observed_at_ms),
                    c.writer,
                    c.seq,
                    fields.join(" ")
                );
            }
        }
    } else {
        let at_ms = at.as_deref().map(time).transpose()?;
        let state = log.state_at(at_ms);
        if json {
            let out = serde_json::json!({
                "twin": twin,
                "at_ms": at_ms,
                "state": state.iter().map(|(k, f)| (k.clone(), f.value.clone())).collect::<serde_json::Map<_, _>>(),
                "fields": state,
                "changes": log.changes.len(),
                "refused": log.refused,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            match at_ms {
                Some(t) => println!("twin {twin} as of {}", format_utc(t)),
                None => println!("twin {twin}"),
            }
            for (k, f) in &state {
                println!(
                    "  {k:<20} {:<24} set by {} (seq {}) at {}",
                    f.value.to_string(),
                    f.writer,
                    f.seq,
                    format_utc(f.observed_at_ms)
                );
            }
            println!(
                "{} changes{}",
                log.changes.len(),
                if log.refused > 0 {
                    format!(
                        "; {} records refused (did not open or verify, or a revoked writer)",
                        log.refused
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}
