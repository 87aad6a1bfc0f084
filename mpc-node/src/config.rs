//! Configuration of a node (defaults, then file, then `AT__…` environment variables).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use armored_crypto::hpke::HpkeSecretKey;
use armored_crypto::identity::{fingerprint, verify_pinned_identity, PartyIdentity, PartyKind};
use armored_crypto::keyfile::{load_hpke_key, load_pre_key, load_signing_key};
use armored_crypto::kpcpre::SecretKey;
use armored_crypto::sig::SigningKey;
use armored_runtime::config::KafkaConfig;
use serde::{Deserialize, Serialize};

/// Configuration of a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Kafka.
    pub kafka: KafkaConfig,
    /// Node settings.
    pub node: NodeConfig,
}

/// Node settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's index j (1..=3): it reads `at.mpc.shares.node-j.v1`.
    pub index: u32,
    /// Key directory made by `atctl service init --kind mpc-node`.
    pub dir: String,
    /// The identity files of nodes 1, 2 and 3 (this one included), pinned by the operator: peer
    /// channels are authenticated with exactly these keys.
    pub peers: Vec<String>,
    /// `/metrics` and `/healthz`.
    pub metrics_addr: SocketAddr,
    /// Job ledger and budgets (empty: `<dir>/state`).
    pub state_dir: String,
    /// Consumer group on `at.mpc.jobs.v1` (empty: `mpc-node-<index>`).
    pub group: String,
    /// How long a round waits for a peer (mpc.md: 10 s).
    pub round_timeout_ms: u64,
    /// Inputs are cut off at the window's end plus this clock-skew bound (envelope.md: 5 min).
    pub cutoff_skew_ms: u64,
    /// A job whose cut-off is further away than this fails as `window_not_closed`; one closer is
    /// deferred until its cut-off (persisted; the jobs topic goes on meanwhile).
    pub max_cutoff_wait_ms: u64,
    /// Attempts that may wait for their cut-off at once; more fail as `too_many_deferred`.
    pub max_deferred_jobs: usize,
    /// Largest number of participants a job may name.
    pub max_participants: usize,
    /// Longest window a job may name, in slots (`window_too_long`).
    pub max_window_slots: u32,
    /// Largest (participants + 1) × window slots, the inputs a job makes every node allocate
    /// (`job_too_large`).
    pub max_job_inputs: u64,
}

/// Built-in defaults.
pub fn defaults() -> String {
    format!(
        r#"{kafka}
[node]
index = 1
dir = ""
peers = []
metrics_addr = "127.0.0.1:9131"
state_dir = ""
group = ""
round_timeout_ms = 10000
cutoff_skew_ms = 300000
max_cutoff_wait_ms = 86400000
max_deferred_jobs = 1000
max_participants = 10000
max_window_slots = 2016
max_job_inputs = 1000000
"#,
        kafka = armored_runtime::config::KAFKA_DEFAULTS,
    )
}

/// Why [`Config::for_node`] could not make a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForNodeError {
    /// The index names none of the three node directories.
    #[error("node index {0} is not 1, 2 or 3")]
    Index(u32),
    /// The built-in defaults do not parse (a bug of this crate).
    #[error(transparent)]
    Defaults(#[from] armored_runtime::config::ConfigError),
}

impl Config {
    /// Node `index`'s configuration among three nodes whose key directories (made by
    /// `atctl service init --kind mpc-node`) are `node_dirs`, in index order: its own directory,
    /// the three identity files pinned as peers, `/metrics` at `metrics_addr`, and the built-in
    /// defaults for everything else. Tools and tests set what they need on the result and write it
    /// with `armored_runtime::config::write_toml` (or run it in-process).
    pub fn for_node(
        kafka: KafkaConfig,
        index: u32,
        node_dirs: &[PathBuf; 3],
        metrics_addr: SocketAddr,
    ) -> Result<Self, ForNodeError> {
        let own = index
            .checked_sub(1)
            .and_then(|i| node_dirs.get(i as usize))
            .ok_or(ForNodeError::Index(index))?;
        let mut cfg: Self = armored_runtime::config::from_defaults(&defaults())?;
        cfg.kafka = kafka;
        cfg.node.index = index;
        cfg.node.dir = own.display().to_string();
        cfg.node.peers = node_dirs
            .iter()
            .map(|d| d.join("identity").display().to_string())
            .collect();
        cfg.node.metrics_addr = metrics_addr;
        Ok(cfg)
    }
}

impl NodeConfig {
    /// The consumer group.
    pub fn group(&self) -> String {
        if self.group.is_empty() {
            format!("mpc-node-{}", self.index)
        } else {
            self.group.clone()
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        if self.state_dir.is_empty() {
            Path::new(&self.dir).join("state")
        } else {
            PathBuf::from(&self.state_dir)
        }
    }
}

/// A node's own keys and its pinned peers.
pub struct Keys {
    /// This node's index (1..=3).
    pub index: u32,
    /// PRE key: opens share deliveries (Dec²); taken by the share store at start.
    pub pre: Option<SecretKey>,
    /// Signs output shares and failures.
    pub sig: SigningKey,
    /// Peer channels.
    pub hpke: HpkeSecretKey,
    /// Nodes 1, 2, 3 (index - 1).
    pub nodes: [PartyIdentity; 3],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys(node {}, <redacted>)", self.index)
    }
}

impl Keys {
    /// Loads the key directory and the three pinned identities; this node's identity must be the
    /// one at its index and must match its keys.
    pub fn load(cfg: &NodeConfig) -> anyhow::Result<Self> {
        if !(1..=3).contains(&cfg.index) {
            bail!("node.index must be 1, 2 or 3 (got {})", cfg.index);
        }
        if cfg.peers.len() != 3 {
            bail!(
                "node.peers must list the identity files of nodes 1, 2 and 3 (got {})",
                cfg.peers.len()
            );
        }
        let dir = Path::new(&cfg.dir);
        let mut rng = rand_core::OsRng;
        let pre = load_pre_key(&dir.join("pre.key"), &mut rng).with_context(|| {
            format!(
                "node keys in {:?} (atctl service init --kind mpc-node)",
                cfg.dir
            )
        })?;
        let sig = load_signing_key(&dir.join("sig.key"))?;
        let hpke = load_hpke_key(&dir.join("hpke.key"))?;
        let mut nodes = Vec::with_capacity(3);
        for (j, path) in cfg.peers.iter().enumerate() {
            let bytes =
                std::fs::read(path).with_context(|| format!("node {} identity {path}", j + 1))?;
            let p = verify_pinned_identity(&bytes, &fingerprint(&bytes))
                .with_context(|| format!("node {} identity {path}", j + 1))?
                .into_inner();
            if p.kind != PartyKind::MpcNode {
                bail!("{path} is not an MPC node identity");
            }
            nodes.push(p);
        }
        let nodes: [PartyIdentity; 3] = nodes
            .try_into()
            .map_err(|_| anyhow::anyhow!("three node identities expected"))?;
        let me = &nodes[(cfg.index - 1) as usize];
        if me.sig.key_id() != sig.key_id()
            || me.hpke.key_id() != hpke.public().key_id()
            || me.pre.key_id() != pre.public().key_id()
        {
            bail!(
                "node.peers[{}] ({}) is not this node's identity",
                cfg.index - 1,
                me.party_id
            );
        }
        let ids: std::collections::HashSet<_> = nodes.iter().map(|n| n.hpke.key_id()).collect();
        if ids.len() != 3 {
            bail!("the three node identities must be distinct");
        }
        Ok(Self {
            index: cfg.index,
            pre: Some(pre),
            sig,
            hpke,
            nodes,
        })
    }

    /// The node party ids in index order.
    pub fn node_ids(&self) -> [String; 3] {
        self.nodes.clone().map(|n| n.party_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_node_pins_the_three_identities_and_keeps_the_defaults() -> anyhow::Result<()> {
        let dirs = ["n1", "n2", "n3"].map(PathBuf::from);
        let kafka: Config = armored_runtime::config::from_defaults(&defaults())?;
        let addr: SocketAddr = "127.0.0.1:7001".parse()?;
        let cfg = Config::for_node(kafka.kafka, 2, &dirs, addr)?;
        assert_eq!((cfg.node.index, cfg.node.dir.as_str()), (2, "n2"));
        assert_eq!(
            cfg.node.peers,
            ["n1/identity", "n2/identity", "n3/identity"]
        );
        assert_eq!(cfg.node.metrics_addr, addr);
        assert_eq!(cfg.node.round_timeout_ms, 10_000, "a default");
        assert_eq!(cfg.node.group(), "mpc-node-2");
        for bad in [0, 4] {
            assert!(matches!(
                Config::for_node(cfg.kafka.clone(), bad, &dirs, addr),
                Err(ForNodeError::Index(i)) if i == bad
            ));
        }
        Ok(())
    }
}
