//! A RabbitMQ node of the test's own (Debian's `rabbitmq-server`, as in the project's
//! services script), on free ports: AMQP, optionally AMQPS with a [`TestCa`]'s server
//! certificate, and its own Erlang distribution port and node name, so it never meets the
//! machine's broker. It shares the machine's `epmd` (started by the first node), which is left
//! running. `guest` may log in from 127.0.0.1; a user of the test's own, limited to a vhost,
//! is loaded at boot with [`RabbitNode::start_with_user`].

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ca::TestCa;
use super::{accepting, free_port};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A node takes 10-15 s to start on an idle 2-core machine; far more under load.
pub const START_LIMIT: Duration = Duration::from_secs(180);

/// A user of the node's own, with every permission on one vhost and none elsewhere.
pub struct RabbitUser<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub vhost: &'a str,
}

pub struct RabbitNode {
    dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: Option<u16>,
    dist_port: u16,
    name: String,
    child: Option<Child>,
}

impl RabbitNode {
    /// Whether the node can be started here.
    pub fn available() -> bool {
        std::path::Path::new(SERVER).exists()
    }

    /// Starts a node (TLS listener too with `ca`) and waits until it accepts connections.
    pub fn start(ca: Option<&TestCa>) -> RabbitNode {
        Self::start_opts(ca, None)
    }

    /// A plain node with `user` and its vhost, loaded from a definitions file at boot (the
    /// password stored as RabbitMQ's salted SHA-256 hash, so it is on no command line).
    pub fn start_with_user(user: &RabbitUser<'_>) -> RabbitNode {
        Self::start_opts(None, Some(user))
    }

    fn start_opts(ca: Option<&TestCa>, user: Option<&RabbitUser<'_>>) -> RabbitNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let tls_port = ca.map(|_| free_port());
        let dist_port = free_port();
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n");
        if let (Some(ca), Some(tls_port)) = (ca, tls_port) {
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                ca.ca_pem.display(),
                ca.server_pem.display(),
                ca.server_key.display()
            ));
        }
        if let Some(user) = user {
            let definitions = dir.path().join("definitions.json");
            std::fs::write(&definitions, definitions_with(user).to_string()).unwrap();
            conf.push_str(&format!("load_definitions = {}\n", definitions.display()));
        }
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let mut node = RabbitNode {
            name: format!("mapfleet-test-{port}@localhost"),
            dir,
            port,
            tls_port,
            dist_port,
            child: None,
        };
        node.spawn();
        node.wait_accepting(START_LIMIT);
        node
    }

    /// `amqp://` to the plain listener.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `amqps://` to the TLS listener.
    pub fn tls_url(&self) -> String {
        format!(
            "amqps://guest:guest@127.0.0.1:{}/%2f",
            self.tls_port.expect("a node started with a CA")
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("server.out"))
            .unwrap();
        let child = Command::new(SERVER)
            .env("HOME", self.dir.path())
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.path("log"))
            .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.path("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", self.path("pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server");
        self.child = Some(child);
    }

    /// Polls until the AMQP listener accepts a TCP connection; returns that moment.
    pub fn wait_accepting(&mut self, limit: Duration) -> Instant {
        let started = Instant::now();
        loop {
            if accepting(self.port) {
                return Instant::now();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("rabbitmq-server exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                started.elapsed() < limit,
                "the test's RabbitMQ node did not start within {limit:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of the node's Erlang VM; returns once its port refuses connections.
    pub fn kill9(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.path("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.path("pid"));
        let started = Instant::now();
        while accepting(self.port) && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the node cleanly (SIGTERM: RabbitMQ's orderly shutdown, which writes its queue
    /// registry to disk) and starts it again, waiting until it accepts connections.
    pub fn restart_clean(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.path("pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        if let Some(mut child) = self.child.take() {
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "the test's RabbitMQ node did not stop on SIGTERM:\n{}",
                    self.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let started = Instant::now();
        while accepting(self.port) && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.path("pid"));
        self.spawn();
        self.wait_accepting(START_LIMIT);
    }

    /// Starts the node again on its data directory (its queues and messages survive), without
    /// waiting: see [`RabbitNode::wait_accepting`].
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// The end of the node's output and its log's warnings and errors, for failures.
    pub fn log_tail(&self) -> String {
        let out = std::fs::read_to_string(self.path("server.out")).unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        let log = std::fs::read_to_string(self.path("log").join(format!("{}.log", self.name)))
            .unwrap_or_default();
        let problems: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("[warning]") || l.contains("[error]"))
            .collect();
        format!(
            "{}\n---- the node's warnings and errors ----\n{}",
            lines[lines.len().saturating_sub(15)..].join("\n"),
            problems[problems.len().saturating_sub(40)..].join("\n")
        )
    }
}

/// Definitions (RabbitMQ's export format) of `guest` on `/` and `user` on its vhost.
fn definitions_with(user: &RabbitUser<'_>) -> serde_json::Value {
    let all = |name: &str, vhost: &str| serde_json::json!({"user": name, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"});
    serde_json::json!({
        "users": [
            {"name": "guest", "password_hash": password_hash("guest"),
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator"},
            {"name": user.name, "password_hash": password_hash(user.password),
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""},
        ],
        "vhosts": [{"name": "/"}, {"name": user.vhost}],
        "permissions": [all("guest", "/"), all(user.name, user.vhost)],
    })
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ++ sha256(salt ++ password)),
/// with a 4-byte salt (a fixed one: this is a test's throwaway node). `sha256sum` does the
/// hashing, so the tests need no hashing crate.
fn password_hash(password: &str) -> String {
    use base64::Engine;
    use std::io::Write;
    let salt = *b"mfts";
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&salt).unwrap();
    stdin.write_all(password.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().expect("sha256sum output");
    let hex = String::from_utf8(out.stdout).unwrap();
    let mut bytes = salt.to_vec();
    bytes.extend(
        (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("sha256sum's hex")),
    );
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // Keep the node's logs and data for a look.
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!(
                "the RabbitMQ node's files are kept in {}",
                dir.keep().display()
            );
        }
    }
}
