//! Test and load-generation utilities: the broker and Redis to use, unique name prefixes,
//! declaring and deleting a fleet's queues and keys, worker processes, forced connection
//! loss. Tests and the load generator drive the real coordinator (`coordinator::fleet`);
//! nothing here plays one.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::amqp;
use crate::credentials::FleetUrlsEnv;
use crate::redis_schema::{FleetStore, StoreError};
use crate::topology::{self, Topology};

/// Why a test helper failed; each names the fleet prefix or program it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("cannot start a runtime for the fleet prefix {prefix}")]
    Runtime {
        prefix: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the broker for the fleet prefix {prefix}")]
    Connect {
        prefix: String,
        #[source]
        source: amqp::ConnectError,
    },
    #[error("cannot {doing} of the fleet prefix {prefix}")]
    Broker {
        doing: &'static str,
        prefix: String,
        #[source]
        source: lapin::Error,
    },
    #[error("cannot delete the Redis keys of the fleet prefix {prefix}")]
    Redis {
        prefix: String,
        #[source]
        source: StoreError,
    },
    #[error("the teardown of {prefix} took over {limit:?}")]
    TimedOut { prefix: String, limit: Duration },
    #[error("cannot spawn {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// The broker URL tests use: `MAPFLEET_AMQP_URL` or the local default.
pub fn amqp_url() -> String {
    std::env::var("MAPFLEET_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The Redis URL tests use: `MAPFLEET_REDIS_URL` or the local default.
pub fn redis_url() -> String {
    std::env::var("MAPFLEET_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Declares a fleet's queues and exchanges (default routes) under `prefix`, before its
/// processes start. Processes that start together all declare the same quorum queues at
/// once, and RabbitMQ 3.10 can answer the second declaration before the queue's process is
/// up: a consumer attaching right then crashes its channel, and the broker closes the whole
/// connection (`INTERNAL_ERROR`). The processes ride that out (`crate::supervise`), but a
/// test's timings should not depend on it. Blocks on its own runtime.
pub fn declare_prefix(prefix: &str, delivery_limit: u32) -> Result<(), TestkitError> {
    runtime(prefix)?.block_on(declare(&amqp_url(), &Topology::new(prefix, delivery_limit)))
}

/// A runtime of its own, for the blocking helpers.
fn runtime(prefix: &str) -> Result<tokio::runtime::Runtime, TestkitError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| TestkitError::Runtime {
            prefix: prefix.to_string(),
            source,
        })
}

/// Connects to the broker and opens a channel, for work on the fleet prefix `prefix`.
async fn channel(
    amqp_url: &str,
    name: &str,
    prefix: &str,
) -> Result<(lapin::Connection, lapin::Channel), TestkitError> {
    let conn = amqp::connect(amqp_url, name, Duration::from_secs(10))
        .await
        .map_err(|source| TestkitError::Connect {
            prefix: prefix.to_string(),
            source,
        })?;
    let channel = amqp::open_channel(&conn)
        .await
        .map_err(|source| TestkitError::Broker {
            doing: "open a channel",
            prefix: prefix.to_string(),
            source,
        })?;
    Ok((conn, channel))
}

/// [`declare_prefix`] on the caller's runtime, with an explicit broker.
pub async fn declare(amqp_url: &str, topo: &Topology) -> Result<(), TestkitError> {
    let prefix = topo.prefix();
    let (conn, channel) = channel(amqp_url, "mapfleet-declare", prefix).await?;
    topology::declare(&channel, topo)
        .await
        .map_err(|source| TestkitError::Broker {
            doing: "declare the queues and exchanges",
            prefix: prefix.to_string(),
            source,
        })?;
    amqp::close(&conn, "declared").await;
    Ok(())
}

/// Deletes everything a fleet under `prefix` made: its queues and exchanges (default routes)
/// and its Redis keys. For tests that start real coordinators and workers: call it after
/// they stopped, so repeated runs leave the broker as they found it (hundreds of abandoned
/// quorum queues slow a broker down for everyone). Blocks on its own runtime, so it can run
/// in a `Drop`; a failure is reported on stderr, not raised.
pub fn teardown_prefix(prefix: &str) {
    let done =
        runtime(prefix).and_then(|rt| rt.block_on(teardown(&amqp_url(), &redis_url(), prefix)));
    if let Err(e) = done {
        eprintln!(
            "could not clean up the fleet prefix {prefix}: {}",
            crate::supervise::Chain(&e)
        );
    }
}

/// [`teardown_prefix`] on the caller's runtime, with an explicit broker and Redis; the
/// failure is returned.
pub async fn teardown(amqp_url: &str, redis_url: &str, prefix: &str) -> Result<(), TestkitError> {
    // Bounded: a broker reply that never comes (seen once in 150 teardowns, a channel left
    // closing by the services just stopped) must cost a leftover queue, not a hung test.
    tokio::time::timeout(TEARDOWN_LIMIT, async {
        let redis = |source| TestkitError::Redis {
            prefix: prefix.to_string(),
            source,
        };
        let store = FleetStore::connect(redis_url, prefix)
            .await
            .map_err(redis)?;
        let activities = store.activity_names().await.map_err(redis)?;
        let (conn, channel) = channel(amqp_url, "mapfleet-teardown", prefix).await?;
        let topo = Topology::new(prefix, 1);
        let broker = |doing| {
            move |source| TestkitError::Broker {
                doing,
                prefix: prefix.to_string(),
                source,
            }
        };
        for name in &activities {
            topology::delete_activity(&channel, &topo, name)
                .await
                .map_err(broker("delete an activity's queue"))?;
        }
        topology::delete(&channel, &topo)
            .await
            .map_err(broker("delete the queues and exchanges"))?;
        amqp::close(&conn, "teardown").await;
        store.delete_prefix().await.map_err(redis)?;
        Ok(())
    })
    .await
    .map_err(|_| TestkitError::TimedOut {
        prefix: prefix.to_string(),
        limit: TEARDOWN_LIMIT,
    })?
}

/// The longest [`teardown`] may take.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(60);

/// A prefix no other test (or test run) uses: `TAG-PID-NANOS-N`.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the broker's admin CLI (`rabbitmqctl`) works here (it needs the node's cookie,
/// i.e. root on the broker's machine). Tests that drop connections skip without it.
pub fn rabbitmqctl_usable() -> bool {
    Command::new("rabbitmqctl")
        .args(["-q", "status"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Has the broker close every connection whose client properties mention `fragment` (the
/// connection name), as a network cut or a broker restart would. Returns how many it closed,
/// `None` if `rabbitmqctl` failed.
pub fn force_close_connections(fragment: &str) -> Option<usize> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in text.lines().filter(|l| l.contains(fragment)) {
        let pid = line.split_whitespace().next()?;
        let ok = Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                pid,
                "test: simulated connection loss",
            ])
            .status()
            .ok()?
            .success();
        closed += usize::from(ok);
    }
    Some(closed)
}

/// A `mapfleet-worker` child process, killed (SIGKILL) when dropped.
pub struct WorkerProcess {
    pub child: Child,
}

impl WorkerProcess {
    /// Starts `bin` against the given broker/prefix. `extra` adds flags (e.g.
    /// `--enable-test-tasks`, `--concurrency 4`).
    pub fn spawn(
        bin: &Path,
        amqp_url: &str,
        redis_url: &str,
        topo: &Topology,
        extra: &[&str],
    ) -> Result<Self, TestkitError> {
        let child = Command::new(bin)
            .fleet_urls(amqp_url, redis_url)
            .arg("--prefix")
            .arg(topo.prefix())
            .arg("--delivery-limit")
            .arg(topo.delivery_limit().to_string())
            // The utility tasks only: these workers need no face models.
            .arg("--no-photo-tasks")
            .args(extra)
            .env_remove("MAPFLEET_METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("MAPFLEET_TEST_WORKER_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|source| TestkitError::Spawn {
                program: bin.display().to_string(),
                source,
            })?;
        Ok(Self { child })
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown), then wait up to `grace` for the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
