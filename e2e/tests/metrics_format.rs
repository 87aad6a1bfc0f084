//! Every service's `/metrics` passes `promtool check metrics` (Prometheus's own exposition-format
//! checker and linter; Debian's prometheus package, installed by infra/install.sh): the bridge, a
//! worker and an MPC node, scraped while running after real traffic (a change routed, a bad record
//! dead-lettered), so labelled series and histogram buckets are there, not only their HELP lines.
//! The same run checks that the figures the dashboard's edge panels need are served: the end-to-end
//! latencies and mosquitto's `$SYS` figures read by the bridge.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use armored_e2e::Env;
use armored_runtime::scrape;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Runs `promtool check metrics` on `text`; its complaints if it has any.
async fn promtool_check(text: &str) -> anyhow::Result<Result<(), String>> {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("promtool ({e}): run infra/install.sh (Debian's prometheus)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    Ok(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_services_metrics_pass_promtool() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let mut p = env.pair("metrics").await?;
    let delta = json!({"speed": 12});
    p.d1.publish(&["sync"], delta.clone()).await?;
    p.d2.wait_applied(&delta, Duration::from_secs(20), "d1's change at d2")
        .await?;
    // The change's trip through the cloud was timed at both ends: the worker's output written to
    // Kafka, and the bridge's delivery to d2 acknowledged by mosquitto.
    let wait = Duration::from_secs(20);
    p.worker
        .wait_metric(
            "at_reencrypt_end_to_end_seconds_count{kind=\"device\"}",
            1.0,
            wait,
        )
        .await?;
    p.ingest
        .wait_metric("at_ingest_end_to_end_seconds_count", 1.0, wait)
        .await?;
    // mosquitto's own figures through the bridge ($SYS, retained: sent on subscription, then every
    // sys_interval): at least the bridge's two connections and the two devices are connected.
    p.ingest
        .wait_metric("at_mqtt_clients_connected", 4.0, wait)
        .await?;
    p.ingest
        .wait_metric("at_mqtt_messages_received_total", 1.0, wait)
        .await?;
    anyhow::ensure!(p.ingest.metric("at_mqtt_stats_skipped_total").await? == 0.0);

    // A record the worker refuses, so that its dead-letter counter has a labelled series.
    env.bridge_ctl()?
        .send(&env.topics.sync(), &p.twin, b"\x08\x01garbage")
        .await?;
    env.wait_dead_letter(Duration::from_secs(20), |_| true)
        .await?;

    let nodes = env.pin_mpc_nodes(&p.owner, &p.ctl).await?;
    let node = env.start_node(env.node_config(1, &nodes.dirs)?);
    node.wait_healthy(Duration::from_secs(60)).await?;

    let targets: [(&str, SocketAddr); 3] = [
        ("at-ingest", p.ingest.metrics),
        ("at-reencrypt", p.worker.metrics),
        ("at-mpc-node", node.metrics),
    ];
    for (name, addr) in targets {
        let text = scrape::get(addr, "/metrics").await?.body;
        anyhow::ensure!(
            text.lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty()),
            "{name}'s /metrics has no samples"
        );
        if let Err(complaints) = promtool_check(&text).await? {
            anyhow::bail!("promtool check metrics on {name}'s /metrics:\n{complaints}");
        }
        eprintln!(
            "{name}: {} samples pass promtool check metrics",
            text.lines().filter(|l| !l.starts_with('#')).count()
        );
    }
    env.stop().await;
    Ok(())
}
