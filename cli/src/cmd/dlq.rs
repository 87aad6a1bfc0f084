//! `atctl dlq`: an operator's view of the dead letters (`at.dlq.v1`): list, show, count, re-drive.

use anyhow::Context;
use armored_base::time::now_ms;
use armored_client::dlq::{self, DeadLetter, Filter};
use armored_client::when::{format_utc, parse_since};
use clap::Subcommand;

use super::Connect;

/// Dead letters: what the services refused, and why.
#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    cmd: DlqCmd,
}

/// Which dead letters.
#[derive(clap::Args, Debug, Clone)]
pub struct FilterArgs {
    /// Only this reason (e.g. bad_signature, unknown_twin, malformed).
    #[arg(long)]
    reason: Option<String>,
    /// Only from this service (ingest, reencrypt, mpc-node).
    #[arg(long)]
    service: Option<String>,
    /// Only those dead-lettered since (1h, a Unix time in ms, or 2026-12-07T10:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Only those dead-lettered before (same forms; a duration counts back from now).
    #[arg(long)]
    until: Option<String>,
    /// Only this twin's (the record key, or the envelope header's twin).
    #[arg(long)]
    twin: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
        let now = now_ms();
        let at = |s: &Option<String>, what: &str| -> anyhow::Result<Option<u64>> {
            s.as_deref()
                .map(|s| parse_since(s, now).map_err(anyhow::Error::msg))
                .transpose()
                .with_context(|| format!("--{what}"))
        };
        // `--until` takes the forms of `--since`: a duration is a time ago.
        Ok(Filter {
            reason: self.reason.clone(),
            service: self.service.clone(),
            since_ms: at(&self.since, "since")?,
            until_ms: at(&self.until, "until")?,
            twin: self.twin.clone(),
        })
    }
}

#[derive(Subcommand, Debug)]
enum DlqCmd {
    /// List dead letters (oldest first per partition) as a table, or JSON lines.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Only the newest N.
        #[arg(long)]
        last: Option<usize>,
    },
    /// One dead letter in full: its headers and what can be read of it without keys.
    Show {
        /// PARTITION:OFFSET, as `list` shows it.
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Dead letters by service and reason.
    Count {
        #[command(flatten)]
        filter: FilterArgs,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write dead letters back to their source topic once their cause is fixed; each is re-driven
    /// once (a second re-drive says so and writes nothing). Prints one JSON line per dead letter.
    Redrive {
        /// PARTITION:OFFSET of each dead letter to re-drive.
        ids: Vec<String>,
        /// Instead of ids: every dead letter the filters keep (at least one filter).
        #[arg(long)]
        matching: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

fn read(connect: &Connect, filter: &Filter) -> anyhow::Result<Vec<DeadLetter>> {
    let ctl = connect.operator()?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("reading the DLQ {bar:30} {pos}/{len} records")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let letters = dlq::read(&ctl, filter, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    Ok(letters?)
}

fn time(d: &DeadLetter) -> String {
    d.time_ms
        .and_then(|t| u64::try_from(t).ok())
        .map_or_else(|| "-".into(), format_utc)
}

fn table(letters: &[DeadLetter]) -> String {
    let mut out = format!(
        "{:<12} {:<20} {:<10} {:<22} {:<34} {:<24} {:>8}  {}\n",
        "ID", "TIME", "SERVICE", "REASON", "SOURCE", "KEY", "BYTES", "REDRIVEN"
    );
    for d in letters {
        let source = if d.source_partition >= 0 {
            format!(
                "{}[{}]@{}",
                d.source_topic, d.source_partition, d.source_offset
            )
        } else {
            d.source_topic.clone()
        };
        out.push_str(&format!(
            "{:<12} {:<20} {:<10} {:<22} {:<34} {:<24} {:>8}  {}\n",
            d.id(),
            time(d),
            d.service,
            d.reason,
            source,
            d.key,
            d.bytes,
            d.redriven_by.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// Runs one `dlq` command.
pub async fn run(args: DlqArgs, connect: &Connect) -> anyhow::Result<()> {
    match args.cmd {
        DlqCmd::List { filter, json, last } => {
            let mut letters = read(connect, &filter.filter()?)?;
            if let Some(n) = last {
                letters.sort_by_key(|d| d.time_ms);
                letters.drain(..letters.len().saturating_sub(n));
            }
            if json {
                for d in &letters {
                    println!("{}", serde_json::to_string(d)?);
                }
            } else {
                print!("{}", table(&letters));
                eprintln!("{} dead letter(s)", letters.len());
            }
        }
        DlqCmd::Show { id, json } => {
            let letters = read(connect, &Filter::default())?;
            let d = dlq::find(&letters, &id)?;
            let decoded = dlq::decode(&d.payload);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"dead_letter": d, "decoded": decoded})
                    )?
                );
            } else {
                println!("dead letter {} ({})", d.id(), time(d));
                println!("  service      {}", d.service);
                println!("  reason       {}", d.reason);
                println!("  detail       {}", d.detail);
                println!(
                    "  source       {} partition {} offset {}",
                    d.source_topic, d.source_partition, d.source_offset
                );
                println!("  key          {}", d.key);
                println!("  bytes        {}", d.bytes);
                println!(
                    "  re-driven    {}",
                    d.redriven_by.as_deref().unwrap_or("no")
                );
                println!("  payload      {}", decoded.kind);
                if let Some(t) = &decoded.twin {
                    println!("    twin       {t}");
                    println!(
                        "    device     {}",
                        decoded.device.as_deref().unwrap_or("-")
                    );
                    println!(
                        "    writer key {}",
                        decoded.writer_key_id.as_deref().unwrap_or("-")
                    );
                    println!(
                        "    seq {} epoch {}",
                        decoded.seq.unwrap_or(0),
                        decoded.epoch.unwrap_or(0)
                    );
                    println!("    attributes {}", decoded.attributes.join(","));
                }
                println!("  first bytes  {}", decoded.head_hex);
            }
        }
        DlqCmd::Count { filter, json } => {
            let letters = read(connect, &filter.filter()?)?;
            let counts = dlq::count(&letters);
            for ((service, reason), n) in &counts {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"service": service, "reason": reason, "count": n})
                    );
                } else {
                    println!("{n:>8}  {service:<10} {reason}");
                }
            }
            if !json {
                println!("{:>8}  total", letters.len());
            }
        }
        DlqCmd::Redrive {
            ids,
            matching,
            filter,
        } => {
            let f = filter.filter()?;
            let chosen: Vec<DeadLetter> = match (matching, ids.is_empty()) {
                (true, true) => {
                    anyhow::ensure!(
                        f.reason.is_some()
                            || f.service.is_some()
                            || f.since_ms.is_some()
                            || f.until_ms.is_some()
                            || f.twin.is_some(),
                        "--matching needs at least one filter (--reason, --service, --since, --until, --twin)"
                    );
                    read(connect, &f)?
                }
                (false, false) => {
                    let all = read(connect, &Filter::default())?;
                    ids.iter()
                        .map(|id| dlq::find(&all, id).cloned())
                        .collect::<Result<_, _>>()?
                }
                _ => anyhow::bail!(
                    "name dead letters by id, or pass --matching with filters (not both)"
                ),
            };
            let ctl = connect.operator()?;
            for d in &chosen {
                let r = dlq::redrive(&ctl, d).await?;
                println!("{}", serde_json::to_string(&r)?);
            }
        }
    }
    Ok(())
}
