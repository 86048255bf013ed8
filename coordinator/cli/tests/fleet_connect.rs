//! `mapfleet coordinator` at start-up against a broker that is not there or refuses its
//! login: it says what is wrong and exits within its connect time-out (at once for a wrong
//! password), and exits 0 without a panic on SIGTERM while it retries.

#[path = "../../../worker/tests/fleet_support/spawned.rs"]
mod spawned;

use std::path::Path;

use shared::testkit::{amqp_url, redis_url, unique_prefix};
use spawned::Spawned;

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");

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
    spawned::gives_up_on_a_refused_broker(coordinator, |_| {});
}

#[test]
fn a_wrong_password_ends_it_at_once() {
    spawned::a_wrong_password_ends_it_at_once(&amqp_url(), coordinator);
}

#[test]
fn sigterm_while_retrying_exits_cleanly() {
    spawned::sigterm_while_retrying_exits_cleanly(coordinator);
}
