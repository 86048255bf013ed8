//! The chaos scenario at CI size (`mapfleet_testbed::chaos`, the same harness as `loadtest
//! --scenarios chaos`): a Map of 4,000 items submitted and waited on by `mapfleet run
//! --describe`, on 2 `mapfleet coordinator` and 3 `mapfleet-worker` processes, with a broker
//! (RabbitMQ) and a Redis (AOF on) of the test's own behind fault proxies, while a schedule
//! kills workers and both coordinators (`kill -9`), restarts the broker and Redis, and cuts,
//! stalls and slows the links. The client must exit 0 with every item's result exactly once
//! and in order, the history must show each outcome applied once, a `mapfleet describe`
//! started while Redis is down must answer once it is back, and no process may exit on its
//! own.

#[path = "common/models.rs"]
#[allow(dead_code)] // the worker binary only
mod models;

use std::sync::Arc;
use std::time::Duration;

use mapfleet_testbed::chaos::{self, Binaries, Kind, Nodes, Plan};

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");
const TEST_LIMIT: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stays_exactly_once_through_kills_restarts_and_network_faults() {
    if !Nodes::available() {
        eprintln!("SKIPPED: rabbitmq-server is not installed here");
        return;
    }
    let bins = Binaries {
        mapfleet: MAPFLEET.into(),
        worker: models::worker_bin(),
    };
    let plan = Plan::ci();
    tokio::time::timeout(TEST_LIMIT, async {
        let nodes = Arc::new(tokio::task::spawn_blocking(Nodes::start).await.unwrap());
        let report = chaos::run(nodes, &bins, &plan, "chaos-ci")
            .await
            .expect("the chaos run");
        eprintln!("{}\n{}", report.timeline(), report.table());
        assert!(
            report.clean(),
            "not exactly once under faults:\n{}\nlogs: {}",
            report.problems().join("\n"),
            report.logs.display()
        );
        assert!(
            report.missing_faults(&plan).is_empty(),
            "the batch ended before the schedule did: {}",
            report.missing_faults(&plan).join(", ")
        );
        for kind in Kind::ALL {
            assert!(report.count(kind) >= 1, "no {} injected", kind.label());
        }
        assert_eq!(report.describe_through_outage.len(), 1);
    })
    .await
    .expect("the chaos test timed out");
}
