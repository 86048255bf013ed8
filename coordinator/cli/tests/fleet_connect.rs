//! `mapfleet coordinator` at start-up against a broker that is not there or refuses its
//! login: it says what is wrong and exits within its connect time-out (at once for a wrong
//! password), and exits 0 without a panic on SIGTERM while it retries.

#[path = "../../../worker/tests/fleet_support/spawned.rs"]
mod spawned;

use std::path::Path;
use std::time::{Duration, Instant};

use shared::testkit::{amqp_url, redis_url, unique_prefix};
use spawned::{Spawned, refused_port};

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");

/// Generous bounds for a loaded 2-core machine; far below what the faults used to take
/// (retries without end, 5.5 minutes for a wrong password).
const EXIT_LIMIT: Duration = Duration::from_secs(60);

fn coordinator(amqp: &str, connect_timeout: &str) -> Spawned {
    Spawned::start(
        Path::new(MAPFLEET),
        &[
            "coordinator",
            "--amqp",
            amqp,
            "--redis",
            &redis_url(),
            "--prefix",
            &unique_prefix("coord-connect"),
            "--connect-timeout-secs",
            connect_timeout,
        ],
        &[],
    )
}

#[test]
fn a_refused_port_is_reported_as_refused_and_given_up_after_the_time_out() {
    let amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", refused_port());
    let mut c = coordinator(&amqp, "4");
    let status = c.wait_exit(EXIT_LIMIT).expect("it gives up");
    let log = c.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(log.contains("giving up"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_wrong_password_ends_it_at_once() {
    let amqp = amqp_url().replacen("guest:guest@", "guest:not-the-password@", 1);
    assert_ne!(amqp, amqp_url(), "the test broker URL carries guest:guest");
    let started = Instant::now();
    let mut c = coordinator(&amqp, "600");
    let status = c.wait_exit(EXIT_LIMIT).expect("a refused login ends it");
    let log = c.log();
    eprintln!("exited after {:?}", started.elapsed());
    assert!(!status.success(), "{log}");
    assert!(log.contains("refused the login"), "{log}");
    assert!(
        !log.contains("not-the-password"),
        "the password is never shown: {log}"
    );
}

#[test]
fn sigterm_while_retrying_exits_cleanly() {
    let amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", refused_port());
    let mut c = coordinator(&amqp, "600");
    assert!(
        c.wait_for_log("AMQP connect failed", 4, EXIT_LIMIT),
        "{}",
        c.log()
    );
    c.terminate();
    let status = c.wait_exit(EXIT_LIMIT).expect("SIGTERM ends it");
    let log = c.log();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(!log.contains("panicked"), "{log}");
}
