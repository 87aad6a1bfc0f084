//! `atctl owner trust-worker` and `atctl owner audit` (issue 19, item 3) on the real brokers: the
//! owner pins the worker's audit key from its state directory, the trail shows the change's
//! delivery (table and JSON), `--verify` passes (status 0) and, once a raw producer wrote a batch
//! signed by a key nobody pinned, flags it as an unknown signer with status 2; bad input is a clear
//! error.

mod common;

use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_crypto::audit::seal_batch;
use armored_crypto::sig::SigningKey;
use armored_e2e::{rand_id, Env};
use armored_schemas::v1;
use common::{atctl, json_lines, ok, status};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_audit_shows_the_trail_and_verify_flags_an_unknown_signer() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let owner = env.owner(&ctl).await?;
    let dir = owner.dir().display().to_string();
    let twin = rand_id("van");
    let mut d1 = env.enrolled_device(&owner, &ctl, &twin, "d1").await?;
    let _d2 = env.enrolled_device(&owner, &ctl, &twin, "d2").await?;
    let worker = env.start_worker(&rand_id("reenc"));
    worker.wait_healthy(Duration::from_secs(30)).await?;

    // Verify with nothing pinned is refused with what to do; a key that is no key too.
    let unpinned = atctl(&env, &["owner", "--dir", &dir, "audit", "--verify"]).await?;
    assert!(
        unpinned.as_ref().is_err_and(|e| e.contains("trust-worker")),
        "{unpinned:?}"
    );
    let bad_key = atctl(&env, &["owner", "--dir", &dir, "trust-worker", "abcd"]).await?;
    assert!(
        bad_key
            .as_ref()
            .is_err_and(|e| e.contains("not a P-256 public key")),
        "{bad_key:?}"
    );
    let keys = env.worker_audit_keys()?;
    assert_eq!(keys.len(), 1);
    let pinned = ok(
        &env,
        &[
            "owner",
            "--dir",
            &dir,
            "trust-worker",
            &keys[0].display().to_string(),
        ],
    )
    .await?;
    assert!(pinned.contains("pinned worker audit key"), "{pinned}");

    // One change, written as the bridge would: the worker delivers it to d2 (its device re-key;
    // never back to d1, its writer).
    let change = d1.record(&["sync"], json!({"km": 1}), now_ms())?;
    env.bridge_ctl()?
        .send(&env.topics.sync(), &twin, &change)
        .await?;
    let audit = |extra: &[&str]| {
        let mut a = vec!["owner", "--dir", &dir, "audit"];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let env = &env;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            ok(env, &refs).await
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let lines = json_lines(&run(audit(&["--json", "--twin", &twin])).await?)?;
        // The entries, then the report.
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let entry = &lines[0];
    assert_eq!(entry["twin"], json!(twin));
    assert_eq!(entry["receiver"], json!(format!("{twin}/d2")));
    assert_eq!(entry["receiver_kind"], json!("device"));
    assert_eq!(entry["pinned"], json!(true));
    assert_eq!(lines[1]["report"]["entries"], json!(1));

    let verify = || {
        let args = audit(&["--verify"]);
        let env = &env;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            status(env, &refs).await
        }
    };
    let table = run(audit(&["--twin", &twin])).await?;
    assert!(
        table.contains("RECEIVER") && table.contains(&format!("device:{twin}/d2")),
        "{table}"
    );
    let (code, out) = verify().await?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verify: ok"), "{out}");

    // A raw producer's batch under a key nobody pinned: flagged, status 2.
    let forger = SigningKey::from_bytes(&[7; 32])?;
    let forged = v1::AuditEntry {
        rk_id: vec![1; 16],
        receiver_kind: v1::ReceiverKind::Service as i32,
        receiver_id: "nobody".into(),
        twin_id: twin.clone(),
        attributes_digest: vec![0; 32],
        capsule_id: vec![0; 32],
        delivery_sha256: vec![0; 32],
        ..v1::AuditEntry::default()
    };
    env.insider_ctl()?
        .send(
            &env.topics.audit(),
            "evil",
            &seal_batch(&forger, "evil", 0, vec![forged]),
        )
        .await?;
    let (code, out) = verify().await?;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!("unknown signer {}", forger.key_id())),
        "{out}"
    );
    assert!(out.contains("(unpinned key)"), "{out}");

    // Clear errors for bad input.
    let bad_time = atctl(
        &env,
        &["owner", "--dir", &dir, "audit", "--from", "yesterday"],
    )
    .await?;
    assert!(
        bad_time.as_ref().is_err_and(|e| e.contains("--from")),
        "{bad_time:?}"
    );
    let other = atctl(
        &env,
        &["owner", "--dir", &dir, "audit", "--twin", "no-such-twin"],
    )
    .await?;
    assert!(
        other.as_ref().is_err_and(|e| e.contains("no-such-twin")),
        "{other:?}"
    );
    env.stop().await;
    Ok(())
}
