//! Brokers, Redis servers and certificates of a test's own, for the tests that kill a broker
//! or need TLS listeners: never the machine's shared RabbitMQ and Redis, which other tests
//! and developers use. Each node runs on free ports, with its state in a temporary directory,
//! and is killed (SIGKILL) when dropped.
//!
//! - [`ca`]: a test CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA;
//! - [`rabbit`]: a RabbitMQ node (plain and, with a CA, TLS listeners), killed and started
//!   again on its data directory;
//! - [`redis`]: a `redis-server` (plain or TLS);
//! - [`redis_cluster`]: a 3-node Redis Cluster.
//!
//! The coordinator and worker such tests run against them are the in-process fleet of
//! `common::in_process`.

#![allow(dead_code)]

pub mod ca;
pub mod rabbit;
pub mod redis;
pub mod redis_cluster;

/// A local TCP port free at the time of the call (bound to port 0, then let go).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepting(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_millis(200),
    )
    .is_ok()
}

/// Sends this process's logs (`MAPFLEET_LOG`, info by default) to the test's output, shown
/// when a test fails.
pub fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAPFLEET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
