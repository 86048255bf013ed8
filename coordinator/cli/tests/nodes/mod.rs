//! Brokers, Redis servers and certificates of a test's own (`mapfleet-testbed`, shared with
//! the loadtest), for the tests that kill a broker or need TLS listeners: never the machine's
//! shared RabbitMQ and Redis. The coordinator and worker such tests run against them are the
//! in-process fleet of `common::in_process`.

#![allow(dead_code)]

#[allow(unused_imports)] // each test binary uses a different part
pub use mapfleet_testbed::{accepting, ca, free_port, rabbit, redis, redis_cluster};

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
