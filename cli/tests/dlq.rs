//! `atctl dlq` on a real bad input (issue 18): a state change of a twin the registry does not know
//! yet is dead-lettered by a worker; `atctl dlq` lists, counts and shows it (decoded header, no
//! keys); once the owner enrolls the device, a re-drive writes it back to `at.sync.v1` and the
//! granted service receives it once; a second re-drive writes nothing.

mod common;

use std::time::Duration;

use armored_base::time::now_ms;
use armored_e2e::{consume, rand_id, Env};
use common::{atctl, json_lines, ok};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_is_listed_shown_and_redriven_once() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let ctl = env.owner_ctl()?;
    let owner = env.owner(&ctl).await?;
    let (party, mut svc) = env.service(&owner, &ctl).await?;
    owner.grant(&ctl, &party, "sync", None).await?;

    // A device set up but not enrolled yet: its change reaches the log (as the bridge would write
    // it), and the worker refuses it.
    let twin = rand_id("dlq");
    let dir = env.dir.join("d1");
    let card = armored_device::setup(&dir, &twin, "d1", 3_600_000)?;
    armored_device::pin_owner(&dir, &owner.identity()?)?;
    let mut dev = armored_device::Device::open(&dir)?;
    let change = dev.record(&["sync"], json!({"v": 1}), now_ms())?;
    env.bridge_ctl()?
        .send(&env.topics.sync(), &twin, &change)
        .await?;
    let refused = env
        .wait_dead_letter(Duration::from_secs(20), |d| d.payload == change)
        .await?;
    let reason = refused.reason.clone();

    // list: the one dead letter of this twin, with its reason; count agrees.
    let listed = json_lines(&ok(&env, &["dlq", "list", "--json", "--twin", &twin]).await?)?;
    anyhow::ensure!(listed.len() == 1, "listed {listed:?}");
    let d = &listed[0];
    assert_eq!(d["reason"], json!(reason));
    assert_eq!(d["service"], json!("reencrypt"));
    assert_eq!(d["source_topic"], json!(env.topics.sync()));
    assert_eq!(d["redriven_by"], Value::Null);
    let id = format!("{}:{}", d["partition"], d["offset"]);
    let counts = json_lines(&ok(&env, &["dlq", "count", "--json", "--reason", &reason]).await?)?;
    anyhow::ensure!(
        counts
            .iter()
            .any(|c| c["reason"] == json!(reason) && c["count"] == json!(1)),
        "counts {counts:?}"
    );
    // A filter that matches nothing lists nothing.
    let none = ok(
        &env,
        &["dlq", "list", "--json", "--reason", "no_such_reason"],
    )
    .await?;
    assert!(json_lines(&none)?.is_empty(), "{none}");

    // show: the envelope header as the cloud sees it (no keys, no plaintext).
    let shown: Value = serde_json::from_str(&ok(&env, &["dlq", "show", &id, "--json"]).await?)?;
    assert_eq!(shown["decoded"]["kind"], json!("envelope"));
    assert_eq!(shown["decoded"]["twin"], json!(twin));
    assert_eq!(shown["decoded"]["device"], json!("d1"));
    assert!(!shown.to_string().contains("\"v\":1"), "no plaintext");
    // A dead letter that does not exist is a clear error.
    let missing = atctl(&env, &["dlq", "show", "0:999999"]).await?;
    anyhow::ensure!(
        matches!(&missing, Err(e) if e.contains("no dead letter 0:999999")),
        "{missing:?}"
    );
    let unfiltered = atctl(&env, &["dlq", "redrive", "--matching"]).await?;
    anyhow::ensure!(
        matches!(&unfiltered, Err(e) if e.contains("at least one filter")),
        "{unfiltered:?}"
    );

    // The cause fixed (the device enrolled), the re-drive goes through once.
    owner.enroll_device(&ctl, &card).await?;
    let r = json_lines(&ok(&env, &["dlq", "redrive", &id]).await?)?;
    assert_eq!(
        r,
        vec![json!({"redriven": {"id": id, "topic": env.topics.sync()}})]
    );
    let got = consume(&env, &mut svc, Some(1), Duration::from_secs(20)).await?;
    anyhow::ensure!(got.len() == 1, "the service received {} changes", got.len());
    assert_eq!(got[0].delta, json!({"v": 1}));

    // Again: marked, nothing written; the listing shows the marker.
    let again = json_lines(&ok(&env, &["dlq", "redrive", &id]).await?)?;
    anyhow::ensure!(
        again.len() == 1 && again[0].get("already_redriven").is_some(),
        "{again:?}"
    );
    let copies = env
        .records(&env.topics.sync())?
        .into_iter()
        .filter(|(_, v)| *v == change)
        .count();
    assert_eq!(copies, 2, "the original and one re-drive on at.sync.v1");
    let relisted = json_lines(&ok(&env, &["dlq", "list", "--json", "--twin", &twin]).await?)?;
    anyhow::ensure!(
        relisted.len() == 1 && relisted[0]["redriven_by"].is_string(),
        "{relisted:?}"
    );
    let more = consume(&env, &mut svc, None, Duration::from_secs(3)).await?;
    assert!(more.is_empty(), "received again: {more:?}");
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_when_asked() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_atctl"))
        .args(["--brokers", &env.kafka.brokers])
        .args(["--topic-prefix", &env.kafka.topic_prefix])
        .args(["dlq", "count", "--json"])
        .env("AT_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "atctl failed: {:?}", out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(!lines.is_empty(), "no log lines at debug level");
    for l in &lines {
        let v: Value = serde_json::from_str(l)
            .map_err(|e| anyhow::anyhow!("not a JSON log line ({e}): {l}"))?;
        anyhow::ensure!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "a log line without level or fields: {l}"
        );
    }
    anyhow::ensure!(
        lines.iter().any(|l| l.contains("tracing initialised")),
        "{stderr}"
    );
    env.stop().await;
    Ok(())
}
