//! `atctl service`: a processing service (phase 6), a designator, an MPC job submitter, a writer
//! with a write token.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use armored_client::service::{Outcome, Service};
use armored_crypto::identity::PartyKind;
use clap::{Subcommand, ValueEnum};

use super::Connect;

/// The service's directory and what to do with it.
#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    /// Service directory (keys and identity).
    #[arg(long, env = "AT_SERVICE_DIR", default_value = "service")]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: ServiceCmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Service,
    MpcNode,
}

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Create the service's keys and identity file (give it to owners to pin).
    Init {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum, default_value = "service")]
        kind: Kind,
    },
    /// Phase 6: consume this service's deliveries, decrypt and verify, print JSON lines.
    Run {
        /// Stop after this many new changes.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long without a record (e.g. 5s).
        #[arg(long, value_parser = armored_client::when::parse_duration)]
        idle: Option<Duration>,
        /// Write JSON lines here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// As a designator: sign a statement naming the reference twin of one slot window (a job
    /// submitter attaches it). Hex on stdout, or raw bytes to --out.
    Designate {
        /// The reference twin.
        #[arg(long)]
        twin: String,
        /// First global slot of the window.
        #[arg(long)]
        window_start: u64,
        /// Slots in the window.
        #[arg(long)]
        window_slots: u32,
        /// Write the signed statement (raw bytes) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Submit a contact-tracing job to the MPC nodes (each participant's process token is looked
    /// up on at.tokens.v1). Prints the job id.
    MpcSubmit {
        /// The reference twin (named by the designation).
        #[arg(long)]
        reference: String,
        /// The designator's signed statement (file from `service designate`).
        #[arg(long)]
        designation: PathBuf,
        /// Contact distance d (grid units).
        #[arg(long)]
        distance: u32,
        /// First global slot of the window.
        #[arg(long)]
        window_start: u64,
        /// Slots in the window.
        #[arg(long)]
        window_slots: u32,
        /// Participant twins, comma-separated (output order).
        #[arg(long, value_delimiter = ',', required = true)]
        participants: Vec<String>,
        /// The three node party ids, comma-separated, in index order.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        /// Job id (default: random).
        #[arg(long)]
        job_id: Option<String>,
        /// Attempt number (a retry of a failed attempt is the next number).
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// Collect, verify and combine a job's output shares; print per-participant contacts (JSON).
    MpcResult {
        /// Job id.
        #[arg(long)]
        job: String,
        /// How long to wait for the nodes.
        #[arg(long, value_parser = armored_client::when::parse_duration, default_value = "60s")]
        wait: Duration,
    },
    /// Write a twin's state with a write token: a state change signed by this service, to at.sync.v1.
    Write {
        #[arg(long)]
        twin: String,
        /// The write token file (atctl owner write-token).
        #[arg(long)]
        token: PathBuf,
        /// A JSON object of field updates, e.g. '{"target":21.5}'.
        #[arg(long)]
        delta: String,
        /// Attributes (comma-separated; the twin attribute is added).
        #[arg(long, default_value = "sync")]
        attrs: String,
    },
}

/// Runs one service command.
pub async fn run(args: ServiceArgs, connect: &Connect) -> anyhow::Result<()> {
    let ServiceArgs { dir, cmd } = args;
    let ctl = || connect.service(&dir);
    match cmd {
        ServiceCmd::MpcSubmit {
            reference,
            designation,
            distance,
            window_start,
            window_slots,
            participants,
            nodes,
            job_id,
            attempt,
        } => {
            let nodes: [String; 3] = nodes
                .try_into()
                .map_err(|_| anyhow::anyhow!("--nodes must name exactly three nodes"))?;
            let req = armored_client::mpc::JobRequest {
                job_id,
                reference,
                distance,
                window_start_slot: window_start,
                window_slots,
                participants,
                nodes,
                designation: armored_client::mpc::designate::read_designation(&designation)?,
            };
            let ctl = ctl()?;
            let (key, job) = armored_client::mpc::build_job(&ctl, &dir, &req).await?;
            let s = armored_client::mpc::submit_job(&ctl, &key, &job, attempt).await?;
            println!("{}", serde_json::to_string(&s)?);
        }
        ServiceCmd::MpcResult { job, wait } => {
            let started = std::time::Instant::now();
            let outcome = armored_client::mpc::collect(&ctl()?, &dir, &job, wait).await?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            eprintln!("collected in {:.2} s", started.elapsed().as_secs_f64());
            if matches!(outcome, armored_client::mpc::Outcome::Failed { .. }) {
                std::process::exit(2);
            }
        }
        ServiceCmd::Designate {
            twin,
            window_start,
            window_slots,
            out,
        } => {
            let d =
                armored_client::mpc::designate::designate(&dir, &twin, window_start, window_slots)?;
            match out {
                Some(p) => {
                    std::fs::write(&p, &d)?;
                    eprintln!("designation of {twin} written to {}", p.display());
                }
                None => println!("{}", hex::encode(&d)),
            }
        }
        ServiceCmd::Init { id, kind } => {
            let k = match kind {
                Kind::Service => PartyKind::Service,
                Kind::MpcNode => PartyKind::MpcNode,
            };
            let path = Service::init(&dir, &id, k)?;
            let fp = armored_crypto::identity::fingerprint(&std::fs::read(&path)?);
            println!(
                "identity {} (fingerprint {})",
                path.display(),
                hex::encode(fp)
            );
        }
        ServiceCmd::Write {
            twin,
            token,
            delta,
            attrs,
        } => {
            let token =
                std::fs::read(&token).with_context(|| format!("reading {}", token.display()))?;
            let delta: serde_json::Value =
                serde_json::from_str(&delta).context("--delta is not JSON")?;
            let attrs: Vec<&str> = attrs.split(',').filter(|a| !a.is_empty()).collect();
            let w = armored_client::service::write::Write {
                twin_id: &twin,
                token: &token,
                delta,
                attributes: &attrs,
                check_token: true,
            };
            let seq = armored_client::service::write::write(&ctl()?, &dir, &w).await?;
            println!("wrote seq {seq} to twin {twin} (devices accept it while the token is valid)");
        }
        ServiceCmd::Run { count, idle, out } => {
            let mut s = Service::open(&dir)?;
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::fs::File::create(p)?),
                None => Box::new(std::io::stdout()),
            };
            let progress = indicatif::ProgressBar::new_spinner();
            progress.set_message(format!("{}: waiting for deliveries", s.id));
            let shutdown = armored_base::shutdown::on_signals();
            let stats = s
                .consume(&ctl()?, count, idle, shutdown, |o| {
                    let line = match o {
                        Outcome::Received(r) => serde_json::json!({"received": r}),
                        Outcome::Rejected { reason, detail } => {
                            serde_json::json!({"rejected": reason, "detail": detail})
                        }
                    };
                    let _ = writeln!(sink, "{line}");
                    progress.inc(1);
                })
                .await?;
            progress.finish_and_clear();
            eprintln!("{}", serde_json::to_string(&stats)?);
        }
    }
    Ok(())
}
