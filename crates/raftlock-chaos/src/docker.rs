//! The docker-compose cluster (`docker-compose.yml`) as [`Nodes`]: faults
//! are `docker kill`, `docker pause`, `docker network disconnect`.
//!
//! Containers are `raftlock-node<ID>` on network `raftlock-net` with fixed
//! addresses 172.28.0.1<ID>; clients use the ports published on loopback,
//! 7898 + ID.

use std::process::Command;

use anyhow::{bail, Context};

use crate::nodes::Nodes;

pub const NETWORK: &str = "raftlock-net";

pub struct DockerCluster {
    ids: Vec<u64>,
    /// Nodes this run cut off, to reconnect if it stops half-way.
    partitioned: Vec<u64>,
    paused: Vec<u64>,
}

fn container(id: u64) -> String {
    format!("raftlock-node{id}")
}

fn address(id: u64) -> String {
    format!("172.28.0.{}", 10 + id)
}

fn docker(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("running docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Puts a cut-off container back on the network with its address and name.
fn reconnect(id: u64) -> anyhow::Result<()> {
    let alias = format!("node{id}");
    docker(&[
        "network",
        "connect",
        "--ip",
        &address(id),
        "--alias",
        &alias,
        NETWORK,
        &container(id),
    ])
}

impl DockerCluster {
    /// The compose cluster with nodes 1..=n, which must be up already.
    pub fn attach(n: u64) -> anyhow::Result<DockerCluster> {
        for id in 1..=n {
            docker(&["inspect", "--type", "container", &container(id)]).with_context(|| {
                format!("is the compose cluster up? ({} missing)", container(id))
            })?;
        }
        Ok(DockerCluster {
            ids: (1..=n).collect(),
            partitioned: Vec::new(),
            paused: Vec::new(),
        })
    }
}

impl Nodes for DockerCluster {
    fn ids(&self) -> Vec<u64> {
        self.ids.clone()
    }

    fn endpoint(&self, id: u64) -> String {
        format!("127.0.0.1:{}", 7898 + id)
    }

    fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        docker(&["kill", &container(id)])
    }

    fn start(&mut self, id: u64) -> anyhow::Result<()> {
        docker(&["start", &container(id)])
    }

    fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        docker(&["stop", "--time", "10", &container(id)])
    }

    fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        docker(&["pause", &container(id)])?;
        self.paused.push(id);
        Ok(())
    }

    fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        self.paused.retain(|p| *p != id);
        docker(&["unpause", &container(id)])
    }

    fn can_partition(&self) -> bool {
        true
    }

    fn partition(&mut self, id: u64) -> anyhow::Result<()> {
        docker(&["network", "disconnect", NETWORK, &container(id)])?;
        self.partitioned.push(id);
        Ok(())
    }

    fn heal_partition(&mut self, id: u64) -> anyhow::Result<()> {
        self.partitioned.retain(|p| *p != id);
        reconnect(id)
    }
}

impl Drop for DockerCluster {
    /// Leaves the cluster whole even if the run stops half-way.
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.paused) {
            let _ = docker(&["unpause", &container(id)]);
        }
        for id in std::mem::take(&mut self.partitioned) {
            let _ = reconnect(id);
        }
        for id in self.ids.clone() {
            let _ = docker(&["start", &container(id)]);
        }
    }
}
