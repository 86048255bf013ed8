//! What the tests of `mapfleet serve` on the fleet share (`api_fleet.rs`,
//! `api_activities.rs`): a coordinator and a worker (the harness's utility tasks) in the test
//! process on a fresh prefix of the real RabbitMQ and Redis on 127.0.0.1, `mapfleet serve` as
//! the built binary on that prefix, and the real `aws` CLI.
//!
//! The clients come from `.ci/api-clients.sh` (a venv at `$MAPFLEET_API_CLIENTS`, default
//! `~/.cache/mapfleet/api-clients`), else `aws` and `python3` on PATH.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::fleet::service::{Coordinator, ServiceOptions};
use serde_json::Value;
use shared::config::FleetConfig;
use shared::supervise::Shutdown;
use worker::consumer::{self, ConsumerOptions};

use crate::common::TestExecutor;

pub const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");
pub const KEY_ID: &str = "AKIDMAPFLEETTEST";
pub const SECRET: &str = "mapfleet-test-secret-key";

/// Where the clients are: the CI venv if it is there, else PATH.
pub fn client(name: &str) -> PathBuf {
    let venv = std::env::var_os("MAPFLEET_API_CLIENTS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mapfleet/api-clients"))
        });
    if let Some(bin) = venv.map(|v| v.join("bin").join(name))
        && bin.exists()
    {
        return bin;
    }
    PathBuf::from(name)
}

/// A `mapfleet serve` process, killed on drop.
pub struct Serve {
    pub child: Child,
    pub url: String,
    /// Everything it wrote on stderr so far.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serve {
    pub fn start(prefix: &str, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(MAPFLEET);
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--redis"])
            .arg(shared::testkit::redis_url())
            .args(["--prefix", prefix])
            .args(extra)
            .env_remove("MAPFLEET_API_KEYS")
            .env_remove("MAPFLEET_CREDENTIALS_FILE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start mapfleet serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("serve: {line}");
                lines.lock().unwrap().push(line.clone());
                if let Some(rest) = line.strip_prefix("Step Functions API on ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("mapfleet serve did not say where it listens within 30 s");
        Serve { child, url, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `aws stepfunctions` call: (succeeded, stdout as JSON or text, stderr).
pub struct Aws {
    pub endpoint: String,
    pub home: tempfile::TempDir,
    pub secret: String,
    pub key_id: String,
}

pub struct Out {
    pub ok: bool,
    pub json: Value,
    pub stderr: String,
}

impl Aws {
    pub fn new(endpoint: &str) -> Aws {
        Aws {
            endpoint: endpoint.to_string(),
            home: tempfile::tempdir().expect("temp dir"),
            secret: SECRET.into(),
            key_id: KEY_ID.into(),
        }
    }

    pub fn env(&self, cmd: &mut tokio::process::Command) {
        let h = self.home.path();
        cmd.env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", h.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", h.join("credentials"))
            .env("AWS_PAGER", "")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
    }

    pub async fn run(&self, global: &[&str], args: &[&str]) -> Out {
        let mut cmd = tokio::process::Command::new(client("aws"));
        cmd.args(global)
            .args([
                "--output",
                "json",
                "--endpoint-url",
                &self.endpoint,
                "stepfunctions",
            ])
            .args(args);
        self.env(&mut cmd);
        let out = cmd
            .output()
            .await
            .expect("run the aws CLI (see .ci/api-clients.sh)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        Out {
            ok: out.status.success(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    /// A call that must succeed.
    pub async fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(&[], args).await;
        assert!(out.ok, "aws stepfunctions {args:?} failed: {}", out.stderr);
        out.json
    }

    /// A call that must fail with `code`.
    pub async fn fails(&self, global: &[&str], args: &[&str], code: &str) -> String {
        let out = self.run(global, args).await;
        assert!(
            !out.ok,
            "aws stepfunctions {args:?} should have failed: {}",
            out.json
        );
        assert!(
            out.stderr.contains(&format!("({code})")),
            "aws stepfunctions {args:?}: expected {code}, got: {}",
            out.stderr
        );
        out.stderr
    }
}

/// A coordinator and a worker on `prefix`, in this process; stopped by [`Fleet::stop`].
pub struct Fleet {
    stop_worker: tokio::sync::oneshot::Sender<()>,
    stop_coordinator: tokio::sync::oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<
        Result<(), shared::supervise::Error<worker::consumer::ConsumerError>>,
    >,
    service: tokio::task::JoinHandle<
        Result<(), shared::supervise::Error<coordinator::fleet::service::Error>>,
    >,
}

#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    fleet: FleetConfig,
}

impl Fleet {
    pub async fn start(prefix: &str, executor: Arc<TestExecutor>) -> Fleet {
        Self::start_opts(prefix, executor, ServiceOptions::default()).await
    }

    pub async fn start_opts(
        prefix: &str,
        executor: Arc<TestExecutor>,
        opts: ServiceOptions,
    ) -> Fleet {
        use clap::Parser;
        let fleet = Flags::parse_from([
            "api-fleet",
            "--prefix",
            prefix,
            "--amqp",
            &shared::testkit::amqp_url(),
            "--redis",
            &shared::testkit::redis_url(),
        ])
        .fleet;
        shared::testkit::declare(&fleet.amqp_url, &fleet.topology())
            .await
            .expect("declare the fleet's queues");
        let registry = executor.registry();
        let mut conn = shared::redis_schema::connect(&fleet.redis_url)
            .await
            .expect("Redis");
        let resources: Vec<String> = registry.resources().map(str::to_string).collect();
        shared::workers::register(
            &mut conn,
            prefix,
            "api-tests",
            &resources,
            Duration::from_secs(600),
        )
        .await
        .expect("register the worker");
        let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = {
            let fleet = fleet.clone();
            let opts = ConsumerOptions {
                queues: vec!["default".into()],
                concurrency: 8,
                prefetch: 8,
                grace: Duration::from_secs(1),
                worker_id: format!("api-tests/{prefix}"),
                outcome_batch: 64,
                test_ack_delay: Duration::ZERO,
            };
            let shutdown = Shutdown::on(async {
                let _ = worker_stopped.await;
            });
            tokio::spawn(async move { consumer::serve(&fleet, registry, opts, &shutdown).await })
        };
        let (stop_coordinator, coordinator_stopped) = tokio::sync::oneshot::channel::<()>();
        let service = {
            let shutdown = Shutdown::on(async {
                let _ = coordinator_stopped.await;
            });
            tokio::spawn(async move { Coordinator::serve(&fleet, opts, &shutdown).await })
        };
        Fleet {
            stop_worker,
            stop_coordinator,
            worker,
            service,
        }
    }

    pub async fn stop(self, prefix: &str) {
        let _ = self.stop_coordinator.send(());
        let _ = self.stop_worker.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.service).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.worker).await;
        if let Err(e) = shared::testkit::teardown(
            &shared::testkit::amqp_url(),
            &shared::testkit::redis_url(),
            prefix,
        )
        .await
        {
            eprintln!("could not clean up the fleet prefix {prefix}: {e:#}");
        }
    }
}

/// The role the tests' state machines are created with.
pub const ROLE: &str = "arn:aws:iam::000000000000:role/mapfleet-tests";

/// `create-state-machine` of `name` from `definition` (a `file://` path or the text).
pub fn create<'a>(name: &'a str, definition: &'a str) -> [&'a str; 7] {
    [
        "create-state-machine",
        "--name",
        name,
        "--definition",
        definition,
        "--role-arn",
        ROLE,
    ]
}

/// `start-execution` of `machine` named `name` with `input`.
pub fn start<'a>(machine: &'a str, name: &'a str, input: &'a str) -> [&'a str; 7] {
    [
        "start-execution",
        "--state-machine-arn",
        machine,
        "--name",
        name,
        "--input",
        input,
    ]
}

pub fn write(dir: &Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, v.to_string()).expect("write a definition");
    format!("file://{}", path.display())
}

pub async fn wait_for_status(aws: &Aws, arn: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = aws
            .ok(&["describe-execution", "--execution-arn", arn])
            .await;
        if d["status"] == want {
            return d;
        }
        assert!(
            d["status"] == "RUNNING" && Instant::now() < deadline,
            "{arn}: waiting for {want}, got {d}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
