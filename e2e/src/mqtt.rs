//! MQTT logins on the test broker (`infra/mqtt-user.sh`): a device's, a bridge's, a raw admin
//! client's, and checking whether one is refused.
//!
//! The broker binds client ids to usernames (one user = one session): a second connection of a
//! user takes over the first (and, clean, wipes its queue). So every bridge and every raw admin
//! client a test starts gets a user of its own, and nothing here logs in as a live user to check it.

use std::time::Duration;

use anyhow::bail;
use armored_base::mqtt::MqttConfig;
use rand_core::RngCore;

use crate::env::{rand_id, repo_root, Env};

/// Runs `infra/mqtt-user.sh ARGS` with `password` on stdin (never on a command line); it returns
/// once the broker has applied the change.
async fn mqtt_user(args: &[&str], password: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("bash")
        .arg(repo_root().join("infra/mqtt-user.sh"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(format!("{password}\n").as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "mqtt-user.sh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A random password.
fn random_password() -> String {
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Env {
    /// Adds an MQTT login; returns once the broker accepts it (mqtt-user.sh waits for the reload
    /// with a sentinel user of its own: a probe login as `user` would take over its session).
    pub async fn add_mqtt_user(&self, user: &str, password: &str) -> anyhow::Result<()> {
        mqtt_user(&["add", user], password).await
    }

    /// A bridge's login of its own: a random name N whose users N-up and N-down have the bridge's
    /// grants (`mqtt-user.sh add-bridge`). Bridges of concurrent tests (or two in one test) must
    /// not share users: each would take over the other's sessions.
    pub async fn bridge_login(&self) -> anyhow::Result<MqttConfig> {
        let (name, password) = (rand_id("bridge"), random_password());
        mqtt_user(&["add-bridge", &name], &password).await?;
        Ok(self.mqtt(&name, &password, &name))
    }

    /// A raw client's login of its own with the admin's grants (everything; `mqtt-user.sh
    /// add-role admin`): a test's eavesdropper or junk publisher.
    pub async fn admin_login(&self) -> anyhow::Result<MqttConfig> {
        let (name, password) = (rand_id("admin"), random_password());
        mqtt_user(&["add-role", "admin", &name], &password).await?;
        Ok(self.mqtt(&name, &password, &name))
    }
}

/// Whether `cfg` can log in to the MQTT broker. A login that succeeds IS `cfg.username`'s session
/// (clean: it wipes that user's queue and drops a live connection of it): check refusals (a wrong
/// password, a wrong CA) or users nobody else uses.
pub async fn mqtt_login_ok(cfg: &MqttConfig) -> bool {
    let Ok(mut o) = armored_base::mqtt::options(cfg, false) else {
        return false;
    };
    o.set_clean_session(true);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    let r = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                    return a.code == rumqttc::ConnectReturnCode::Success
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.disconnect().await;
    r
}
