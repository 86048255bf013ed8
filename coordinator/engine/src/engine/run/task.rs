//! Task states: publish a step, then handle its outcome, timeout or failure.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Engine, Tx};
use crate::asl::definition::{Dynamic, TaskSpec};
use crate::asl::error::{StatesError, names};
use crate::asl::scope::Scope;
use crate::engine::cursor::{Action, Callback, Cursor, Phase, RetryAgain, TaskWait};
use crate::engine::dataflow;
use crate::engine::history::{EventType, object};
use crate::engine::token::{self, TokenStep, callback_base};

/// The earlier of a task's timeout and heartbeat deadlines, in seconds.
fn first_deadline(timeout: Option<u64>, heartbeat: Option<u64>) -> Option<u64> {
    match (timeout, heartbeat) {
        (Some(t), Some(h)) => Some(t.min(h)),
        (t, h) => t.or(h),
    }
}

/// How history names a resource: `(resourceType, resource)` for Task events, or a Lambda
/// function ARN for the legacy Lambda events.
enum ResourceKind<'a> {
    Lambda,
    /// An activity (`arn:aws:states:REGION:ACCOUNT:activity:NAME`): its workers take the
    /// task with GetActivityTask and answer with SendTaskSuccess/Failure, so it has
    /// `Activity...` events and a start of its own.
    Activity,
    Task {
        resource_type: &'a str,
        resource: &'a str,
    },
}

fn classify(resource: &str) -> ResourceKind<'_> {
    if resource.starts_with("arn:aws:lambda:") {
        return ResourceKind::Lambda;
    }
    if crate::engine::context::is_activity_arn(resource) {
        return ResourceKind::Activity;
    }
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
        let (service, action) = rest.split_once(':').unwrap_or((rest, ""));
        return ResourceKind::Task {
            resource_type: service,
            resource: action,
        };
    }
    if let Some(name) = resource.strip_prefix("arn:mapfleet:task:::") {
        return ResourceKind::Task {
            resource_type: "mapfleet",
            resource: name,
        };
    }
    ResourceKind::Task {
        resource_type: "activity",
        resource,
    }
}

fn resolve_seconds(
    d: &Option<Dynamic<u64>>,
    field: &str,
    scope: &Scope<'_>,
) -> Result<Option<u64>, StatesError> {
    match d {
        None => Ok(None),
        Some(Dynamic::Literal(n)) => Ok(Some(*n)),
        Some(Dynamic::Expr(_)) => Err(StatesError::runtime(format!(
            "A JSONata expression for {field} in a JSONPath state"
        ))),
        Some(Dynamic::Path(p)) => {
            let v = p.eval(scope)?;
            match v.as_u64().filter(|n| *n > 0) {
                Some(n) => Ok(Some(n)),
                None => Err(StatesError::runtime(format!(
                    "The {field}Path field refers to value \"{v}\" which is not a valid positive integer: {}",
                    p.as_str()
                ))),
            }
        }
    }
}

impl Engine {
    /// Prepares and publishes the task step: on entry and again on every retry, so that
    /// `$$.State.RetryCount` (and the task token) in Parameters are those of the attempt.
    pub(super) fn start_task(&self, cursor: &mut Cursor, spec: &TaskSpec, tx: &mut Tx<'_>) -> bool {
        let state = self.state(cursor);
        // Only a `.waitForTaskToken` Task has `$$.Task.Token`, as on AWS: the token of the
        // step about to be published (the next seq, this attempt).
        let token = callback_base(&spec.resource).map(|_| {
            token::mint(
                &self.options.token_key,
                &TokenStep {
                    execution: self.info.execution_arn.clone(),
                    cursor: cursor.id.clone(),
                    seq: cursor.seq + 1,
                    attempt: 1 + cursor.retries.iter().sum::<u32>(),
                },
            )
        });
        let ctx = self.context(cursor, state, None, token.as_deref());
        if let Some(j) = self.jsonata_of(state) {
            let prepared = (|| {
                let scope = self.jscope(cursor, &ctx, tx, None, None);
                let seconds = |d: &Option<Dynamic<u64>>, field: &str| match d {
                    None => Ok(None),
                    Some(Dynamic::Literal(n)) => Ok(Some(*n)),
                    Some(d) => super::query::expr_integer(d, field, &scope, false)
                        .unwrap_or_else(|| {
                            Err(StatesError::runtime(format!(
                                "A JSONPath {field}Path in a JSONata state"
                            )))
                        })
                        .map(Some),
                };
                let timeout = seconds(&spec.timeout_seconds, "TimeoutSeconds")?;
                let heartbeat = seconds(&spec.heartbeat_seconds, "HeartbeatSeconds")?;
                let effective = self.arguments(j, &scope)?;
                dataflow::check_size(&effective, "task input", self.options.payload_limit)?;
                Ok::<_, StatesError>((effective, timeout, heartbeat))
            })();
            return match prepared {
                Ok((effective, timeout, heartbeat)) => {
                    self.publish_task(cursor, spec, effective, timeout, heartbeat, token, tx);
                    false
                }
                Err(e) => self.handle_error(cursor, e, None, tx),
            };
        }
        // TimeoutSecondsPath and HeartbeatSecondsPath read the state input (after InputPath),
        // not the Parameters output: AWS times out a task whose Parameters drop the field.
        let prepared = dataflow::input_path(
            &state.common.input_path,
            &cursor.input,
            &ctx,
            &cursor.vars,
            &tx.entropy,
        )
        .and_then(|selected| {
            let scope = Scope {
                input: &selected,
                context: &ctx,
                vars: &cursor.vars,
                entropy: &tx.entropy,
            };
            let timeout = resolve_seconds(&spec.timeout_seconds, "TimeoutSeconds", &scope)?;
            let heartbeat = resolve_seconds(&spec.heartbeat_seconds, "HeartbeatSeconds", &scope)?;
            let effective = dataflow::parameters(
                &state.common.parameters,
                selected,
                &ctx,
                &cursor.vars,
                &tx.entropy,
            )?;
            dataflow::check_size(&effective, "task input", self.options.payload_limit)?;
            Ok((effective, timeout, heartbeat))
        });
        match prepared {
            Ok((effective, timeout, heartbeat)) => {
                self.publish_task(cursor, spec, effective, timeout, heartbeat, token, tx);
                false
            }
            Err(e) => self.handle_error(cursor, e, None, tx),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn publish_task(
        &self,
        cursor: &mut Cursor,
        spec: &TaskSpec,
        effective: Value,
        timeout: Option<u64>,
        heartbeat: Option<u64>,
        token: Option<String>,
        tx: &mut Tx<'_>,
    ) {
        cursor.seq += 1;
        let attempt = 1 + cursor.retries.iter().sum::<u32>();
        let mut timeout_at = None;
        let mut heartbeat_at = None;
        match classify(&spec.resource) {
            ResourceKind::Activity => {
                let mut details = object([
                    ("resource", Value::String(spec.resource.clone())),
                    ("input", effective.clone()),
                ]);
                if let Some(t) = timeout {
                    details["timeoutInSeconds"] = json!(t);
                }
                if let Some(h) = heartbeat {
                    details["heartbeatInSeconds"] = json!(h);
                }
                tx.record(cursor, EventType::ActivityScheduled, details);
                // Started when a worker takes it (task_started).
                timeout_at = timeout.map(|t| tx.now + chrono::Duration::seconds(t as i64));
            }
            ResourceKind::Lambda => {
                let mut details = object([
                    ("resource", Value::String(spec.resource.clone())),
                    ("input", effective.clone()),
                ]);
                if let Some(t) = timeout {
                    details["timeoutInSeconds"] = json!(t);
                }
                tx.record(cursor, EventType::LambdaFunctionScheduled, details);
                tx.record(cursor, EventType::LambdaFunctionStarted, Value::Null);
            }
            ResourceKind::Task {
                resource_type,
                resource,
            } => {
                let mut details = json!({
                    "resourceType": resource_type,
                    "resource": resource,
                    "region": crate::engine::context::LOCAL_REGION,
                    "parameters": effective.to_string(),
                });
                if let Some(t) = timeout {
                    details["timeoutInSeconds"] = json!(t);
                }
                if let Some(h) = heartbeat {
                    details["heartbeatInSeconds"] = json!(h);
                }
                tx.record(cursor, EventType::TaskScheduled, details);
                tx.record(
                    cursor,
                    EventType::TaskStarted,
                    json!({ "resourceType": resource_type, "resource": resource }),
                );
            }
        }
        let callback = token.is_some();
        let (step_resource, step_input, _) = token::step_of(&spec.resource, &effective);
        tx.actions.push(Action::PublishStep {
            cursor: cursor.id.clone(),
            seq: cursor.seq,
            attempt,
            resource: step_resource,
            input: step_input,
            timeout: timeout.map(Duration::from_secs),
            heartbeat: heartbeat.map(Duration::from_secs),
            callback: token.map(|token| Callback {
                token,
                issued: tx.now,
            }),
        });
        let first = if matches!(classify(&spec.resource), ResourceKind::Activity) {
            // Its heartbeat timer starts with the task; without a timeout a task waits for
            // a worker as long as it takes.
            timeout_at
        } else if callback {
            // Started at once (TaskStarted above): both deadlines are times, so that
            // SendTaskHeartbeat can move the heartbeat's.
            let at = |s: u64| tx.now + chrono::Duration::seconds(s as i64);
            timeout_at = timeout.map(at);
            heartbeat_at = heartbeat.map(at);
            match (timeout_at, heartbeat_at) {
                (Some(t), Some(h)) => Some(t.min(h)),
                (t, h) => t.or(h),
            }
        } else {
            // Tasks send no heartbeats, so the first heartbeat deadline is the one that
            // counts: one timer at whichever of the two deadlines comes first.
            first_deadline(timeout, heartbeat).map(|t| tx.now + chrono::Duration::seconds(t as i64))
        };
        if let Some(at) = first {
            tx.actions.push(Action::ScheduleTimer {
                cursor: cursor.id.clone(),
                seq: cursor.seq,
                at,
            });
        }
        cursor.phase = Phase::Task(TaskWait {
            resource: spec.resource.clone(),
            effective_input: effective,
            timeout,
            heartbeat,
            timeout_at,
            heartbeat_at,
            started: callback,
            callback,
            submitted: false,
        });
    }

    /// A worker took the activity task: ActivityStarted, and the heartbeat clock starts.
    pub(super) fn task_started(
        &self,
        cursor: &mut Cursor,
        mut wait: TaskWait,
        worker: &str,
        tx: &mut Tx<'_>,
    ) {
        if !wait.started && matches!(classify(&wait.resource), ResourceKind::Activity) {
            wait.started = true;
            // AWS leaves the member out for a worker that gave no name.
            let details = if worker.is_empty() {
                json!({})
            } else {
                json!({ "workerName": worker })
            };
            tx.record(cursor, EventType::ActivityStarted, details);
            if let Some(h) = wait.heartbeat {
                let at = tx.now + chrono::Duration::seconds(h as i64);
                wait.heartbeat_at = Some(at);
                let first = wait.timeout_at.map_or(at, |t| t.min(at));
                tx.actions.push(Action::ScheduleTimer {
                    cursor: cursor.id.clone(),
                    seq: cursor.seq,
                    at: first,
                });
            }
        }
        cursor.phase = Phase::Task(wait);
    }

    /// The activity's worker sent a heartbeat: its heartbeat deadline moves on. The timer
    /// stays where it is; when it fires before the new deadline it is set again for it.
    pub(super) fn task_heartbeat(&self, cursor: &mut Cursor, mut wait: TaskWait, tx: &mut Tx<'_>) {
        if wait.started
            && let Some(h) = wait.heartbeat
        {
            wait.heartbeat_at = Some(tx.now + chrono::Duration::seconds(h as i64));
        }
        cursor.phase = Phase::Task(wait);
    }

    /// The task's timer fired. An activity whose deadlines moved (heartbeats) sets it again
    /// for the earlier of them; anything else times out.
    pub(super) fn task_timer(&self, cursor: &mut Cursor, wait: TaskWait, tx: &mut Tx<'_>) -> bool {
        let due = match (wait.timeout_at, wait.heartbeat_at) {
            (Some(t), Some(h)) => Some(t.min(h)),
            (t, h) => t.or(h),
        };
        if let Some(due) = due
            && tx.now < due
        {
            tx.actions.push(Action::ScheduleTimer {
                cursor: cursor.id.clone(),
                seq: cursor.seq,
                at: due,
            });
            cursor.phase = Phase::Task(wait);
            return false;
        }
        self.task_timed_out(cursor, wait, tx)
    }

    fn task_event(
        &self,
        cursor: &mut Cursor,
        wait: &TaskWait,
        lambda: EventType,
        task: EventType,
        mut details: Value,
        tx: &mut Tx<'_>,
    ) {
        match classify(&wait.resource) {
            ResourceKind::Lambda => {
                tx.record(cursor, lambda, details);
            }
            ResourceKind::Activity => {
                let activity = match task {
                    EventType::TaskSucceeded => EventType::ActivitySucceeded,
                    EventType::TaskTimedOut => EventType::ActivityTimedOut,
                    // Before a worker took it, only the fleet can have failed it.
                    _ if !wait.started => EventType::ActivityScheduleFailed,
                    _ => EventType::ActivityFailed,
                };
                tx.record(cursor, activity, details);
            }
            ResourceKind::Task {
                resource_type,
                resource,
            } => {
                details["resourceType"] = json!(resource_type);
                details["resource"] = json!(resource);
                tx.record(cursor, task, details);
            }
        }
    }

    /// The step's integration returned. A `.waitForTaskToken` Task only notes it
    /// (TaskSubmitted, once) and goes on waiting for its token's answer.
    pub(super) fn task_succeeded(
        &self,
        cursor: &mut Cursor,
        mut wait: TaskWait,
        output: Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        // `lambda:invoke` ran a task for a function: its result is Lambda's response.
        let output = if token::runs_function(&wait.resource, &wait.effective_input) {
            token::lambda_response(output)
        } else {
            output
        };
        if wait.callback {
            if !wait.submitted {
                wait.submitted = true;
                let details = object([("output", output)]);
                self.task_event(
                    cursor,
                    &wait,
                    EventType::LambdaFunctionSucceeded,
                    EventType::TaskSubmitted,
                    details,
                    tx,
                );
            }
            cursor.phase = Phase::Task(wait);
            return false;
        }
        self.task_result(cursor, wait, output, tx)
    }

    /// SendTaskSuccess or SendTaskFailure answered a `.waitForTaskToken` Task: its output
    /// (or its failure, which Retry and Catch see as any) is the state's. The step's
    /// integration may still return; its outcome is stale from here on.
    pub(super) fn task_answered(
        &self,
        cursor: &mut Cursor,
        wait: TaskWait,
        result: Result<Value, StatesError>,
        tx: &mut Tx<'_>,
    ) -> bool {
        cursor.seq += 1;
        match result {
            Ok(output) => self.task_result(cursor, wait, output, tx),
            Err(error) => self.task_failed(cursor, wait, error, tx),
        }
    }

    /// The task's result: TaskSucceeded (or its kind's event) and on to the next state.
    fn task_result(
        &self,
        cursor: &mut Cursor,
        wait: TaskWait,
        output: Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        let limit = self.options.payload_limit;
        if let Err(e) = dataflow::check_size(&output, "task result", limit) {
            // Named: in a Map of thousands of iterations, which state and item it was.
            let name = &self.state(cursor).name;
            let within = if cursor.id.is_empty() {
                String::new()
            } else {
                format!(", Map iteration or Parallel branch {}", cursor.id)
            };
            let e = StatesError::new(e.error, format!("{} (state '{name}'{within})", e.cause));
            return self.task_failed(cursor, wait, e, tx);
        }
        let details = object([("output", output.clone())]);
        self.task_event(
            cursor,
            &wait,
            EventType::LambdaFunctionSucceeded,
            EventType::TaskSucceeded,
            details,
            tx,
        );
        self.complete(cursor, output, tx)
    }

    pub(super) fn task_failed(
        &self,
        cursor: &mut Cursor,
        wait: TaskWait,
        error: StatesError,
        tx: &mut Tx<'_>,
    ) -> bool {
        let details = json!({ "error": error.error, "cause": error.cause });
        // A worker that enforced the step's deadline reports States.Timeout itself: the
        // history shows it as the timeout it is, as when the coordinator's timer fires first.
        let (lambda, task) = if error.error == names::TIMEOUT {
            (EventType::LambdaFunctionTimedOut, EventType::TaskTimedOut)
        } else {
            (EventType::LambdaFunctionFailed, EventType::TaskFailed)
        };
        self.task_event(cursor, &wait, lambda, task, details, tx);
        let again = RetryAgain::Task {
            effective_input: wait.effective_input,
        };
        self.handle_error(cursor, error, Some(again), tx)
    }

    pub(super) fn task_timed_out(
        &self,
        cursor: &mut Cursor,
        wait: TaskWait,
        tx: &mut Tx<'_>,
    ) -> bool {
        let heartbeat_first = match (wait.heartbeat_at, wait.timeout_at) {
            // An activity: whichever deadline passed (the heartbeat's, on a tie).
            (Some(h), t) => t.is_none_or(|t| h <= t) && h <= tx.now,
            (None, Some(_)) => false,
            (None, None) => match (wait.heartbeat, wait.timeout) {
                (Some(h), Some(t)) => h < t,
                (Some(_), None) => true,
                _ => false,
            },
        };
        let error = if heartbeat_first {
            let h = wait.heartbeat.unwrap_or(0);
            StatesError::new(
                names::HEARTBEAT_TIMEOUT,
                format!("The task sent no heartbeat within {h} seconds."),
            )
        } else {
            StatesError::new(
                names::TIMEOUT,
                format!(
                    "The task did not complete within {} seconds.",
                    wait.timeout.unwrap_or(0)
                ),
            )
        };
        let details = json!({ "error": error.error, "cause": error.cause });
        self.task_event(
            cursor,
            &wait,
            EventType::LambdaFunctionTimedOut,
            EventType::TaskTimedOut,
            details,
            tx,
        );
        // The step may still finish later; its outcome carries the old seq and is dropped.
        cursor.seq += 1;
        let again = RetryAgain::Task {
            effective_input: wait.effective_input,
        };
        self.handle_error(cursor, error, Some(again), tx)
    }
}
