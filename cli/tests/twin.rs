//! `atctl twin show` and `atctl twin list` (issue 19) on the real brokers: the owner's tool prints a
//! twin's current state, its state as of a time and its history from the log, as JSON and as a
//! table; a service sees exactly the subset its grant admits, from its own deliveries; an unknown
//! twin and a bad time are clear errors; the list names the twin, its device and the grants that
//! reach it.

mod common;

use armored_base::time::now_ms;
use armored_e2e::{rand_id, Env};
use common::{atctl, json_lines, ok};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twin_show_and_list_print_what_the_log_holds() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let owner = env.owner(&ctl).await?;
    let dir = owner.dir().display().to_string();
    let twin = rand_id("van");
    let mut d1 = env.enrolled_device(&owner, &ctl, &twin, "d1").await?;
    let _worker = env.start_worker(&rand_id("reenc"));
    // A service granted the twin's location only.
    let svc_dir = env.dir.join("svc");
    let svc_id = rand_id("svc");
    let identity = armored_client::service::Service::init(
        &svc_dir,
        &svc_id,
        armored_crypto::identity::PartyKind::Service,
    )?;
    let (p, _) = owner.trust(&ctl, &std::fs::read(identity)?).await?;
    let party = p.party_id;
    owner
        .grant(&ctl, &party, &format!("twin:{twin} AND location"), None)
        .await?;
    env.service_ctl(&svc_id).await?;
    // Two changes an hour apart, written to the log as the bridge would.
    let bridge = env.bridge_ctl()?;
    let now = now_ms();
    for (attrs, delta, at) in [
        (
            &["sync"][..],
            json!({"km": 100, "mode": "eco"}),
            now - 3_600_000,
        ),
        (&["sync"][..], json!({"km": 120}), now),
        (&["sync", "location"][..], json!({"lat": 48}), now),
    ] {
        let change = d1.record(attrs, delta, at)?;
        bridge.send(&env.topics.sync(), &twin, &change).await?;
    }

    let show = |extra: &[&str]| {
        let mut args = vec!["twin", "--dir", &dir, "show", &twin];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let env = &env;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            ok(env, &refs).await
        }
    };
    let current: serde_json::Value = serde_json::from_str(&run(show(&["--json"])).await?)?;
    assert_eq!(
        current["state"],
        json!({"km": 120, "mode": "eco", "lat": 48})
    );
    assert_eq!(current["changes"], json!(3));
    assert_eq!(current["fields"]["km"]["writer"], json!("device:d1"));

    let half_an_hour_ago = (now - 1_800_000).to_string();
    let then: serde_json::Value =
        serde_json::from_str(&run(show(&["--json", "--at", &half_an_hour_ago])).await?)?;
    assert_eq!(then["state"], json!({"km": 100, "mode": "eco"}));

    let history = json_lines(&run(show(&["--history", "--json"])).await?)?;
    assert_eq!(history.len(), 3);
    assert_eq!(history[1]["fields"], json!({"km": 120}));
    assert_eq!(history[1]["seq"], json!(1));
    let table = run(show(&[])).await?;
    assert!(table.contains("km") && table.contains("120"), "{table}");

    let list = ok(&env, &["twin", "--dir", &dir, "list"]).await?;
    let line = list
        .lines()
        .find(|l| l.starts_with(&twin))
        .ok_or_else(|| anyhow::anyhow!("{twin} not listed: {list}"))?;
    assert!(line.contains("d1") && line.contains(&party), "{line}");

    // The service: only the change its grant admits, once the worker has delivered it.
    let as_service = |extra: &[&str]| {
        let mut args = vec![
            "twin",
            "--service",
            svc_dir.to_str().unwrap_or_default(),
            "show",
        ];
        args.push(&twin);
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let seen = loop {
        let v: serde_json::Value = serde_json::from_str(&run(as_service(&["--json"])).await?)?;
        if v["changes"] == json!(1) || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(seen["state"], json!({"lat": 48}), "{seen}");
    assert_eq!(seen["refused"], json!(0));
    assert!(seen["fields"]["lat"]["writer"] == json!("device:d1"));

    // Clear errors: an unknown twin, bad times.
    let unknown = atctl(&env, &["twin", "--dir", &dir, "show", "no-such-twin"]).await?;
    assert!(
        unknown
            .as_ref()
            .is_err_and(|e| e.contains("no twin no-such-twin")),
        "{unknown:?}"
    );
    let bad = atctl(
        &env,
        &show(&["--at", "yesterday"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await?;
    assert!(
        bad.as_ref().is_err_and(|e| e.contains("yesterday")),
        "{bad:?}"
    );
    env.stop().await;
    Ok(())
}
