//! The demo's phase 5 and write-token steps (called from `demo::run`): alice asks a device of her
//! twin to read and to set a field (`atctl request`), then lets the insurer write the twin with a
//! write token (`atctl owner write-token`, `atctl service write`), and revokes the token: the
//! device refuses the next write with reason `revoked`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use armored_base::time::now_ms;
use armored_device::Device;
use serde_json::json;

use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_client::request::{request, Ask, Requester};
use armored_client::service::write::{seal, write, Write};

/// Polls `pred` on the device until it holds or `wait` passes.
async fn until(
    device: &Arc<Mutex<Device>>,
    wait: Duration,
    pred: impl Fn(&Device) -> bool,
) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if device.lock().map(|d| pred(&d)).unwrap_or(false) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the steps; returns whether every expectation held.
pub async fn run(
    ctl: &Ctl,
    svc_ctl: &Ctl,
    owner: &Owner,
    twin: &str,
    svc_dir: &Path,
    device: Arc<Mutex<Device>>,
) -> anyhow::Result<bool> {
    let mut ok = true;
    println!("[9] Phase 5: alice asks twin {twin} (sealed for her key, routed by re-encryption to its devices)");
    let alice = Requester::open(owner.dir())?;
    let ask = |body: serde_json::Value| Ask {
        twin_id: twin,
        body: body.to_string().into_bytes(),
        ttl: Duration::from_secs(60),
        wait: Duration::from_secs(30),
        write_token: None,
    };
    let a = request(
        ctl,
        &alice,
        &ask(json!({"op": "read", "fields": ["lat", "lon"]})),
    )
    .await?;
    println!("    read  → {} answers {}", a.device_id, a.response);
    ok &= a.response["ok"] == json!(true);
    let a = request(
        ctl,
        &alice,
        &ask(json!({"op": "set", "field": "mode", "value": "eco"})),
    )
    .await?;
    println!(
        "    set   → {} answers {} and syncs the change",
        a.device_id, a.response
    );
    ok &= a.response["ok"] == json!(true);
    let synced = until(&device, Duration::from_secs(30), |d| {
        d.state().fields.get("mode") == Some(&json!("eco"))
    })
    .await;
    println!("    d2's state has mode = \"eco\": {synced}");
    ok &= synced;

    println!("[10] Write token: alice lets the insurer write twin {twin} for an hour");
    let identity = std::fs::read(svc_dir.join("identity"))?;
    let now = now_ms();
    let (token, bytes) = armored_client::owner::write_tokens::issue(
        owner,
        ctl,
        &identity,
        twin,
        now,
        now + 3_600_000,
    )
    .await?;
    let w = |delta: serde_json::Value, check: bool| Write {
        twin_id: twin,
        token: &bytes,
        delta,
        attributes: &["sync"],
        check_token: check,
    };
    let seq = write(svc_ctl, svc_dir, &w(json!({"target": 21.5}), true)).await?;
    let applied = until(&device, Duration::from_secs(30), |d| {
        d.state().fields.get("target") == Some(&json!(21.5))
    })
    .await;
    println!("    insurer writes target = 21.5 (seq {seq}, signed by its own key + token); d2 accepts: {applied}");
    ok &= applied;

    armored_client::owner::write_tokens::revoke(owner, ctl, &token.token_id).await?;
    let id = hex::decode(&token.token_id)?;
    let pushed = until(&device, Duration::from_secs(30), |d| {
        d.write_token_revoked(&id)
    })
    .await;
    // Sent without the service's own check, to show the device's.
    let refused_before = device
        .lock()
        .map(|d| {
            d.state()
                .counters
                .get("rejected_revoked")
                .copied()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let reg = svc_ctl.registry().await?;
    let (env, _) = seal(&reg, svc_dir, &w(json!({"target": 30}), false), now_ms())?;
    svc_ctl.send(&svc_ctl.topics.sync(), twin, &env).await?;
    let refused = until(&device, Duration::from_secs(30), |d| {
        d.state()
            .counters
            .get("rejected_revoked")
            .copied()
            .unwrap_or(0)
            > refused_before
    })
    .await;
    println!(
        "    alice revokes the token (reaches d2 in its roster: {pushed}); the next write is refused as revoked: {refused}"
    );
    ok &= pushed && refused;
    Ok(ok)
}
