//! The demo's issue-6 part (called from `demo.rs`): M3, a device of a third twin is replaced and
//! its replacement rebuilds the same state from the history; paper 5.4, the owner's keys are split
//! into 2-of-3 shares and written to a password file, a wrong password and a single share fail, and
//! the owner restored from two shares grants an auditor the twin's history and revokes it.

use std::path::Path;
use std::time::{Duration, Instant};

use armored_base::Shutdown;
use armored_crypto::identity::PartyKind;
use armored_device::link::LinkEvent;
use armored_device::{Event, State};
use serde_json::json;

use super::parties::{start_device_with, step, DemoConfig, Dev};
use armored_client::kafka::Ctl;
use armored_client::owner::backup;
use armored_client::owner::Owner;
use armored_client::replay as history;
use armored_client::service::{Outcome, Service};

impl Dev {
    /// Waits (at most `wait`) for `n` applied changes, or for a roster naming `devices` devices.
    async fn until(&mut self, n: usize, devices: Option<usize>, wait: Duration) -> usize {
        let mut got = 0;
        let deadline = Instant::now() + wait;
        loop {
            if devices.is_none() && got >= n {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(LinkEvent::Downlink(Event::Applied { .. }))) => got += 1,
                Ok(Some(LinkEvent::Downlink(Event::Roster { devices: d })))
                    if Some(d) == devices =>
                {
                    return got
                }
                Ok(Some(_)) => {}
                _ => return got,
            }
        }
    }

    fn state(&self) -> State {
        self.device
            .lock()
            .map(|d| d.state().clone())
            .unwrap_or_default()
    }
}

async fn device(
    cfg: &DemoConfig,
    owner: &Owner,
    ctl: &Ctl,
    twin: &str,
    name: &str,
    enroll: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<(Dev, armored_device::Card)> {
    let slot = armored_device::DEFAULT_SLOT_LEN_MS;
    start_device_with(cfg, owner, ctl, twin, name, slot, enroll, shutdown).await
}

/// Runs the scenario; returns whether every expectation held.
pub async fn run(
    cfg: &DemoConfig,
    ctl: &Ctl,
    owner: &Owner,
    tag: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<bool> {
    let twin = format!("van-{tag}");
    step(
        13,
        &format!("M3: devices v1, v2 of twin {twin} write; then v1 is replaced by v3"),
    );
    let (mut v1, _) = device(cfg, owner, ctl, &twin, "v1", true, shutdown).await?;
    let (mut v2, _) = device(cfg, owner, ctl, &twin, "v2", true, shutdown).await?;
    v1.until(0, Some(2), Duration::from_secs(10)).await;
    v2.until(0, Some(2), Duration::from_secs(10)).await;
    v1.publish(&["sync"], json!({"mode": "eco", "km": 120}))
        .await?;
    v1.publish(&["sync", "location"], json!({"lat": 47.07}))
        .await?;
    v2.until(2, None, Duration::from_secs(30)).await;
    v2.publish(&["sync"], json!({"mode": "sport"})).await?;
    v1.until(1, None, Duration::from_secs(30)).await;
    v1.stop.cancel();
    let old = v1.state();
    println!("    v1's state: {}", serde_json::to_string(&old.fields)?);
    let (mut v3, card) = device(cfg, owner, ctl, &twin, "v3", false, shutdown).await?;
    let r = history::replace_device(owner, ctl, "v1", &card, None).await?;
    println!(
        "    alice revokes v1's re-key ({}) and its key after seq {}, enrolls v3",
        r.revoked_rekeys, r.last_valid_seq
    );
    v3.until(0, Some(3), Duration::from_secs(10)).await;
    let id = history::request_replay(owner, ctl, &r.new_rk, 0).await?;
    let status = history::watch_replay(ctl, &id, Duration::from_secs(60), |_| {}).await?;
    let got = v3.until(3, None, Duration::from_secs(30)).await;
    let new = v3.state();
    println!(
        "    replay {}: {} stored records scanned, {} delivered; v3 applied {got}",
        &id[..8],
        status.as_ref().map_or(0, |s| s.scanned),
        status.as_ref().map_or(0, |s| s.delivered)
    );
    println!("    v3's state: {}", serde_json::to_string(&new.fields)?);
    let replaced = new.fields == old.fields && !new.fields.is_empty();
    println!(
        "    v3 rebuilt v1's state: {}",
        if replaced {
            "yes, field for field"
        } else {
            "NO"
        }
    );

    step(
        14,
        "Paper 5.4: alice backs up her keys (password file; 2-of-3 shares for trustees)",
    );
    let bdir = cfg.dir.join("backup");
    std::fs::create_dir_all(&bdir)?;
    let owner_dir = cfg.dir.join("owner");
    backup::backup_password(
        &owner_dir,
        &bdir.join("alice.backup"),
        b"demo passphrase 42",
    )?;
    let shares = backup::backup_shares(&owner_dir, &bdir.join("alice"), 2, 3)?;
    let wrong = backup::open_password(&bdir.join("alice.backup"), b"not the passphrase");
    let one = backup::open_shares(&shares[..1]);
    println!("    wrong password: {}", err_text(&wrong));
    println!("    one share only: {}", err_text(&one));
    let refused = wrong.is_err() && one.is_err();
    let restored_dir = cfg.dir.join("owner-restored");
    backup::restore(
        &backup::open_shares(&[shares[0].clone(), shares[2].clone()])?,
        &restored_dir,
    )?;
    let restored = Owner::open(&restored_dir)?;
    println!(
        "    shares 1 and 3 restore {} in {}",
        restored.owner_id,
        short(&restored_dir)
    );
    let adir = cfg.dir.join("auditor");
    let id_file = Service::init(&adir, &format!("auditor-{tag}"), PartyKind::Service)?;
    let (party, _) = restored.trust(ctl, &std::fs::read(&id_file)?).await?;
    let (rk, req) = history::grant_with_history(
        &restored,
        ctl,
        &party.party_id,
        &format!("twin:{twin} AND sync"),
        0,
    )
    .await?;
    println!("    the restored owner grants the auditor 'twin:{twin} AND sync' with its history");
    let _ = history::watch_replay(ctl, &req, Duration::from_secs(60), |_| {}).await?;
    let mut auditor = Service::open(&adir)?;
    let auditor_ctl = crate::procs::service_ctl(&cfg.infra_dir, ctl, &auditor.id).await?;
    let mut seen = Vec::new();
    auditor
        .consume(
            &auditor_ctl,
            Some(3),
            Some(Duration::from_secs(10)),
            shutdown.child_token(),
            |o| {
                if let Outcome::Received(r) = o {
                    seen.push(r.delta.clone());
                }
            },
        )
        .await?;
    println!(
        "    the auditor reads the van's history: {} changes",
        seen.len()
    );
    restored.revoke_rekey(ctl, &rk).await?;
    println!("    and the restored owner revokes it again");
    let ok = replaced && refused && seen.len() == 3;
    println!(
        "    replacement and recovery: {}",
        if ok {
            "every expectation held"
        } else {
            "EXPECTATIONS FAILED"
        }
    );
    Ok(ok)
}

fn err_text<T>(r: &Result<T, armored_client::ClientError>) -> String {
    match r {
        Ok(_) => "ACCEPTED (unexpected)".into(),
        Err(e) => format!("refused ({e})"),
    }
}

fn short(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
