//! `atctl request`: phase 5, a request to a twin's devices and its answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::Connect;

/// Send a request to a twin's devices and print the answer (JSON).
#[derive(clap::Args, Debug)]
pub struct RequestArgs {
    /// The requester's directory: an owner's or a service's (its signing key signs the request).
    #[arg(long = "as", env = "AT_REQUESTER_DIR", default_value = "owner")]
    dir: PathBuf,
    #[arg(long)]
    twin: String,
    /// JSON (`{"op":"read"}`, `{"op":"set","field":"x","value":1}`) or text.
    #[arg(long)]
    body: String,
    /// How long the cloud may hold the request (expires_at_ms = now + ttl).
    #[arg(long, default_value = "60s", value_parser = armored_client::when::parse_duration)]
    ttl: Duration,
    /// How long to wait for the answer.
    #[arg(long, default_value = "30s", value_parser = armored_client::when::parse_duration)]
    wait: Duration,
    /// A write token file naming the requester (services).
    #[arg(long)]
    token: Option<PathBuf>,
}

/// Sends the request and prints the answer.
pub async fn run(args: RequestArgs, connect: &Connect) -> anyhow::Result<()> {
    let RequestArgs {
        dir,
        twin,
        body,
        ttl,
        wait,
        token,
    } = args;
    let who = armored_client::request::Requester::open(&dir)?;
    let write_token = match token {
        Some(p) => Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let ask = armored_client::request::Ask {
        twin_id: &twin,
        body: body.into_bytes(),
        ttl,
        wait,
        write_token,
    };
    let answer =
        armored_client::request::request(&connect.as_principal(&who.principal)?, &who, &ask)
            .await?;
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}
