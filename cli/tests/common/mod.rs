//! What the atctl tests share: running the binary on a test's brokers and topics.
#![allow(dead_code)] // each test binary uses its part

use armored_e2e::Env;
use serde_json::Value;

/// Runs atctl on this test's brokers and topics.
async fn output(env: &Env, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_atctl"))
        .args(["--brokers", &env.kafka.brokers])
        .args(["--topic-prefix", &env.kafka.topic_prefix])
        .args(args)
        .output()
        .await?)
}

/// Runs atctl on this test's brokers and topics; its exit status and stdout.
pub async fn status(env: &Env, args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let out = output(env, args).await?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// Runs atctl on this test's brokers and topics; its stdout, or an error with its stderr.
pub async fn atctl(env: &Env, args: &[&str]) -> anyhow::Result<Result<String, String>> {
    let out = output(env, args).await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok(if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    })
}

pub async fn ok(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    atctl(env, args)
        .await?
        .map_err(|e| anyhow::anyhow!("atctl {args:?} failed: {e}"))
}

pub fn json_lines(s: &str) -> anyhow::Result<Vec<Value>> {
    Ok(s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}
