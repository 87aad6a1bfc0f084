//! `atctl owner` subcommands of issue 6 (history replay, device replacement, key backup and
//! restore), kept apart from `main.rs` so that the clap layer there only gains one line.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use zeroize::Zeroizing;

use crate::backup;
use crate::kafka::Ctl;

/// The subcommands (flattened into `atctl owner`).
#[derive(Subcommand, Debug)]
pub enum HistoryCmd {
    /// Back up the owner's keys: a password file (Argon2id + AES-256-GCM) with --file, or
    /// k-of-n Shamir shares for trustees with --shares K/N --out PREFIX.
    Backup {
        /// Write a password-protected file here.
        #[arg(long, conflicts_with = "shares")]
        file: Option<PathBuf>,
        /// Split into shares: K/N (e.g. 2/3), written as PREFIX-<i>-of-<N>.share.
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
    _ctl: impl Fn() -> anyhow::Result<Ctl>,
) -> anyhow::Result<()> {
    match cmd {
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
            bundle.restore_to(dir)?;
            println!(
                "owner {} restored into {}: it can grant and revoke as before",
                bundle.owner_id(),
                dir.display()
            );
        }
    }
    let _ = Duration::ZERO;
    Ok(())
}
