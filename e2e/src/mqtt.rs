//! MQTT logins on the test broker: adding one (`infra/mqtt-user.sh`) and checking that one works.

use std::time::{Duration, Instant};

use anyhow::bail;
use armored_base::mqtt::MqttConfig;

use crate::env::{rand_id, repo_root, Env};

impl Env {
    /// Adds an MQTT login (infra/mqtt-user.sh) and waits until the broker accepts it.
    pub async fn add_mqtt_user(&self, user: &str, password: &str) -> anyhow::Result<()> {
        // The password on stdin: never on a command line.
        let mut child = tokio::process::Command::new("bash")
            .arg(repo_root().join("infra/mqtt-user.sh"))
            .args(["add", user])
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
                "mqtt-user.sh add {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // mosquitto reloads its password file on SIGHUP, asynchronously: wait until a login works.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if mqtt_login_ok(&self.mqtt(user, password, &rand_id("probe"))).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the broker did not accept the new login {user} within 10 s")
    }
}

/// Whether `cfg` can log in to the MQTT broker.
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
