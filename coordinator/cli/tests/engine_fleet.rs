//! The engine's semantics fixtures (see `common` for the format) on the fleet: each fixture
//! runs through a real coordinator service and worker consumer over the real RabbitMQ and
//! Redis on 127.0.0.1, with the same expectations as in embedded mode. Time is real, so
//! this suite takes as long as the fixtures' Waits and retries say.

mod common;

macro_rules! concepts {
    ($($concept:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $concept() {
                common::run_concept(&common::fleet::Fleet, stringify!($concept)).await;
            }
        )*

        #[test]
        fn every_fixture_directory_runs_on_the_fleet() {
            let tested = [$(stringify!($concept)),*];
            for dir in common::concepts() {
                assert!(tested.contains(&dir.as_str()), "fixtures/engine/{dir} does not run on the fleet: add it to concepts!");
            }
        }
    };
}

concepts!(
    dataflow, context, task, retry, catch, timeout, wait, fail, choice, parallel, map, map_events,
    tolerated, batcher, execution, task_ends, jsonata
);
