//! TestState: one state run alone, answering its output or error, the state it would go to
//! next, and (at `inspectionLevel` DEBUG or TRACE) what each stage of its input and output
//! processing made.
//!
//! The state runs in the real engine: it is put in a small state machine of its own (its
//! `Next`, `Default` and `Catch` targets become `Succeed` states; the request's `variables`
//! are assigned by a JSONata Pass before it) and run by [`coordinator::scripted`], the
//! engine's `Processor` over memory with virtual time, so a Wait state does not wait and
//! every data-flow rule, error name and Catch is the engine's own. The stages InspectionData
//! lists are evaluated with the engine's `dataflow` functions, the Task's effective input
//! and result being the ones the run used.
//!
//! A Task without a `mock` runs where the store runs executions (on the fleet; in embedded
//! mode, in `serve`'s process): a one-Task execution of the same resource with the state's
//! effective input (and the state's TimeoutSeconds), so the task meets the same workers,
//! stores and face collections an execution's would; it is not listed anywhere. The
//! state's `Retry` is not run: as on AWS, an error a retrier would retry answers `RETRIABLE`
//! (with the retrier's index and backoff; `stateConfiguration.retrierRetryCount` says how many
//! retries were used), else a Catch answers `CAUGHT_ERROR` with the catcher's target as
//! `nextState`. Map and Parallel states, activities and `.sync`/`.waitForTaskToken` Tasks
//! need a `mock` (its `result` or `errorOutput` stands for the work); the mocked state keeps
//! its InputPath, ResultSelector, ResultPath, OutputPath, Assign, Output and Catch.
//!
//! Not there: the `context` member is checked (only with a mock, as AWS has it) but not used
//! (`$$` is the engine's own for a run named `TestState`),
//! `fieldValidationMode`, the HTTP Task's TRACE request/response, `revealSecrets` (nothing
//! here hides secrets), and Map-specific stages (`afterItemsPath`, ...).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value, json};

use coordinator::asl::definition::{State, StateKind, StateMachine};
use coordinator::asl::error::StatesError;
use coordinator::asl::parse::{
    InvalidDefinition, MAX_DEFINITION_BYTES, parse_definition, parse_definition_value,
    parse_json_text,
};
use coordinator::asl::retry::error_matches;
use coordinator::driver::{Status, StepRequest};
use coordinator::engine::context::{StateFacts, context_object};
use coordinator::engine::dataflow;
use coordinator::engine::run::EngineOptions;
use coordinator::engine::{EventType, ExecutionInfo};
use coordinator::entropy::Entropy;
use coordinator::scripted::{self, Limits, Outcome};

use super::sync::EXPRESS_LIMIT_SECONDS;
use super::{invalid_definition, json_input};
use crate::api::backend::Store;
use crate::api::wire::{ApiError, Input};

/// The state's name when the definition is a single state and `stateName` is not given.
const DEFAULT_NAME: &str = "TestState";
/// The Pass that assigns the request's `variables` before the state runs.
const VARIABLES_STATE: &str = "MapfleetTestStateVariables";
/// The resource a mocked Map or Parallel runs as (never published: the mock answers it).
const MOCK_RESOURCE: &str = "arn:mapfleet:task:::testStateMock";
/// What the mocked state keeps when it stands in for a Map or Parallel.
const MOCKED_KEEPS: &[&str] = &[
    "Comment",
    "QueryLanguage",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "ResultSelector",
    "Catch",
    "Next",
    "End",
    "Assign",
    "Output",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Debug,
}

/// The request's `mock`: the work's result or error.
#[derive(Debug, Clone)]
struct Mock(Outcome);

impl Mock {
    fn from(input: &Input) -> Result<Option<Mock>, ApiError> {
        let Some(m) = input.0.get("mock").filter(|m| !m.is_null()) else {
            return Ok(None);
        };
        let result = m.get("result").and_then(Value::as_str);
        let error = m.get("errorOutput").filter(|e| e.is_object());
        match (result, error) {
            (Some(text), None) => serde_json::from_str(text)
                .map(|v| Some(Mock(Ok(v))))
                .map_err(|e| ApiError::validation(format!("mock.result is not JSON: {e}"))),
            (None, Some(e)) => Ok(Some(Mock(Err(StatesError::new(
                e.get("error").and_then(Value::as_str).unwrap_or_default(),
                e.get("cause").and_then(Value::as_str).unwrap_or_default(),
            ))))),
            _ => Err(ApiError::validation(
                "A mock must have exactly one of 'result' and 'errorOutput'",
            )),
        }
    }
}

pub(super) async fn test_state(store: &Store, input: Input) -> Result<Value, ApiError> {
    let definition = input.required_len("definition", MAX_DEFINITION_BYTES)?;
    if let Some(role) = input.str("roleArn")?
        && !role.starts_with("arn:")
    {
        return Err(ApiError::invalid_arn(role));
    }
    let level = match input.str("inspectionLevel")? {
        None | Some("INFO") => Level::Info,
        Some("DEBUG") | Some("TRACE") => Level::Debug,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'inspectionLevel' failed to satisfy constraint: Member must satisfy enum value set: [INFO, DEBUG, TRACE]"
            )));
        }
    };
    input.bool("revealSecrets")?;
    let state_input = json_input(&input, "input")?;
    let variables = match input.str("variables")? {
        None => Map::new(),
        Some(_) => match json_input(&input, "variables")? {
            Value::Object(m) => m,
            _ => {
                return Err(ApiError::validation(
                    "variables must be a JSON object of variable names to values",
                ));
            }
        },
    };
    let mock = Mock::from(&input)?;
    if input.str("context")?.is_some() && mock.is_none() {
        return Err(ApiError::validation(
            "context may only be specified together with a mock",
        ));
    }
    let retries_used = input
        .0
        .get("stateConfiguration")
        .and_then(|c| c.get("retrierRetryCount"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (name, state, language) = pick_state(definition, input.str("stateName")?)?;

    // The state as written is what is validated (its diagnostics point into it).
    let written = wrapper(&name, &state, language.as_ref(), &variables);
    let checked = parse_definition_value(&written).map_err(|e| state_diagnostics(&name, e))?;
    let tested = checked
        .root
        .by_name
        .get(&name)
        .map(|&i| checked.root.state(i))
        .ok_or_else(|| ApiError::internal("the tested state is missing from its wrapper"))?;
    let container = matches!(tested.kind, StateKind::Map(_) | StateKind::Parallel { .. });
    check_mock(tested, mock.as_ref())?;

    let runnable = runnable(&state, container);
    let run_def = parse_definition_value(&wrapper(&name, &runnable, language.as_ref(), &variables))
        .map_err(|e| ApiError::internal(format!("the state to run does not parse: {e}")))?;
    let run_input = if variables.is_empty() {
        state_input.clone()
    } else {
        json!({ "input": state_input, "variables": variables })
    };
    let role = input.str("roleArn")?.map(str::to_string);
    let handle = tokio::runtime::Handle::current();
    let task_store = store.clone();
    let run = tokio::task::spawn_blocking(move || {
        let mut steps: Vec<(Value, Outcome)> = Vec::new();
        let limits = Limits {
            max_events: 10_000,
            ..Limits::default()
        };
        let result = scripted::run(
            Arc::new(run_def),
            run_input,
            EngineOptions::default(),
            &limits,
            true,
            &mut |step: &StepRequest| {
                let out = if !steps.is_empty() {
                    // Only a state that goes to itself gets here: one state, one run.
                    Err(StatesError::runtime(
                        "TestState runs the state once; it transitions to itself",
                    ))
                } else if let Some(Mock(m)) = &mock {
                    m.clone()
                } else {
                    handle.block_on(run_task(&task_store, role.as_deref(), step))
                };
                steps.push((step.input.clone(), out.clone()));
                out
            },
        );
        (result, steps)
    });
    let (result, steps) = run
        .await
        .map_err(|e| ApiError::internal(format!("the TestState run failed: {e}")))?;

    // What the run did, read from its history.
    let events = &result.events;
    let exited = events.iter().position(|e| {
        matches!(e.event_type, EventType::StateExited(_)) && e.details["name"] == name.as_str()
    });
    let next_state = exited.and_then(|i| {
        events[i + 1..].iter().find_map(|e| match e.event_type {
            EventType::StateEntered(_) => e.details["name"].as_str().map(str::to_string),
            _ => None,
        })
    });
    let failure_event = events[..exited.unwrap_or(events.len())]
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.event_type,
                EventType::TaskFailed
                    | EventType::TaskTimedOut
                    | EventType::LambdaFunctionFailed
                    | EventType::LambdaFunctionTimedOut
            )
        })
        .map(|e| {
            StatesError::new(
                e.details["error"].as_str().unwrap_or_default(),
                e.details["cause"].as_str().unwrap_or_default(),
            )
        });
    let error = match exited {
        Some(_) => failure_event,
        None => result.error.clone().or(failure_event),
    };

    let mut out = Map::new();
    let mut error_details = Map::new();
    let retrier = error.as_ref().and_then(|e| {
        tested
            .common
            .retry
            .iter()
            .enumerate()
            .find(|(_, r)| error_matches(&r.error_equals, &e.error))
    });
    let status = match (&error, retrier, exited) {
        (Some(_), Some((i, r)), _) if retries_used < r.max_attempts => {
            error_details.insert("retryIndex".into(), json!(i));
            error_details.insert(
                "retryBackoffIntervalSeconds".into(),
                json!(r.delay(retries_used as u32, 1.0).as_secs()),
            );
            "RETRIABLE"
        }
        (Some(e), _, Some(_)) => {
            if let Some(i) = tested
                .common
                .catch
                .iter()
                .position(|c| error_matches(&c.error_equals, &e.error))
            {
                error_details.insert("catchIndex".into(), json!(i));
            }
            "CAUGHT_ERROR"
        }
        (_, _, None) => "FAILED",
        (None, _, Some(_)) => "SUCCEEDED",
    };
    if status == "SUCCEEDED" || status == "CAUGHT_ERROR" {
        let output = exited
            .map(|i| events[i].details["output"].clone())
            .or(result.output.clone())
            .unwrap_or(Value::Null);
        out.insert("output".into(), json!(output.to_string()));
        if let Some(n) = &next_state {
            out.insert("nextState".into(), json!(n));
        }
    }
    if let Some(e) = &error {
        if !e.error.is_empty() {
            out.insert("error".into(), json!(e.error));
        }
        if !e.cause.is_empty() {
            out.insert("cause".into(), json!(e.cause));
        }
    } else if status == "FAILED" && result.status == Status::Failed {
        out.insert("error".into(), json!("States.Runtime"));
    }
    out.insert("status".into(), json!(status));
    if level == Level::Debug {
        let assigned = exited.and_then(|i| events[i].details.get("assignedVariables"));
        let mut data = inspection(tested, &state_input, &variables, &steps, assigned);
        if !error_details.is_empty() {
            data.insert("errorDetails".into(), Value::Object(error_details));
        }
        out.insert("inspectionData".into(), Value::Object(data));
    }
    Ok(Value::Object(out))
}

/// The state to test and its name, and the machine's QueryLanguage when the definition is a
/// whole state machine (then `stateName` picks the state).
fn pick_state(
    text: &str,
    state_name: Option<&str>,
) -> Result<(String, Value, Option<Value>), ApiError> {
    let v = parse_json_text(text).map_err(|d| invalid_definition(&InvalidDefinition(vec![d])))?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::new(
            "InvalidDefinition",
            "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Definition must be a valid JSON object'",
        ));
    };
    match obj.get("States") {
        Some(states) => {
            let name = state_name.ok_or_else(|| {
                ApiError::validation("stateName is required when the definition is a state machine")
            })?;
            let state = states.get(name).ok_or_else(|| {
                ApiError::validation(format!(
                    "The state machine has no top-level state named '{name}'"
                ))
            })?;
            Ok((
                name.to_string(),
                state.clone(),
                obj.get("QueryLanguage").cloned(),
            ))
        }
        None => Ok((state_name.unwrap_or(DEFAULT_NAME).to_string(), v, None)),
    }
}

/// A state machine that runs `state` once: the variables' Pass first when there are any,
/// and a `Succeed` for every state it can go to.
fn wrapper(
    name: &str,
    state: &Value,
    language: Option<&Value>,
    variables: &Map<String, Value>,
) -> Value {
    let mut states = Map::new();
    let start = if variables.is_empty() {
        name
    } else {
        // Each value is looked up from the run's input, so no value is ever evaluated.
        let assign: Map<String, Value> = variables
            .keys()
            .map(|k| {
                let key = serde_json::to_string(k).unwrap_or_default();
                (
                    k.clone(),
                    json!(format!("{{% $lookup($states.input.variables, {key}) %}}")),
                )
            })
            .collect();
        states.insert(
            VARIABLES_STATE.into(),
            json!({
                "Type": "Pass",
                "QueryLanguage": "JSONata",
                "Assign": assign,
                "Output": "{% $states.input.input %}",
                "Next": name,
            }),
        );
        VARIABLES_STATE
    };
    states.insert(name.to_string(), state.clone());
    for target in targets(state) {
        if !states.contains_key(&target) {
            states.insert(target, json!({ "Type": "Succeed" }));
        }
    }
    let mut machine = json!({ "StartAt": start, "States": states });
    if let Some(l) = language {
        machine["QueryLanguage"] = l.clone();
    }
    machine
}

/// Every state name a state may go to: `Next`, a Choice's rules and `Default`, `Catch`.
fn targets(state: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        if let Some(s) = v.get("Next").and_then(Value::as_str) {
            out.push(s.to_string());
        }
    };
    push(state);
    for list in ["Choices", "Catch"] {
        if let Some(a) = state.get(list).and_then(Value::as_array) {
            a.iter().for_each(&mut push);
        }
    }
    if let Some(d) = state.get("Default").and_then(Value::as_str) {
        out.push(d.to_string());
    }
    out
}

/// The state as it runs: without its Retry (answered as RETRIABLE instead), and a mocked
/// Map or Parallel as a Task whose result the mock gives.
fn runnable(state: &Value, container: bool) -> Value {
    let mut s = state.as_object().cloned().unwrap_or_default();
    s.remove("Retry");
    if container {
        s.retain(|k, _| MOCKED_KEEPS.contains(&k.as_str()));
        s.insert("Type".into(), json!("Task"));
        s.insert("Resource".into(), json!(MOCK_RESOURCE));
    }
    Value::Object(s)
}

/// Map, Parallel, activities and `.sync`/`.waitForTaskToken` need a mock; only Task, Map and
/// Parallel take one.
fn check_mock(state: &State, mock: Option<&Mock>) -> Result<(), ApiError> {
    let needs = match &state.kind {
        StateKind::Map(_) | StateKind::Parallel { .. } => true,
        StateKind::Task(t) => {
            t.resource.contains(":activity:")
                || t.resource.ends_with(".sync")
                || t.resource.contains(".sync:")
                || t.resource.ends_with(".waitForTaskToken")
        }
        _ => {
            if mock.is_some() {
                return Err(ApiError::validation(format!(
                    "A mock can be given for a Task, Map or Parallel state only, not a {} state",
                    state.type_name()
                )));
            }
            false
        }
    };
    if needs && mock.is_none() {
        return Err(ApiError::validation(format!(
            "Testing this {} state needs a mock (mock.result or mock.errorOutput): mapfleet runs \
             Map and Parallel states, activities and .sync/.waitForTaskToken integrations in \
             TestState only mocked",
            state.type_name()
        )));
    }
    Ok(())
}

/// The validator's diagnostics with their locations inside the state (`/Parameters`, not
/// `/States/NAME/Parameters`).
fn state_diagnostics(name: &str, mut e: InvalidDefinition) -> ApiError {
    let prefix = format!("/States/{name}");
    for d in &mut e.0 {
        if let Some(l) = &d.location
            && let Some(rest) = l.strip_prefix(&prefix)
        {
            d.location = Some(if rest.is_empty() {
                "/".into()
            } else {
                rest.into()
            });
        }
    }
    invalid_definition(&e)
}

/// InspectionData: the stages of the state's data flow. A JSONPath state's stages are
/// evaluated with the engine's dataflow functions; the Task's effective input and result are
/// the run's own (its step).
fn inspection(
    state: &State,
    input: &Value,
    variables: &Map<String, Value>,
    steps: &[(Value, Outcome)],
    assigned: Option<&Value>,
) -> Map<String, Value> {
    let mut d = Map::new();
    let text = |v: &Value| json!(v.to_string());
    d.insert("input".into(), text(input));
    let step_input = steps.first().map(|(i, _)| i);
    let step_result = steps.first().and_then(|(_, o)| o.as_ref().ok());
    let c = &state.common;
    if c.jsonata.is_some() {
        if let Some(args) = step_input {
            d.insert("afterArguments".into(), text(args));
        }
        if let Some(r) = step_result {
            d.insert("result".into(), text(r));
        }
    } else {
        let info = ExecutionInfo::new(DEFAULT_NAME, "test-state", input.clone(), Utc::now());
        let ctx = context_object(
            &info,
            &StateFacts {
                name: &state.name,
                entered_time: &info.start_time,
                retry_count: 0,
                map_item: None,
                task_token: None,
            },
            true,
        );
        let entropy = Entropy::new(0x7e57);
        let mut stages = || -> Result<(), StatesError> {
            let after_input =
                dataflow::input_path(&c.input_path, input, &ctx, variables, &entropy)?;
            d.insert("afterInputPath".into(), text(&after_input));
            let after_parameters = match step_input {
                Some(i) if matches!(state.kind, StateKind::Task(_)) => i.clone(),
                _ => dataflow::parameters(&c.parameters, after_input, &ctx, variables, &entropy)?,
            };
            d.insert("afterParameters".into(), text(&after_parameters));
            let result = match &state.kind {
                StateKind::Pass { result: Some(r) } => Some(r.clone()),
                StateKind::Pass { result: None } => Some(after_parameters),
                StateKind::Task(_) | StateKind::Map(_) | StateKind::Parallel { .. } => {
                    step_result.cloned()
                }
                _ => None,
            };
            let Some(result) = result else { return Ok(()) };
            d.insert("result".into(), text(&result));
            let selected = dataflow::select_result(c, result, &ctx, variables, &entropy)?;
            d.insert("afterResultSelector".into(), text(&selected));
            let placed = dataflow::result_path(&c.result_path, input, selected)?;
            d.insert("afterResultPath".into(), text(&placed));
            Ok(())
        };
        // A stage that fails ends the list there; the run's error says why.
        let _ = stages();
    }
    let mut vars = variables.clone();
    if let Some(Value::Object(a)) = assigned {
        vars.extend(a.clone());
    }
    if !vars.is_empty() {
        d.insert("variables".into(), text(&Value::Object(vars)));
    }
    d
}

/// Runs one Task step where the store runs executions (the fleet, or `serve`'s process in
/// embedded mode): a one-Task execution of its resource with its effective input, ended by
/// the state's TimeoutSeconds or TestState's five minutes.
async fn run_task(store: &Store, role: Option<&str>, step: &StepRequest) -> Outcome {
    let mut task = json!({ "Type": "Task", "Resource": step.resource, "End": true });
    if let Some(t) = step.timeout {
        task["TimeoutSeconds"] = json!(t.as_secs().max(1));
    }
    let text = json!({ "StartAt": "Task", "States": { "Task": task } }).to_string();
    let mut def: StateMachine = parse_definition(&text)
        .map_err(|e| StatesError::runtime(format!("The task's state does not parse: {e}")))?;
    def.timeout_seconds = Some(EXPRESS_LIMIT_SECONDS);
    let name = format!("test-state-{}", uuid::Uuid::new_v4());
    let mut info = ExecutionInfo::new(DEFAULT_NAME, &name, step.input.clone(), Utc::now());
    if let Some(r) = role {
        info.role_arn = r.to_string();
    }
    let limit = Duration::from_secs(EXPRESS_LIMIT_SECONDS + 30);
    match store
        .run_unlisted(&text, std::sync::Arc::new(def), &info, limit)
        .await
    {
        Ok(Some(r)) if r.status == Status::Succeeded => Ok(r.output.unwrap_or(Value::Null)),
        Ok(Some(r)) => Err(r
            .error
            .unwrap_or_else(|| StatesError::new("States.TaskFailed", "the task did not succeed"))),
        Ok(None) => Err(StatesError::new(
            "States.Timeout",
            format!("The task did not end within {EXPRESS_LIMIT_SECONDS} seconds"),
        )),
        Err(e) => Err(StatesError::runtime(format!(
            "The task could not be run: {}",
            e.message
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_stubs_every_target_and_assigns_variables_first() {
        let state = json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": "One"}],
            "Default": "Other"
        });
        let vars: Map<String, Value> = json!({"x": "{% not evaluated %}"})
            .as_object()
            .cloned()
            .unwrap();
        let w = wrapper("C", &state, None, &vars);
        assert_eq!(w["StartAt"], VARIABLES_STATE);
        assert_eq!(w["States"]["One"], json!({"Type": "Succeed"}));
        assert_eq!(w["States"]["Other"], json!({"Type": "Succeed"}));
        assert_eq!(
            w["States"][VARIABLES_STATE]["Assign"]["x"],
            r#"{% $lookup($states.input.variables, "x") %}"#
        );
        parse_definition_value(&w).expect("the wrapper is a valid machine");
    }

    #[test]
    fn a_mocked_map_runs_as_a_task_that_keeps_its_output_processing() {
        let map = json!({
            "Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.r", "Retry": [],
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
            "End": true
        });
        let r = runnable(&map, true);
        assert_eq!(
            r,
            json!({"ResultPath": "$.r", "End": true, "Type": "Task", "Resource": MOCK_RESOURCE})
        );
    }

    #[test]
    fn diagnostics_point_inside_the_state() {
        let w = wrapper(
            "T",
            &json!({"Type": "Pass", "InputPath": "not a path", "End": true}),
            None,
            &Map::new(),
        );
        let e = state_diagnostics("T", parse_definition_value(&w).unwrap_err());
        assert_eq!(e.code, "InvalidDefinition");
        assert!(e.message.contains("/InputPath"), "{}", e.message);
        assert!(!e.message.contains("/States/T"), "{}", e.message);
    }
}
