//! A 3-node `nats-server` cluster with JetStream on 127.0.0.1, for failover tests: free ports,
//! routes between all nodes, one store directory per node; a node can be stopped (killed)
//! and restarted on the same ports and store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use station_core::process::{ChildProcess, CommandSpec};

use crate::peers::{nats_server_bin, wait_accepting};

/// How long the cluster may take to elect a JetStream meta leader.
const META_LEADER_DEADLINE: Duration = Duration::from_secs(60);
/// The cluster's name (`cluster { name }`, also JetStream's cluster).
pub const CLUSTER_NAME: &str = "station-test";

/// One node's fixed ports and files.
#[derive(Debug)]
struct Node {
    name: String,
    client_port: u16,
    monitor_port: u16,
    config_file: PathBuf,
    child: Option<ChildProcess>,
}

/// A running 3-node cluster; every node is killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Start three nodes and wait until each accepts clients and JetStream has a meta leader.
    /// Panics (with the nodes' logs) when that takes more than 60 s.
    pub async fn start() -> NatsCluster {
        const NODES: usize = 3;
        let dir = tempfile::tempdir().expect("a temporary directory for the cluster");
        let ports = free_ports(NODES * 3);
        let route_ports = &ports[NODES..NODES * 2];
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let name = format!("n{i}");
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).expect("a node store directory");
            let config = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
                 jetstream {{\n  store_dir: {store}\n  max_memory_store: 67108864\n  max_file_store: 1073741824\n}}\n\
                 cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{route}\"\n  routes: [{routes}]\n}}\n",
                client = ports[i],
                monitor = ports[NODES * 2 + i],
                route = route_ports[i],
                store = serde_json::to_string(&store.to_string_lossy()).expect("a string"),
                routes = routes.join(", "),
            );
            let config_file = store.join("nats-server.conf");
            std::fs::write(&config_file, config).expect("write a node config");
            nodes.push(Node {
                name,
                client_port: ports[i],
                monitor_port: ports[NODES * 2 + i],
                config_file,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, _dir: dir };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        for node in &cluster.nodes {
            wait_accepting(node.client_port, node.child.as_ref().expect("started")).await;
        }
        cluster.wait_for_meta_leader().await;
        cluster
    }

    /// Every node's URL, comma-separated (a `coding.nats.url` for the whole cluster).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Node `i`'s `server_name` (`n0`, `n1`, `n2`).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node on `client_port`, if it is one of ours.
    pub fn node_of_port(&self, client_port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.client_port == client_port)
    }

    /// The running node a client connection named `connection_name` is on (`/connz`), waiting
    /// up to 20 s for it to appear. Panics when no node has it.
    pub async fn node_of_connection(&self, connection_name: &str) -> usize {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            for (i, node) in self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.child.is_some())
            {
                let url = format!("http://127.0.0.1:{}/connz?limit=1024", node.monitor_port);
                let Ok(Ok(resp)) =
                    tokio::time::timeout(Duration::from_secs(2), http.get(&url).send()).await
                else {
                    continue;
                };
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    continue;
                };
                let names = body["connections"].as_array().cloned().unwrap_or_default();
                if names
                    .iter()
                    .any(|c| c["name"].as_str() == Some(connection_name))
                {
                    return i;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no node of the cluster has a connection named `{connection_name}`"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Node `i`'s JetStream store directory.
    pub fn store_dir(&self, i: usize) -> &Path {
        self.nodes[i]
            .config_file
            .parent()
            .expect("the config lives in the store")
    }

    /// Kill node `i` (SIGKILL: it dies as a crashed machine would).
    pub async fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.terminate(Duration::ZERO).await;
        }
    }

    /// Start node `i` again on its ports and store, and wait until it accepts clients and
    /// sees a JetStream meta leader.
    pub async fn restart(&mut self, i: usize) {
        self.stop(i).await;
        self.spawn(i);
        let node = &self.nodes[i];
        wait_accepting(node.client_port, node.child.as_ref().expect("started")).await;
        self.wait_for_meta_leader().await;
    }

    /// Wait until every running node reports the same JetStream meta leader (`/jsz`).
    pub async fn wait_for_meta_leader(&self) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + META_LEADER_DEADLINE;
        let last = loop {
            let mut leaders = Vec::new();
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                let url = format!("http://127.0.0.1:{}/jsz", node.monitor_port);
                let leader =
                    match tokio::time::timeout(Duration::from_secs(2), http.get(&url).send()).await
                    {
                        Ok(Ok(resp)) => resp
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                            .and_then(|v| {
                                v.pointer("/meta_cluster/leader")
                                    .and_then(|l| l.as_str())
                                    .map(str::to_string)
                            })
                            .unwrap_or_default(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "no answer in 2s".into(),
                    };
                leaders.push(leader);
            }
            let first = leaders.first().cloned().unwrap_or_default();
            let known = self.nodes.iter().any(|n| n.name == first);
            if known && leaders.iter().all(|l| *l == first) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                break format!("{leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let logs: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| {
                n.child
                    .as_ref()
                    .map(|c| format!("{}: {}", n.name, c.stderr_tail()))
            })
            .collect();
        panic!(
            "the NATS cluster elected no JetStream meta leader within {META_LEADER_DEADLINE:?} (leaders seen: {last}); logs:\n{}",
            logs.join("\n")
        );
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let cwd = node.config_file.parent().expect("store dir").to_path_buf();
        let child = CommandSpec::new(nats_server_bin(), cwd)
            .arg("-c")
            .arg(&node.config_file)
            .install_hint("apt-get install nats-server")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server node {}: {e}", node.name));
        node.child = Some(child);
    }
}

/// `n` distinct ports that were free a moment ago (all held until every one is picked).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a local address").port())
        .collect()
}
