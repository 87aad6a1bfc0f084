//! The three MPC nodes of a test: their key directories pinned by an owner ([`MpcNodes`]), a
//! node's configuration (`at_mpc_node::Config::for_node` on this test's topics), and a node run
//! either in-process ([`Env::start_node`]) or as an `at-mpc-node` process that a test can kill and
//! start again ([`NodeProcess`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use armored_client::kafka::Ctl;
use armored_client::owner::Owner;
use armored_client::service::Service;
use armored_crypto::identity::PartyKind;
use armored_runtime::config::write_toml;
use armored_runtime::scrape;

use crate::env::{free_addr, rand_id, Env};
use crate::services::Running;

/// Three MPC nodes' key directories (`node1` … `node3` in the test's directory) and their party
/// ids, in index order.
#[derive(Clone, Debug)]
pub struct MpcNodes {
    /// Key directories of nodes 1, 2, 3.
    pub dirs: [PathBuf; 3],
    /// Their party ids, as the owner pinned them.
    pub ids: [String; 3],
}

impl Env {
    /// Creates three MPC nodes' keys and has `owner` pin their identities.
    pub async fn pin_mpc_nodes(&self, owner: &Owner, ctl: &Ctl) -> anyhow::Result<MpcNodes> {
        let mut ids = Vec::new();
        for j in 1..=3 {
            let id = Service::init(
                &self.dir.join(format!("node{j}")),
                &rand_id(&format!("node{j}")),
                PartyKind::MpcNode,
            )?;
            let (p, _) = owner.trust(ctl, &std::fs::read(id)?).await?;
            ids.push(p.party_id);
        }
        Ok(MpcNodes {
            dirs: [1, 2, 3].map(|j| self.dir.join(format!("node{j}"))),
            ids: [ids[0].clone(), ids[1].clone(), ids[2].clone()],
        })
    }

    /// [`Env::pin_mpc_nodes`], then `owner` grants node j share j.
    pub async fn mpc_nodes(&self, owner: &Owner, ctl: &Ctl) -> anyhow::Result<MpcNodes> {
        let nodes = self.pin_mpc_nodes(owner, ctl).await?;
        owner.grant_mpc(ctl, &nodes.ids).await?;
        Ok(nodes)
    }

    /// Node `index`'s configuration among `dirs` on this test's topics, `/metrics` on a free port.
    pub fn node_config(
        &self,
        index: u32,
        dirs: &[PathBuf; 3],
    ) -> anyhow::Result<at_mpc_node::Config> {
        Ok(at_mpc_node::Config::for_node(
            self.kafka_as(&format!("at-mpc-node-{index}"))?,
            index,
            dirs,
            free_addr(),
        )?)
    }

    /// Runs a node in-process.
    pub fn start_node(&self, cfg: at_mpc_node::Config) -> Running {
        self.spawn(cfg.node.metrics_addr, |sd| at_mpc_node::run(cfg, sd))
    }
}

/// An `at-mpc-node` process, started from its configuration written as `node.toml` in its key
/// directory; killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    bin: PathBuf,
    child: Child,
    /// The configuration file it reads.
    pub config: PathBuf,
    /// Its key directory.
    pub dir: PathBuf,
    /// Its `/metrics` and `/healthz` address.
    pub metrics: SocketAddr,
}

impl NodeProcess {
    /// Writes `cfg` and starts the node binary `bin` on it.
    pub fn start(bin: &Path, cfg: &at_mpc_node::Config) -> anyhow::Result<Self> {
        let dir = PathBuf::from(&cfg.node.dir);
        let config = dir.join("node.toml");
        write_toml(cfg, &config)?;
        Ok(Self {
            child: spawn(bin, &config)?,
            bin: bin.to_path_buf(),
            config,
            dir,
            metrics: cfg.node.metrics_addr,
        })
    }

    /// Kills it (SIGKILL: no drain, no commit).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it and starts it again on the same configuration.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = spawn(&self.bin, &self.config)?;
        Ok(())
    }

    /// The value of one `/metrics` sample, 0 if absent.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        Ok(scrape::metric(self.metrics, sample).await?)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &Path, config: &Path) -> anyhow::Result<Child> {
    Command::new(bin)
        .env("AT_CONFIG", config)
        .env("RUST_LOG", "warn,at_mpc_node=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Waits until every node at `addrs` answers `/healthz` with 200 (it has folded its share
/// topic), or fails after `timeout` in all.
pub async fn wait_healthy(
    addrs: impl IntoIterator<Item = SocketAddr>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for addr in addrs {
        while !scrape::healthy(addr).await {
            ensure!(
                Instant::now() < deadline,
                "node at {addr} never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
