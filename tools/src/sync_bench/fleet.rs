//! The parties of one configuration (phases 1 and 2): one owner; `twins` twins of
//! `devices / twins` devices each, every one enrolled (its re-key makes it a receiver of its
//! twin's `sync` changes, so each device is its siblings' receiver), with an MQTT login; `receivers`
//! services, each granted `sync` on the owner's twins and signed in as its own Kafka principal.
//! Each device's changes are sealed before the clock starts (signature, AEAD under the epoch's
//! DEK, the owner's capsule once per epoch), so the run measures the cloud, not the simulator.

use std::path::{Path, PathBuf};

use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_client::service::Service as ServiceDir;
use armored_crypto::identity::PartyKind;
use armored_device::Device;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use super::raw::Login;
use crate::bench::rid;

/// One simulated device and what it will publish.
#[derive(Debug)]
pub struct Dev {
    /// Twin id.
    pub twin: String,
    /// Device id.
    pub device: String,
    /// MQTT login (`{twin}/{device}`).
    pub login: Login,
    /// Its uplink topic.
    pub up: String,
    /// Its downlink topic.
    pub down: String,
    /// The seq of `envelopes[0]`.
    pub first_seq: u64,
    /// Its sealed state changes, in seq order.
    pub envelopes: Vec<Vec<u8>>,
}

/// One service receiver: its directory and its client (own principal).
#[derive(Debug)]
pub struct Receiver {
    /// Key directory.
    pub dir: PathBuf,
    /// Signed in as the service.
    pub ctl: Ctl,
}

/// Everyone of one configuration.
#[derive(Debug)]
pub struct Fleet {
    /// The devices, twin by twin.
    pub devices: Vec<Dev>,
    /// The services granted `sync`.
    pub receivers: Vec<Receiver>,
}

/// What to set up.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Twins.
    pub twins: usize,
    /// Devices in all (spread evenly over the twins).
    pub devices: usize,
    /// Services granted on every twin.
    pub receivers: usize,
    /// Changes each device seals.
    pub per_device: usize,
}

/// Phases 1 and 2 for `shape`, under `dir`; MQTT logins added in one reload of mosquitto.
pub async fn setup(ctl: &Ctl, infra_dir: &Path, dir: &Path, shape: Shape) -> anyhow::Result<Fleet> {
    let tag = rid();
    let owner = Owner::init(&dir.join("owner"), &format!("owner-{tag}"), ctl).await?;
    let owner = &owner;
    let per_twin = shape.devices.div_ceil(shape.twins.max(1)).max(1);
    let enroll = |i: usize| {
        let tag = tag.clone();
        async move {
            let twin = format!("t{}-{tag}", i / per_twin);
            let device = format!("d{}", i % per_twin);
            let ddir = dir.join(format!("devices/{twin}-{device}"));
            let card = armored_device::setup(&ddir, &twin, &device, 3_600_000)?;
            armored_device::pin_owner(&ddir, &owner.identity()?)?;
            owner.enroll_device(ctl, &card).await?;
            Ok::<_, anyhow::Error>((twin, device, ddir))
        }
    };
    let enrolled: Vec<(String, String, PathBuf)> = stream::iter(0..shape.devices)
        .map(enroll)
        .buffered(8)
        .try_collect()
        .await?;
    // Sealing is CPU work: on the blocking pool, as many at a time as there are cores.
    let per_device = shape.per_device;
    let devices: Vec<Dev> = stream::iter(enrolled)
        .map(|(twin, device, ddir)| {
            tokio::task::spawn_blocking(move || seal(twin, device, &ddir, per_device))
        })
        .buffered(2)
        .map(|r| r?)
        .try_collect()
        .await?;
    crate::procs::add_mqtt_users(
        infra_dir,
        devices
            .iter()
            .map(|d| (d.login.user.as_str(), d.login.password.as_str())),
    )?;
    let mut receivers = Vec::new();
    for k in 0..shape.receivers {
        let sdir = dir.join(format!("services/s{k}"));
        let identity = ServiceDir::init(&sdir, &format!("s{k}-{tag}"), PartyKind::Service)?;
        let (party, _) = owner.trust(ctl, &std::fs::read(identity)?).await?;
        owner.grant(ctl, &party.party_id, "sync", None).await?;
        let sctl = crate::procs::service_ctl(infra_dir, ctl, &party.party_id).await?;
        receivers.push(Receiver {
            dir: sdir,
            ctl: sctl,
        });
    }
    Ok(Fleet { devices, receivers })
}

fn seal(twin: String, device: String, dir: &Path, n: usize) -> anyhow::Result<Dev> {
    let mut d = Device::open(dir)?;
    let first_seq = d.state().next_seq;
    let mut envelopes = Vec::with_capacity(n);
    for i in 0..n {
        envelopes.push(d.record(
            &["sync"],
            json!({ "v": i, "by": device }),
            armored_base::time::now_ms(),
        )?);
    }
    // The device's durable outbox is not used here (the run publishes the envelopes itself).
    let _ = std::fs::remove_dir_all(dir.join("outbox"));
    let (up, down) = d.topics();
    Ok(Dev {
        login: Login {
            user: format!("{twin}/{device}"),
            password: format!("pw{}{}", rid(), rid()),
        },
        twin,
        device,
        up,
        down,
        first_seq,
        envelopes,
    })
}
