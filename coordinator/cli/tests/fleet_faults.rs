//! The fleet under faults caused for real, in this process: two coordinators and two
//! workers (the same `Coordinator::serve` and `consumer::serve` the binaries run) whose
//! broker connections go through a TCP proxy that stalls and cuts them
//! ([`common::proxy`]), or whose Redis is a server of the test's own that is killed and
//! loses the tail of its AOF ([`common::redis_server`]). Each test checks what exactly-once
//! means for a Map: the run finishes, its results are exact and in order, every history
//! event id is unique, and every iteration started and succeeded exactly once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::driver::Status;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::Event;
use coordinator::fleet::client::FleetClient;
use serde_json::{Value, json};
use worker::registry::{RegistryOptions, default_registry};

use common::in_process::{self, InProcessFleet, Services, config};
use common::proxy::Proxy;
use common::redis_server::RedisServer;

const SLEEP: &str = "arn:mapfleet:task:::sleep";

/// One fault test at a time: each runs four services in this process, and on a 2-core
/// machine two at once would only measure the overload.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where this test process's services log (`MAPFLEET_LOG`, info by default).
fn log_file() -> std::path::PathBuf {
    in_process::log_to_file("mapfleet-fleet-faults")
}

/// Two coordinators and two workers (8 slots each) of one prefix, in this process.
struct Fleet {
    prefix: String,
    running: InProcessFleet,
}

impl Fleet {
    /// `amqp` and `redis` are what the services connect to (perhaps through a proxy); the
    /// topology is declared once beforehand on the machine's broker.
    async fn start(tag: &str, amqp: &str, redis: &str) -> anyhow::Result<Fleet> {
        log_file();
        let prefix = shared::testkit::unique_prefix(tag);
        let fleet = config(&["--prefix", &prefix, "--amqp", amqp, "--redis", redis]);
        let running = InProcessFleet::start_with(
            fleet,
            Services {
                coordinators: 2,
                workers: 2,
                worker_slots: 8,
                registry: default_registry(RegistryOptions { test_tasks: true }),
                worker_tag: "fleet-faults",
                declare_on: Some(shared::testkit::amqp_url()),
            },
        )
        .await?;
        Ok(Fleet { prefix, running })
    }

    /// Stops the services and deletes the prefix's queues and keys (`redis`: where they are).
    async fn stop(self, redis: Option<&str>) {
        for (what, result) in self.running.stop().await {
            if let Err(e) = result {
                eprintln!("{what}: {e:#}");
            }
        }
        let prefix = self.prefix.clone();
        let redis = redis.map(str::to_string);
        let _ = tokio::task::spawn_blocking(move || match redis {
            // Only the queues: the Redis is the test's own and goes with it.
            Some(_) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let _ = rt.block_on(async {
                    let conn = shared::amqp::connect(
                        &shared::testkit::amqp_url(),
                        "fleet-faults-teardown",
                        Duration::from_secs(10),
                    )
                    .await?;
                    let channel = conn.create_channel().await?;
                    shared::topology::delete(
                        &channel,
                        &shared::topology::Topology::new(&prefix, 1),
                    )
                    .await?;
                    anyhow::Ok(())
                });
            }
            None => shared::testkit::teardown_prefix(&prefix),
        })
        .await;
    }
}

/// A Map of `n` sleep items of `ms` each (all iterations as the fleet allows).
fn sleep_map(n: usize, ms: u64) -> (Value, Value, Vec<Value>) {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0,
        "ItemProcessor": {"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": SLEEP,
            "Parameters": {"ms": ms, "i.$": "$.i"}, "End": true}}}, "End": true}}});
    let items: Vec<Value> = (0..n).map(|i| json!({ "i": i })).collect();
    let expected = (0..n).map(|i| json!({ "ms": ms, "i": i })).collect();
    (def, json!({ "items": items }), expected)
}

async fn submit(fleet: &Fleet, def: &Value, input: Value, name: &str) -> String {
    let info = ExecutionInfo::new("Faults", name, input, chrono::Utc::now());
    fleet.running.submit_as(def, &info).await.expect("submit");
    info.execution_arn
}

/// Polls until the execution leaves RUNNING (riding out Redis errors); panics after
/// `limit`.
async fn wait_done(client: &FleetClient, arn: &str, limit: Duration) -> Status {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.status(arn).await
            && s != Status::Running
        {
            return s;
        }
        assert!(
            started.elapsed() < limit,
            "execution still RUNNING after {limit:?}; progress {:?}; services log: {}",
            client.progress(arn).await.ok(),
            log_file().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `done` iterations succeeded; false if the execution ended first.
async fn wait_progress(client: &FleetClient, arn: &str, done: u64, limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.status(arn).await
            && s != Status::Running
        {
            return false;
        }
        if let Ok((_, ok, _)) = client.progress(arn).await
            && ok >= done
        {
            return true;
        }
        assert!(
            started.elapsed() < limit,
            "fewer than {done} iterations after {limit:?}; services log: {}",
            log_file().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The execution succeeded with `expected`, every event id is unique, and every one of the
/// `n` iterations started and succeeded exactly once.
async fn assert_exactly_once(client: &FleetClient, arn: &str, expected: &[Value]) {
    let d = client.describe(arn, true).await.expect("describe");
    assert_eq!(d.status, Status::Succeeded, "error: {:?}", d.error);
    assert_eq!(d.output, Some(Value::Array(expected.to_vec())), "results");
    let events: Vec<Event> = client.history(arn).await.expect("history");
    if let Err(e) = coordinator::engine::history::check_exactly_once(&events, expected.len()) {
        panic!("{e}");
    }
}

/// Issue 14, item 1: every broker connection of both coordinators and both workers stalls
/// for 10 s (bytes stop; connections stay up), several times during a 3,000-item Map,
/// longer than the coordinators' 5 s leases; some stalls end with every connection cut.
/// A coordinator whose task is blocked publishing must not advance the execution twice (its
/// own second task, or the other coordinator, takes over only through a new fenced lease).
/// `MAPFLEET_STALL_ROUNDS` rounds in a row (2 by default; the bar is 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_stalls_never_apply_an_iteration_twice() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let rounds: usize = std::env::var("MAPFLEET_STALL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let redis = shared::testkit::redis_url();
    for round in 1..=rounds {
        let proxy = Proxy::start("127.0.0.1:5672");
        let fleet = Fleet::start(
            "mft-stall",
            &proxy.url(&shared::testkit::amqp_url()),
            &redis,
        )
        .await
        .expect("start the fleet");
        let client = fleet.running.client.clone();
        let (def, input, expected) = sleep_map(3000, 20);
        let arn = submit(&fleet, &def, input, &format!("stall-{round}")).await;
        let mut stalls = 0;
        for (at, cut) in [(200, false), (1000, true), (1800, false), (2500, true)] {
            if !wait_progress(&client, &arn, at, Duration::from_secs(240)).await {
                break;
            }
            proxy.stall();
            tokio::time::sleep(Duration::from_secs(10)).await;
            if cut {
                proxy.cut();
            }
            proxy.resume();
            stalls += 1;
        }
        assert!(
            stalls >= 2,
            "round {round}: the Map finished after {stalls} stall(s); the test did not stall it enough"
        );
        let status = wait_done(&client, &arn, Duration::from_secs(240)).await;
        assert_eq!(status, Status::Succeeded, "round {round}");
        assert_exactly_once(&client, &arn, &expected).await;
        eprintln!("round {round}: {stalls} stalls, exactly once");
        fleet.stop(None).await;
    }
}

/// Issue 14, item 3: Redis (the test's own, AOF with `appendfsync everysec`) is killed
/// while outcomes flow, and comes back without the last second of its AOF: outcomes the
/// coordinators had applied and acked to the broker are gone from it. The coordinators
/// notice the restart and put them back; the execution finishes within seconds, not after
/// the 10-minute re-drive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_losing_its_last_second_recovers_in_seconds() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let redis = RedisServer::start();
    let url = redis.url();
    let fleet = Fleet::start("mft-aof", &shared::testkit::amqp_url(), &url)
        .await
        .expect("start the fleet");
    let client = fleet.running.client.clone();
    // At least 3.4 s of work (16 slots) left when the fault comes, 1.5 s later.
    let (def, input, expected) = sleep_map(2000, 30);
    let arn = submit(&fleet, &def, input, "aof").await;
    assert!(
        wait_progress(&client, &arn, 200, Duration::from_secs(120)).await,
        "the Map ended before the fault"
    );
    // The AOF's length over the last second and a half, to cut it back by one second.
    let redis = Arc::new(std::sync::Mutex::new(redis));
    let mut sizes: Vec<(Instant, u64)> = Vec::new();
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_millis(1500) {
        sizes.push((Instant::now(), redis.lock().unwrap().aof_len()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost_tail = {
        let mut r = redis.lock().unwrap();
        r.kill();
        let second_ago = Instant::now() - Duration::from_secs(1);
        let len = sizes
            .iter()
            .rev()
            .find(|(at, _)| *at <= second_ago)
            .map(|(_, len)| *len)
            .expect("a size a second old");
        let tail = r.cut_aof_to(len);
        r.restart();
        tail
    };
    let restarted = Instant::now();
    // The fault is real: outcomes had been applied (and acked) in the second Redis lost.
    const APPLIED: &[u8] = b"$5\r\nphase\r\n$7\r\napplied\r\n";
    let applied_lost = lost_tail
        .windows(APPLIED.len())
        .filter(|w| *w == APPLIED)
        .count();
    assert!(
        applied_lost > 0,
        "the cut-off tail ({} bytes) holds no applied outcome",
        lost_tail.len()
    );
    eprintln!(
        "cut {} bytes off the AOF, with {applied_lost} applied outcomes",
        lost_tail.len()
    );
    let status = wait_done(&client, &arn, Duration::from_secs(120)).await;
    let took = restarted.elapsed();
    assert_eq!(status, Status::Succeeded);
    assert_exactly_once(&client, &arn, &expected).await;
    assert!(
        took < Duration::from_secs(30),
        "finished {took:?} after Redis came back: lost outcomes waited for the re-drive"
    );
    fleet.stop(Some(&url)).await;
    drop(redis);
}
