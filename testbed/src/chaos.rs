//! The chaos scenario: a Map batch on a fleet of real processes (`mapfleet coordinator` and
//! `mapfleet-worker`) while a fault schedule runs, checked for exactly-once from what the
//! user gets back.
//!
//! - **Nodes** ([`Nodes`]): a RabbitMQ node and a Redis (AOF on, `appendfsync everysec`) of
//!   the run's own, each behind a [`Proxy`]. Every process of the fleet and the waiting client
//!   connect through the proxies; the harness's own progress reader and its queue
//!   declarations go to the nodes directly.
//! - **The batch**: an inline Map over `items` numbers, each iteration one `sleep` Task of
//!   `item_ms` (the worker's built-in; it returns its input like `echo`, after a pause, so
//!   that the batch outlasts the fault schedule: `max_concurrency / item_ms` bounds its
//!   rate), whose output is the item's number. It is submitted and waited on by the
//!   `mapfleet run --describe` client, as a user would, which must exit 0.
//! - **The schedule** ([`Plan::faults`]): after `warmup` from the first completed item, one
//!   fault at a time, `gap` apart: `kill -9` of a random worker (started again at once), of a
//!   coordinator (started again after a second), an orderly restart of the broker (SIGTERM,
//!   then started again on its data directory), a restart of Redis (`kill -9`, down for 2 s,
//!   started again from its AOF; a `mapfleet describe` started while it is down must ride
//!   out the outage), and through a proxy: every connection cut, every byte stalled for a
//!   while, or every chunk held back (slowed) for a while. A schedule not finished when the
//!   batch ends stops there (the report counts what was injected).
//! - **The checks** ([`Report`]), from the results: the client's output is every item's
//!   result exactly once and in order (lost, duplicated, out-of-order results counted); the
//!   history has one `TaskSucceeded` per iteration (an outcome applied twice would write two)
//!   and every iteration started and succeeded once under unique event ids; the Map's
//!   succeeded counter equals the items. No process may exit on its own.
//! - **The figures**: each fault's time to recover (from its end to the first item that
//!   completes after it, read from progress sampled every 100 ms), and items/s before the
//!   first fault, during the schedule and after it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::{Event, EventType};
use coordinator::fleet::client::FleetClient;
use serde_json::{Value, json};
use shared::topology::Topology;

use crate::proxy::Proxy;
use crate::rabbit::RabbitNode;
use crate::redis_server::RedisServer;

/// Which link a network fault hits: every process's connections to the broker, or to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Broker,
    Redis,
}

impl Link {
    fn name(self) -> &'static str {
        match self {
            Link::Broker => "broker",
            Link::Redis => "Redis",
        }
    }
}

/// One fault of a schedule.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `kill -9` of a random worker, started again at once.
    KillWorker,
    /// `kill -9` of coordinator N, started again after a second.
    KillCoordinator(usize),
    /// The broker stopped (SIGTERM, RabbitMQ's orderly stop) and started again.
    RestartBroker,
    /// Redis killed (`kill -9`), down for 2 s, started again from its AOF.
    RestartRedis,
    /// Every connection on the link closed.
    Cut(Link),
    /// No byte moves on the link for this long (connections stay open).
    Stall(Link, Duration),
    /// Every chunk on the link held back 50 ms, for this long.
    Slow(Link, Duration),
}

/// What a fault counts as in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    WorkerKill,
    CoordinatorKill,
    BrokerRestart,
    RedisRestart,
    Cut,
    Stall,
    Slow,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::WorkerKill,
        Kind::CoordinatorKill,
        Kind::BrokerRestart,
        Kind::RedisRestart,
        Kind::Cut,
        Kind::Stall,
        Kind::Slow,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::WorkerKill => "worker kill -9",
            Kind::CoordinatorKill => "coordinator kill -9",
            Kind::BrokerRestart => "broker restart",
            Kind::RedisRestart => "Redis restart (kill -9, AOF)",
            Kind::Cut => "connections cut",
            Kind::Stall => "link stalled",
            Kind::Slow => "link slowed",
        }
    }
}

impl Fault {
    pub fn kind(self) -> Kind {
        match self {
            Fault::KillWorker => Kind::WorkerKill,
            Fault::KillCoordinator(_) => Kind::CoordinatorKill,
            Fault::RestartBroker => Kind::BrokerRestart,
            Fault::RestartRedis => Kind::RedisRestart,
            Fault::Cut(_) => Kind::Cut,
            Fault::Stall(..) => Kind::Stall,
            Fault::Slow(..) => Kind::Slow,
        }
    }

    fn describe(self) -> String {
        match self {
            Fault::KillWorker => "worker kill -9".into(),
            Fault::KillCoordinator(i) => format!("coordinator {i} kill -9"),
            Fault::RestartBroker => "broker restart".into(),
            Fault::RestartRedis => "Redis restart".into(),
            Fault::Cut(l) => format!("{} connections cut", l.name()),
            Fault::Stall(l, d) => format!("{} link stalled {:.0} s", l.name(), d.as_secs_f64()),
            Fault::Slow(l, d) => format!("{} link slowed {:.0} s", l.name(), d.as_secs_f64()),
        }
    }
}

/// How long a slowed link holds each chunk back.
const SLOW_DELAY: Duration = Duration::from_millis(50);
/// How long Redis stays down when restarted.
const REDIS_DOWN: Duration = Duration::from_secs(2);
/// How long a killed coordinator stays down.
const COORDINATOR_DOWN: Duration = Duration::from_secs(1);
/// How often progress is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One run of the scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub items: usize,
    /// Each item's `sleep`, ms.
    pub item_ms: u64,
    /// The Map's `MaxConcurrency`.
    pub max_concurrency: usize,
    pub coordinators: usize,
    pub workers: usize,
    /// Task slots per worker.
    pub worker_slots: usize,
    /// From the first completed item to the first fault.
    pub warmup: Duration,
    /// Between two faults.
    pub gap: Duration,
    pub faults: Vec<Fault>,
    /// The longest the batch may take.
    pub limit: Duration,
}

impl Plan {
    /// The loadtest's round: 20,000 items by default with `MaxConcurrency` 20 (at most about
    /// 200 items/s, so that the schedule ends before the batch; lower it for a fast fleet),
    /// 2 coordinators, 3 workers, and 11 worker kills,
    /// both coordinators killed, one broker restart, one Redis restart, and two cuts, two
    /// stalls and two slowdowns, 3 s apart.
    pub fn loadtest(items: usize, max_concurrency: usize) -> Plan {
        use Fault::*;
        use Link::*;
        let s = Duration::from_secs;
        Plan {
            items,
            item_ms: 100,
            max_concurrency,
            coordinators: 2,
            workers: 3,
            worker_slots: 16,
            warmup: s(10),
            gap: s(3),
            faults: vec![
                KillWorker,
                KillCoordinator(0),
                KillWorker,
                Cut(Broker),
                KillWorker,
                Stall(Redis, s(3)),
                KillWorker,
                RestartBroker,
                KillWorker,
                Slow(Broker, s(4)),
                KillWorker,
                KillCoordinator(1),
                KillWorker,
                RestartRedis,
                KillWorker,
                Cut(Redis),
                KillWorker,
                Stall(Broker, s(3)),
                KillWorker,
                Slow(Redis, s(4)),
                KillWorker,
            ],
            limit: s(1200),
        }
    }

    /// The CI-sized run: 4,000 items (at most about 80 items/s), every kind of fault at least
    /// once, 1.5 s apart.
    pub fn ci() -> Plan {
        use Fault::*;
        use Link::*;
        let s = Duration::from_secs;
        Plan {
            items: 4000,
            item_ms: 100,
            max_concurrency: 8,
            coordinators: 2,
            workers: 3,
            worker_slots: 8,
            warmup: s(3),
            gap: Duration::from_millis(1500),
            faults: vec![
                KillWorker,
                KillCoordinator(0),
                Cut(Broker),
                KillWorker,
                Stall(Redis, s(2)),
                RestartBroker,
                Slow(Broker, s(2)),
                KillCoordinator(1),
                RestartRedis,
                KillWorker,
                Cut(Redis),
                Stall(Broker, s(2)),
                Slow(Redis, s(2)),
            ],
            limit: s(600),
        }
    }

    /// How many faults of `kind` the schedule has.
    pub fn count(&self, kind: Kind) -> usize {
        self.faults.iter().filter(|f| f.kind() == kind).count()
    }

    /// The state machine: see the module docs.
    pub fn definition(&self) -> Value {
        json!({
            "Comment": "chaos: an inline Map whose iterations each return their item's number",
            "StartAt": "Batch",
            "States": {"Batch": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": self.max_concurrency,
                "ItemSelector": {"i.$": "$$.Map.Item.Value", "ms": self.item_ms},
                "ItemProcessor": {"StartAt": "Work", "States": {"Work": {
                    "Type": "Task",
                    "Resource": "arn:mapfleet:task:::sleep",
                    "OutputPath": "$.i",
                    "End": true
                }}},
                "End": true
            }}
        })
    }
}

/// The binaries the fleet and the client run.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `mapfleet`: the coordinators (`mapfleet coordinator`), the client (`run`, `describe`).
    pub mapfleet: PathBuf,
    pub worker: PathBuf,
}

/// The run's own broker and Redis, each behind a fault proxy; kept across rounds.
pub struct Nodes {
    rabbit: Mutex<RabbitNode>,
    redis: Mutex<RedisServer>,
    broker_proxy: Proxy,
    redis_proxy: Proxy,
    /// The nodes' own URLs (for the harness), and the proxies' (for the fleet).
    rabbit_url: String,
    redis_url: String,
}

impl Nodes {
    /// Whether a RabbitMQ node can be started here.
    pub fn available() -> bool {
        RabbitNode::available()
    }

    /// Starts both nodes and their proxies (blocking; a RabbitMQ node takes 10-60 s).
    pub fn start() -> Nodes {
        let rabbit = RabbitNode::start(None);
        let redis = RedisServer::start();
        let (rabbit_url, redis_url) = (rabbit.url(), redis.url());
        let broker_proxy = Proxy::start(&format!("127.0.0.1:{}", rabbit.port));
        let redis_proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port()));
        Nodes {
            rabbit: Mutex::new(rabbit),
            redis: Mutex::new(redis),
            broker_proxy,
            redis_proxy,
            rabbit_url,
            redis_url,
        }
    }

    fn proxy(&self, link: Link) -> &Proxy {
        match link {
            Link::Broker => &self.broker_proxy,
            Link::Redis => &self.redis_proxy,
        }
    }

    fn fleet_amqp(&self) -> String {
        self.broker_proxy.url(&self.rabbit_url)
    }

    fn fleet_redis(&self) -> String {
        self.redis_proxy.url(&self.redis_url)
    }
}

/// One fault as injected: when (from the submit), and how long until an item completed after
/// it.
#[derive(Debug, Clone)]
pub struct Injected {
    pub fault: Fault,
    pub what: String,
    pub start: Duration,
    pub end: Duration,
    /// From its end to the first item completed after it; `None` if none did (the batch had
    /// ended).
    pub recovery: Option<Duration>,
}

/// What a run gives: the faults, the exactly-once checks, the rates.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub items: usize,
    pub injected: Vec<Injected>,
    /// The client's exit, and its stderr when it failed.
    pub client_ok: bool,
    pub client_error: Option<String>,
    /// The execution's status as the client printed it.
    pub status: String,
    /// Items whose result is missing from the output.
    pub lost: usize,
    /// Duplicate applications: the most any one check saw (results in the output more than
    /// once, extra `TaskSucceeded` or `MapIterationSucceeded` events, the succeeded counter
    /// over the items).
    pub duplicates: usize,
    pub duplicate_evidence: Vec<String>,
    /// Results not at their item's position.
    pub out_of_order: usize,
    /// Problems the history check found besides duplicates (event ids, missing iterations).
    pub history_problems: Vec<String>,
    /// Processes that exited without being killed (restarted, and counted here).
    pub unexpected_exits: Vec<String>,
    /// `mapfleet describe` started while Redis was down: `Ok` once it printed the execution.
    pub describe_through_outage: Vec<Result<(), String>>,
    /// Items/s before the first fault, during the schedule, after it.
    pub rate_before: Option<f64>,
    pub rate_during: Option<f64>,
    pub rate_after: Option<f64>,
    /// From the submit to the last item.
    pub elapsed: Duration,
    /// Where the processes' logs are (kept when the run was not clean).
    pub logs: PathBuf,
}

impl Report {
    pub fn count(&self, kind: Kind) -> usize {
        self.injected
            .iter()
            .filter(|f| f.fault.kind() == kind)
            .count()
    }

    /// Nothing lost, duplicated or out of order, the client and every `describe` succeeded,
    /// no process exited on its own.
    pub fn clean(&self) -> bool {
        self.client_ok
            && self.status == "SUCCEEDED"
            && self.lost == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.history_problems.is_empty()
            && self.unexpected_exits.is_empty()
            && self.describe_through_outage.iter().all(Result::is_ok)
    }

    /// The faults of the plan that were not injected (the batch ended first), if any.
    pub fn missing_faults(&self, plan: &Plan) -> Vec<String> {
        Kind::ALL
            .iter()
            .filter(|k| self.count(**k) < plan.count(**k))
            .map(|k| format!("{}: {} of {}", k.label(), self.count(*k), plan.count(*k)))
            .collect()
    }

    /// Recovery times of one kind: (median, max), seconds.
    pub fn recovery(&self, kind: Kind) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = self
            .injected
            .iter()
            .filter(|f| f.fault.kind() == kind)
            .filter_map(|f| f.recovery.map(|d| d.as_secs_f64()))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some((median, v[v.len() - 1]))
    }

    /// A Markdown table of the run: one row per kind of fault, then the checks and rates.
    pub fn table(&self) -> String {
        let mut t =
            String::from("| fault | injected | recovery: median / max (s) |\n|---|---:|---|\n");
        for kind in Kind::ALL {
            let rec = self
                .recovery(kind)
                .map_or_else(|| "-".to_string(), |(m, x)| format!("{m:.2} / {x:.2}"));
            t.push_str(&format!(
                "| {} | {} | {rec} |\n",
                kind.label(),
                self.count(kind)
            ));
        }
        let rate = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
        t.push_str(&format!(
            "\n| items | duplicates | lost | out of order | items/s before / during / after | total |\n\
             |---:|---:|---:|---:|---|---:|\n\
             | {} | {} | {} | {} | {} / {} / {} | {:.1} s |\n",
            self.items,
            self.duplicates,
            self.lost,
            self.out_of_order,
            rate(self.rate_before),
            rate(self.rate_during),
            rate(self.rate_after),
            self.elapsed.as_secs_f64()
        ));
        t
    }

    /// Each fault on a line: when, what, recovery.
    pub fn timeline(&self) -> String {
        self.injected
            .iter()
            .map(|f| {
                format!(
                    "  {:>7.1} s  {:<32} {:>5.1} s long, first item after it {}",
                    f.start.as_secs_f64(),
                    f.what,
                    (f.end - f.start).as_secs_f64(),
                    f.recovery.map_or_else(
                        || "never (the batch had ended)".to_string(),
                        |d| format!("{:.2} s later", d.as_secs_f64())
                    )
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Why the run is not clean, one problem a line.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.client_ok {
            p.push(format!(
                "the client failed: {}",
                self.client_error.as_deref().unwrap_or("?")
            ));
        }
        if self.status != "SUCCEEDED" {
            p.push(format!("the execution ended {}", self.status));
        }
        if self.lost > 0 {
            p.push(format!("{} items lost", self.lost));
        }
        if self.duplicates > 0 {
            p.push(format!(
                "{} duplicate applications ({})",
                self.duplicates,
                self.duplicate_evidence.join("; ")
            ));
        }
        if self.out_of_order > 0 {
            p.push(format!("{} results out of order", self.out_of_order));
        }
        p.extend(self.history_problems.iter().cloned());
        for e in &self.unexpected_exits {
            p.push(format!("exited on its own: {e}"));
        }
        for r in &self.describe_through_outage {
            if let Err(e) = r {
                p.push(format!("mapfleet describe during the Redis outage: {e}"));
            }
        }
        p
    }
}

/// The fleet's processes: coordinators and workers, their logs in files.
struct Fleet {
    bins: Binaries,
    amqp: String,
    redis: String,
    topo: Topology,
    worker_slots: usize,
    logs: PathBuf,
    coordinators: Vec<Child>,
    workers: Vec<Child>,
    rng: u64,
    unexpected: Vec<String>,
}

impl Fleet {
    fn start(
        bins: &Binaries,
        amqp: String,
        redis: String,
        topo: Topology,
        plan: &Plan,
        logs: &Path,
    ) -> anyhow::Result<Fleet> {
        let mut fleet = Fleet {
            bins: bins.clone(),
            amqp,
            redis,
            topo,
            worker_slots: plan.worker_slots,
            logs: logs.to_path_buf(),
            coordinators: Vec::new(),
            workers: Vec::new(),
            rng: u64::from(std::process::id())
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                | 1,
            unexpected: Vec::new(),
        };
        for i in 0..plan.coordinators {
            let c = fleet.spawn_coordinator(i)?;
            fleet.coordinators.push(c);
        }
        for i in 0..plan.workers {
            let w = fleet.spawn_worker(i)?;
            fleet.workers.push(w);
        }
        Ok(fleet)
    }

    /// Starts `bin` with `leading` args and the fleet's flags, its stderr appended to
    /// `logs/NAME.log`.
    fn spawn(&self, bin: &Path, leading: &[&str], name: &str) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))?;
        Command::new(bin)
            .args(leading)
            .args(["--amqp", &self.amqp, "--redis", &self.redis])
            .args(["--prefix", self.topo.prefix()])
            .args(["--delivery-limit", &self.topo.delivery_limit().to_string()])
            .env_remove("MAPFLEET_METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))
    }

    fn spawn_coordinator(&self, i: usize) -> anyhow::Result<Child> {
        self.spawn(
            &self.bins.mapfleet,
            &["coordinator"],
            &format!("coordinator-{i}"),
        )
    }

    fn spawn_worker(&self, i: usize) -> anyhow::Result<Child> {
        let slots = self.worker_slots.to_string();
        self.spawn(
            &self.bins.worker,
            &["--no-photo-tasks", "--concurrency", &slots],
            &format!("worker-{i}"),
        )
    }

    fn random(&mut self, n: usize) -> usize {
        // xorshift64: a different worker each time, no seed to manage.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % n as u64) as usize
    }

    /// `kill -9` of a random worker, started again at once; returns which.
    fn kill_worker(&mut self) -> anyhow::Result<usize> {
        let i = self.random(self.workers.len());
        kill9(&mut self.workers[i]);
        self.workers[i] = self.spawn_worker(i)?;
        Ok(i)
    }

    fn kill_coordinator(&mut self, i: usize) -> anyhow::Result<()> {
        let i = i % self.coordinators.len();
        kill9(&mut self.coordinators[i]);
        std::thread::sleep(COORDINATOR_DOWN);
        self.coordinators[i] = self.spawn_coordinator(i)?;
        Ok(())
    }

    /// Notes (and starts again) any process that exited without being killed.
    fn check(&mut self) -> anyhow::Result<()> {
        for i in 0..self.coordinators.len() {
            if let Ok(Some(status)) = self.coordinators[i].try_wait() {
                self.unexpected.push(format!("coordinator {i} ({status})"));
                self.coordinators[i] = self.spawn_coordinator(i)?;
            }
        }
        for i in 0..self.workers.len() {
            if let Ok(Some(status)) = self.workers[i].try_wait() {
                self.unexpected.push(format!("worker {i} ({status})"));
                self.workers[i] = self.spawn_worker(i)?;
            }
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.coordinators.iter_mut().chain(self.workers.iter_mut()) {
            kill9(c);
        }
    }
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What the fault thread and the sampler share.
#[derive(Default)]
struct Shared {
    /// The batch ended: inject nothing more.
    done: AtomicBool,
    /// Items succeeded, as last sampled.
    succeeded: AtomicU64,
}

/// What the fault thread gives back.
struct Schedule {
    injected: Vec<(Fault, String, Instant, Instant)>,
    describes: Vec<Result<(), String>>,
    fleet: Fleet,
}

/// Runs the plan's faults one at a time (see the module docs).
fn run_schedule(
    nodes: &Nodes,
    mut fleet: Fleet,
    plan: &Plan,
    shared: &Shared,
    describe: &dyn Fn() -> anyhow::Result<Describe>,
) -> anyhow::Result<Schedule> {
    let mut injected = Vec::new();
    let mut describes = Vec::new();
    // Wait for the first completed item, then the warm-up.
    while shared.succeeded.load(Ordering::Relaxed) == 0 && !shared.done.load(Ordering::Relaxed) {
        fleet.check()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let pause = |d: Duration, fleet: &mut Fleet| -> anyhow::Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until && !shared.done.load(Ordering::Relaxed) {
            fleet.check()?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    pause(plan.warmup, &mut fleet)?;
    for (n, &fault) in plan.faults.iter().enumerate() {
        if shared.done.load(Ordering::Relaxed) {
            break;
        }
        if n > 0 {
            pause(plan.gap, &mut fleet)?;
            if shared.done.load(Ordering::Relaxed) {
                break;
            }
        }
        let start = Instant::now();
        let mut what = fault.describe();
        // When the fault ended, if not when its arm returns.
        let mut ended = None;
        match fault {
            Fault::KillWorker => {
                let i = fleet.kill_worker()?;
                what = format!("worker {i} kill -9");
            }
            Fault::KillCoordinator(i) => fleet.kill_coordinator(i)?,
            Fault::RestartBroker => nodes
                .rabbit
                .lock()
                .expect("the broker node's lock")
                .restart_clean(),
            Fault::RestartRedis => {
                let mut redis = nodes.redis.lock().expect("the Redis node's lock");
                redis.kill();
                // A client started now must wait for Redis and then answer.
                let client = describe()?;
                std::thread::sleep(REDIS_DOWN);
                redis.restart();
                drop(redis);
                ended = Some(Instant::now());
                describes.push(client.finish());
            }
            Fault::Cut(link) => nodes.proxy(link).cut(),
            Fault::Stall(link, d) => nodes.proxy(link).stall_for(d, false),
            Fault::Slow(link, d) => {
                nodes.proxy(link).slow(SLOW_DELAY);
                std::thread::sleep(d);
                nodes.proxy(link).resume();
            }
        }
        injected.push((fault, what, start, ended.unwrap_or_else(Instant::now)));
    }
    // Keep watching the processes until the batch ends.
    while !shared.done.load(Ordering::Relaxed) {
        fleet.check()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    fleet.check()?;
    Ok(Schedule {
        injected,
        describes,
        fleet,
    })
}

/// A `mapfleet describe` started while Redis is down, its output in files (a pipe read only
/// after the exit would block a describe whose document outgrows the pipe's buffer).
struct Describe {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Describe {
    fn start(
        mapfleet: &Path,
        arn: &str,
        prefix: &str,
        redis: &str,
        dir: &Path,
    ) -> anyhow::Result<Describe> {
        let (out, err) = (dir.join("describe.out"), dir.join("describe.err"));
        let child = Command::new(mapfleet)
            .args(["describe", arn, "--prefix", prefix, "--redis", redis])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()
            .context("starting mapfleet describe")?;
        Ok(Describe { child, out, err })
    }

    /// Waits (60 s at most) for it to print the execution and exit 0.
    fn finish(mut self) -> Result<(), String> {
        let started = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if started.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    kill9(&mut self.child);
                    return Err("still waiting 60 s after Redis was back".into());
                }
            }
        };
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        let err = std::fs::read_to_string(&self.err).unwrap_or_default();
        if !status.success() {
            return Err(format!("exited {status}: {}", err.trim()));
        }
        let doc: Value = serde_json::from_str(&out)
            .map_err(|e| format!("no JSON on stdout ({e}): {}", out.trim()))?;
        if doc["executionArn"].is_string() {
            Ok(())
        } else {
            Err(format!("not a DescribeExecution document: {}", out.trim()))
        }
    }
}

/// Progress sampled over time: (when, items succeeded).
struct Samples(Vec<(Instant, u64)>);

impl Samples {
    /// Succeeded by `t` (the last sample at or before it).
    fn at(&self, t: Instant) -> u64 {
        self.0
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |(_, n)| *n)
    }

    /// The first moment after `t` where more had succeeded than at `t`.
    fn first_gain_after(&self, t: Instant) -> Option<Instant> {
        let base = self.at(t);
        self.0
            .iter()
            .find(|(at, n)| *at > t && *n > base)
            .map(|(at, _)| *at)
    }

    fn rate(&self, from: Instant, to: Instant) -> Option<f64> {
        let secs = to.saturating_duration_since(from).as_secs_f64();
        (secs > 0.5).then(|| (self.at(to) - self.at(from)) as f64 / secs)
    }
}

/// Runs the plan once on `nodes` (a fresh prefix), and reports; an `Err` is a harness
/// failure (a process that could not start, a client that did not end in time), not a
/// failed check, which the report carries.
pub async fn run(
    nodes: Arc<Nodes>,
    bins: &Binaries,
    plan: &Plan,
    tag: &str,
) -> anyhow::Result<Report> {
    let topo = Topology::new(shared::testkit::unique_prefix(tag), 5);
    let dir = tempfile::Builder::new()
        .prefix("mapfleet-chaos-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    shared::testkit::declare(&nodes.rabbit_url, &topo)
        .await
        .context("declaring the fleet's queues on the test's broker")?;
    let result = run_on(nodes.clone(), bins, plan, &topo, dir.path(), &logs).await;
    let cleanup =
        shared::testkit::teardown(&nodes.rabbit_url, &nodes.redis_url, topo.prefix()).await;
    let mut report = result?;
    cleanup.context("cleaning up the prefix")?;
    report.logs = if report.clean() {
        logs
    } else {
        dir.keep().join("logs")
    };
    Ok(report)
}

async fn run_on(
    nodes: Arc<Nodes>,
    bins: &Binaries,
    plan: &Plan,
    topo: &Topology,
    dir: &Path,
    logs: &Path,
) -> anyhow::Result<Report> {
    let (amqp, redis) = (nodes.fleet_amqp(), nodes.fleet_redis());
    let fleet = Fleet::start(bins, amqp.clone(), redis.clone(), topo.clone(), plan, logs)?;

    // The client: `mapfleet run --describe`, waiting on the batch through the proxies.
    let def_path = dir.join("chaos.json");
    let input_path = dir.join("input.json");
    std::fs::write(&def_path, plan.definition().to_string())?;
    let items: Vec<usize> = (0..plan.items).collect();
    std::fs::write(&input_path, json!({ "items": items }).to_string())?;
    let name = "chaos";
    // `mapfleet run` names the state machine after the definition's file.
    let arn = ExecutionInfo::new("chaos", name, json!({}), chrono::Utc::now()).execution_arn;
    let (out_path, err_path) = (dir.join("client.out"), dir.join("client.err"));
    let submitted = Instant::now();
    let mut client = Command::new(&bins.mapfleet)
        .arg("run")
        .arg(&def_path)
        .arg("--input")
        .arg(&input_path)
        .args(["--name", name, "--describe"])
        .args([
            "--prefix",
            topo.prefix(),
            "--redis",
            &redis,
            "--amqp",
            &amqp,
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("starting the mapfleet run client")?;

    // The faults, on a thread of their own (they block: kills, node restarts).
    let shared = Arc::new(Shared::default());
    let schedule = {
        let (nodes, plan, shared) = (nodes.clone(), plan.clone(), shared.clone());
        let (mapfleet, arn, prefix, redis, dir) = (
            bins.mapfleet.clone(),
            arn.clone(),
            topo.prefix().to_string(),
            redis.clone(),
            dir.to_path_buf(),
        );
        std::thread::spawn(move || {
            let describe = || Describe::start(&mapfleet, &arn, &prefix, &redis, &dir);
            run_schedule(&nodes, fleet, &plan, &shared, &describe)
        })
    };

    // Progress, straight from the node's Redis, until the client ends.
    let reader = FleetClient::connect(&nodes.redis_url, topo.prefix()).await?;
    let mut samples = Samples(Vec::new());
    let client_status = loop {
        if let Some(status) = client.try_wait()? {
            break status;
        }
        if schedule.is_finished() {
            // The schedule thread failed (it only ends early on an error).
            shared.done.store(true, Ordering::Relaxed);
            kill9(&mut client);
            let e = schedule
                .join()
                .map_err(|_| anyhow::anyhow!("the fault schedule panicked"))?
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the fault schedule ended early"));
            return Err(e.context("the fault schedule"));
        }
        if submitted.elapsed() > plan.limit {
            shared.done.store(true, Ordering::Relaxed);
            kill9(&mut client);
            let _ = schedule.join();
            bail!(
                "the batch did not end within {:?} ({} of {} items succeeded); logs in {}",
                plan.limit,
                shared.succeeded.load(Ordering::Relaxed),
                plan.items,
                logs.display()
            );
        }
        // A read that does not answer within a second (Redis down) is a sample missed.
        let read = tokio::time::timeout(Duration::from_secs(1), reader.progress(&arn)).await;
        if let Ok(Ok((_, ok, _))) = read
            && ok > 0
        {
            samples.0.push((Instant::now(), ok));
            shared.succeeded.store(ok, Ordering::Relaxed);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    };
    let (_, final_ok, _) = reader.progress(&arn).await?;
    samples.0.push((Instant::now(), final_ok));
    shared.done.store(true, Ordering::Relaxed);
    let schedule = tokio::task::spawn_blocking(move || schedule.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the fault schedule panicked"))??;

    let mut report = Report {
        items: plan.items,
        client_ok: client_status.success(),
        describe_through_outage: schedule.describes,
        unexpected_exits: schedule.fleet.unexpected.clone(),
        logs: logs.to_path_buf(),
        ..Report::default()
    };
    drop(schedule.fleet);
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !report.client_ok || stderr.contains("error:") {
        report.client_ok = false;
        report.client_error = Some(format!("{client_status}: {}", stderr.trim()));
    }

    // The results, as the client printed them.
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path)?).unwrap_or(Value::Null);
    report.status = doc["status"].as_str().unwrap_or("(none)").to_string();
    let output: Vec<Value> = doc["output"]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    check_output(&output, plan.items, &mut report);
    let events = reader.history(&arn).await?;
    check_history(&events, plan.items, &mut report);
    let (_, ok, failed) = reader.progress(&arn).await?;
    if ok > plan.items as u64 {
        report
            .duplicate_evidence
            .push(format!("succeeded counter {ok} for {} items", plan.items));
        report.duplicates = report.duplicates.max((ok - plan.items as u64) as usize);
    }
    if failed > 0 {
        report
            .history_problems
            .push(format!("{failed} iterations failed"));
    }

    // Times and rates.
    let end = samples
        .0
        .iter()
        .find(|(_, n)| *n >= plan.items as u64)
        .map_or_else(Instant::now, |(at, _)| *at);
    report.elapsed = end.saturating_duration_since(submitted);
    for (fault, what, start, stop) in &schedule.injected {
        report.injected.push(Injected {
            fault: *fault,
            what: what.clone(),
            start: start.saturating_duration_since(submitted),
            end: stop.saturating_duration_since(submitted),
            recovery: samples
                .first_gain_after(*stop)
                .map(|at| at.saturating_duration_since(*stop)),
        });
    }
    let first_item = samples.0.first().map_or(submitted, |(at, _)| *at);
    match (schedule.injected.first(), schedule.injected.last()) {
        (Some(first), Some(last)) => {
            report.rate_before = samples.rate(first_item, first.2);
            report.rate_during = samples.rate(first.2, last.3);
            report.rate_after = samples.rate(last.3, end);
        }
        _ => report.rate_before = samples.rate(first_item, end),
    }
    Ok(report)
}

/// Lost, duplicated and misplaced results in the Map's output (`output[i]` must be `i`).
fn check_output(output: &[Value], items: usize, report: &mut Report) {
    let mut seen = vec![0usize; items];
    for (at, v) in output.iter().enumerate() {
        match v.as_u64().map(|i| i as usize).filter(|&i| i < items) {
            Some(i) => {
                seen[i] += 1;
                if i != at {
                    report.out_of_order += 1;
                }
            }
            None => report
                .history_problems
                .push(format!("output[{at}] is not an item's result: {v}")),
        }
    }
    report.lost = seen.iter().filter(|&&c| c == 0).count();
    let twice: usize = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    if twice > 0 {
        report
            .duplicate_evidence
            .push(format!("{twice} results in the output more than once"));
        report.duplicates = report.duplicates.max(twice);
    }
}

/// Duplicate applications and other exactly-once problems in the history: one
/// `TaskSucceeded` per iteration cursor, every iteration started and succeeded once, unique
/// event ids.
fn check_history(events: &[Event], items: usize, report: &mut Report) {
    let mut tasks: HashMap<&str, usize> = HashMap::new();
    let mut iterations: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events {
        match e.event_type {
            EventType::TaskSucceeded => *tasks.entry(e.cursor.as_str()).or_default() += 1,
            EventType::MapIterationSucceeded => {
                if let Some(i) = e.details["index"].as_u64() {
                    *iterations.entry(i).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    for (what, extra) in [
        (
            "TaskSucceeded events",
            tasks.values().map(|c| c.saturating_sub(1)).sum::<usize>(),
        ),
        (
            "MapIterationSucceeded events",
            iterations.values().map(|c| c.saturating_sub(1)).sum(),
        ),
    ] {
        if extra > 0 {
            report
                .duplicate_evidence
                .push(format!("{extra} extra {what}"));
            report.duplicates = report.duplicates.max(extra);
        }
    }
    if tasks.len() != items {
        report.history_problems.push(format!(
            "{} iterations have a TaskSucceeded, for {items} items",
            tasks.len()
        ));
    }
    if let Err(e) = coordinator::engine::history::check_exactly_once(events, items) {
        report.history_problems.push(format!("history: {e}"));
    }
}
