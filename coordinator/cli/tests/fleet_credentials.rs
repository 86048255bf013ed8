//! Credentials given apart from the URLs (`MAPFLEET_*_PASSWORD`, `--*-password-file`) reach
//! a RabbitMQ user limited to a vhost and a Redis ACL user limited to the fleet's key prefix
//! (the `default` user off), on a RabbitMQ node and a `redis-server` of the test's own: a
//! coordinator, a worker and `mapfleet run` (all real processes, logging at debug) run a
//! small Map through them. A wrong password or vhost ends a process at once with an error that
//! names the vhost (or Redis) and not the password. Then every process's output is searched
//! for the secrets, and their command lines (what `ps` shows) too: neither holds one.

mod nodes;

#[path = "common/models.rs"]
#[allow(dead_code)] // the worker binary and the repository only
mod models;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nodes::rabbit::{RabbitNode, RabbitUser};
use nodes::redis::RedisNode;
use serde_json::{Value, json};

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");
const USER: &str = "fleet-user";
const VHOST: &str = "fleet-vhost";
const ITEMS: usize = 12;
/// How long a process refused its login may take to exit: "at once" on a loaded machine (the
/// Redis client tries a few times within its first connect), and well under the 60 s connect
/// time-out the processes are given, after which an unreachable server would end them too.
const FAIL_FAST: Duration = Duration::from_secs(30);

/// A fleet process with its stdout and stderr in files of the test's directory.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn start(dir: &Path, name: &str, bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("MAPFLEET_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .args(args)
            .env("MAPFLEET_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(File::create(dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        Proc {
            name: name.to_string(),
            child,
        }
    }

    /// What `ps` shows of the process: its command line, from `/proc`.
    /// A process just spawned can read as empty for a moment: the spawner resumes once the
    /// child's new memory is in place, a little before exec has copied the arguments in. So
    /// this reads again for up to a second.
    fn cmdline(&self) -> String {
        let path = format!("/proc/{}/cmdline", self.child.id());
        for _ in 0..100 {
            let line = std::fs::read(&path)
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            if !line.trim().is_empty() {
                return line;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        String::new()
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn output(&self, dir: &Path) -> String {
        let read = |ext: &str| {
            std::fs::read_to_string(dir.join(format!("{}.{ext}", self.name))).unwrap_or_default()
        };
        format!("{}{}", read("out"), read("err"))
    }

    /// Waits for an exit that should come at once; its status and output.
    fn fails_fast(mut self, dir: &Path, why: &str) -> (ExitStatus, String) {
        let status = self.wait(FAIL_FAST);
        let out = self.output(dir);
        let status =
            status.unwrap_or_else(|| panic!("{why}: still running after {FAIL_FAST:?}:\n{out}"));
        assert!(!status.success(), "{why}: exited 0:\n{out}");
        assert!(!out.contains("panicked"), "{out}");
        (status, out)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The forms a secret could be written in: as it is and percent-encoded (in a URL).
fn forms(secret: &str) -> Vec<String> {
    let encoded: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![secret.to_string(), encoded]
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{what} shows a secret ({form}):\n{text}"
            );
        }
    }
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

#[test]
fn secrets_from_env_and_files_reach_acl_users_and_show_nowhere() {
    if !RabbitNode::available() {
        eprintln!("SKIPPED: rabbitmq-server is not installed here");
        return;
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    // Characters a URL must encode, so the merge is tested too.
    let amqp_secret = format!("amqp/pw@{}:x", &token[..12]);
    let redis_secret = format!("redis#pw%{}", &token[12..24]);
    let wrong_amqp = format!("wrong-amqp-{}", &token[..10]);
    let wrong_redis = format!("wrong-redis-{}", &token[10..20]);
    let on_cli = format!("on-the-cli-{}", &token[20..30]);
    let secrets = [
        amqp_secret.clone(),
        redis_secret.clone(),
        wrong_amqp.clone(),
        wrong_redis.clone(),
    ];
    let prefix = shared::testkit::unique_prefix("creds");

    let rabbit = RabbitNode::start_with_user(&RabbitUser {
        name: USER,
        password: &amqp_secret,
        vhost: VHOST,
    });
    // The deployment's rules (compose's Redis has them): the commands the fleet runs, on its
    // prefix's keys only; `default` off.
    let rules = std::fs::read_to_string(models::repo().join("deploy/redis/acl-rules")).unwrap();
    let rules: Vec<&str> = rules.lines().filter(|l| !l.starts_with('#')).collect();
    let redis = RedisNode::start_with_acl(
        None,
        &format!(
            "user default off\nuser fleet on >{redis_secret} ~{prefix}:* {}\n",
            rules.join(" ")
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let amqp_url = format!("amqp://{USER}@127.0.0.1:{}/{VHOST}", rabbit.port);
    let redis_url = format!("redis://fleet@127.0.0.1:{}/", redis.port);
    let amqp_file = write_secret(d, "amqp.pw", &amqp_secret);
    let redis_file = write_secret(d, "redis.pw", &redis_secret);
    let wrong_amqp_file = write_secret(d, "wrong-amqp.pw", &wrong_amqp);
    let fleet = |url_amqp: &str, url_redis: &str| -> Vec<String> {
        [
            "--amqp",
            url_amqp,
            "--redis",
            url_redis,
            "--prefix",
            &prefix,
            "--connect-timeout-secs",
            "60",
        ]
        .map(String::from)
        .to_vec()
    };
    let args = |v: &[String], extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .map(|s| s.to_string())
            .chain(v.iter().cloned())
            .collect()
    };
    let start = |name: &str, bin: &Path, argv: &[String], env: &[(&str, &str)]| {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        Proc::start(d, name, bin, &argv, env)
    };
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut cmdlines: Vec<(String, String)> = Vec::new();

    // The fleet: the coordinator has its RabbitMQ password in a file and its Redis password in
    // the environment; the worker the other way round.
    let coordinator = start(
        "coordinator",
        Path::new(MAPFLEET),
        &args(
            &fleet(&amqp_url, &redis_url),
            &[
                "coordinator",
                "--amqp-password-file",
                amqp_file.to_str().unwrap(),
            ],
        ),
        &[("MAPFLEET_REDIS_PASSWORD", &redis_secret)],
    );
    let worker = start(
        "worker",
        &models::worker_bin(),
        &args(
            &fleet(&amqp_url, &redis_url),
            &[
                "--no-photo-tasks",
                "--redis-password-file",
                redis_file.to_str().unwrap(),
            ],
        ),
        &[("MAPFLEET_AMQP_PASSWORD", &amqp_secret)],
    );
    std::fs::write(
        d.join("map.json"),
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task",
                "Resource": "arn:mapfleet:task:::echo", "End": true}}},
            "End": true}}})
        .to_string(),
    )
    .unwrap();
    let items: Vec<Value> = (0..ITEMS).map(|i| json!({"n": i})).collect();
    std::fs::write(d.join("input.json"), json!({ "items": items }).to_string()).unwrap();
    let run_args = |redis: &str| -> Vec<String> {
        [
            "run",
            d.join("map.json").to_str().unwrap(),
            "--input",
            d.join("input.json").to_str().unwrap(),
            "--redis",
            redis,
            "--prefix",
            &prefix,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut client = start(
        "client",
        Path::new(MAPFLEET),
        &run_args(&redis_url),
        &[("MAPFLEET_REDIS_PASSWORD", &redis_secret)],
    );
    for p in [&coordinator, &worker, &client] {
        cmdlines.push((p.name.clone(), p.cmdline()));
    }
    let status = client.wait(Duration::from_secs(240));
    let out = client.output(d);
    assert!(
        status.is_some_and(|s| s.success()),
        "mapfleet run through the ACL users: {status:?}\n{out}\n---- coordinator ----\n{}\n---- worker ----\n{}",
        coordinator.output(d),
        worker.output(d)
    );
    let stdout = std::fs::read_to_string(d.join("client.out")).unwrap();
    let output: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(output, json!(items), "the Map's results");
    for p in [&coordinator, &worker] {
        cmdlines.push((p.name.clone(), p.cmdline()));
    }

    // `mapfleet serve` takes its Redis password the same way.
    let mut serve = start(
        "serve",
        Path::new(MAPFLEET),
        &[
            "serve".into(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--allow-anonymous".into(),
            "--redis".into(),
            redis_url.clone(),
            "--prefix".into(),
            prefix.clone(),
        ],
        &[("MAPFLEET_REDIS_PASSWORD", &redis_secret)],
    );
    let started = Instant::now();
    while !serve.output(d).contains("Step Functions API on") {
        assert!(
            started.elapsed() < Duration::from_secs(60)
                && serve.child.try_wait().unwrap().is_none(),
            "mapfleet serve did not start:\n{}",
            serve.output(d)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cmdlines.push((serve.name.clone(), serve.cmdline()));
    let _ = serve.child.kill();
    let _ = serve.wait(Duration::from_secs(10));
    outputs.push(("serve".into(), serve.output(d)));

    // A wrong RabbitMQ password: refused at once, naming the vhost and not the password.
    let (_, out) = start(
        "coordinator-wrong-amqp",
        Path::new(MAPFLEET),
        &args(
            &fleet(&amqp_url, &redis_url),
            &[
                "coordinator",
                "--amqp-password-file",
                wrong_amqp_file.to_str().unwrap(),
            ],
        ),
        &[("MAPFLEET_REDIS_PASSWORD", &redis_secret)],
    )
    .fails_fast(d, "a wrong RabbitMQ password");
    assert!(
        out.contains("ACCESS_REFUSED") && out.contains(VHOST),
        "{out}"
    );
    outputs.push(("coordinator-wrong-amqp".into(), out));

    // The right password on a vhost the user has no access to.
    let other_vhost = format!("amqp://{USER}@127.0.0.1:{}/not-{VHOST}", rabbit.port);
    let (_, out) = start(
        "worker-wrong-vhost",
        &models::worker_bin(),
        &args(&fleet(&other_vhost, &redis_url), &["--no-photo-tasks"]),
        &[
            ("MAPFLEET_AMQP_PASSWORD", &amqp_secret),
            ("MAPFLEET_REDIS_PASSWORD", &redis_secret),
        ],
    )
    .fails_fast(d, "a vhost the user may not use");
    assert!(out.contains(&format!("not-{VHOST}")), "{out}");
    outputs.push(("worker-wrong-vhost".into(), out));

    // A wrong Redis password: the coordinator, the worker and the client each stop at once.
    for (name, bin, argv) in [
        (
            "coordinator-wrong-redis",
            PathBuf::from(MAPFLEET),
            args(
                &fleet(&amqp_url, &redis_url),
                &[
                    "coordinator",
                    "--amqp-password-file",
                    amqp_file.to_str().unwrap(),
                ],
            ),
        ),
        (
            "worker-wrong-redis",
            models::worker_bin(),
            args(
                &fleet(&amqp_url, &redis_url),
                &[
                    "--no-photo-tasks",
                    "--amqp-password-file",
                    amqp_file.to_str().unwrap(),
                ],
            ),
        ),
        (
            "client-wrong-redis",
            PathBuf::from(MAPFLEET),
            run_args(&redis_url),
        ),
    ] {
        let (_, out) = start(
            name,
            &bin,
            &argv,
            &[("MAPFLEET_REDIS_PASSWORD", &wrong_redis)],
        )
        .fails_fast(d, &format!("{name}: a wrong Redis password"));
        assert!(
            out.contains("Redis") && out.contains("authentication failed"),
            "{name}: {out}"
        );
        outputs.push((name.into(), out));
    }

    // A password written into a URL on the command line still works, with a warning that
    // says where to put it instead (and never the password).
    let on_cli_url = format!("redis://fleet:{on_cli}@127.0.0.1:{}/", redis.port);
    let (_, out) = start(
        "client-password-on-cli",
        Path::new(MAPFLEET),
        &[
            "history".into(),
            "arn:aws:states:us-east-1:123456789012:execution:none:none".into(),
            "--redis".into(),
            on_cli_url,
            "--prefix".into(),
            prefix.clone(),
        ],
        &[],
    )
    .fails_fast(d, "a wrong password on the command line");
    assert!(
        out.contains("on the command line") && out.contains("MAPFLEET_REDIS_PASSWORD"),
        "{out}"
    );
    assert!(!out.contains(&on_cli), "{out}");

    for p in [coordinator, worker, client] {
        outputs.push((p.name.clone(), p.output(d)));
    }
    for (name, text) in &outputs {
        assert!(
            !text.is_empty(),
            "{name} wrote nothing: is MAPFLEET_LOG=debug honoured?"
        );
        assert_no_secret(&format!("{name}'s output"), text, &secrets);
    }
    for (name, line) in &cmdlines {
        assert!(!line.is_empty(), "{name}'s command line was not read");
        assert_no_secret(&format!("{name}'s command line"), line, &secrets);
    }
    // The debug logs did show the connections: the search looked at real logs.
    let coordinator_log = &outputs.iter().find(|(n, _)| n == "coordinator").unwrap().1;
    assert!(coordinator_log.contains("DEBUG"), "{coordinator_log}");
    assert!(coordinator_log.contains(VHOST), "{coordinator_log}");
}
