//! Unit tests of [`Engine::apply`] with hand-fed events: no driver, no tokio, no clock.
//! A tiny [`Bench`] plays the driver's part step by step, so each test says exactly which
//! event arrives when and checks the actions that come back.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::cursor::{Action, Cursor, CursorEvent, Phase};
use super::history::{Event, EventType, StateType};
use super::run::Tx;
use super::{Engine, ExecutionInfo};
use crate::asl::error::StatesError;
use crate::asl::parse::parse_definition_value;

/// Plays the driver: one execution-wide event-id counter, a fixed clock that tests move
/// by hand, and the history written so far.
struct Bench {
    engine: Engine,
    next_event_id: u64,
    now: DateTime<Utc>,
    random: f64,
    history: Vec<Event>,
}

impl Bench {
    fn new(definition: Value) -> Bench {
        let def = parse_definition_value(&definition).expect("a valid test definition");
        let now: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().expect("time");
        let info = ExecutionInfo::new("Unit", "unit", json!({}), now);
        Bench {
            engine: Engine::new(Arc::new(def), info),
            next_event_id: 1,
            now,
            random: 0.5,
            history: Vec::new(),
        }
    }

    /// Runs `f` in one transaction; history goes to `self.history`, the rest is returned.
    fn tx<R>(&mut self, f: impl FnOnce(&Engine, &mut Tx<'_>) -> R) -> (R, Vec<Action>) {
        let mut next = self.next_event_id;
        let mut tx = Tx::new(self.now, self.random, &mut next);
        let r = f(&self.engine, &mut tx);
        let actions = tx.actions;
        self.next_event_id = next;
        let mut rest = Vec::new();
        for a in actions {
            match a {
                Action::History(e) => self.history.push(e),
                other => rest.push(other),
            }
        }
        (r, rest)
    }

    /// The root cursor, entered: returns it with the actions of its first state.
    fn start(&mut self, input: Value) -> (Cursor, Vec<Action>) {
        let (mut root, _) = self.tx(|e, tx| e.start(tx));
        root.input = input;
        let actions = self.apply(&mut root, CursorEvent::Enter);
        (root, actions)
    }

    fn apply(&mut self, cursor: &mut Cursor, event: CursorEvent) -> Vec<Action> {
        self.tx(|e, tx| e.apply(cursor, event, tx)).1
    }

    /// Creates and enters child `index` of `parent`.
    fn child(
        &mut self,
        parent: &Cursor,
        index: usize,
        item: Option<Value>,
    ) -> (Cursor, Vec<Action>) {
        let (mut child, mut actions) = self.tx(|e, tx| e.spawn_child(parent, index, item, tx));
        if matches!(child.phase, Phase::Ready) {
            actions.extend(self.apply(&mut child, CursorEvent::Enter));
        }
        (child, actions)
    }

    fn types(&self) -> Vec<String> {
        self.history.iter().map(|e| e.event_type.name()).collect()
    }
}

fn published_seq(actions: &[Action]) -> u64 {
    let seqs: Vec<u64> = actions
        .iter()
        .filter_map(|a| {
            if let Action::PublishStep { seq, .. } = a {
                Some(*seq)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(seqs.len(), 1, "exactly one step published: {actions:?}");
    seqs[0]
}

fn finished(actions: &[Action]) -> Option<(&Result<Value, StatesError>, u64, u64)> {
    actions.iter().find_map(|a| {
        if let Action::Finished {
            result,
            last_event,
            finished_event,
            ..
        } = a
        {
            Some((result, *last_event, *finished_event))
        } else {
            None
        }
    })
}

fn started(actions: &[Action]) -> Vec<(usize, usize)> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::StartChildren { from, to, .. } = a {
                Some((*from, *to))
            } else {
                None
            }
        })
        .collect()
}

fn one_task(extra: Value) -> Value {
    let mut task = json!({"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true});
    task.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    json!({"StartAt": "T", "States": {"T": task}})
}

#[test]
fn stale_and_duplicate_step_outcomes_are_ignored() {
    let mut b = Bench::new(one_task(json!({})));
    let (mut root, actions) = b.start(json!({"v": 1}));
    let seq = published_seq(&actions);
    let before = b.history.len();

    // An outcome of an older step (a redelivery from before a retry) changes nothing.
    assert!(
        b.apply(
            &mut root,
            CursorEvent::StepSucceeded {
                seq: seq - 1,
                output: json!("old")
            }
        )
        .is_empty()
    );
    assert!(matches!(root.phase, Phase::Task(_)));
    assert_eq!(b.history.len(), before, "no history for a stale outcome");

    let actions = b.apply(
        &mut root,
        CursorEvent::StepSucceeded {
            seq,
            output: json!({"v": 2}),
        },
    );
    assert_eq!(
        finished(&actions).map(|(r, _, _)| r.clone()),
        Some(Ok(json!({"v": 2})))
    );
    let after = b.history.len();

    // The same outcome delivered twice is applied once.
    assert!(
        b.apply(
            &mut root,
            CursorEvent::StepSucceeded {
                seq,
                output: json!({"v": 3})
            }
        )
        .is_empty()
    );
    assert!(
        b.apply(
            &mut root,
            CursorEvent::StepFailed {
                seq,
                error: StatesError::new("E", "")
            }
        )
        .is_empty()
    );
    assert_eq!(b.history.len(), after);
    assert_eq!(
        b.types().last().map(String::as_str),
        Some("ExecutionSucceeded")
    );
}

#[test]
fn a_late_outcome_of_a_retried_step_is_ignored() {
    let mut b = Bench::new(one_task(
        json!({"Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 3}]}),
    ));
    let (mut root, actions) = b.start(json!({}));
    let first = published_seq(&actions);
    let actions = b.apply(
        &mut root,
        CursorEvent::StepFailed {
            seq: first,
            error: StatesError::new("E", "c"),
        },
    );
    let (timer_seq, at) = match actions.as_slice() {
        [Action::ScheduleTimer { seq, at, .. }] => (*seq, *at),
        other => panic!("expected one backoff timer, got {other:?}"),
    };
    assert_eq!(at, b.now + Duration::seconds(3), "IntervalSeconds 3");
    // The first attempt's success arrives late (a redelivered result): dropped.
    assert!(
        b.apply(
            &mut root,
            CursorEvent::StepSucceeded {
                seq: first,
                output: json!("late")
            }
        )
        .is_empty()
    );
    b.now = at;
    let second = published_seq(&b.apply(&mut root, CursorEvent::TimerFired { seq: timer_seq }));
    assert!(second > first);
    let actions = b.apply(
        &mut root,
        CursorEvent::StepSucceeded {
            seq: second,
            output: json!("ok"),
        },
    );
    assert_eq!(
        finished(&actions).map(|(r, _, _)| r.clone()),
        Some(Ok(json!("ok")))
    );
}

#[test]
fn a_step_finishing_after_its_timeout_is_ignored() {
    let mut b = Bench::new(one_task(json!({"TimeoutSeconds": 5})));
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    let timer = actions.iter().find_map(|a| {
        if let Action::ScheduleTimer { seq, at, .. } = a {
            Some((*seq, *at))
        } else {
            None
        }
    });
    assert_eq!(timer, Some((seq, b.now + Duration::seconds(5))));
    b.now += Duration::seconds(5);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    let (result, _, _) = finished(&actions).expect("the task failed");
    assert_eq!(
        result.as_ref().map_err(|e| e.error.as_str()),
        Err("States.Timeout")
    );
    assert!(
        b.apply(
            &mut root,
            CursorEvent::StepSucceeded {
                seq,
                output: json!("too late")
            }
        )
        .is_empty()
    );
    assert_eq!(
        b.types(),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskTimedOut",
            "ExecutionFailed"
        ]
    );
}

#[test]
fn a_wait_ignores_timers_of_other_waits() {
    let def =
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 10, "End": true}}});
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({"k": 1}));
    let (seq, at) = match actions.as_slice() {
        [Action::ScheduleTimer { seq, at, .. }] => (*seq, *at),
        other => panic!("expected a timer, got {other:?}"),
    };
    assert_eq!(at, b.now + Duration::seconds(10));
    assert!(
        b.apply(&mut root, CursorEvent::TimerFired { seq: seq + 1 })
            .is_empty()
    );
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    assert_eq!(
        finished(&actions).map(|(r, _, _)| r.clone()),
        Some(Ok(json!({"k": 1})))
    );
}

#[test]
fn full_jitter_scales_the_backoff_by_the_random_number_it_is_given() {
    let retry = json!({"Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "JitterStrategy": "FULL"}]});
    let mut b = Bench::new(one_task(retry));
    b.random = 0.25;
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    let actions = b.apply(
        &mut root,
        CursorEvent::StepFailed {
            seq,
            error: StatesError::new("E", ""),
        },
    );
    let at = actions.iter().find_map(|a| {
        if let Action::ScheduleTimer { at, .. } = a {
            Some(*at)
        } else {
            None
        }
    });
    assert_eq!(at, Some(b.now + Duration::milliseconds(2500)));
}

fn map_of_tasks(max_concurrency: u64) -> Value {
    json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": max_concurrency, "End": true,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}}}}}})
}

/// Runs child `index` of `map` to success and tells the parent; returns the parent's actions.
fn finish_child(b: &mut Bench, map: &mut Cursor, index: usize) -> Vec<Action> {
    let (mut child, actions) = b.child(map, index, Some(json!(index)));
    let seq = published_seq(&actions);
    let actions = b.apply(
        &mut child,
        CursorEvent::StepSucceeded {
            seq,
            output: json!({"out": index}),
        },
    );
    let (result, last_event, finished_event) = finished(&actions).expect("the iteration finished");
    assert!(result.is_ok());
    b.apply(
        map,
        CursorEvent::ChildFinished {
            index,
            result: Ok(()),
            last_event,
            finished_event,
        },
    )
}

#[test]
fn max_concurrency_2_starts_two_children_then_one_per_finished_child() {
    let mut b = Bench::new(map_of_tasks(2));
    let (mut map, actions) = b.start(json!([0, 1, 2, 3, 4]));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::StoreItems { items, .. } if items.len() == 5))
    );
    assert_eq!(started(&actions), [(0, 2)]);
    // Child 1 finishes first: room for one more, item 2.
    assert_eq!(started(&finish_child(&mut b, &mut map, 1)), [(2, 3)]);
    assert_eq!(started(&finish_child(&mut b, &mut map, 0)), [(3, 4)]);
    assert_eq!(started(&finish_child(&mut b, &mut map, 2)), [(4, 5)]);
    let actions = finish_child(&mut b, &mut map, 3);
    assert!(started(&actions).is_empty(), "every item is started");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::CollectResults { .. })),
        "item 4 is still running"
    );
    let actions = finish_child(&mut b, &mut map, 4);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CollectResults { count: 5, .. }))
    );
    assert!(matches!(map.phase, Phase::Collecting(_)));
}

#[test]
fn updated_limits_start_more_children_and_a_lower_tolerance_fails_the_map() {
    use super::cursor::LimitsUpdate;
    let mut b = Bench::new(map_of_tasks(1));
    let (mut map, actions) = b.start(json!([0, 1, 2, 3, 4, 5]));
    assert_eq!(started(&actions), [(0, 1)]);
    // UpdateMapRun MaxConcurrency 3: two more start at once.
    let raise = LimitsUpdate {
        max_concurrency: Some(3),
        ..LimitsUpdate::default()
    };
    assert_eq!(
        started(&b.apply(&mut map, CursorEvent::UpdateLimits(raise))),
        [(1, 3)]
    );
    // One finishes: one more starts, within the new limit.
    assert_eq!(started(&finish_child(&mut b, &mut map, 0)), [(3, 4)]);
    // A tolerance of 1 failure, then a child fails: tolerated.
    let tolerate = LimitsUpdate {
        tolerated_count: Some(1),
        ..LimitsUpdate::default()
    };
    assert!(started(&b.apply(&mut map, CursorEvent::UpdateLimits(tolerate))).is_empty());
    let actions = b.apply(
        &mut map,
        CursorEvent::ChildFinished {
            index: 1,
            result: Err(StatesError::new("Boom", "c")),
            last_event: 0,
            finished_event: 0,
        },
    );
    assert_eq!(started(&actions), [(4, 5)], "one failure is tolerated");
    // Lowered to 0: the failure so far is now too many, and the Map stops its children.
    let lower = LimitsUpdate {
        tolerated_count: Some(0),
        ..LimitsUpdate::default()
    };
    let actions = b.apply(&mut map, CursorEvent::UpdateLimits(lower));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::AbortChildren { .. })),
        "{actions:?}"
    );
    let Phase::Aborting(ch) = &map.phase else {
        panic!("aborting: {:?}", map.phase)
    };
    assert_eq!(
        ch.failure.as_ref().map(|e| e.error.as_str()),
        Some("States.ExceedToleratedFailureThreshold")
    );
}

#[test]
fn max_concurrency_0_starts_every_child_at_once() {
    let mut b = Bench::new(map_of_tasks(0));
    let (_, actions) = b.start(json!([0, 1, 2, 3, 4, 5, 6]));
    assert_eq!(started(&actions), [(0, 7)]);
}

#[test]
fn results_come_out_in_the_order_the_driver_keeps_them_by_index() {
    let mut b = Bench::new(map_of_tasks(0));
    let (mut map, _) = b.start(json!(["a", "b", "c"]));
    // Children finish in reverse order; the engine only counts them.
    for index in [2, 1] {
        assert!(
            !finish_child(&mut b, &mut map, index)
                .iter()
                .any(|a| matches!(a, Action::CollectResults { .. }))
        );
    }
    let actions = finish_child(&mut b, &mut map, 0);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CollectResults { count: 3, .. }))
    );
    let results = vec![json!({"out": 0}), json!({"out": 1}), json!({"out": 2})];
    let actions = b.apply(
        &mut map,
        CursorEvent::Results {
            results: results.clone(),
        },
    );
    assert_eq!(
        finished(&actions).map(|(r, _, _)| r.clone()),
        Some(Ok(Value::Array(results)))
    );
    let types = b.types();
    assert_eq!(
        types[types.len() - 3..],
        ["MapStateSucceeded", "MapStateExited", "ExecutionSucceeded"]
    );
}

#[test]
fn a_failed_child_fails_the_map_and_aborts_the_others() {
    let mut b = Bench::new(map_of_tasks(0));
    let (mut map, _) = b.start(json!([0, 1]));
    let (mut c0, a0) = b.child(&map, 0, Some(json!(0)));
    let (mut c1, a1) = b.child(&map, 1, Some(json!(1)));
    let actions = b.apply(
        &mut c1,
        CursorEvent::StepFailed {
            seq: published_seq(&a1),
            error: StatesError::new("Boom", "c"),
        },
    );
    let (result, last_event, finished_event) = finished(&actions).expect("child 1 failed");
    let error = result.clone().expect_err("a failure");
    let actions = b.apply(
        &mut map,
        CursorEvent::ChildFinished {
            index: 1,
            result: Err(error),
            last_event,
            finished_event,
        },
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::AbortChildren { .. })),
        "the running child is aborted"
    );
    assert!(
        finished(&actions).is_none(),
        "the Map fails once its other children are stopped"
    );
    // The driver aborts child 0, which is in its Task, then confirms.
    assert!(b.apply(&mut c0, CursorEvent::Abort).is_empty());
    assert_eq!(
        b.history.last().map(|e| e.details.clone()),
        Some(json!({"index": 0, "name": "M"}))
    );
    let actions = b.apply(&mut map, CursorEvent::ChildrenAborted);
    let (result, _, _) = finished(&actions).expect("the execution failed");
    assert_eq!(result.as_ref().map_err(|e| e.error.as_str()), Err("Boom"));
    let types = b.types();
    assert_eq!(
        types[types.len() - 5..],
        [
            "MapIterationFailed",
            "TaskStateAborted",
            "MapIterationAborted",
            "MapStateFailed",
            "ExecutionFailed"
        ]
    );
    let ids: Vec<u64> = b.history.iter().map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "abort events come before the failure's: {ids:?}"
    );
    // Child 0's step outcome arrives afterwards: nothing happens.
    assert!(
        b.apply(
            &mut c0,
            CursorEvent::StepSucceeded {
                seq: published_seq(&a0),
                output: json!(0)
            }
        )
        .is_empty()
    );
    assert!(matches!(c0.phase, Phase::Done));
}

#[test]
fn abort_during_a_task_writes_task_state_aborted() {
    let mut b = Bench::new(one_task(json!({})));
    let (mut root, _) = b.start(json!({}));
    assert!(b.apply(&mut root, CursorEvent::Abort).is_empty());
    assert_eq!(
        b.history.last().map(|e| e.event_type),
        Some(EventType::TaskStateAborted)
    );
    assert!(matches!(root.phase, Phase::Done));
    // Aborting again writes nothing more.
    let n = b.history.len();
    b.apply(&mut root, CursorEvent::Abort);
    assert_eq!(b.history.len(), n);
}

#[test]
fn parallel_starts_every_branch_at_once() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}},
        {"StartAt": "C", "States": {"C": {"Type": "Pass", "End": true}}}]}}});
    let mut b = Bench::new(def);
    let (_, actions) = b.start(json!({}));
    assert_eq!(started(&actions), [(0, 3)]);
}

#[test]
fn event_ids_are_contiguous_and_previous_event_ids_chain_per_cursor() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": true}}}}}});
    let mut b = Bench::new(def);
    let (mut map, _) = b.start(json!(["x", "y"]));
    let map_started = b
        .history
        .iter()
        .find(|e| e.event_type == EventType::MapStateStarted)
        .map(|e| e.id)
        .expect("MapStateStarted");
    // Both children are spawned, then run interleaved: child 1 first.
    let (mut c0, _) = b.tx(|e, tx| e.spawn_child(&map, 0, Some(json!("x")), tx));
    let (mut c1, _) = b.tx(|e, tx| e.spawn_child(&map, 1, Some(json!("y")), tx));
    let f1 = b.apply(&mut c1, CursorEvent::Enter);
    let f0 = b.apply(&mut c0, CursorEvent::Enter);
    for (index, actions) in [(1, f1), (0, f0)] {
        let (result, last_event, finished_event) =
            finished(&actions).expect("the iteration ran to its end");
        assert!(result.is_ok());
        b.apply(
            &mut map,
            CursorEvent::ChildFinished {
                index,
                result: Ok(()),
                last_event,
                finished_event,
            },
        );
    }
    b.apply(
        &mut map,
        CursorEvent::Results {
            results: vec![json!("x"), json!("y")],
        },
    );

    let ids: Vec<u64> = b.history.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "ids are 1, 2, 3, ... in order"
    );
    for child in [&c0, &c1] {
        let chain: Vec<&Event> = b.history.iter().filter(|e| e.cursor == child.id).collect();
        let kinds: Vec<String> = chain.iter().map(|e| e.event_type.name()).collect();
        assert_eq!(
            kinds,
            [
                "MapIterationStarted",
                "PassStateEntered",
                "PassStateExited",
                "PassStateEntered",
                "PassStateExited",
                "MapIterationSucceeded"
            ]
        );
        assert_eq!(
            chain[0].previous_event_id, map_started,
            "an iteration starts from MapStateStarted"
        );
        for pair in chain.windows(2) {
            assert_eq!(
                pair[1].previous_event_id,
                pair[0].id,
                "{} follows {} in its own iteration",
                pair[1].event_type.name(),
                pair[0].event_type.name()
            );
        }
    }
    // The iterations' events interleave: child 1 ran first, so its chain is not contiguous
    // with child 0's, yet each chain is intact.
    let first_inner = b
        .history
        .iter()
        .find(|e| e.event_type == EventType::StateEntered(StateType::Pass))
        .expect("inner");
    assert_eq!(first_inner.cursor, c1.id);
}

const ACTIVITY: &str = "arn:aws:states:local:000000000000:activity:squares";

fn timer_at(actions: &[Action]) -> Option<(u64, DateTime<Utc>)> {
    actions.iter().find_map(|a| {
        if let Action::ScheduleTimer { seq, at, .. } = a {
            Some((*seq, *at))
        } else {
            None
        }
    })
}

#[test]
fn an_activity_starts_when_a_worker_takes_it_and_heartbeats_move_its_deadline() {
    let def =
        one_task(json!({"Resource": ACTIVITY, "TimeoutSeconds": 100, "HeartbeatSeconds": 10}));
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({"i": 1}));
    let seq = published_seq(&actions);
    // Queued for a worker: only the task's own timeout counts until one takes it.
    assert_eq!(
        timer_at(&actions),
        Some((seq, b.now + Duration::seconds(100)))
    );
    let scheduled = &b.history.last().expect("an event").details;
    assert_eq!(scheduled["resource"], ACTIVITY);
    assert_eq!(scheduled["heartbeatInSeconds"], 10);
    b.now += Duration::seconds(30);
    let actions = b.apply(
        &mut root,
        CursorEvent::StepStarted {
            seq,
            worker: "w1".into(),
        },
    );
    assert_eq!(
        timer_at(&actions),
        Some((seq, b.now + Duration::seconds(10)))
    );
    // A second start (a step handed out again) writes nothing.
    let again = b.apply(
        &mut root,
        CursorEvent::StepStarted {
            seq,
            worker: "w2".into(),
        },
    );
    assert!(again.is_empty(), "{again:?}");
    b.now += Duration::seconds(8);
    assert!(
        b.apply(&mut root, CursorEvent::StepHeartbeat { seq })
            .is_empty()
    );
    // The timer fires at the old deadline: set again for the new one.
    b.now += Duration::seconds(2);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    assert_eq!(
        timer_at(&actions),
        Some((seq, b.now + Duration::seconds(8)))
    );
    assert!(matches!(root.phase, Phase::Task(_)));
    b.now += Duration::seconds(8);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    let (result, _, _) = finished(&actions).expect("the task timed out");
    assert_eq!(
        result.as_ref().map_err(|e| e.error.as_str()),
        Err("States.HeartbeatTimeout")
    );
    assert_eq!(
        b.types(),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivityTimedOut",
            "ExecutionFailed"
        ]
    );
    assert_eq!(b.history[3].details, json!({"workerName": "w1"}));
}

#[test]
fn an_activity_waiting_for_a_worker_times_out_with_states_timeout() {
    let def = one_task(json!({"Resource": ACTIVITY, "TimeoutSeconds": 5, "HeartbeatSeconds": 2}));
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    b.now += Duration::seconds(5);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    let (result, _, _) = finished(&actions).expect("the task timed out");
    assert_eq!(
        result.as_ref().map_err(|e| e.error.as_str()),
        Err("States.Timeout")
    );
}

#[test]
fn activity_outcomes_have_activity_events() {
    let def = one_task(json!({"Resource": ACTIVITY}));
    let mut b = Bench::new(def.clone());
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    assert_eq!(
        timer_at(&actions),
        None,
        "no timeout: it waits for a worker"
    );
    b.apply(
        &mut root,
        CursorEvent::StepStarted {
            seq,
            worker: "w".into(),
        },
    );
    b.apply(
        &mut root,
        CursorEvent::StepSucceeded {
            seq,
            output: json!({"ok": true}),
        },
    );
    assert_eq!(
        b.types()[2..5],
        ["ActivityScheduled", "ActivityStarted", "ActivitySucceeded"]
    );

    // Failed before any worker took it (the activity is missing): a schedule failure.
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    b.apply(
        &mut root,
        CursorEvent::StepFailed {
            seq,
            error: StatesError::runtime("no such activity"),
        },
    );
    assert_eq!(
        b.types()[2..4],
        ["ActivityScheduled", "ActivityScheduleFailed"]
    );
}

/// A Map over `items` whose processor is two Pass states, as the embedded benchmark runs it
/// (`examples/map_pass.rs`), with `extra` fields on its ItemSelector.
fn map_of_passes(selector: Value, second: Value) -> Value {
    json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items",
        "ItemSelector": selector,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "A", "States": {
            "A": {"Type": "Pass", "Parameters": {"k.$": "$.v.k", "i.$": "$.i"}, "Next": "B"},
            "B": second}},
        "ResultPath": "$.results", "End": true}}})
}

fn scripted(definition: Value, items: usize, history: bool) -> crate::scripted::ScriptedResult {
    let def = parse_definition_value(&definition).expect("a valid test definition");
    let input = json!({ "items": (0..items).map(|i| json!({ "k": format!("item-{i}") })).collect::<Vec<_>>() });
    crate::scripted::run(
        Arc::new(def),
        input,
        super::run::EngineOptions::default(),
        &crate::scripted::Limits::default(),
        history,
        &mut |_| Ok(Value::Null),
    )
}

#[test]
fn history_off_builds_no_events_and_changes_nothing_else() {
    let selector = json!({"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"});
    let ok = map_of_passes(
        selector.clone(),
        json!({"Type": "Pass", "ResultPath": "$.done", "Result": true, "End": true}),
    );
    // ResultPath through a string: a runtime error that quotes the state's entry event id.
    let failing = map_of_passes(
        selector,
        json!({"Type": "Pass", "ResultPath": "$.k.deeper", "Result": true, "End": true}),
    );
    for def in [ok, failing] {
        let on = scripted(def.clone(), 20, true);
        let off = scripted(def, 20, false);
        assert!(off.events.is_empty());
        assert_eq!(on.events.len() as u64, on.event_count);
        assert_eq!(
            (on.status, &on.output, &on.error, on.event_count, on.fed),
            (
                off.status,
                &off.output,
                &off.error,
                off.event_count,
                off.fed
            )
        );
    }
    let failed = scripted(
        map_of_passes(
            json!({"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"}),
            json!({"Type": "Pass", "ResultPath": "$.k.deeper", "Result": true, "End": true}),
        ),
        3,
        false,
    );
    let cause = failed.error.expect("the Map fails").cause;
    assert!(cause.contains("(entered at the event id #"), "{cause}");
}

#[test]
fn an_item_selector_sees_the_context_members_it_reads_and_its_errors_quote_them_all() {
    let second = json!({"Type": "Pass", "End": true});
    let r = scripted(
        map_of_passes(
            json!({"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index",
                   "name.$": "$$.Execution.Name", "state.$": "$$.State.Name"}),
            json!({"Type": "Pass", "Parameters": {"k.$": "$.k", "i.$": "$.i"}, "End": true}),
        ),
        2,
        false,
    );
    assert_eq!(
        r.output.expect("succeeds")["results"],
        json!([{"k": "item-0", "i": 0}, {"k": "item-1", "i": 1}])
    );
    // What a selector reads is found in the members built for it, as in the whole object.
    let r = scripted(
        json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items",
            "ItemSelector": {"name.$": "$$.Execution.Name", "state.$": "$$.State.Name",
                             "machine.$": "$$.StateMachine.Name", "k.$": "$$.Map.Item.Value.k"},
            "ItemProcessor": {"StartAt": "P", "States": {"P": second}}, "End": true}}}),
        1,
        false,
    );
    assert_eq!(
        r.output.expect("succeeds"),
        json!([{"name": "scripted", "state": "Fan", "machine": "Scripted", "k": "item-0"}])
    );
    // A path that finds nothing: the message quotes the whole context object, as before.
    let r = scripted(
        json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items",
            "ItemSelector": {"v.$": "$$.Map.Item.Value.missing"},
            "ItemProcessor": {"StartAt": "P", "States": {"P": second}}, "End": true}}}),
        1,
        false,
    );
    let cause = r.error.expect("the item fails").cause;
    for member in [
        r#""Execution":{"Id":"#,
        r#""State":{"EnteredTime":"#,
        r#""StateMachine":{"Id":"#,
        r#""Map":{"Item":{"Index":0,"Value":{"k":"item-0"}}}"#,
    ] {
        assert!(cause.contains(member), "{member} in {cause}");
    }
}

#[test]
fn a_top_level_state_whose_output_is_too_large_keeps_its_input_for_retry_and_catch() {
    // Each under the limit (1 KiB), the input with the result over it.
    let big = "x".repeat(600);
    let half = "y".repeat(600);
    for (input, result_path) in [
        (json!({"a": half, "b": 2}), "$.new"),
        (json!({"a": half, "old": "kept", "b": 2}), "$.old"),
    ] {
        let def = json!({"StartAt": "Big", "States": {
            "Big": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "ResultPath": result_path,
                "Retry": [{"ErrorEquals": ["States.DataLimitExceeded"], "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.DataLimitExceeded"], "ResultPath": "$.error", "Next": "After"}],
                "Next": "After"},
            "After": {"Type": "Pass", "End": true}}});
        let def = parse_definition_value(&def).expect("a valid test definition");
        let options = super::run::EngineOptions {
            payload_limit: 1024,
            ..Default::default()
        };
        let r = crate::scripted::run(
            Arc::new(def),
            input.clone(),
            options,
            &crate::scripted::Limits::default(),
            true,
            &mut |_| Ok(json!(big)),
        );
        let output = r.output.unwrap_or_else(|| panic!("caught: {:?}", r.error));
        assert_eq!(output["error"]["Error"], json!("States.DataLimitExceeded"));
        let mut want = input.clone();
        want["error"] = output["error"].clone();
        // The same members in the same order: the input as it was.
        assert_eq!(output.to_string(), want.to_string());
        // Tried twice: the retry too failed on the size, not on a lost input.
        let entered: Vec<&Value> = r
            .events
            .iter()
            .filter(|e| matches!(e.event_type, EventType::StateEntered(_)))
            .map(|e| &e.details["input"])
            .collect();
        assert_eq!(entered, [&input, &output], "Big, then After");
        let scheduled = r
            .events
            .iter()
            .filter(|e| e.event_type == EventType::TaskScheduled)
            .count();
        assert_eq!(scheduled, 2, "tried twice");
    }
}

#[test]
fn context_members_are_found_in_a_states_text() {
    use crate::asl::definition::ContextParts as P;
    let parts = |text: &str| P::referenced(text);
    assert_eq!(parts(r#"{"a.$":"$.x"}"#), P::NONE);
    assert_eq!(parts(r#"{"v.$":"$$.Map.Item.Value"}"#), P::MAP);
    assert_eq!(
        parts(r#"{"a.$":"$$.State.Name","b.$":"$$.StateMachine.Id"}"#),
        P::STATE.with(P::STATE_MACHINE)
    );
    assert_eq!(
        parts(r#"{"t.$":"$$.Task.Token","e.$":"$$.Execution"}"#),
        P::TASK.with(P::EXECUTION)
    );
    for all in [
        r#""$$""#,
        r#""$$.*""#,
        r#""$$..Value""#,
        r#""$$['Map']""#,
        r#""$$.MapX.Item""#,
        r#""States.JsonToString($$)""#,
    ] {
        assert_eq!(parts(all), P::ALL, "{all}");
    }
}
mod callback;
