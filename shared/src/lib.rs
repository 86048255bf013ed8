//! What the coordinator and the workers both speak: step and outcome messages, queue and
//! exchange names, the Redis key schema and scripts, configuration and metric names.
//!
//! `shared` is the fleet's boundary and holds no business logic: nothing here knows what a
//! state machine is. The coordinator decides *what* to publish and *how* to advance a
//! cursor; this crate only fixes *how it travels* and *how it is stored atomically*.
//!
//! # Layout
//! - [`messages`]: the versioned wire format, [`messages::StepMessage`] (coordinator →
//!   worker) and [`messages::OutcomeMessage`] (worker → coordinator).
//! - [`topology`]: exchange and queue names under a prefix, routing of steps by resource,
//!   quorum queues with a delivery limit and a dead-letter queue, and [`topology::declare`].
//! - [`amqp`]: connecting with bounded retry, the confirming [`amqp::Publisher`] (window of
//!   unconfirmed messages, `mandatory`, persistent, timeouts, retry after recovery) and
//!   consumer helpers (manual acks, per-consumer prefetch).
//! - [`redis_conn`]: one connection type for a single Redis and a Redis Cluster.
//! - [`redis_schema`]: the keys coordinators and workers both name, their TTLs, and the
//!   Lua scripts that mark which step a cursor awaits and let timers fire from any
//!   coordinator.
//! - [`inbox`]: applying outcomes and queueing them for the coordinators in one script.
//! - [`workers`]: which resources the live workers serve.
//! - [`supervise`]: starting a coordinator or a worker's consumers again after a broker or
//!   Redis failure, until shutdown.
//! - [`config`]: typed, documented configuration (defaults → `MAPFLEET_*` env → flags).
//! - [`credentials`]: the broker's and Redis's passwords from the environment or files,
//!   merged into their URLs, never on a command line or in a log.
//! - [`metrics`]: the metric catalogue and the `/metrics` exporter.
//! - [`process`]: logging set-up and the shutdown signal, the same in every binary.
//! - [`testkit`]: helpers for tests and the load generator (unique prefixes, declaring and
//!   deleting a fleet's queues and keys, worker processes, forced connection loss).

pub mod amqp;
pub mod config;
pub mod credentials;
pub mod inbox;
pub mod messages;
pub mod metrics;
pub mod process;
pub mod redis_conn;
pub mod redis_schema;
pub mod supervise;
pub mod testkit;
pub mod tls;
pub mod topology;
pub mod workers;

/// Re-exported so callers use exactly the client versions this crate speaks.
pub use lapin;
pub use redis;

/// Milliseconds since the Unix epoch, the time unit of every deadline and timer on the wire.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
