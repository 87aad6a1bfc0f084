//! Protocol 1 end to end on the real brokers: phases 1, 3, 4, 6 and M1, policy routing, bad input.
//! Needs `infra/start.sh` (infra/test.sh runs it). Tests run one at a time (they share mosquitto).

use std::time::Duration;

use armored_client::service::Service;
use armored_crypto::envelope::Writer;
use armored_crypto::identity::PartyKind;
use armored_e2e::{applied, consume, rand_id, Env, SERIAL};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protocol_1_phases_1_3_4_6_and_revocation() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let _ingest = env.start_ingest().await?;
    let _worker = env.start_worker(&rand_id("reenc"));

    // Phase 1: owner, two devices of one twin, a device of a second twin, a pinned service.
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let twin2 = rand_id("car");
    let d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let mut d2 = env.device(&owner, &ctl, &twin, "d2").await?;
    let mut c1 = env.device(&owner, &ctl, &twin2, "c1").await?;
    let svc_dir = env.dir.join("svc");
    let id_file = Service::init(&svc_dir, &rand_id("svc"), PartyKind::Service)?;
    let (party, _fp) = owner.trust(&ctl, &std::fs::read(id_file)?).await?;
    // Phase 2: the service may read only `sync AND location`.
    let rk = owner
        .grant(&ctl, &party.party_id, "sync AND location", None)
        .await?;
    let mut svc = Service::open(&svc_dir)?;

    // d2 learns d1 from the roster before it can accept d1's changes.
    d2.wait_roster(2, Duration::from_secs(10)).await;

    // Phase 3: d1 syncs three changes to the cloud; c1 one change of the other twin.
    d1.publish(&["sync", "location"], json!({"lat": 48.2082}))
        .await?;
    d1.publish(&["sync", "health"], json!({"pulse": 72}))
        .await?;
    d1.publish(&["sync", "location"], json!({"lon": 16.3738}))
        .await?;
    c1.publish(&["sync", "location"], json!({"fuel": 0.5}))
        .await?;

    // Phase 4: d2 receives exactly d1's three changes, signed by d1, with their content.
    let seen = d2
        .collect_until(Duration::from_secs(20), |e| applied(e).len() >= 3)
        .await;
    let got = applied(&seen);
    assert_eq!(got.len(), 3, "d2 got {seen:?}");
    assert!(got.iter().all(|(w, _)| *w == Writer::Device("d1".into())));
    let deltas: Vec<_> = got.iter().map(|(_, d)| d.clone()).collect();
    assert!(deltas.contains(&json!({"lat": 48.2082})) && deltas.contains(&json!({"pulse": 72})));
    let state = d2.device.lock().expect("lock").state().fields.clone();
    assert_eq!(state.get("lon"), Some(&json!(16.3738)));
    assert_eq!(
        state.get("fuel"),
        None,
        "another twin's state never reaches d2"
    );

    // Phase 6: the service receives the two location changes of twin 1 and the one of twin 2,
    // never the health change.
    let recv = consume(&env, &mut svc, Some(3), Duration::from_secs(20)).await?;
    assert_eq!(recv.len(), 3, "{recv:?}");
    assert!(recv
        .iter()
        .all(|r| r.attributes.contains(&"location".to_string())));
    assert!(!recv.iter().any(|r| r.delta.get("pulse").is_some()));
    assert!(recv
        .iter()
        .any(|r| r.twin_id == twin2 && r.delta == json!({"fuel": 0.5})));

    // M1: revoke the service; what d1 writes afterwards reaches d2 but not the service.
    owner.revoke_rekey(&ctl, &rk).await?;
    d1.publish(&["sync", "location"], json!({"lat": 1.0}))
        .await?;
    let seen = d2
        .collect_until(Duration::from_secs(20), |e| !applied(e).is_empty())
        .await;
    assert_eq!(
        applied(&seen).first().map(|x| x.1.clone()),
        Some(json!({"lat": 1.0}))
    );
    let after = consume(&env, &mut svc, Some(1), Duration::from_secs(3)).await?;
    assert!(after.is_empty(), "revoked service still received {after:?}");

    // The owner's own device echo is dropped as a duplicate, never applied twice.
    let d1_state = d1.device.lock().expect("lock").state().clone();
    assert_eq!(d1_state.applied, 4);
    let _ = c1.collect_until(Duration::from_millis(10), |_| false).await;
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_routing_delivers_exactly_when_the_policy_is_satisfied() -> anyhow::Result<()> {
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("bike");
    let d1 = env.device(&owner, &ctl, &twin, "d1").await?;
    let policies = [
        "sync AND location",
        "health OR location",
        "2of3(sync, location, health)",
        "twin:someone-else AND sync",
    ];
    let sets: [&[&str]; 6] = [
        &["sync"],
        &["sync", "location"],
        &["health"],
        &["sync", "health"],
        &["location", "health"],
        &["sync", "location", "health"],
    ];
    // Expected deliveries, worked out by hand: row = policy, column = attribute set.
    let expected: [[bool; 6]; 4] = [
        [false, true, false, false, false, true],
        [false, true, true, true, true, true],
        [false, true, false, true, true, true],
        [false, false, false, false, false, false],
    ];
    let mut services = Vec::new();
    for p in policies {
        let (party, svc) = env.service(&owner, &ctl).await?;
        owner.grant(&ctl, &party, p, None).await?;
        services.push(svc);
    }
    // Straight into the log, as the bridge would write them.
    for (i, attrs) in sets.iter().enumerate() {
        let e = d1.device.lock().expect("lock").record(
            attrs,
            json!({"set": i}),
            armored_base::time::now_ms(),
        )?;
        armored_runtime::kafka::send(&bridge.producer, &bridge.topics.sync(), twin.as_bytes(), &e)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let runs = services.iter_mut().map(|s| {
        let env = &env;
        async move { consume(env, s, Some(6), Duration::from_secs(6)).await }
    });
    let results = futures::future::join_all(runs).await;
    for (row, (policy, got)) in policies.iter().zip(results).enumerate() {
        let got: Vec<bool> = {
            let got = got?;
            (0..6)
                .map(|i| got.iter().any(|r| r.delta == json!({"set": i})))
                .collect()
        };
        assert_eq!(got, expected[row].to_vec(), "policy {policy}");
    }
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn share_bundles_reach_only_node_j_and_node_keys_nothing_else() -> anyhow::Result<()> {
    use armored_crypto::envelope::{Receiver, TrustStore};
    use armored_crypto::keyfile::load_pre_key;
    let _g = SERIAL.lock().await;
    let env = Env::new().await?;
    let ctl = env.owner_ctl()?;
    let bridge = env.bridge_ctl()?;
    let _worker = env.start_worker(&rand_id("reenc"));
    let owner = env.owner(&ctl).await?;
    let twin = rand_id("phone");
    let mut d1 = env.enrolled_device(&owner, &ctl, &twin, "d1").await?;
    let nodes = env.pin_mpc_nodes(&owner, &ctl).await?;
    let ids = nodes.ids.clone();
    // Phase 2+: the grant, and every mapping that would give one key two share numbers refused.
    owner.grant_mpc(&ctl, &ids).await?;
    let swapped = [ids[1].clone(), ids[0].clone(), ids[2].clone()];
    assert!(
        owner.grant_mpc(&ctl, &swapped).await.is_err(),
        "node 2 may never hold node-1"
    );
    let twice = [ids[0].clone(), ids[0].clone(), ids[2].clone()];
    assert!(
        owner.grant_mpc(&ctl, &twice).await.is_err(),
        "one node, two share numbers"
    );
    // A service that may read `location` must still never get share bundles.
    let svc_dir = env.dir.join("svc");
    let sid = Service::init(&svc_dir, &rand_id("svc"), PartyKind::Service)?;
    let (svc, _) = owner.trust(&ctl, &std::fs::read(sid)?).await?;
    owner.grant(&ctl, &svc.party_id, "location", None).await?;

    let now = armored_base::time::now_ms();
    for j in 1..=3 {
        let node = format!("node-{j}");
        let e = d1.record(&["mpc-share", &node, "location"], json!({"share": j}), now)?;
        armored_runtime::kafka::send(&bridge.producer, &bridge.topics.sync(), twin.as_bytes(), &e)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let plain = d1.record(&["sync", "location"], json!({"plain": 1}), now)?;
    armored_runtime::kafka::send(
        &bridge.producer,
        &bridge.topics.sync(),
        twin.as_bytes(),
        &plain,
    )
    .await
    .map_err(anyhow::Error::msg)?;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let deliveries = loop {
        let d = env.records(&ctl.topics.deliver())?;
        let shares: usize = (1..=3)
            .map(|j| {
                env.records(&ctl.topics.mpc_shares(j))
                    .map(|r| r.len())
                    .unwrap_or(0)
            })
            .sum();
        if (!d.is_empty() && shares >= 3) || std::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The plain change went to the service (not back to d1, its writer); no node key was applied to it,
    // and the service's `location` policy never admitted a share bundle.
    let to_svc = deliveries
        .iter()
        .filter(|(k, _)| *k == svc.party_id.as_bytes())
        .count();
    assert_eq!(to_svc, 1, "the service gets the plain change only");
    for id in &nodes.ids {
        assert!(
            !deliveries.iter().any(|(k, _)| *k == id.as_bytes()),
            "no node delivery on at.deliver.v1"
        );
    }
    assert_eq!(
        deliveries.len(),
        1,
        "the service only (a change never goes back to its writer, d1): {} deliveries",
        deliveries.len()
    );
    let trust = {
        let mut t = TrustStore::new(owner.verifying_key());
        t.add_device(
            &twin,
            *armored_crypto::keyfile::load_signing_key(
                &env.dir.join(format!("{twin}-d1/sig.key")),
            )?
            .verifying_key(),
        );
        t
    };
    for (j, dir) in nodes.dirs.iter().enumerate() {
        let j = j as u32 + 1;
        let recs = env.records(&ctl.topics.mpc_shares(j))?;
        assert_eq!(recs.len(), 1, "node {j} gets exactly its bundle");
        assert_eq!(recs[0].0, twin.as_bytes(), "keyed by twin");
        // Node j can open it, and it is bundle j.
        let mut rx = Receiver::new(load_pre_key(&dir.join("pre.key"), &mut rand_core::OsRng)?);
        let sc = rx.open_delivery(&recs[0].1, &trust, now, &mut rand_core::OsRng)?;
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&sc.delta)?,
            json!({"share": j})
        );
        assert!(sc.header.attributes.contains(&format!("node-{j}")));
    }
    env.stop().await;
    Ok(())
}
