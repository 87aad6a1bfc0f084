//! `atctl`: the owner's management device, a processing service and a requester on the command
//! line; a thin layer over `armored-client` (one module per command group in `cmd/`).
#![forbid(unsafe_code)]

mod cmd;

use clap::{Parser, Subcommand};

/// ArmoredTwins control: owners grant and revoke, services read what they were granted,
/// operators inspect and re-drive dead letters.
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
    Owner(cmd::owner::OwnerArgs),
    /// A processing service.
    Service(cmd::service::ServiceArgs),
    /// Show the registry (owners, twins and devices, parties).
    Registry,
    /// Phase 5: send a request to a twin's devices and print the answer (JSON).
    Request(cmd::request::RequestArgs),
    /// Dead letters (operators): list, show, count, re-drive.
    Dlq(cmd::dlq::DlqArgs),
    /// An owner's twins and their state (current, as of a time, history), decrypted here.
    Twin(cmd::twin::TwinArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    armored_base::telemetry::init("atctl");
    armored_base::telemetry::exit_quietly_on_broken_pipe();
    armored_base::telemetry::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let connect = cmd::Connect {
        brokers: args.brokers,
        topic_prefix: args.topic_prefix,
    };
    match args.cmd {
        Cmd::Owner(a) => cmd::owner::run(a, &connect).await,
        Cmd::Service(a) => cmd::service::run(a, &connect).await,
        Cmd::Registry => cmd::registry::run(&connect).await,
        Cmd::Request(a) => cmd::request::run(a, &connect).await,
        Cmd::Dlq(a) => cmd::dlq::run(a, &connect).await,
        Cmd::Twin(a) => cmd::twin::run(a, &connect).await,
    }
}
