//! `atctl owner` subcommands of issue 6 (history replay, device replacement, key backup and
//! restore), kept apart from `main.rs` so that the clap layer there only gains one line.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use zeroize::Zeroizing;

use armored_client::kafka::Ctl;
use armored_client::owner::backup;
use armored_client::owner::Owner;
use armored_client::replay::{self as history, ReplayStatus};

fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim_end_matches('s');
    t.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|_| format!("{s:?} is not a duration in seconds (e.g. 5s)"))
}

fn show(s: &ReplayStatus) {
    println!(
        "replay {} [{}]: scanned {}/{} stored records, {} of the owner's twins from the epoch, {} admitted and delivered{}{}",
        &s.request_id[..s.request_id.len().min(8)],
        s.state,
        s.scanned,
        s.total,
        s.matched,
        s.delivered,
        if s.skipped > 0 {
            format!(", {} skipped", s.skipped)
        } else {
            String::new()
        },
        if s.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.detail)
        }
    );
}

/// Follows a replay and fails unless it finished (done).
async fn follow(ctl: &Ctl, id: &str, wait: Duration) -> anyhow::Result<()> {
    if wait.is_zero() {
        println!("follow it with: atctl owner replay-status --id {id}");
        return Ok(());
    }
    match history::watch_replay(ctl, id, wait, show).await? {
        Some(s) if s.state == "done" => Ok(()),
        Some(s) if s.is_final() => bail!("replay {id} ended {}: {}", s.state, s.detail),
        Some(_) => bail!("replay {id} still running after {wait:?} (atctl owner replay-status --id {id})"),
        None => bail!(
            "no worker reported on replay {id} within {wait:?}: are workers running? (a refused request is dead-lettered)"
        ),
    }
}

/// `atctl owner grant --from … [--until …]`: grant the window, then replay the history from its
/// first epoch.
pub async fn grant_from(
    o: &Owner,
    ctl: &Ctl,
    to: &str,
    policy: &str,
    window: armored_client::owner::EpochWindow,
) -> anyhow::Result<()> {
    let (rk, id) = history::grant_window_with_history(o, ctl, to, policy, window).await?;
    println!(
        "granted {to} re-key {rk} (epochs {}); history requested (replay {id})",
        window.describe()
    );
    follow(ctl, &id, Duration::from_secs(120)).await
}

/// The subcommands (flattened into `atctl owner`).
#[derive(Subcommand, Debug)]
pub enum HistoryCmd {
    /// Re-encrypt the stored history for an existing re-key (an owner-signed ReplayRequest on
    /// at.control.v1) and show the workers' progress.
    Replay {
        /// The re-key (hex id, see `atctl owner grants`).
        #[arg(long)]
        rk: String,
        /// From this epoch or time (an epoch number, @unix-seconds, `YYYY-MM-DDTHH:MM[:SS]Z`, -2h).
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        from: String,
        /// Epoch length used to turn a time into an epoch.
        #[arg(long, default_value_t = 3_600_000)]
        epoch_len_ms: u64,
        /// Follow the progress this long (0: do not wait).
        #[arg(long, default_value = "120s", value_parser = parse_secs)]
        wait: Duration,
    },
    /// Show the progress of a replay request.
    ReplayStatus {
        /// The request id printed by `replay`.
        #[arg(long)]
        id: String,
        /// Follow it this long.
        #[arg(long, default_value = "5s", value_parser = parse_secs)]
        wait: Duration,
    },
    /// M3: replace a device of a twin: revoke the old device's re-keys, revoke its key for changes
    /// after the last one it stored (its past changes stay trusted), enroll the new device, and
    /// replay the twin's history to it. Connect the new device first (its MQTT session must exist
    /// for the history to be queued for it).
    ReplaceDevice {
        /// The old device id (in the new card's twin).
        #[arg(long)]
        old: String,
        /// The new device's card (device.json).
        #[arg(long)]
        new: PathBuf,
        /// The old key's last trusted seq (default: the last one it stored).
        #[arg(long)]
        last_seq: Option<u64>,
        /// Replay from this epoch or time (default: everything).
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        from: String,
        /// Follow the replay's progress this long (0: do not wait).
        #[arg(long, default_value = "120s", value_parser = parse_secs)]
        wait: Duration,
    },
    /// Back up the owner's keys: a password file (Argon2id + AES-256-GCM) with --file, or
    /// k-of-n Shamir shares for trustees with --shares K/N --out PREFIX.
    Backup {
        /// Write a password-protected file here.
        #[arg(long, conflicts_with = "shares")]
        file: Option<PathBuf>,
        /// Split into shares: K/N (e.g. 2/3), written as `PREFIX-<i>-of-<N>.share`.
        #[arg(long, requires = "out")]
        shares: Option<String>,
        /// Prefix of the share files.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Read the password from this file (else AT_BACKUP_PASSWORD, else one line of stdin).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Restore an owner directory (--dir) from a password file or from share files.
    Restore {
        /// A password-protected backup file.
        #[arg(long, conflicts_with = "share")]
        file: Option<PathBuf>,
        /// Share files (repeat, or comma-separate): at least the threshold of them.
        #[arg(long, value_delimiter = ',')]
        share: Vec<PathBuf>,
        /// Read the password from this file (else AT_BACKUP_PASSWORD, else one line of stdin).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

fn password(file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let mut p = Zeroizing::new(String::new());
    if let Some(f) = file {
        *p = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
    } else if let Ok(v) = std::env::var("AT_BACKUP_PASSWORD") {
        *p = v;
    } else {
        eprint!("backup password: ");
        std::io::stdin().lock().read_line(&mut p)?;
    }
    let trimmed = Zeroizing::new(p.trim_end_matches(['\r', '\n']).to_string());
    Ok(trimmed)
}

fn parse_k_of_n(s: &str) -> anyhow::Result<(u8, u8)> {
    let (k, n) = s
        .split_once(['/', ':'])
        .or_else(|| s.split_once("of"))
        .context("--shares takes K/N, e.g. 2/3")?;
    Ok((
        k.trim().parse().context("K is a number 2..=255")?,
        n.trim().parse().context("N is a number 2..=255")?,
    ))
}

/// Runs one subcommand for the owner in `dir`.
pub async fn run(
    dir: &Path,
    cmd: HistoryCmd,
    ctl: impl Fn() -> anyhow::Result<Ctl>,
) -> anyhow::Result<()> {
    let now = armored_base::time::now_ms();
    match cmd {
        HistoryCmd::Replay {
            rk,
            from,
            epoch_len_ms,
            wait,
        } => {
            let o = Owner::open(dir)?;
            let epoch = history::parse_from(&from, epoch_len_ms, now)?;
            let ctl = ctl()?;
            let id = history::request_replay(&o, &ctl, &rk, epoch).await?;
            println!("replay {id} of re-key {rk} from epoch {epoch} requested");
            follow(&ctl, &id, wait).await?;
        }
        HistoryCmd::ReplayStatus { id, wait } => {
            if history::watch_replay(&ctl()?, &id, wait, show)
                .await?
                .is_none()
            {
                println!("no progress reported for replay {id} (yet)");
            }
        }
        HistoryCmd::ReplaceDevice {
            old,
            new,
            last_seq,
            from,
            wait,
        } => {
            let o = Owner::open(dir)?;
            let card: armored_device::Card = serde_json::from_slice(
                &std::fs::read(&new).with_context(|| format!("reading {}", new.display()))?,
            )
            .context("not a device card (device.json from at-device setup)")?;
            let epoch = history::parse_from(&from, card.epoch_len_ms, now)?;
            let ctl = ctl()?;
            let r = history::replace_device(&o, &ctl, &old, &card, last_seq).await?;
            println!(
                "{}/{old} replaced by {}: {} re-key(s) revoked, its key trusted up to seq {}, new re-key {}",
                card.twin_id, card.device_id, r.revoked_rekeys, r.last_valid_seq, r.new_rk
            );
            // The bridge pushes the twin's roster (with the old key and its bound) on the
            // enrollment; give it a moment so the history does not reach the device first.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let id = history::request_replay(&o, &ctl, &r.new_rk, epoch).await?;
            println!("history from epoch {epoch} requested for the new device (replay {id})");
            follow(&ctl, &id, wait).await?;
        }
        HistoryCmd::Backup {
            file,
            shares,
            out,
            password_file,
        } => match (file, shares, out) {
            (Some(file), None, _) => {
                let pw = password(password_file.as_deref())?;
                backup::backup_password(dir, &file, pw.as_bytes())?;
                println!(
                    "owner keys of {} written to {} (Argon2id + AES-256-GCM, mode 600)",
                    dir.display(),
                    file.display()
                );
            }
            (None, Some(kn), Some(out)) => {
                let (k, n) = parse_k_of_n(&kn)?;
                let paths = backup::backup_shares(dir, &out, k, n)?;
                println!("{n} shares written; any {k} of them restore the owner:");
                for p in paths {
                    println!("  {}", p.display());
                }
                println!("give each to a different trustee; each file alone reveals nothing");
            }
            _ => bail!("say how: --file FILE, or --shares K/N --out PREFIX"),
        },
        HistoryCmd::Restore {
            file,
            share,
            password_file,
        } => {
            let bundle = match (file, share.is_empty()) {
                (Some(f), true) => {
                    let pw = password(password_file.as_deref())?;
                    backup::open_password(&f, pw.as_bytes())?
                }
                (None, false) => backup::open_shares(&share)?,
                _ => bail!("say from what: --file FILE, or --share FILE (at least the threshold)"),
            };
            backup::restore(&bundle, dir)?;
            println!(
                "owner {} restored into {}: it can grant and revoke as before",
                bundle.owner_id(),
                dir.display()
            );
        }
    }
    Ok(())
}
