//! What the API tests of both modes share: a `mapfleet serve` process ([`Serve`], on the
//! fleet or embedded), the real `aws` CLI ([`Aws`]) and the scenarios both modes must pass
//! alike ([`scenario`], [`auth_scenario`], [`updates_tags_and_map_runs`],
//! [`redrive_after_stop`]). `api_fleet.rs` runs them against `serve --redis` next to a fleet,
//! `api_embedded.rs` against `serve --data-dir` alone.
//!
//! The clients come from `.ci/api-clients.sh` (a venv at `$MAPFLEET_API_CLIENTS`, default
//! `~/.cache/mapfleet/api-clients`), else `aws` and `python3` on PATH.

#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::ECHO;

pub const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");
pub const KEY_ID: &str = "AKIDMAPFLEETTEST";
pub const SECRET: &str = "mapfleet-test-secret-key";
pub const RIDER_PHOTOS: &str =
    "../../examples/rider-photos/ImageProcessingStateMachine-DynamicInput.json";

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

/// A `mapfleet serve` process, killed (SIGKILL) on drop.
pub struct Serve {
    pub child: Child,
    pub url: String,
    /// Everything it wrote on stderr so far.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serve {
    /// `serve` on the fleet's Redis under `prefix`.
    pub fn fleet(prefix: &str, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let redis = shared::testkit::redis_url();
        let mut args = vec!["--redis", redis.as_str(), "--prefix", prefix];
        args.extend(extra);
        Serve::start(&args, env)
    }

    /// `serve` in embedded mode over `data` (no fleet: the fleet's variables are removed).
    pub fn embedded(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let data = data.to_str().expect("a UTF-8 path");
        let mut args = vec!["--data-dir", data];
        args.extend(extra);
        Serve::start(&args, env)
    }

    /// `serve` on port 0 with `args`, once it said where it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(MAPFLEET);
        cmd.args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .env_remove("MAPFLEET_API_KEYS")
            .env_remove("MAPFLEET_CREDENTIALS_FILE")
            .env_remove("MAPFLEET_REDIS_URL")
            .env_remove("MAPFLEET_AMQP_URL")
            .env_remove("MAPFLEET_DATA_DIR")
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
            .recv_timeout(Duration::from_secs(60))
            .expect("mapfleet serve did not say where it listens within 60 s");
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
    endpoint: String,
    home: tempfile::TempDir,
    pub secret: String,
    pub key_id: String,
    /// More environment for every call (`AWS_DISABLE_HOST_PREFIX_INJECTION`, say).
    pub extra_env: Vec<(String, String)>,
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
            extra_env: Vec::new(),
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
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_DISABLE_HOST_PREFIX_INJECTION");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
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

/// State machines (the workshop's definition among them) and executions through the `aws`
/// CLI and boto3: a Map run to SUCCEEDED, history pages both ways, list filters and pages,
/// idempotent and refused StartExecution, StopExecution, invalid definitions' diagnostics,
/// the errors of unknown resources, and DeleteStateMachine.
pub async fn scenario(url: &str) {
    let aws = Aws::new(url);
    let dir = tempfile::tempdir().expect("temp dir");

    // The workshop's definition: created, described byte for byte, created again (idempotent).
    let photos_text = std::fs::read_to_string(RIDER_PHOTOS).expect("the workshop's definition");
    let photos = format!(
        "file://{}",
        Path::new(RIDER_PHOTOS).canonicalize().unwrap().display()
    );
    let created = aws.ok(&create("RiderPhotos", &photos)).await;
    let photos_arn = created["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string();
    assert!(
        photos_arn.ends_with(":stateMachine:RiderPhotos"),
        "{created}"
    );
    assert!(
        created["creationDate"].is_number(),
        "epoch seconds: {created}"
    );
    let again = aws.ok(&create("RiderPhotos", &photos)).await;
    assert_eq!(again, created, "CreateStateMachine is idempotent");
    let described = aws
        .ok(&["describe-state-machine", "--state-machine-arn", &photos_arn])
        .await;
    assert_eq!(described["definition"], json!(photos_text));
    assert_eq!(
        (described["status"].as_str(), described["type"].as_str()),
        (Some("ACTIVE"), Some("STANDARD"))
    );

    // A Map over five items on the fleet's worker.
    let items = json!({
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.results",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Echo",
                    "States": {"Echo": {"Type": "Task", "Resource": ECHO, "End": true}}
                },
                "Next": "Done"
            },
            "Done": {"Type": "Pass", "End": true}
        }
    });
    let other =
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "End": true}}});
    let items_file = write(dir.path(), "items.json", &items);
    let machine = aws.ok(&create("Items", &items_file)).await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let other_file = write(dir.path(), "other.json", &other);
    aws.fails(
        &[],
        &create("Items", &other_file),
        "StateMachineAlreadyExists",
    )
    .await;
    let listed = aws.ok(&["list-state-machines", "--page-size", "1"]).await;
    let names: Vec<&str> = listed["stateMachines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Items", "RiderPhotos"],
        "two pages of one, in name order: {listed}"
    );

    let input = json!({"items": [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}, {"n": 5}]}).to_string();
    let started = aws.ok(&start(&machine, "run-1", &input)).await;
    let run1 = started["executionArn"].as_str().unwrap().to_string();
    assert!(run1.ends_with(":execution:Items:run-1"), "{started}");
    assert!(started["startDate"].is_number(), "{started}");
    let done = wait_for_status(&aws, &run1, "SUCCEEDED").await;
    let output: Value = serde_json::from_str(done["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        output["results"],
        json!([{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}, {"n": 5}])
    );
    assert!(done["stopDate"].as_f64().unwrap() >= done["startDate"].as_f64().unwrap());

    // The name is taken by a closed execution: refused, whatever the input.
    aws.fails(
        &[],
        &start(&machine, "run-1", &input),
        "ExecutionAlreadyExists",
    )
    .await;

    // History: the CLI follows nextToken across pages of 3; --max-items cuts and resumes.
    let all = aws
        .ok(&["get-execution-history", "--execution-arn", &run1])
        .await;
    let events = all["events"].as_array().unwrap().clone();
    assert!(
        events.len() > 20,
        "a Map of five makes many events: {}",
        events.len()
    );
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0]["type"], "ExecutionStarted");
    assert_eq!(events.last().unwrap()["type"], "ExecutionSucceeded");
    assert!(
        events.iter().all(|e| e["timestamp"].is_number()),
        "epoch seconds"
    );
    let paged = aws
        .ok(&[
            "get-execution-history",
            "--execution-arn",
            &run1,
            "--page-size",
            "3",
        ])
        .await;
    assert_eq!(
        paged["events"].as_array().unwrap(),
        &events,
        "pages of 3 join up to the whole history"
    );
    let first = aws
        .ok(&[
            "get-execution-history",
            "--execution-arn",
            &run1,
            "--max-items",
            "4",
            "--reverse-order",
        ])
        .await;
    let first_ids: Vec<u64> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    let n = events.len() as u64;
    assert_eq!(first_ids, [n, n - 1, n - 2, n - 3], "{first}");
    let token = first["NextToken"]
        .as_str()
        .expect("--max-items leaves a NextToken")
        .to_string();
    let rest = aws
        .ok(&[
            "get-execution-history",
            "--execution-arn",
            &run1,
            "--reverse-order",
            "--starting-token",
            &token,
        ])
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len() as u64, n - 4);
    assert_eq!(rest["events"][0]["id"], json!(n - 4));

    // A long one: StartExecution again with the same name and input returns it; another
    // input is refused; StopExecution aborts it.
    let hold = json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": true}}});
    let hold_file = write(dir.path(), "hold.json", &hold);
    let slow = aws.ok(&create("Slow", &hold_file)).await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let a = aws.ok(&start(&slow, "hold-1", r#"{"k":1}"#)).await;
    let b = aws.ok(&start(&slow, "hold-1", r#"{"k":1}"#)).await;
    assert_eq!(
        a, b,
        "same name and input while RUNNING: the original answer"
    );
    aws.fails(
        &[],
        &start(&slow, "hold-1", r#"{"k":2}"#),
        "ExecutionAlreadyExists",
    )
    .await;
    let hold1 = a["executionArn"].as_str().unwrap().to_string();
    aws.ok(&[
        "start-execution",
        "--state-machine-arn",
        &slow,
        "--name",
        "hold-2",
    ])
    .await;
    let running = aws
        .ok(&[
            "list-executions",
            "--state-machine-arn",
            &slow,
            "--status-filter",
            "RUNNING",
            "--page-size",
            "1",
        ])
        .await;
    assert_eq!(
        running["executions"].as_array().unwrap().len(),
        2,
        "{running}"
    );
    let stopped = aws
        .ok(&[
            "stop-execution",
            "--execution-arn",
            &hold1,
            "--error",
            "Operator",
            "--cause",
            "test",
        ])
        .await;
    assert!(stopped["stopDate"].is_number(), "{stopped}");
    let aborted = wait_for_status(&aws, &hold1, "ABORTED").await;
    assert_eq!(
        (aborted["error"].as_str(), aborted["cause"].as_str()),
        (Some("Operator"), Some("test"))
    );
    let history = aws
        .ok(&[
            "get-execution-history",
            "--execution-arn",
            &hold1,
            "--reverse-order",
            "--max-items",
            "1",
        ])
        .await;
    assert_eq!(
        history["events"][0]["type"], "ExecutionAborted",
        "{history}"
    );
    let listed = aws
        .ok(&["list-executions", "--state-machine-arn", &slow])
        .await;
    let statuses: Vec<(&str, &str)> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [("hold-2", "RUNNING"), ("hold-1", "ABORTED")],
        "newest first"
    );
    aws.ok(&[
        "stop-execution",
        "--execution-arn",
        listed["executions"][0]["executionArn"].as_str().unwrap(),
    ])
    .await;

    // Invalid definitions: the validator's diagnostics come back.
    let bad = json!({"StartAt": "Missing", "States": {"A": {"Type": "Pass", "End": true}}});
    let bad_file = write(dir.path(), "bad.json", &bad);
    let v = aws
        .ok(&[
            "validate-state-machine-definition",
            "--definition",
            &bad_file,
        ])
        .await;
    assert_eq!(v["result"], "FAIL", "{v}");
    let diag = &v["diagnostics"][0];
    assert_eq!(diag["severity"], "ERROR", "{v}");
    assert!(diag["message"].as_str().unwrap().contains("Missing"), "{v}");
    let v = aws
        .ok(&["validate-state-machine-definition", "--definition", &photos])
        .await;
    assert_eq!(
        v,
        json!({"result": "OK", "diagnostics": [], "truncated": false})
    );
    let v = aws
        .ok(&[
            "validate-state-machine-definition",
            "--definition",
            "not a definition",
        ])
        .await;
    assert_eq!(
        v["diagnostics"][0]["code"], "INVALID_JSON_DESCRIPTION",
        "{v}"
    );
    let err = aws
        .fails(&[], &create("Bad", &bad_file), "InvalidDefinition")
        .await;
    assert!(
        err.contains("Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: "),
        "{err}"
    );
    aws.fails(
        &[],
        &["describe-state-machine", "--state-machine-arn", "nope"],
        "InvalidArn",
    )
    .await;
    aws.fails(
        &[],
        &[
            "describe-execution",
            "--execution-arn",
            &format!("{run1}-x"),
        ],
        "ExecutionDoesNotExist",
    )
    .await;
    aws.fails(
        &[],
        &[
            "list-executions",
            "--state-machine-arn",
            &format!("{machine}-x"),
        ],
        "StateMachineDoesNotExist",
    )
    .await;
    aws.fails(
        &[],
        &[
            "list-executions",
            "--state-machine-arn",
            &machine,
            "--status-filter",
            "succeeded",
        ],
        "ValidationException",
    )
    .await;

    // boto3: typed exceptions, datetimes, its paginator and a manual nextToken loop.
    let mut cmd = tokio::process::Command::new(client("python3"));
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/boto3_client.py"))
        .args([url, machine.as_str(), run1.as_str()]);
    aws.env(&mut cmd);
    let out = cmd
        .output()
        .await
        .expect("run python3 with boto3 (see .ci/api-clients.sh)");
    assert!(
        out.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    assert_eq!(seen["status"], "SUCCEEDED");
    assert_eq!(seen["start_is_datetime"], true);
    assert_eq!(seen["output"], output);
    assert_eq!(seen["paginated_ids"], json!(ids));
    let mut reversed = ids.clone();
    reversed.reverse();
    assert_eq!(seen["reverse_ids"], json!(reversed));
    assert_eq!(seen["reverse_calls"], json!(ids.len().div_ceil(3)));
    assert_eq!(
        seen["started_details"],
        json!({"roleArn": ROLE}),
        "includeExecutionData=false drops the payloads; the role is the machine's"
    );
    assert_eq!(seen["succeeded"], json!(["run-1"]));
    assert_eq!(seen["machines"], json!(["Items", "RiderPhotos", "Slow"]));
    assert_eq!(seen["missing"], "ExecutionDoesNotExist");
    assert_eq!(seen["bad_token"], "InvalidToken");
    assert!(
        seen["bad_input"]
            .as_str()
            .unwrap()
            .starts_with("Invalid State Machine Execution Input: '"),
        "{seen}"
    );

    // Deleting: gone from the list, its finished execution still describable; deleting an
    // unknown machine is not an error.
    aws.ok(&["delete-state-machine", "--state-machine-arn", &machine])
        .await;
    aws.ok(&["delete-state-machine", "--state-machine-arn", &machine])
        .await;
    aws.fails(
        &[],
        &["describe-state-machine", "--state-machine-arn", &machine],
        "StateMachineDoesNotExist",
    )
    .await;
    assert_eq!(
        aws.ok(&["describe-execution", "--execution-arn", &run1])
            .await["status"],
        "SUCCEEDED"
    );
}

/// Polls `describe-map-run` until `done` holds of it (two minutes at most).
pub async fn wait_for_map_run(
    aws: &Aws,
    arn: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = aws.ok(&["describe-map-run", "--map-run-arn", arn]).await;
        if done(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{arn}: waiting for {what}, got {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// UpdateStateMachine and DescribeStateMachineForExecution; tags (at creation and on their
/// own); ListMapRuns, DescribeMapRun, ListExecutions with `mapRunArn`; and UpdateMapRun
/// changing a running Distributed Map's limits: from MaxConcurrency 1 the run (on the fleet's
/// coordinator, or in `serve`) starts the waiting children at once, and a tolerated failure
/// count given while it runs lets two failing children pass (without it the first one fails
/// the Map). Each with one error case. `data` is the data dir whose buckets the runs use.
pub async fn updates_tags_and_map_runs(url: &str, dir: &Path, data: &Path) {
    let aws = Aws::new(url);
    let missing_machine = "arn:aws:states:us-east-1:000000000000:stateMachine:Nope";
    let missing_run = "arn:aws:states:us-east-1:000000000000:mapRun:Nope/Fan:0000";
    let missing_execution = "arn:aws:states:us-east-1:000000000000:execution:Nope:x";

    // Tags at creation, then on their own.
    let pass = write(
        dir,
        "pass.json",
        &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "End": true}}}),
    );
    let mut args = create("Tagged", &pass).to_vec();
    args.extend(["--tags", "key=team,value=photos", "key=stage,value=dev"]);
    let tagged = aws.ok(&args).await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let tags = |v: Value| v["tags"].clone();
    assert_eq!(
        tags(
            aws.ok(&["list-tags-for-resource", "--resource-arn", &tagged])
                .await
        ),
        json!([{"key": "stage", "value": "dev"}, {"key": "team", "value": "photos"}])
    );
    aws.ok(&[
        "tag-resource",
        "--resource-arn",
        &tagged,
        "--tags",
        "key=stage,value=prod",
        "key=owner,value=ops",
    ])
    .await;
    aws.ok(&[
        "untag-resource",
        "--resource-arn",
        &tagged,
        "--tag-keys",
        "team",
    ])
    .await;
    assert_eq!(
        tags(
            aws.ok(&["list-tags-for-resource", "--resource-arn", &tagged])
                .await
        ),
        json!([{"key": "owner", "value": "ops"}, {"key": "stage", "value": "prod"}])
    );
    for op in [
        vec!["tag-resource", "--tags", "key=a,value=b"],
        vec!["untag-resource", "--tag-keys", "a"],
        vec!["list-tags-for-resource"],
    ] {
        let mut args = op.clone();
        args.extend(["--resource-arn", missing_machine]);
        let err = aws.fails(&[], &args, "ResourceNotFound").await;
        assert!(
            err.contains(&format!("Resource not found: '{missing_machine}'")),
            "{err}"
        );
    }

    // UpdateStateMachine: a new definition and revision; executions keep what they ran.
    let before = aws.ok(&start(&tagged, "before", "{}")).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_status(&aws, &before, "SUCCEEDED").await;
    let two = write(
        dir,
        "two.json",
        &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 2, "End": true}}}),
    );
    let updated = aws
        .ok(&[
            "update-state-machine",
            "--state-machine-arn",
            &tagged,
            "--definition",
            &two,
        ])
        .await;
    let revision = updated["revisionId"]
        .as_str()
        .expect("revisionId")
        .to_string();
    assert!(updated["updateDate"].is_number(), "{updated}");
    let described = aws
        .ok(&["describe-state-machine", "--state-machine-arn", &tagged])
        .await;
    assert_eq!(described["revisionId"], json!(revision));
    assert!(
        described["definition"]
            .as_str()
            .unwrap()
            .contains("\"Result\":2")
    );
    let after = aws.ok(&start(&tagged, "after", "{}")).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_for_status(&aws, &after, "SUCCEEDED").await;
    assert_eq!(done["output"], "2");
    let old = aws
        .ok(&[
            "describe-state-machine-for-execution",
            "--execution-arn",
            &before,
        ])
        .await;
    assert!(
        old["definition"].as_str().unwrap().contains("\"Result\":1"),
        "{old}"
    );
    assert_eq!(old["roleArn"], ROLE);
    assert!(
        old.get("revisionId").is_none(),
        "ran before any update: {old}"
    );
    assert!(old["updateDate"].as_f64().unwrap() < updated["updateDate"].as_f64().unwrap());
    let new = aws
        .ok(&[
            "describe-state-machine-for-execution",
            "--execution-arn",
            &after,
        ])
        .await;
    assert_eq!(new["revisionId"], json!(revision), "{new}");
    assert_eq!(new["updateDate"], updated["updateDate"]);
    assert_eq!(new["stateMachineArn"], json!(tagged));
    aws.fails(
        &[],
        &["update-state-machine", "--state-machine-arn", &tagged],
        "MissingRequiredParameter",
    )
    .await;
    let err = aws
        .fails(
            &[],
            &[
                "update-state-machine",
                "--state-machine-arn",
                &tagged,
                "--definition",
                &two,
                "--publish",
            ],
            "ValidationException",
        )
        .await;
    assert!(
        err.contains("versions and aliases are not supported"),
        "{err}"
    );
    aws.fails(
        &[],
        &[
            "update-state-machine",
            "--state-machine-arn",
            missing_machine,
            "--definition",
            &two,
        ],
        "StateMachineDoesNotExist",
    )
    .await;
    aws.fails(
        &[],
        &[
            "describe-state-machine-for-execution",
            "--execution-arn",
            missing_execution,
        ],
        "ExecutionDoesNotExist",
    )
    .await;

    // A Distributed Map over ten items, one at a time, each waiting 6 s; the last two fail,
    // which the definition does not tolerate.
    let lines: Vec<String> = (0..10)
        .map(|i| json!({"id": i, "fail": i >= 8}).to_string())
        .collect();
    std::fs::create_dir_all(data.join("buckets/in")).unwrap();
    std::fs::write(data.join("buckets/in/items.jsonl"), lines.join("\n")).unwrap();
    let fan = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "MaxConcurrency": 1,
        "Label": "Fan",
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSONL"},
            "Parameters": {"Bucket": "in", "Key": "items.jsonl"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Hold", "States": {
                "Hold": {"Type": "Wait", "Seconds": 6, "Next": "Check"},
                "Check": {"Type": "Choice", "Choices": [{"Variable": "$.fail", "BooleanEquals": true, "Next": "Fail"}], "Default": "Done"},
                "Fail": {"Type": "Fail", "Error": "ItemFailed", "Cause": "a failing item"},
                "Done": {"Type": "Pass", "End": true}}},
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "fan"}},
        "End": true}}});
    let fan_file = write(dir, "fan.json", &fan);
    let machine = aws.ok(&create("Fan", &fan_file)).await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let execution = aws.ok(&start(&machine, "fan-1", "{}")).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = aws
            .ok(&["list-map-runs", "--execution-arn", &execution])
            .await;
        if runs["mapRuns"].as_array().is_some_and(|r| !r.is_empty()) {
            break runs;
        }
        assert!(Instant::now() < deadline, "no map run: {runs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run = &runs["mapRuns"][0];
    let run_arn = run["mapRunArn"].as_str().unwrap().to_string();
    assert_eq!(run["executionArn"], json!(execution), "{runs}");
    assert_eq!(
        run["stateMachineArn"],
        json!(format!("{machine}/Fan")),
        "{runs}"
    );
    assert!(run["startDate"].is_number(), "{runs}");
    let d = aws
        .ok(&["describe-map-run", "--map-run-arn", &run_arn])
        .await;
    assert_eq!(
        (d["status"].as_str(), d["maxConcurrency"].as_u64()),
        (Some("RUNNING"), Some(1)),
        "{d}"
    );
    assert!(
        d["executionCounts"]["running"].as_u64().unwrap() <= 1,
        "{d}"
    );

    // Room for all, and two failures tolerated: the coordinator starts the other children
    // at once and lets the failing ones pass.
    aws.ok(&[
        "update-map-run",
        "--map-run-arn",
        &run_arn,
        "--max-concurrency",
        "10",
        "--tolerated-failure-count",
        "2",
    ])
    .await;
    let wider = wait_for_map_run(&aws, &run_arn, "more than one child running", |d| {
        d["executionCounts"]["running"].as_u64().unwrap_or(0) > 1
    })
    .await;
    assert_eq!(
        (
            wider["maxConcurrency"].as_u64(),
            wider["toleratedFailureCount"].as_u64()
        ),
        (Some(10), Some(2)),
        "{wider}"
    );
    let done = wait_for_status(&aws, &execution, "SUCCEEDED").await;
    let d = wait_for_map_run(&aws, &run_arn, "its end", |d| d["status"] != "RUNNING").await;
    assert_eq!(d["status"], "SUCCEEDED", "{d} / {done}");
    let counts = &d["executionCounts"];
    assert_eq!(
        (counts["succeeded"].as_u64(), counts["failed"].as_u64()),
        (Some(8), Some(2))
    );
    assert!(d["stopDate"].is_number(), "{d}");

    // Its children (from the ResultWriter's files), all and by status.
    let children = aws
        .ok(&["list-executions", "--map-run-arn", &run_arn])
        .await;
    let children = children["executions"].as_array().unwrap().clone();
    assert_eq!(children.len(), 10, "{children:?}");
    assert!(
        children.iter().all(|c| c["startDate"].is_number()),
        "{children:?}"
    );
    // Page by page (the result files read only as far as each page needs): the same list.
    let paged = aws
        .ok(&[
            "list-executions",
            "--map-run-arn",
            &run_arn,
            "--page-size",
            "3",
        ])
        .await;
    assert_eq!(paged["executions"], json!(children), "{paged}");
    let failed = aws
        .ok(&[
            "list-executions",
            "--map-run-arn",
            &run_arn,
            "--status-filter",
            "FAILED",
            "--page-size",
            "1",
        ])
        .await;
    assert_eq!(
        failed["executions"].as_array().unwrap().len(),
        2,
        "{failed}"
    );

    // The errors: an ended run, unknown runs and executions.
    let err = aws
        .fails(
            &[],
            &[
                "update-map-run",
                "--map-run-arn",
                &run_arn,
                "--max-concurrency",
                "3",
            ],
            "ValidationException",
        )
        .await;
    assert!(err.contains("not running"), "{err}");
    for args in [
        vec!["describe-map-run", "--map-run-arn", missing_run],
        vec![
            "update-map-run",
            "--map-run-arn",
            missing_run,
            "--max-concurrency",
            "2",
        ],
    ] {
        aws.fails(&[], &args, "ResourceNotFound").await;
    }
    aws.fails(
        &[],
        &["list-map-runs", "--execution-arn", missing_execution],
        "ExecutionDoesNotExist",
    )
    .await;
    aws.fails(
        &[],
        &["list-executions", "--map-run-arn", missing_run],
        "ResourceNotFound",
    )
    .await;
}

/// RedriveExecution through the aws CLI: a run whose Task failed once is redriven and
/// Only requests signed by a configured key pass; without keys, serve refuses to start
/// unless told to let anyone in. `store` chooses the mode (`--redis ... --prefix ...`, or
/// `--data-dir ...`); no coordinator is needed.
pub async fn auth_scenario(store: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let mut args = store.to_vec();
    args.extend(["--credentials-file", creds.to_str().unwrap()]);
    let serve = Serve::start(&args, &[]);
    let mut aws = Aws::new(&serve.url);
    assert_eq!(
        aws.ok(&["list-state-machines"]).await,
        json!({"stateMachines": []})
    );
    aws.fails(
        &["--no-sign-request"],
        &["list-state-machines"],
        "MissingAuthenticationTokenException",
    )
    .await;
    aws.secret = "not-the-secret".into();
    aws.fails(&[], &["list-state-machines"], "InvalidSignatureException")
        .await;
    aws.key_id = "AKIDUNKNOWN".into();
    aws.fails(&[], &["list-state-machines"], "UnrecognizedClientException")
        .await;
    aws.key_id = KEY_ID.into();
    aws.secret = SECRET.into();
    aws.fails(
        &[],
        &[
            "list-state-machine-aliases",
            "--state-machine-arn",
            "arn:aws:states:us-east-1:000000000000:stateMachine:a",
        ],
        "UnknownOperationException",
    )
    .await;
    drop(serve);

    // Without keys, serve refuses to start unless told to let anyone in.
    let out = Command::new(MAPFLEET)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(store)
        .env_remove("MAPFLEET_API_KEYS")
        .env_remove("MAPFLEET_CREDENTIALS_FILE")
        .env_remove("MAPFLEET_REDIS_URL")
        .env_remove("MAPFLEET_AMQP_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-anonymous"));
    let mut args = store.to_vec();
    args.push("--allow-anonymous");
    let serve = Serve::start(&args, &[]);
    let aws = Aws::new(&serve.url);
    assert!(
        aws.run(&["--no-sign-request"], &["list-state-machines"])
            .await
            .ok
    );
}

/// RedriveExecution of a stopped execution, the same in both modes: ABORTED at a Wait, it
/// is REDRIVABLE; redriven, it resumes at the Wait (ExecutionRedriven, then
/// WaitStateEntered, ids counting on) and succeeds with redriveCount 1; then it is
/// ExecutionNotRedrivable; a repeated client token redrives once; an unknown ARN is
/// ExecutionDoesNotExist.
pub async fn redrive_after_stop(url: &str) {
    let aws = Aws::new(url);
    let dir = tempfile::tempdir().expect("temp dir");
    let def = json!({"StartAt": "First", "States": {
        "First": {"Type": "Pass", "Next": "Hold"},
        // Long enough for the stop to come first on a loaded machine (an `aws` call can
        // take seconds), short enough to wait out after the redrive.
        "Hold": {"Type": "Wait", "Seconds": 10, "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    let file = write(dir.path(), "stopped.json", &def);
    let machine = aws.ok(&create("Stopped", &file)).await["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string();
    let stopped = |name: &'static str| {
        let (aws, machine) = (&aws, machine.clone());
        async move {
            let arn = aws.ok(&start(&machine, name, "{}")).await["executionArn"]
                .as_str()
                .expect("executionArn")
                .to_string();
            aws.ok(&["stop-execution", "--execution-arn", &arn]).await;
            let d = wait_for_status(aws, &arn, "ABORTED").await;
            assert_eq!(d["redriveStatus"], "REDRIVABLE", "{d}");
            assert_eq!(d["redriveCount"], 0, "{d}");
            arn
        }
    };
    let arn = stopped("stop-1").await;
    let before = aws
        .ok(&["get-execution-history", "--execution-arn", &arn])
        .await["events"]
        .as_array()
        .expect("events")
        .len();
    let redriven = aws
        .ok(&["redrive-execution", "--execution-arn", &arn])
        .await;
    assert!(redriven["redriveDate"].is_number(), "{redriven}");
    let done = wait_for_status(&aws, &arn, "SUCCEEDED").await;
    assert_eq!(done["redriveCount"], 1, "{done}");
    assert_eq!(done["redriveDate"], redriven["redriveDate"], "{done}");
    assert_eq!(done["redriveStatus"], "NOT_REDRIVABLE", "{done}");
    let events = aws
        .ok(&["get-execution-history", "--execution-arn", &arn])
        .await["events"]
        .as_array()
        .expect("events")
        .clone();
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[before]["type"], "ExecutionRedriven", "{events:?}");
    assert_eq!(
        events[before]["executionRedrivenEventDetails"]["redriveCount"],
        1
    );
    assert_eq!(
        events[before + 1]["type"],
        "WaitStateEntered",
        "resumes at Hold"
    );
    assert_eq!(events.last().unwrap()["type"], "ExecutionSucceeded");
    let refused = aws
        .fails(
            &[],
            &["redrive-execution", "--execution-arn", &arn],
            "ExecutionNotRedrivable",
        )
        .await;
    assert!(
        refused.contains("Execution is SUCCEEDED and cannot be redriven"),
        "{refused}"
    );
    let arn = stopped("stop-2").await;
    redrive_twice_with_one_token(&aws, &arn).await;
    // ListExecutions' redriveFilter: the two redriven against one that never was.
    stopped("stop-3").await;
    let listed = |extra: &'static [&'static str]| {
        let (aws, machine) = (&aws, machine.clone());
        async move {
            let mut args = vec!["list-executions", "--state-machine-arn", &machine];
            args.extend_from_slice(extra);
            let out = aws.ok(&args).await;
            let mut rows: Vec<(String, u64, bool)> = out["executions"]
                .as_array()
                .expect("executions")
                .iter()
                .map(|e| {
                    (
                        e["name"].as_str().expect("name").to_string(),
                        e["redriveCount"].as_u64().expect("redriveCount"),
                        e["redriveDate"].is_number(),
                    )
                })
                .collect();
            rows.sort();
            rows
        }
    };
    let row = |name: &str, count: u64| (name.to_string(), count, count > 0);
    assert_eq!(
        listed(&["--redrive-filter", "REDRIVEN"]).await,
        [row("stop-1", 1), row("stop-2", 1)]
    );
    assert_eq!(
        listed(&["--redrive-filter", "NOT_REDRIVEN"]).await,
        [row("stop-3", 0)]
    );
    assert_eq!(
        listed(&["--redrive-filter", "REDRIVEN", "--status-filter", "ABORTED"]).await,
        Vec::<(String, u64, bool)>::new()
    );
    assert_eq!(
        listed(&[]).await,
        [row("stop-1", 1), row("stop-2", 1), row("stop-3", 0)]
    );
    let refused = aws
        .fails(
            &[],
            &[
                "list-executions",
                "--state-machine-arn",
                &machine,
                "--redrive-filter",
                "redriven",
            ],
            "ValidationException",
        )
        .await;
    assert!(
        refused.contains("Value 'redriven' at 'redriveFilter' failed to satisfy constraint"),
        "{refused}"
    );
}

/// RedriveExecution of the ended `arn` twice with one client token: one redrive (the same
/// date), which succeeds; then a redrive of an execution that does not exist.
pub async fn redrive_twice_with_one_token(aws: &Aws, arn: &str) {
    let call = [
        "redrive-execution",
        "--execution-arn",
        arn,
        "--client-token",
        "tok-1",
    ];
    let first = aws.ok(&call).await;
    let second = aws.ok(&call).await;
    assert_eq!(first["redriveDate"], second["redriveDate"]);
    let done = wait_for_status(aws, arn, "SUCCEEDED").await;
    assert_eq!(done["redriveCount"], 1, "{done}");
    aws.fails(
        &[],
        &[
            "redrive-execution",
            "--execution-arn",
            &format!("{arn}-none"),
        ],
        "ExecutionDoesNotExist",
    )
    .await;
}

/// The AWS-recorded conformance cases through boto3 against the `serve` at `url`
/// (`tests/api/boto3_conformance_adapter.py` with the shared runner): the runner's output,
/// for [`check_conformance`].
pub async fn run_conformance(url: &str) -> std::process::Output {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let adapter = format!(
        "{} {}",
        client("python3").display(),
        tests.join("api/boto3_conformance_adapter.py").display()
    );
    tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new(client("python3"))
            .arg(tests.join("conformance/run_conformance.py"))
            .arg("--cases")
            .arg(tests.join("conformance/dev-cases.jsonl"))
            .args(["--cmd", &adapter, "--events", "--jobs", "4"])
            .env("MAPFLEET_API_ENDPOINT", url)
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .output(),
    )
    .await
    .expect("the conformance run took over 15 minutes")
    .expect("run the conformance runner with python3 (see .ci/api-clients.sh)")
}

/// Checks [`run_conformance`]'s output: every selected case with the status, output and
/// error the CLI gives, and the event types at least as often as embedded mode's floors.
pub fn check_conformance(out: &std::process::Output) {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let floor: Value = serde_json::from_str(
        &std::fs::read_to_string(tests.join("conformance/floor.json")).expect("floor.json"),
    )
    .expect("floor.json is JSON");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .expect("the runner's summary line");
    let count = |word: &str| -> u64 {
        let words: Vec<&str> = summary.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap_or_else(|| panic!("{word} in {summary:?}"));
        words[at - 1].parse().expect("a count")
    };
    let (passed, failed) = (count("passed"), count("failed"));
    // Every case whose status, output and error match; event types as in embedded mode.
    let selected = floor["jsonpath"].as_u64().unwrap()
        + floor["jsonata"].as_u64().unwrap()
        + floor["mixed"].as_u64().unwrap();
    assert_eq!(passed + failed, selected, "{summary}");
    let event_floor = floor["jsonpath_event_types"].as_u64().unwrap()
        + floor["jsonata_event_types"].as_u64().unwrap()
        + floor["mixed"].as_u64().unwrap();
    let wrong: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("FAIL ") && !l.ends_with("event types differ"))
        .collect();
    assert!(
        wrong.is_empty(),
        "cases whose status, output or error differ through the API: {wrong:#?}"
    );
    assert!(
        passed >= event_floor,
        "{passed} cases with the same event types through the API, below the embedded floor {event_floor}: {summary}"
    );
}
