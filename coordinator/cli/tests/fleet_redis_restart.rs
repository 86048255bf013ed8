//! A Redis restart under a waiting `mapfleet run --redis`: the client rides it out.
//!
//! The test starts a Redis of its own (another port, a temporary directory, AOF with an
//! fsync per write so that the restart loses nothing), a coordinator and a worker
//! (`mapfleet coordinator`, `mapfleet-worker`) on the machine's RabbitMQ under a prefix of
//! its own, and a client (`mapfleet run --redis ... --describe --history`) waiting on a Map
//! of 400 sleep items. Mid-wait Redis is killed with SIGKILL and started again on the same
//! port from its AOF after 20 s, long enough for every worker registration to lapse (the
//! worker is also frozen with SIGSTOP from 4 s into the outage to 5 s after it, so that its
//! registration stays lapsed while the coordinator publishes steps). The
//! client must end with the execution's exact, ordered output and a clean history, having
//! said on stderr that it was reconnecting; the coordinator must not have warned once per
//! step that no worker serves the resource.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");
const ITEMS: usize = 400;
const OUTAGE: Duration = Duration::from_secs(20);
/// When, in the outage, the worker is frozen (it has finished its steps by then).
const FREEZE_AFTER: Duration = Duration::from_secs(4);

/// The `mapfleet-worker` binary, built next to this test's binaries (`cargo build -p worker`;
/// `cargo test --workspace` builds it).
fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("mapfleet-worker");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p worker`",
        bin.display()
    );
    bin
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Redis server of this test's own, with its data (the AOF) in a temporary directory.
struct OwnRedis {
    port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl OwnRedis {
    fn start(dir: &Path) -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = OwnRedis {
            port,
            dir,
            proc: None,
        };
        redis.spawn();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            // Every acknowledged write on disk: this test is about the client riding out
            // the restart, not about what an `everysec` fsync may lose.
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start redis-server (installed by .ci/services.sh)");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.command(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        self.proc.take();
    }

    /// One command over RESP; the reply as text (`None` for nil, an error or no server).
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        match line.as_bytes().first()? {
            b'+' | b':' => Some(line[1..].to_string()),
            b'$' => {
                let n: i64 = line[1..].parse().ok()?;
                if n < 0 {
                    return None;
                }
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf).ok()?;
                buf.truncate(n as usize);
                String::from_utf8(buf).ok()
            }
            _ => None,
        }
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        cmd.env("MAPFLEET_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a fleet process"),
    )
}

#[test]
fn a_waiting_client_rides_out_a_redis_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = OwnRedis::start(dir.path());
    let prefix = format!("mft-redisrestart-{}", uuid::Uuid::new_v4().simple());
    shared::testkit::declare_prefix(&prefix, 5).expect("declare the fleet's queues");
    let amqp = shared::testkit::amqp_url();
    let fleet_args = [
        "--prefix",
        prefix.as_str(),
        "--redis",
        &redis.url(),
        "--amqp",
        &amqp,
    ];
    let coordinator_log = dir.path().join("coordinator.log");
    let _coordinator = spawn_logged(
        Command::new(MAPFLEET).arg("coordinator").args(fleet_args),
        &coordinator_log,
    );
    let worker = spawn_logged(
        Command::new(worker_bin()).args(fleet_args).args([
            "--concurrency",
            "8",
            "--no-photo-tasks",
        ]),
        &dir.path().join("worker.log"),
    );

    let definition = json!({
        "StartAt": "M",
        "States": {"M": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 20, "End": true,
            "Iterator": {"StartAt": "S", "States": {"S": {
                "Type": "Task", "Resource": "arn:mapfleet:task:::sleep",
                "Parameters": {"ms": 100, "i.$": "$"}, "End": true
            }}}
        }}
    });
    let items: Vec<usize> = (0..ITEMS).collect();
    let def_path = dir.path().join("def.json");
    let input_path = dir.path().join("input.json");
    std::fs::write(&def_path, definition.to_string()).unwrap();
    std::fs::write(&input_path, json!({ "items": items }).to_string()).unwrap();
    let stdout_path = dir.path().join("client.out");
    let stderr_path = dir.path().join("client.err");
    let name = "redis-restart";
    let mut client = Proc(
        Command::new(MAPFLEET)
            .arg("run")
            .arg(&def_path)
            .arg("--input")
            .arg(&input_path)
            .args(["--name", name, "--describe", "--history"])
            .args(fleet_args)
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start the client"),
    );

    // Redis goes away once the Map is well under way.
    let arn = coordinator::engine::ExecutionInfo::new("def", name, json!({}), chrono::Utc::now())
        .execution_arn;
    let deadline = Instant::now() + Duration::from_secs(120);
    let exec_key = coordinator::fleet::keys::FleetKeys::new(&prefix).exec(&arn);
    loop {
        let done: usize = redis
            .command(&["HGET", &exec_key, "items_succeeded"])
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if done >= 40 {
            assert!(
                done < ITEMS,
                "the Map finished before Redis could be restarted"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Map did not get going; client stderr:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        assert!(
            client.0.try_wait().unwrap().is_none(),
            "the client ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    redis.kill();
    // The worker finishes the steps it holds (their outcomes wait in the broker), then is
    // frozen until a while after Redis is back: its registration lapses and stays lapsed
    // while the coordinator applies those outcomes and publishes the next iterations'
    // steps, each of which once drew its own "no live worker" warning.
    std::thread::sleep(FREEZE_AFTER);
    signal(&worker, "STOP");
    std::thread::sleep(OUTAGE - FREEZE_AFTER);
    assert!(
        client.0.try_wait().unwrap().is_none(),
        "the client gave up during the outage: {}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    redis.spawn();
    std::thread::sleep(Duration::from_secs(5));
    signal(&worker, "CONT");

    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = client.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the client did not finish; coordinator log tail:\n{}",
            tail(&coordinator_log)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(status.success(), "client failed: {status}\n{stderr}");
    assert!(
        stderr.contains("Redis unreachable") && stderr.contains("Redis is back"),
        "no reconnecting note on stderr:\n{stderr}"
    );

    let doc: Value = serde_json::from_str(&stdout).expect("a DescribeExecution document");
    assert_eq!(doc["status"], "SUCCEEDED", "{doc}");
    let output: Value = serde_json::from_str(doc["output"].as_str().unwrap()).unwrap();
    let expected: Vec<Value> = (0..ITEMS).map(|i| json!({"ms": 100, "i": i})).collect();
    assert_eq!(output, Value::Array(expected), "results in item order");

    // A clean history: unique ids, each iteration started and succeeded once.
    let events = doc["events"].as_array().expect("events");
    let mut ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "duplicate history event ids");
    for kind in ["MapIterationStarted", "MapIterationSucceeded"] {
        let member = format!("{}EventDetails", lower_first(kind));
        let mut indexes: Vec<u64> = events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e[&member]["index"].as_u64().unwrap())
            .collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..ITEMS as u64).collect::<Vec<_>>(), "{kind}");
    }

    // The lapsed worker registrations were reported a few times at most, not once per step.
    let log = std::fs::read_to_string(&coordinator_log).unwrap_or_default();
    let unserved = log
        .lines()
        .filter(|l| l.contains("no live worker serves") || l.contains("stopped renewing"))
        .count();
    eprintln!("client stderr:\n{stderr}\n{unserved} unserved-resource warnings");
    assert!(
        unserved <= 3,
        "{unserved} unserved-resource warnings:\n{}",
        tail(&coordinator_log)
    );
    drop(client);
    redis.kill();
    shared::testkit::teardown_prefix(&prefix);
}

/// Sends a signal (`STOP`, `CONT`) to a child.
fn signal(proc: &Proc, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(proc.0.id().to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} failed");
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
