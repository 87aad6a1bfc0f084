//! The policy-recursion attack (the hardening issue, item 1) against a running worker: a re-key
//! upload properly signed by a registered owner whose policy is `(`×15,000 `sync` `)`×15,000
//! (30 KB, under the re-key size limit). The parser recursed once per parenthesis and overflowed
//! the stack, aborting every worker that folds `at.rekeys.v1`, on every restart (the topic is kept
//! forever). Now the parser bounds nesting and length while it reads: the upload is a typed
//! refusal (`bad_policy`), a dead letter and a metric, and the worker goes on delivering.

use std::time::Duration;

use armored_client::owner::control;
use armored_crypto::domain::SigDomain;
use armored_crypto::kpcpre::{Policy, ReKey, SecretKey};
use armored_crypto::tokens::ReceiverKind;
use armored_e2e::{Env, Pair};
use armored_runtime::kafka::send;
use armored_schemas::v1::{self, control_record};
use prost::Message;
use rand_core::OsRng;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_rekey_with_a_15000_deep_policy_is_refused_and_the_worker_keeps_serving(
) -> anyhow::Result<()> {
    let env = Env::new().await?;
    let Pair {
        ctl,
        worker,
        owner,
        d1,
        mut d2,
        ..
    } = env.pair("deep").await?;

    // A real re-key whose policy text is swapped for the hostile one, then signed by the owner:
    // everything but the policy is valid, and the signature covers the hostile text.
    let receiver = SecretKey::generate(&mut OsRng);
    let rk = ReKey::generate(
        owner.pre_key(),
        &Policy::parse("sync")?,
        receiver.public(),
        &mut OsRng,
    )?;
    let mut wire = v1::ReKey::decode(rk.encode().as_slice())?;
    wire.policy = format!("{}sync{}", "(".repeat(15_000), ")".repeat(15_000));
    let body = v1::ReKeyUpload {
        version: armored_schemas::WIRE_VERSION,
        rk: wire.encode_to_vec(),
        receiver_kind: ReceiverKind::Service as i32,
        receiver_id: "deep".into(),
        receiver_key_id: rk.receiver_key_id().0.to_vec(),
        owner_sig_key_id: owner.signing_key().key_id().0.to_vec(),
        not_after_ms: None,
        history_from_epoch: None,
        until_epoch: None,
    };
    let upload = owner
        .signing_key()
        .sign_to_vec(SigDomain::ReKey, body.encode_to_vec());
    assert!(
        upload.len() < armored_schemas::limits::MAX_REKEY_BYTES + 1024,
        "within the size limit, so only the parser stands in the way"
    );
    send(
        &ctl.producer,
        &ctl.topics.rekeys(),
        hex::encode(rk.rk_id()).as_bytes(),
        &control(control_record::Record::RekeyUpload(upload)),
    )
    .await
    .map_err(anyhow::Error::msg)?;

    env.wait_dead_letter(WAIT, |d| {
        d.reason == "bad_policy" && d.service == "reencrypt"
    })
    .await?;
    worker
        .wait_metric(
            "at_reencrypt_dead_letters_total{reason=\"bad_policy\"}",
            1.0,
            WAIT,
        )
        .await?;
    assert!(!worker.task.is_finished(), "the worker is still running");

    // And it still delivers: d1's change reaches d2.
    d1.publish(&["sync"], json!({ "after": "deep policy" }))
        .await?;
    d2.wait_applied(
        &json!({ "after": "deep policy" }),
        WAIT,
        "d2, after the hostile re-key",
    )
    .await?;
    env.stop().await;
    Ok(())
}
