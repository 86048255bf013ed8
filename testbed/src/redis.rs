//! A `redis-server` of the test's own on a free port: plain, or TLS only (with a
//! [`TestCa`]'s server certificate; clients need no certificate of their own); with ACL
//! users of the test's own if it likes ([`RedisNode::start_with_acl`]).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ca::TestCa;
use super::{accepting, free_port};

pub struct RedisNode {
    _dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
    child: Child,
}

impl RedisNode {
    pub fn start(ca: Option<&TestCa>) -> RedisNode {
        Self::start_with_acl(ca, "")
    }

    /// [`RedisNode::start`] with `acl` (`user NAME ...` lines of `redis.conf`, e.g.
    /// `user default off`) in a config file of its own, so that no password of theirs
    /// shows on the server's command line.
    pub fn start_with_acl(ca: Option<&TestCa>, acl: &str) -> RedisNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("redis.conf");
        std::fs::write(&conf, acl).expect("write redis.conf");
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        match ca {
            Some(ca) => {
                cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&ca.server_pem)
                    .arg("--tls-key-file")
                    .arg(&ca.server_key)
                    .arg("--tls-ca-cert-file")
                    .arg(&ca.ca_pem)
                    .args(["--tls-auth-clients", "no"]);
            }
            None => {
                cmd.args(["--port", &port.to_string()]);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let started = Instant::now();
        while !accepting(port) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisNode {
            _dir: dir,
            port,
            tls: ca.is_some(),
            child,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
