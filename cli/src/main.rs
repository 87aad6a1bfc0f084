//! `atctl`: the owner's management device and a processing service on the command line.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use armored_crypto::identity::PartyKind;
use atctl::kafka::Ctl;
use atctl::owner::Owner;
use atctl::service::{Outcome, Service};
use clap::{Parser, Subcommand, ValueEnum};

/// ArmoredTwins control: owners grant and revoke, services read what they were granted.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kafka bootstrap servers (default from AT__KAFKA__BROKERS or 127.0.0.1:9092).
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// Topic name prefix (tests).
    #[arg(long, global = true)]
    topic_prefix: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The owner's management device.
    Owner {
        /// Owner directory (keys, identity, ledger of grants).
        #[arg(long, env = "AT_OWNER_DIR", default_value = "owner")]
        dir: PathBuf,
        #[command(subcommand)]
        cmd: OwnerCmd,
    },
    /// A processing service.
    Service {
        /// Service directory (keys and identity).
        #[arg(long, env = "AT_SERVICE_DIR", default_value = "service")]
        dir: PathBuf,
        #[command(subcommand)]
        cmd: ServiceCmd,
    },
    /// Show the registry (owners, twins and devices, parties).
    Registry,
    /// Phase 5: send a request to a twin's devices and print the answer (JSON).
    Request {
        /// The requester's directory: an owner's or a service's (its signing key signs the request).
        #[arg(long = "as", env = "AT_REQUESTER_DIR", default_value = "owner")]
        dir: PathBuf,
        #[arg(long)]
        twin: String,
        /// JSON (`{"op":"read"}`, `{"op":"set","field":"x","value":1}`) or text.
        #[arg(long)]
        body: String,
        /// How long the cloud may hold the request (expires_at_ms = now + ttl).
        #[arg(long, default_value = "60s", value_parser = atctl::when::parse_duration)]
        ttl: Duration,
        /// How long to wait for the answer.
        #[arg(long, default_value = "30s", value_parser = atctl::when::parse_duration)]
        wait: Duration,
        /// A write token file naming the requester (services).
        #[arg(long)]
        token: Option<PathBuf>,
    },
    /// Play Protocol 1 on the running brokers and services (infra/demo.sh starts them).
    Demo {
        /// Directory for the demo's parties (default: a new one under $AT_STATE_DIR).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, env = "AT_MQTT_HOST", default_value = "127.0.0.1")]
        mqtt_host: String,
        #[arg(long, env = "AT_MQTT_PORT", default_value_t = 1883)]
        mqtt_port: u16,
        /// Password of the all-access MQTT user (plays the raw eavesdropper).
        #[arg(long, env = "AT_MQTT_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: String,
        /// Protocol 2: simulated phones for contact tracing (0 skips it; needs at-mpc-node next
        /// to atctl).
        #[arg(long, default_value_t = 20)]
        phones: usize,
        /// Protocol 2: location points per phone.
        #[arg(long, default_value_t = 50)]
        points: u32,
        /// The infra/ directory (for mqtt-user.sh).
        #[arg(long, env = "AT_INFRA_DIR", default_value = "infra")]
        infra_dir: PathBuf,
    },
    /// Benchmark Protocol 2's job path on the running brokers (infra/bench.sh): for each N, N + 1
    /// phones upload their shares over MQTT, the bridge, workers and three MPC nodes run as
    /// processes; prints job latency and CPU per user by phase beside the paper's Table 2.
    BenchPipeline {
        /// Participants per run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100,1000")]
        users: Vec<usize>,
        /// Location points per phone.
        #[arg(long, default_value_t = 50)]
        points: u32,
        /// Re-encryption worker processes.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Phones connected at a time.
        #[arg(long, default_value_t = 100)]
        wave: usize,
        /// JSON rows (`[]` of {users, seconds, cpu_ms_per_user, …}); the fit goes beside it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Scratch directory (default: a new one under $AT_STATE_DIR).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where at-ingest, at-reencrypt and at-mpc-node are (default: next to atctl).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        #[arg(long, env = "AT_MQTT_HOST", default_value = "127.0.0.1")]
        mqtt_host: String,
        #[arg(long, env = "AT_MQTT_PORT", default_value_t = 1883)]
        mqtt_port: u16,
        /// The bridge's MQTT password.
        #[arg(long, env = "AT_MQTT_INGEST_PASSWORD", hide_env_values = true)]
        ingest_password: String,
        /// The infra/ directory (for mqtt-user.sh).
        #[arg(long, env = "AT_INFRA_DIR", default_value = "infra")]
        infra_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum OwnerCmd {
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
        /// Also re-encrypt the stored history from this epoch or time (an epoch number,
        /// @unix-seconds, `YYYY-MM-DDTHH:MM[:SS]Z`, or -2h).
        #[arg(
            long = "from",
            visible_alias = "from-epoch",
            allow_hyphen_values = true
        )]
        from: Option<String>,
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
        /// Where to write the token (default: <owner dir>/write-tokens/<id>.token).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The re-keys and tokens this owner issued.
    Grants,
    /// Print the path of the owner's identity file (what devices pin).
    Identity,
    /// History replay, device replacement, key backup and restore (issue 6).
    #[command(flatten)]
    History(atctl::history_cmd::HistoryCmd),
}

#[derive(clap::Args, Debug)]
struct ProcessTokenArgs {
    /// The receiver's identity file (it submits jobs; output shares are sealed to its HPKE key).
    #[arg(long)]
    receiver: PathBuf,
    /// The function granted.
    #[arg(long, default_value = atctl::owner::CONTACT_TRACING)]
    function: String,
    /// Exact contact distance d (< 65536).
    #[arg(long)]
    distance: u32,
    /// Slot length in ms (the devices' enrolled slot length).
    #[arg(long)]
    slot_len: u64,
    /// Windows start on multiples of this many slots.
    #[arg(long)]
    window_alignment: u32,
    /// Smallest window, in slots.
    #[arg(long)]
    min_window: u32,
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

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Service,
    MpcNode,
}

#[derive(Subcommand, Debug)]
enum ServiceCmd {
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
        #[arg(long, value_parser = atctl::when::parse_duration)]
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
        #[arg(long, value_parser = atctl::when::parse_duration, default_value = "60s")]
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_runtime::telemetry::init("atctl");
    armored_runtime::telemetry::exit_quietly_on_broken_pipe();
    armored_runtime::telemetry::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let ctl = || Ctl::connect(args.brokers.as_deref(), args.topic_prefix.as_deref());
    match args.cmd {
        Cmd::Demo {
            dir,
            mqtt_host,
            mqtt_port,
            admin_password,
            infra_dir,
            phones,
            points,
        } => {
            let state = PathBuf::from(std::env::var("AT_STATE_DIR").unwrap_or_else(|_| ".".into()));
            let cfg = atctl::demo::DemoConfig {
                dir: dir.unwrap_or_else(|| atctl::demo::default_dir(&state)),
                mqtt_host,
                mqtt_port,
                admin_password,
                infra_dir,
                phones,
                points,
            };
            atctl::demo::run(cfg, &ctl()?).await?;
        }
        Cmd::BenchPipeline {
            users,
            points,
            workers,
            wave,
            out,
            dir,
            bin_dir,
            mqtt_host,
            mqtt_port,
            ingest_password,
            infra_dir,
        } => {
            let state = PathBuf::from(std::env::var("AT_STATE_DIR").unwrap_or_else(|_| ".".into()));
            let exe = std::env::current_exe()?;
            let cfg = atctl::bench::BenchConfig {
                users,
                points,
                workers,
                wave,
                bin_dir: bin_dir
                    .or_else(|| exe.parent().map(PathBuf::from))
                    .unwrap_or_default(),
                dir: dir.unwrap_or_else(|| {
                    state.join(format!("bench-{}", armored_runtime::time::now_ms() / 1000))
                }),
                infra_dir,
                state_dir: state,
                brokers: ctl()?.kafka.brokers.clone(),
                mqtt_host,
                mqtt_port,
                ingest_password,
                out,
            };
            let shutdown = armored_runtime::Shutdown::new();
            atctl::bench::run(&cfg, &shutdown).await?;
        }
        Cmd::Request {
            dir,
            twin,
            body,
            ttl,
            wait,
            token,
        } => {
            let who = atctl::request::Requester::open(&dir)?;
            let write_token = match token {
                Some(p) => {
                    Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
                }
                None => None,
            };
            let ask = atctl::request::Ask {
                twin_id: &twin,
                body: body.into_bytes(),
                ttl,
                wait,
                write_token,
            };
            let answer = atctl::request::request(&ctl()?, &who, &ask).await?;
            println!("{}", serde_json::to_string(&answer)?);
        }
        Cmd::Registry => {
            let r = ctl()?.registry().await?;
            print!("{}", atctl::view::render(&r));
        }
        Cmd::Owner { dir, cmd } => match cmd {
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
                    "give it an MQTT login: infra/mqtt-user.sh add {}/{} <password>",
                    card.twin_id, card.device_id
                );
            }
            OwnerCmd::Trust { identity } => {
                let o = Owner::open(&dir)?;
                let bytes = std::fs::read(&identity)
                    .with_context(|| format!("reading {}", identity.display()))?;
                let (p, fp) = o.trust(&ctl()?, &bytes).await?;
                println!("pinned {:?} {} — fingerprint {fp}", p.kind, p.party_id);
                println!(
                    "compare the fingerprint with the party out of band before granting anything"
                );
            }
            OwnerCmd::Grant {
                to,
                policy,
                from,
                epoch_len_ms,
            } => {
                let o = Owner::open(&dir)?;
                match from {
                    None => {
                        let rk = o.grant(&ctl()?, &to, &policy, None).await?;
                        println!("granted {to} re-key {rk}");
                    }
                    Some(f) => {
                        atctl::history_cmd::grant_from(&o, &ctl()?, &to, &policy, &f, epoch_len_ms)
                            .await?
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
                let read = |p: &PathBuf| {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
                };
                let req = atctl::owner::ProcessTokenRequest {
                    receiver_identity: read(&a.receiver)?,
                    designator_identity: read(&a.designator)?,
                    function: a.function,
                    distance: a.distance,
                    slot_len_ms: a.slot_len,
                    window_alignment: a.window_alignment,
                    min_window_slots: a.min_window,
                    max_jobs_per_window: a.max_jobs,
                    not_after_ms: atctl::owner::parse_until(
                        &a.until,
                        armored_runtime::time::now_ms(),
                    )?,
                    policy: a.policy,
                    twins: a.twin,
                };
                let (id, _) = o.process_token(&ctl()?, &req).await?;
                println!(
                    "issued process token {id} (revoke: atctl owner revoke --process-token {id})"
                );
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
                let now = armored_runtime::time::now_ms();
                let until = atctl::when::parse_until(&until, now).map_err(anyhow::Error::msg)?;
                let identity = std::fs::read(&writer)
                    .with_context(|| format!("reading {}", writer.display()))?;
                let (e, token) =
                    atctl::write_token::issue(&o, &ctl()?, &identity, &twin, now, until).await?;
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
                atctl::write_token::revoke(&o, &ctl()?, &id).await?;
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
            OwnerCmd::History(h) => atctl::history_cmd::run(&dir, h, &ctl).await?,
            OwnerCmd::Grants => {
                let o = Owner::open(&dir)?;
                println!(
                    "{:<34} {:<13} {:<22} {:<8} POLICY",
                    "RK", "KIND", "RECEIVER", "STATE"
                );
                for e in o.ledger()? {
                    println!(
                        "{:<34} {:<13} {:<22} {:<8} {}",
                        e.rk_id,
                        e.receiver_kind,
                        e.receiver_id,
                        if e.revoked { "revoked" } else { "active" },
                        e.policy
                    );
                }
                let tokens = atctl::write_token::ledger(&o)?;
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
        },
        Cmd::Service { dir, cmd } => {
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
                    let req = atctl::mpc::JobRequest {
                        job_id,
                        reference,
                        distance,
                        window_start_slot: window_start,
                        window_slots,
                        participants,
                        nodes,
                        designation: atctl::designate::read_designation(&designation)?,
                    };
                    let ctl = ctl()?;
                    let (key, job) = atctl::mpc::build_job(&ctl, &dir, &req).await?;
                    let s = atctl::mpc::submit_job(&ctl, &key, &job, attempt).await?;
                    println!("{}", serde_json::to_string(&s)?);
                }
                ServiceCmd::MpcResult { job, wait } => {
                    let started = std::time::Instant::now();
                    let outcome = atctl::mpc::collect(&ctl()?, &dir, &job, wait).await?;
                    println!("{}", serde_json::to_string_pretty(&outcome)?);
                    eprintln!("collected in {:.2} s", started.elapsed().as_secs_f64());
                    if matches!(outcome, atctl::mpc::Outcome::Failed { .. }) {
                        std::process::exit(2);
                    }
                }
                ServiceCmd::Designate {
                    twin,
                    window_start,
                    window_slots,
                    out,
                } => {
                    let d = atctl::designate::designate(&dir, &twin, window_start, window_slots)?;
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
                    let token = std::fs::read(&token)
                        .with_context(|| format!("reading {}", token.display()))?;
                    let delta: serde_json::Value =
                        serde_json::from_str(&delta).context("--delta is not JSON")?;
                    let attrs: Vec<&str> = attrs.split(',').filter(|a| !a.is_empty()).collect();
                    let w = atctl::service_write::Write {
                        twin_id: &twin,
                        token: &token,
                        delta,
                        attributes: &attrs,
                        check_token: true,
                    };
                    let seq = atctl::service_write::write(&ctl()?, &dir, &w).await?;
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
                    let shutdown = armored_runtime::shutdown::on_signals();
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
        }
    }
    Ok(())
}
