//! A Kafka client that may write `at.sync.v1` (a service's principal: services write there directly)
//! skips the bridge; the worker re-checks the bridge's edge rules on what it reads (hardening issue,
//! item 4, defence in depth): a header naming an enrolled device with another writer key, and a
//! share bundle from anyone but an enrolled device, are dead-lettered before any re-encryption, and
//! the devices' own changes still flow.

use std::time::Duration;

use armored_base::time::now_ms;
use armored_crypto::envelope::{seal_state_change, StateChangeInput};
use armored_crypto::epoch::{epoch_of, EpochKeyManager};
use armored_crypto::keyfile::load_signing_key;
use armored_crypto::sig::SigningKey;
use armored_e2e::{applied, Env};
use rand_core::OsRng;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_writer_cannot_route_what_the_bridge_would_refuse() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let mut p = env.pair("direct").await?;
    let direct = env.service_ctl(&armored_e2e::rand_id("writer")).await?;
    let stranger = SigningKey::generate(&mut OsRng);
    let d1_key = load_signing_key(&p.d1.dir.join("sig.key"))?;
    // (writer key, device id in the header, attributes, the worker's reason)
    let share: &[&str] = &["location", "mpc-share", "node-1"];
    let cases: [(&SigningKey, &str, &[&str], &str); 6] = [
        // A header naming an enrolled device, with another key.
        (&stranger, "d1", &["sync"], "writer_mismatch"),
        (&d1_key, "d2", &["sync"], "writer_mismatch"),
        (&stranger, "d1", share, "writer_mismatch"),
        // A writer that is no device of the twin (a service's id) may write, but no share bundle,
        // no request and nothing for another twin.
        (&stranger, "svc-x", share, "reserved_attribute"),
        (&stranger, "svc-x", &["req"], "reserved_attribute"),
        // The device itself, but not in the bridge's share-bundle form.
        (
            &d1_key,
            "d1",
            &["location", "mpc-share", "node-1", "sync"],
            "reserved_attribute",
        ),
    ];
    let mut keys = EpochKeyManager::new(p.owner.pre_key().public().clone(), &p.twin)?;
    for (i, (writer, device, attrs, reason)) in cases.iter().enumerate() {
        let key = keys.key_for(epoch_of(now_ms(), 3_600_000), attrs, &mut OsRng)?;
        let input = StateChangeInput {
            device_id: (*device).into(),
            seq: 900 + i as u64,
            observed_at_ms: now_ms(),
            delta: format!("{{\"forged\":{i}}}").into_bytes(),
            ..Default::default()
        };
        let forged = seal_state_change(key, writer, &input, &mut OsRng)?;
        direct.send(&direct.topics.sync(), &p.twin, &forged).await?;
        let d = env
            .wait_dead_letter(WAIT, |d| d.payload == forged)
            .await
            .map_err(|e| anyhow::anyhow!("case {i} ({device}, {attrs:?}): {e}"))?;
        assert_eq!(
            (d.service.as_str(), d.reason.as_str()),
            ("reencrypt", *reason),
            "case {i} ({device}, {attrs:?})"
        );
    }
    for reason in ["writer_mismatch", "reserved_attribute"] {
        let want = cases.iter().filter(|c| c.3 == reason).count() as f64;
        let m = format!("at_reencrypt_dead_letters_total{{reason=\"{reason}\"}}");
        assert_eq!(p.worker.metric(&m).await?, want, "{m}");
    }
    // Nothing reached the node's share topic, and the devices' own traffic still flows.
    assert!(env.records(&env.topics.mpc_shares(1))?.is_empty());
    p.d1.publish(&["sync"], json!({"good": 1})).await?;
    let seen =
        p.d2.collect_until(WAIT, |e| {
            applied(e).iter().any(|(_, d)| *d == json!({"good": 1}))
        })
        .await;
    let deltas: Vec<_> = applied(&seen).into_iter().map(|(_, d)| d).collect();
    assert_eq!(deltas, vec![json!({"good": 1})], "only the device's change");
    env.stop().await;
    Ok(())
}
