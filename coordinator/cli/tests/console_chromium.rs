//! The web console in headless Chromium against a real run of the workshop's batch: a
//! coordinator and a photo worker (real RabbitMQ, Redis, photos and face models) on a fresh
//! prefix, `mapfleet serve` with a key pair, the state machine and execution made with the
//! real `aws` CLI; Debian's `chromium` driven through `chromedriver` logs in with the key pair
//! and the test reads the DOM. PNG screenshots go to `test-artifacts/console/` under the
//! target directory (the README's images are copies).

#[path = "common/models.rs"]
mod models;
#[path = "console/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use models::{models_dir, repo, worker_bin};
use serde_json::{Value, json};
use webdriver::Driver;

const KEY_ID: &str = "AKIDCONSOLETEST";
const SECRET: &str = "console-test-secret-key";
const LOADED: &str = "return document.getElementById('main').dataset.loaded === 'true'";

fn mapfleet() -> &'static str {
    env!("CARGO_BIN_EXE_mapfleet")
}

/// The aws CLI of `.ci/api-clients.sh`'s venv, else the one on PATH.
fn aws_cli() -> PathBuf {
    let venv = std::env::var_os("MAPFLEET_API_CLIENTS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mapfleet/api-clients"))
        });
    match venv.map(|v| v.join("bin/aws")) {
        Some(bin) if bin.exists() => bin,
        _ => PathBuf::from("aws"),
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deletes the fleet prefix's queues and keys when the test ends.
struct Teardown(String);

impl Drop for Teardown {
    fn drop(&mut self) {
        shared::testkit::teardown_prefix(&self.0);
    }
}

fn aws(endpoint: &str, home: &Path, args: &[&str]) -> Value {
    let out = Command::new(aws_cli())
        .args([
            "--output",
            "json",
            "--endpoint-url",
            endpoint,
            "stepfunctions",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_PAGER", "")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("run the aws CLI (bash .ci/api-clients.sh)");
    assert!(
        out.status.success(),
        "aws stepfunctions {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the aws CLI")
}

/// A plain GET, for what the browser would not show: the status of an unauthenticated read.
fn get_status(url: &str, path: &str) -> u16 {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("connect to serve");
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nX-Mapfleet-Console: 1\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `mapfleet serve` with `store` (`--redis ... --prefix ...`, or `--data-dir ...` for
/// embedded mode, which runs the photo tasks itself).
fn start_serve(store: &[&str]) -> (Proc, String) {
    let mut child = Command::new(mapfleet())
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(store)
        .env("MAPFLEET_API_KEYS", format!("{KEY_ID}:{SECRET}"))
        .env("MAPFLEET_MODELS_DIR", models_dir())
        .env_remove("MAPFLEET_CREDENTIALS_FILE")
        .env_remove("MAPFLEET_REDIS_URL")
        .env_remove("MAPFLEET_AMQP_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mapfleet serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("serve: {line}");
            if let Some(rest) = line.strip_prefix("Step Functions API on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("mapfleet serve did not say where it listens");
    (Proc(child), url)
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts/console");
    std::fs::create_dir_all(&dir).expect("make the test-artifacts dir");
    dir
}

/// Puts the workshop's photos in `data`'s photo bucket.
fn put_photos(data: &Path) {
    let photos: Vec<String> = std::fs::read_dir(repo().join("examples/rider-photos/photos"))
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".jpg"))
        .collect();
    let put = Command::new(mapfleet())
        .args(["objects", "put", "mapfleet-rider-photos"])
        .args(&photos)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
}

#[test]
fn the_console_shows_the_workshop_run_its_map_run_and_the_duplicate_face_iteration() {
    // The fleet: a coordinator and one worker with the photos in its data dir.
    let data = tempfile::tempdir().unwrap();
    put_photos(data.path());
    let prefix = format!("mft-console-{}", uuid::Uuid::new_v4().simple());
    let _teardown = Teardown(prefix.clone());
    shared::testkit::declare_prefix(&prefix, 5).expect("declare the fleet's queues");
    let _coordinator = Proc(
        Command::new(mapfleet())
            .args(["coordinator", "--prefix", &prefix])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _worker = Proc(
        Command::new(worker_bin())
            .args(["--prefix", &prefix, "--concurrency", "2", "--data-dir"])
            .arg(data.path())
            .env("MAPFLEET_MODELS_DIR", models_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let redis = shared::testkit::redis_url();
    let (_serve, url) = start_serve(&["--redis", &redis, "--prefix", &prefix]);
    console_scenario(&url, &artifacts());
}

/// The same console over `serve` in embedded mode: no fleet, the batch run by `serve`
/// itself; its screenshots go to `test-artifacts/console/embedded/`.
#[test]
fn the_console_works_over_embedded_mode() {
    let data = tempfile::tempdir().unwrap();
    put_photos(data.path());
    let (_serve, url) = start_serve(&["--data-dir", data.path().to_str().unwrap()]);
    let shots = artifacts().join("embedded");
    std::fs::create_dir_all(&shots).expect("make the screenshots' dir");
    console_scenario(&url, &shots);
}

/// The workshop's machine and batch made through the API, then the console driven over it.
fn console_scenario(url: &str, shots: &Path) {
    let url = url.to_string();

    // The workshop's state machine and batch, through the API with the real aws CLI.
    let home = tempfile::tempdir().unwrap();
    let def = repo().join("examples/rider-photos/ImageProcessingStateMachine-DynamicInput.json");
    let input = repo().join("examples/rider-photos/batch-input.json");
    let machine = aws(
        &url,
        home.path(),
        &[
            "create-state-machine",
            "--name",
            "RiderPhotos",
            "--role-arn",
            "arn:aws:iam::000000000000:role/mapfleet",
            "--definition",
            &format!("file://{}", def.display()),
        ],
    )["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let execution = aws(
        &url,
        home.path(),
        &[
            "start-execution",
            "--state-machine-arn",
            &machine,
            "--name",
            "batch-1",
            "--input",
            &format!("file://{}", input.display()),
        ],
    )["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let d = aws(
            &url,
            home.path(),
            &["describe-execution", "--execution-arn", &execution],
        );
        if d["status"] == "SUCCEEDED" {
            break;
        }
        assert!(
            d["status"] == "RUNNING" && Instant::now() < deadline,
            "the batch did not succeed: {d}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Without a session the console's data is refused.
    let q = format!(
        "/console/api/execution?arn={}",
        execution.replace(':', "%3A")
    );
    assert_eq!(get_status(&url, &q), 401);

    let profile = tempfile::tempdir().unwrap();
    let browser = Driver::start(profile.path());
    let page = |hash: &str| format!("{}/{hash}", url.trim_end_matches('/'));
    let wait = Duration::from_secs(30);

    // The login form, with the key pair.
    browser.goto(&page(""));
    browser.wait_for(
        "the login form",
        "return document.getElementById('access-key-id')",
        wait,
    );
    browser.type_into("#access-key-id", KEY_ID);
    browser.type_into("#secret-access-key", "not-the-secret");
    browser.click("#login-submit");
    browser.wait_for(
        "the refusal",
        "return document.getElementById('login-error').textContent",
        wait,
    );
    browser.script(
        "document.getElementById('secret-access-key').value = ''",
        json!([]),
    );
    browser.type_into("#secret-access-key", SECRET);
    browser.click("#login-submit");
    browser.wait_for(
        "the state machines list",
        "return document.querySelector('#machines tr[data-name=\"RiderPhotos\"]')",
        wait,
    );

    // The state machine's graph: the workshop's states, the Map and Parallel as boxes.
    browser.click("#machines a");
    browser.wait_for("the state machine page", LOADED, wait);
    let states = browser.script(
        "return [...document.querySelectorAll('#graph g.node')].map(n => [n.dataset.state, n.dataset.type, n.classList.contains('compound')])",
        json!([]),
    );
    let states = states.as_array().expect("graph nodes");
    for (name, kind) in [
        ("DynamicParallelProcessing", "Map"),
        ("FaceDetection", "Task"),
        ("CheckFaceDuplicate", "Task"),
        ("PhotoDoesNotMeetRequirement", "Task"),
        ("ParallelProcessing", "Parallel"),
        ("AddFaceToIndex", "Task"),
        ("Thumbnail", "Task"),
        ("PersistMetadata", "Task"),
    ] {
        let node = states
            .iter()
            .find(|n| n[0] == name)
            .unwrap_or_else(|| panic!("no node {name} in the graph: {states:?}"));
        assert_eq!(node[1], kind, "{name}");
        assert_eq!(
            node[2],
            kind == "Map" || kind == "Parallel",
            "{name} as a box"
        );
    }
    assert_eq!(states.len(), 8, "{states:?}");
    // A real layout: the Catch edges are drawn, and states do not share a place.
    let catches = browser.script(
        "return document.querySelectorAll('#graph path.edge.catch').length",
        json!([]),
    );
    assert_eq!(catches, json!(2));
    let overlaps = browser.script(
        "const r = [...document.querySelectorAll('#graph g.node:not(.compound) rect')].map(e => e.getBoundingClientRect());
         let n = 0; for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) {
           const a = r[i], b = r[j];
           if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) n++; }
         return n",
        json!([]),
    );
    assert_eq!(overlaps, json!(0), "states overlap in the graph");
    let rows = browser.script(
        "return [...document.querySelectorAll('#executions tbody tr')].map(r => [r.dataset.name, r.dataset.status])",
        json!([]),
    );
    assert_eq!(rows, json!([["batch-1", "SUCCEEDED"]]));
    // The status filter asks the API again.
    browser.script(
        "const s = document.getElementById('status-filter'); s.value = 'FAILED'; s.dispatchEvent(new Event('change'))",
        json!([]),
    );
    browser.wait_for(
        "the FAILED filter",
        "return document.querySelectorAll('#executions tbody tr').length === 0",
        wait,
    );
    browser.screenshot(&shots.join("state-machine.png"));

    // The execution: coloured graph, output, events.
    browser.goto(&page(&format!("#/execution?arn={}", urlencode(&execution))));
    browser.wait_for("the execution page", LOADED, wait);
    let coloured = browser.script(
        "return Object.fromEntries([...document.querySelectorAll('#graph g.node')].map(n => [n.dataset.state, n.dataset.status]))",
        json!([]),
    );
    assert_eq!(coloured["DynamicParallelProcessing"], "succeeded");
    assert_eq!(coloured["PersistMetadata"], "succeeded");
    assert_eq!(coloured["CheckFaceDuplicate"], "caught", "{coloured}");
    let output: Value = serde_json::from_str(
        browser
            .script(
                "return document.getElementById('output').textContent",
                json!([]),
            )
            .as_str()
            .unwrap(),
    )
    .expect("the output as JSON");
    assert_eq!(output["results"].as_array().map(Vec::len), Some(5));
    let events = browser.script(
        "return document.querySelectorAll('#events tbody tr[data-event-id]').length",
        json!([]),
    );
    assert!(events.as_u64().unwrap() > 40, "{events}");
    // Filtering the events, and opening one.
    browser.script(
        "const f = document.getElementById('events-filter'); f.value = 'FaceAlreadyExistsError'; f.dispatchEvent(new Event('input'))",
        json!([]),
    );
    let shown = browser.script(
        "return [...document.querySelectorAll('#events tbody tr[data-event-id]')].map(r => r.dataset.type)",
        json!([]),
    );
    assert!(
        shown.as_array().unwrap().iter().any(|t| t == "TaskFailed"),
        "{shown}"
    );
    browser.click("#events tbody tr[data-event-id] button.expand");
    let opened = browser.script(
        "const d = document.querySelector('#events tbody tr.detail:not([hidden]) pre'); return d && d.textContent",
        json!([]),
    );
    assert!(
        opened
            .as_str()
            .unwrap_or("")
            .contains("FaceAlreadyExistsError"),
        "{opened}"
    );
    browser.script(
        "const f = document.getElementById('events-filter'); f.value = ''; f.dispatchEvent(new Event('input'))",
        json!([]),
    );
    browser.screenshot(&shots.join("execution.png"));

    // The Map run: 5 iterations with the workshop's outcomes.
    browser.click("#map-runs a");
    browser.wait_for("the Map run page", LOADED, wait);
    let counts = browser.script(
        "return Object.fromEntries([...document.querySelectorAll('#counts li')].map(l => [l.dataset.status, Number(l.querySelector('.n').textContent)]))",
        json!([]),
    );
    assert_eq!(counts["TOTAL"], 5, "{counts}");
    assert_eq!(counts["SUCCEEDED"], 5, "{counts}");
    let rows = browser.script(
        "return [...document.querySelectorAll('#iterations tbody tr')].map(r => [Number(r.dataset.index), r.dataset.status, r.querySelector('.outcome').textContent])",
        json!([]),
    );
    let rows = rows.as_array().expect("iteration rows").clone();
    assert_eq!(rows.len(), 5, "{rows:?}");
    let outcome = |i: usize| rows[i][2].as_str().unwrap().to_string();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], i, "{rows:?}");
        assert_eq!(r[1], "SUCCEEDED", "{rows:?}");
    }
    assert!(
        outcome(1).contains("Face is wearing sunglasses"),
        "{rows:?}"
    );
    assert!(
        outcome(2).contains("Detected 3 faces in the photo."),
        "{rows:?}"
    );
    assert!(
        outcome(3).contains("Detected 0 faces in the photo."),
        "{rows:?}"
    );
    // Items 0 and 4 are the same happy face: one is accepted, the other is the duplicate.
    let duplicate = [0, 4]
        .into_iter()
        .find(|&i| outcome(i).contains("FaceAlreadyExistsError"))
        .unwrap_or_else(|| panic!("no duplicate face: {rows:?}"));
    let accepted = 4 - duplicate;
    assert_eq!(outcome(accepted), "ended in PersistMetadata", "{rows:?}");
    browser.screenshot(&shots.join("map-run.png"));

    // The duplicate face iteration: its path through the Catch, and its events.
    browser.click(&format!("#iterations tr[data-index=\"{duplicate}\"] a"));
    browser.wait_for(
        "the iteration page",
        "return document.getElementById('main').dataset.page === 'iteration' && document.getElementById('main').dataset.loaded === 'true'",
        wait,
    );
    let path = browser.script(
        "return [...document.querySelectorAll('#iteration-path li')].map(l => [l.dataset.state, l.dataset.status, l.textContent])",
        json!([]),
    );
    let path = path.as_array().expect("the path").clone();
    let names: Vec<&str> = path.iter().map(|p| p[0].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "FaceDetection",
            "CheckFaceDuplicate",
            "PhotoDoesNotMeetRequirement"
        ],
        "{path:?}"
    );
    assert_eq!(path[1][1], "CAUGHT");
    assert!(
        path[1][2]
            .as_str()
            .unwrap()
            .contains("FaceAlreadyExistsError"),
        "{path:?}"
    );
    let types = browser.script(
        "return [...document.querySelectorAll('#events tbody tr[data-event-id]')].map(r => r.dataset.type)",
        json!([]),
    );
    let types: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"MapIterationStarted"), "{types:?}");
    assert_eq!(types.last(), Some(&"MapIterationSucceeded"), "{types:?}");
    assert!(types.contains(&"TaskFailed"), "{types:?}");
    assert!(!types.contains(&"ParallelStateStarted"), "{types:?}");
    let graph = browser.script(
        "return Object.fromEntries([...document.querySelectorAll('#graph g.node')].map(n => [n.dataset.state, n.dataset.status]))",
        json!([]),
    );
    assert_eq!(graph["CheckFaceDuplicate"], "caught", "{graph}");
    assert_eq!(graph["ParallelProcessing"], "none", "{graph}");
    let input = browser.script(
        "return document.getElementById('input').textContent",
        json!([]),
    );
    assert!(
        input.as_str().unwrap().contains("1_happy_face.jpg"),
        "{input}"
    );
    browser.screenshot(&shots.join("iteration.png"));

    // A narrow window: nothing wider than the page but the graph and tables, which scroll.
    browser.window(400, 900);
    let wide = browser.script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1",
        json!([]),
    );
    assert_eq!(
        wide,
        json!(true),
        "the page scrolls sideways in a narrow window"
    );
    eprintln!("screenshots in {}", shots.display());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
