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
    /// M1: revoke a re-key (by id) or everything granted to a receiver.
    Revoke {
        /// A re-key id (hex).
        #[arg(long, conflicts_with = "receiver")]
        rk: Option<String>,
        /// A receiver id (a service id, or twin/device).
        #[arg(long)]
        receiver: Option<String>,
    },
    /// The re-keys this owner issued.
    Grants,
    /// Print the path of the owner's identity file (what devices pin).
    Identity,
    /// History replay, device replacement, key backup and restore (issue 6).
    #[command(flatten)]
    History(atctl::history_cmd::HistoryCmd),
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
        #[arg(long, value_parser = parse_secs)]
        idle: Option<Duration>,
        /// Write JSON lines here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim_end_matches('s');
    t.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|_| format!("{s:?} is not a duration in seconds (e.g. 5s)"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_runtime::telemetry::init("atctl");
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
        } => {
            let state = PathBuf::from(std::env::var("AT_STATE_DIR").unwrap_or_else(|_| ".".into()));
            let cfg = atctl::demo::DemoConfig {
                dir: dir.unwrap_or_else(|| atctl::demo::default_dir(&state)),
                mqtt_host,
                mqtt_port,
                admin_password,
                infra_dir,
            };
            atctl::demo::run(cfg, &ctl()?).await?;
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
            OwnerCmd::GrantMpc { nodes } => {
                let o = Owner::open(&dir)?;
                let nodes: [String; 3] = nodes
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("--nodes takes exactly three node ids"))?;
                for (j, rk) in o.grant_mpc(&ctl()?, &nodes).await?.iter().enumerate() {
                    println!("granted {} node-{} re-key {rk}", nodes[j], j + 1);
                }
            }
            OwnerCmd::Revoke { rk, receiver } => {
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
                        anyhow::bail!("say what to revoke: --rk <id> or --receiver <id>")
                    }
                }
            }
            OwnerCmd::History(h) => atctl::history_cmd::run(&dir, h, &ctl).await?,
            OwnerCmd::Grants => {
                let o = Owner::open(&dir)?;
                println!(
                    "{:<34} {:<9} {:<22} {:<8} POLICY",
                    "RK", "KIND", "RECEIVER", "STATE"
                );
                for e in o.ledger()? {
                    println!(
                        "{:<34} {:<9} {:<22} {:<8} {}",
                        e.rk_id,
                        e.receiver_kind,
                        e.receiver_id,
                        if e.revoked { "revoked" } else { "active" },
                        e.policy
                    );
                }
            }
        },
        Cmd::Service { dir, cmd } => match cmd {
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
        },
    }
    Ok(())
}
