//! Phases 1, 2 and 2+ of a bench run: N + 1 owners (each phone's user is its owner, as in the
//! paper), their phones enrolled with MPC slots, the three nodes and the health authority pinned,
//! share grants, process tokens, and one batch of MQTT logins.

use std::path::{Path, PathBuf};

use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_client::service::Service as ServiceDir;
use armored_crypto::identity::{PartyKind, ShareSlots};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::fleet::Phone;
use super::{rid, BenchConfig};
use crate::contacts::{token_request, SLOT_MS};

/// Everyone of one run.
#[derive(Debug)]
pub struct Parties {
    /// The nodes' party ids.
    pub nodes: [String; 3],
    /// The nodes' key directories.
    pub node_dirs: [PathBuf; 3],
    /// The health authority's directory (receiver and designator of every token).
    pub ha: PathBuf,
    /// The reference phone, then the participants'.
    pub phones: Vec<Phone>,
}

/// Phases 1, 2 and 2+ for N + 1 users: owners, phones (sealing `spe` slots per share epoch),
/// node grants, process tokens, MQTT logins.
pub async fn setup(
    cfg: &BenchConfig,
    ctl: &Ctl,
    dir: &Path,
    n: usize,
    spe: u64,
) -> anyhow::Result<Parties> {
    let tag = rid();
    let mut node_dirs = Vec::new();
    let mut identities = Vec::new();
    for j in 1..=3 {
        let d = dir.join(format!("node-{j}"));
        identities.push(std::fs::read(ServiceDir::init(
            &d,
            &format!("node{j}-{tag}"),
            PartyKind::MpcNode,
        )?)?);
        node_dirs.push(d);
    }
    let ha = dir.join("health-authority");
    let ha_identity = std::fs::read(ServiceDir::init(
        &ha,
        &format!("health-{tag}"),
        PartyKind::Service,
    )?)?;
    // The parties' identities go to the registry once; every owner pins them.
    let first = Owner::init(&dir.join("owners/o0"), &format!("o0-{tag}"), ctl).await?;
    let mut nodes: Vec<String> = Vec::new();
    for id in identities.iter().chain([&ha_identity]) {
        nodes.push(first.trust(ctl, id).await?.0.party_id);
    }
    let nodes: [String; 3] = [nodes[0].clone(), nodes[1].clone(), nodes[2].clone()];
    let node_dirs: [PathBuf; 3] = [0, 1, 2].map(|i| node_dirs[i].clone());
    let (identities, ha_identity) = (&identities, &ha_identity);
    let setup_one = |i: usize| {
        let (nodes, tag) = (nodes.clone(), tag.clone());
        async move {
            let owner = if i == 0 {
                Owner::open(&dir.join("owners/o0"))?
            } else {
                Owner::init(
                    &dir.join(format!("owners/o{i}")),
                    &format!("o{i}-{tag}"),
                    ctl,
                )
                .await?
            };
            for id in identities.iter().chain([ha_identity]) {
                owner.pin(id)?;
            }
            owner.grant_mpc(ctl, &nodes).await?;
            let twin = format!("p{i}-{tag}");
            owner
                .process_token(
                    ctl,
                    &token_request(ha_identity, cfg.points, 24 * 3_600_000, vec![twin.clone()]),
                )
                .await?;
            let pdir = dir.join(format!("phones/{twin}"));
            let slots = ShareSlots {
                slot_len_ms: SLOT_MS,
                slots_per_share_epoch: spe,
            };
            let card = armored_device::setup_with_slots(&pdir, &twin, "p", 3_600_000, slots)?;
            armored_device::pin_owner(&pdir, &owner.identity()?)?;
            owner.enroll_device(ctl, &card).await?;
            Ok::<_, anyhow::Error>(Phone {
                user: format!("{twin}/p"),
                password: format!("pw{}", rid()),
                twin,
                dir: pdir,
            })
        }
    };
    let phones: Vec<Phone> = stream::iter(0..=n)
        .map(setup_one)
        .buffered(8)
        .try_collect()
        .await?;
    // One reload of mosquitto's password file for all of them.
    crate::procs::add_mqtt_users(
        &cfg.site.infra_dir,
        phones
            .iter()
            .map(|p| (p.user.as_str(), p.password.as_str())),
    )?;
    Ok(Parties {
        nodes,
        node_dirs,
        ha,
        phones,
    })
}
