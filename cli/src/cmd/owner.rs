//! `atctl owner`: the owner's management device (phases 1 and 2, M1, tokens, history replay,
//! device replacement, key backup).

use std::path::PathBuf;

use anyhow::Context;
use armored_client::owner::Owner;
use clap::Subcommand;

use super::Connect;

/// The owner's directory and what to do with it.
#[derive(clap::Args, Debug)]
pub struct OwnerArgs {
    /// Owner directory (keys, identity, ledger of grants).
    #[arg(long, env = "AT_OWNER_DIR", default_value = "owner")]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: OwnerCmd,
}

#[derive(Subcommand, Debug)]
pub enum OwnerCmd {
    /// Phase 1: create the owner's keys and publish its identity (with proof of knowledge).
    Init {
        #[arg(long)]
        id: String,
    },
    /// Phase 1: enroll a device from its card (device.json, received out of band) and grant it
    /// `twin:<id> AND (sync OR req)`.
    EnrollDevice {
        /// The device's card.
        card: PathBuf,
    },
    /// Pin a service's or MPC node's identity file (shows the fingerprint to compare).
    Trust {
        /// The identity file.
        identity: PathBuf,
    },
    /// Phase 2: grant a pinned party exactly POLICY, e.g. 'sync AND location'.
    Grant {
        /// Party id (pinned with `owner trust`).
        #[arg(long)]
        to: String,
        /// Policy text: AND, OR, k-of-n gates `2of3(a, b, c)`, parentheses.
        #[arg(long)]
        policy: String,
        /// Admit epochs from this epoch or time on (the epoch containing it), and re-encrypt the
        /// stored history from it: an epoch number, @unix-seconds, `YYYY-MM-DDTHH:MM[:SS]Z`, or -2h.
        #[arg(
            long = "from",
            visible_alias = "from-epoch",
            allow_hyphen_values = true
        )]
        from: Option<String>,
        /// Admit only epochs that end by this epoch or time (exclusive): an epoch number, a
        /// duration from now (12h, 7d), unix ms, or `YYYY-MM-DDTHH:MM[:SS]Z`. With --from, a
        /// time-windowed grant: the workers re-encrypt nothing outside it, live or replayed.
        #[arg(long)]
        until: Option<String>,
        /// Epoch length used to turn a time into an epoch (the twins' default: 1 h).
        #[arg(long, default_value_t = 3_600_000)]
        epoch_len_ms: u64,
    },
    /// Phase 2+: grant three pinned MPC nodes share numbers 1, 2, 3 (`mpc-share AND node-j AND
    /// location`); refuses to map two share numbers to one node, ever.
    GrantMpc {
        /// The three node ids, in share order: id1,id2,id3.
        #[arg(long, value_delimiter = ',', num_args = 3)]
        nodes: Vec<String>,
    },
    /// M2: replace MPC node J by the pinned node NEW: the old node's node-J re-key is revoked,
    /// NEW gets it (refused if NEW ever held another share number). Jobs then name NEW.
    ReplaceNode {
        /// The share number (1, 2 or 3).
        #[arg(long)]
        index: u32,
        /// The new node's party id (pinned with `owner trust`).
        #[arg(long)]
        new: String,
    },
    /// M1: revoke a re-key or process token (by id) or everything granted to a receiver.
    Revoke {
        /// A re-key id (hex).
        #[arg(long, conflicts_with_all = ["receiver", "process_token"])]
        rk: Option<String>,
        /// A process token id (hex).
        #[arg(long, conflicts_with = "receiver")]
        process_token: Option<String>,
        /// A receiver id (a service id, or twin/device).
        #[arg(long)]
        receiver: Option<String>,
        /// A write token id (hex).
        #[arg(long, conflicts_with_all = ["rk", "receiver"])]
        write_token: Option<String>,
    },
    /// Phase 2+: issue a process token: the receiver may have the MPC nodes compute FUNCTION
    /// with exactly these parameters over this owner's shares (policy: see --policy).
    ProcessToken(ProcessTokenArgs),
    /// Phase 2: let a service write TWIN until a time (an owner-signed write token on at.tokens.v1).
    WriteToken {
        /// The writer's identity file (from `atctl service init`).
        #[arg(long)]
        writer: PathBuf,
        #[arg(long)]
        twin: String,
        /// A duration from now (90s, 2h, 7d), Unix ms, or RFC 3339 UTC.
        #[arg(long)]
        until: String,
        /// Where to write the token (default: OWNER_DIR/write-tokens/ID.token).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The re-keys and tokens this owner issued.
    Grants,
    /// Pin a re-encryption worker's audit key: the worker-audit.pub in its state directory (or the
    /// hex key it logs at start). `owner audit --verify` flags batches signed by any other key.
    TrustWorker {
        /// The worker's worker-audit.pub, or the hex SEC1 key.
        #[arg(value_name = "FILE_OR_HEX")]
        key: String,
        /// A note kept beside the key (e.g. the worker's instance).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// The audit trail of this owner's twins: who received which twin's data, when, under which
    /// grant (from the workers' signed entries on at.audit.v1); --verify checks signatures and
    /// flags deliveries without an entry.
    Audit(super::audit::AuditArgs),
    /// Print the path of the owner's identity file (what devices pin).
    Identity,
    /// History replay, device replacement, key backup and restore (issue 6).
    #[command(flatten)]
    History(super::history::HistoryCmd),
}

#[derive(clap::Args, Debug)]
pub struct ProcessTokenArgs {
    /// The receiver's identity file (it submits jobs; output shares are sealed to its HPKE key).
    #[arg(long)]
    receiver: PathBuf,
    /// The function granted.
    #[arg(long, default_value = armored_client::owner::CONTACT_TRACING)]
    function: String,
    /// Exact contact distance d (< 65536).
    #[arg(long)]
    distance: u32,
    /// Slot length in ms (the devices' enrolled slot length).
    #[arg(long)]
    slot_len: u64,
    /// The window length in slots. Jobs run over [k·L, (k+1)·L) only: no two windows overlap, so
    /// two jobs cannot be differenced to learn one slot. Nodes refuse windows over their
    /// max_window_slots (2016 by default).
    #[arg(long, value_name = "SLOTS")]
    window: u32,
    /// Jobs per window and participant.
    #[arg(long)]
    max_jobs: u32,
    /// The identity file of the party that names the reference twin (e.g. a health authority).
    #[arg(long)]
    designator: PathBuf,
    /// Expiry: a duration (7d, 12h), unix ms, or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long)]
    until: String,
    /// Policy every input share must satisfy (default: `mpc-share AND location`, scoped to --twin).
    #[arg(long)]
    policy: Option<String>,
    /// Scope the default policy to these twins (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "policy")]
    twin: Vec<String>,
}

/// Runs one owner command.
pub async fn run(args: OwnerArgs, connect: &Connect) -> anyhow::Result<()> {
    let OwnerArgs { dir, cmd } = args;
    let ctl = || connect.owner();
    match cmd {
        OwnerCmd::Init { id } => {
            let o = Owner::init(&dir, &id, &ctl()?).await?;
            println!(
                "owner {:?} created in {}; identity published to the registry",
                o.owner_id,
                dir.display()
            );
            println!("devices pin {}", dir.join("owner.identity").display());
        }
        OwnerCmd::Identity => println!("{}", dir.join("owner.identity").display()),
        OwnerCmd::EnrollDevice { card } => {
            let o = Owner::open(&dir)?;
            let card: armored_device::Card = serde_json::from_slice(
                &std::fs::read(&card).with_context(|| format!("reading {}", card.display()))?,
            )
            .context("not a device card (device.json from at-device setup)")?;
            let rk = o.enroll_device(&ctl()?, &card).await?;
            println!(
                "enrolled {}/{}; re-key {rk} for 'twin:{} AND (sync OR req)'",
                card.twin_id, card.device_id, card.twin_id
            );
            println!(
                "give it an MQTT login: infra/mqtt-user.sh add {}/{} (the password on standard input)",
                card.twin_id, card.device_id
            );
        }
        OwnerCmd::Trust { identity } => {
            let o = Owner::open(&dir)?;
            let bytes = std::fs::read(&identity)
                .with_context(|| format!("reading {}", identity.display()))?;
            let (p, fp) = o.trust(&ctl()?, &bytes).await?;
            println!("pinned {:?} {} — fingerprint {fp}", p.kind, p.party_id);
            println!("compare the fingerprint with the party out of band before granting anything");
        }
        OwnerCmd::Grant {
            to,
            policy,
            from,
            until,
            epoch_len_ms,
        } => {
            let o = Owner::open(&dir)?;
            let now = armored_base::time::now_ms();
            let until_epoch = until
                .map(|u| armored_client::replay::parse_until_epoch(&u, epoch_len_ms, now))
                .transpose()?;
            match from {
                None => {
                    let window = armored_client::owner::EpochWindow {
                        from_epoch: None,
                        until_epoch,
                    };
                    let rk = o.grant_window(&ctl()?, &to, &policy, window).await?;
                    println!("granted {to} re-key {rk} (epochs {})", window.describe());
                }
                Some(f) => {
                    let from_epoch = armored_client::replay::parse_from(&f, epoch_len_ms, now)?;
                    let window = armored_client::owner::EpochWindow {
                        from_epoch: Some(from_epoch),
                        until_epoch,
                    };
                    super::history::grant_from(&o, &ctl()?, &to, &policy, window).await?
                }
            }
        }
        OwnerCmd::ReplaceNode { index, new } => {
            let o = Owner::open(&dir)?;
            let (old, rk) = o.replace_node(&ctl()?, index, &new).await?;
            println!(
                "node-{index}: revoked {} re-key(s) ({}); granted {new} re-key {rk}",
                old.len(),
                old.join(", ")
            );
        }
        OwnerCmd::GrantMpc { nodes } => {
            let o = Owner::open(&dir)?;
            let nodes: [String; 3] = nodes
                .try_into()
                .map_err(|_| anyhow::anyhow!("--nodes takes exactly three node ids"))?;
            for (j, rk) in o.grant_mpc(&ctl()?, &nodes).await?.iter().enumerate() {
                println!("granted {} node-{} re-key {rk}", nodes[j], j + 1);
            }
        }
        OwnerCmd::ProcessToken(a) => {
            let o = Owner::open(&dir)?;
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let req = armored_client::owner::ProcessTokenRequest {
                receiver_identity: read(&a.receiver)?,
                designator_identity: read(&a.designator)?,
                function: a.function,
                distance: a.distance,
                slot_len_ms: a.slot_len,
                window_slots: a.window,
                max_jobs_per_window: a.max_jobs,
                not_after_ms: armored_client::owner::parse_until(
                    &a.until,
                    armored_base::time::now_ms(),
                )?,
                policy: a.policy,
                twins: a.twin,
            };
            let (id, _) = o.process_token(&ctl()?, &req).await?;
            println!("issued process token {id} (revoke: atctl owner revoke --process-token {id})");
        }
        OwnerCmd::Revoke {
            rk,
            process_token: Some(t),
            ..
        } if rk.is_none() => {
            let o = Owner::open(&dir)?;
            o.revoke_process_token(&ctl()?, &t).await?;
            println!("revoked process token {t} (sticky; finished jobs are not recalled)");
        }
        OwnerCmd::WriteToken {
            writer,
            twin,
            until,
            out,
        } => {
            let o = Owner::open(&dir)?;
            let now = armored_base::time::now_ms();
            let until =
                armored_client::when::parse_until(&until, now).map_err(anyhow::Error::msg)?;
            let identity =
                std::fs::read(&writer).with_context(|| format!("reading {}", writer.display()))?;
            let (e, token) = armored_client::owner::write_tokens::issue(
                &o,
                &ctl()?,
                &identity,
                &twin,
                now,
                until,
            )
            .await?;
            let out = out.unwrap_or_else(|| {
                dir.join("write-tokens")
                    .join(format!("{}.token", e.token_id))
            });
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&out, token)?;
            println!(
                "write token {} lets {} write {} until {} ms; token file {}",
                e.token_id,
                e.writer_id,
                e.twin_id,
                e.not_after_ms,
                out.display()
            );
        }
        OwnerCmd::Revoke {
            write_token: Some(id),
            ..
        } => {
            let o = Owner::open(&dir)?;
            armored_client::owner::write_tokens::revoke(&o, &ctl()?, &id).await?;
            println!("revoked write token {id} (sticky; pushed to the twin's devices)");
        }
        OwnerCmd::Revoke { rk, receiver, .. } => {
            let o = Owner::open(&dir)?;
            match (rk, receiver) {
                (Some(rk), _) => {
                    o.revoke_rekey(&ctl()?, &rk).await?;
                    println!("revoked re-key {rk} (sticky; deliveries already produced are not recalled)");
                }
                (None, Some(r)) => {
                    let n = o.revoke_receiver(&ctl()?, &r).await?;
                    println!("revoked {n} re-key(s) of {r}");
                }
                (None, None) => {
                    anyhow::bail!(
                        "say what to revoke: --rk <id>, --process-token <id>, --write-token <id> or --receiver <id>"
                    )
                }
            }
        }
        OwnerCmd::History(h) => super::history::run(&dir, h, &ctl).await?,
        OwnerCmd::TrustWorker { key, note } => super::audit::trust_worker(&dir, &key, &note)?,
        OwnerCmd::Audit(a) => super::audit::run(&dir, a, connect).await?,
        OwnerCmd::Grants => {
            let o = Owner::open(&dir)?;
            println!(
                "{:<34} {:<13} {:<22} {:<8} {:<24} POLICY",
                "RK", "KIND", "RECEIVER", "STATE", "EPOCHS"
            );
            for e in o.ledger()? {
                println!(
                    "{:<34} {:<13} {:<22} {:<8} {:<24} {}",
                    e.rk_id,
                    e.receiver_kind,
                    e.receiver_id,
                    if e.revoked { "revoked" } else { "active" },
                    e.window.describe(),
                    e.policy
                );
            }
            let tokens = armored_client::owner::write_tokens::ledger(&o)?;
            if !tokens.is_empty() {
                println!();
                println!(
                    "{:<34} {:<22} {:<16} {:<8} NOT_AFTER_MS",
                    "WRITE TOKEN", "WRITER", "TWIN", "STATE"
                );
                for t in tokens {
                    println!(
                        "{:<34} {:<22} {:<16} {:<8} {}",
                        t.token_id,
                        t.writer_id,
                        t.twin_id,
                        if t.revoked { "revoked" } else { "active" },
                        t.not_after_ms
                    );
                }
            }
        }
    }
    Ok(())
}
