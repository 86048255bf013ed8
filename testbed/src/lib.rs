//! Test support shared by the integration tests (`coordinator/cli/tests/`) and the loadtest:
//! brokers and Redis servers of a test's own, a TCP proxy that injects network faults, and
//! the chaos scenario built on them. Never the machine's shared RabbitMQ and Redis, which
//! other tests and developers use: each node runs on free ports, with its state in a
//! temporary directory, and is killed (SIGKILL) when dropped.
//!
//! - [`ca`]: a test CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA;
//! - [`rabbit`]: a RabbitMQ node (plain and, with a CA, TLS listeners), killed, stopped and
//!   started again on its data directory;
//! - [`redis`]: a `redis-server` (plain or TLS);
//! - [`redis_server`]: a `redis-server` with AOF on, killed, stopped and started again from
//!   its AOF, whose AOF can be cut back;
//! - [`redis_cluster`]: a 3-node Redis Cluster;
//! - [`proxy`]: a TCP proxy that stalls, slows and cuts the connections it carries;
//! - [`chaos`]: a batch on real coordinator and worker processes while a fault schedule kills
//!   them, restarts the broker and Redis and disturbs the network, checked for exactly-once.
//!
//! Like the tests it serves, it panics on a broken test environment (a node that does not
//! start) and reports a failed run as an `anyhow` error.

pub mod ca;
pub mod chaos;
pub mod proxy;
pub mod rabbit;
pub mod redis;
pub mod redis_cluster;
pub mod redis_server;

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
