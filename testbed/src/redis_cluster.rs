//! A 3-node Redis Cluster of the test's own: three `redis-server --cluster-enabled yes` on
//! free ports (the cluster bus on free ports too: `--cluster-port`), each with its own
//! temporary directory, joined by `redis-cli --cluster create` (3 primaries, no replicas),
//! killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{accepting, free_port};

pub struct RedisCluster {
    _dir: tempfile::TempDir,
    pub ports: Vec<u16>,
    children: Vec<Child>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            children: Vec::new(),
            _dir: dir,
        };
        for n in 0..3 {
            let (port, bus) = (free_port(), free_port());
            let node_dir = cluster._dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let log = std::fs::File::create(node_dir.join("redis.log")).expect("node log");
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "5000"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("node log"))
                .stderr(log)
                .spawn()
                .expect("start redis-server (.ci/services.sh installs it)");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        let started = Instant::now();
        for port in &cluster.ports {
            while !accepting(*port) {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "cluster node on port {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (.ci/services.sh installs redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every node must see every slot covered before the fleet connects.
        for port in cluster.ports.clone() {
            while !cluster
                .cli(port, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the cluster did not reach cluster_state:ok on port {port}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}/", nodes.join(","))
    }

    /// One command through `redis-cli` against one node; its output (empty on failure).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// How many keys each node holds.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|p| self.cli(*p, &["DBSIZE"]).trim().parse().unwrap_or(0))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
