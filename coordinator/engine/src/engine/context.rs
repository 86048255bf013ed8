//! Facts about an execution that every state can see, and the context object (`$$`).

use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::history::object;
use crate::asl::definition::ContextParts;

/// What is fixed for the life of an execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionInfo {
    pub execution_arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    pub start_time: DateTime<Utc>,
    pub input: Value,
    pub redrive_count: u32,
    /// When the latest redrive happened (`RedriveExecution`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_date: Option<DateTime<Utc>>,
    /// `start_time` as `$$.Execution.StartTime` shows it, formatted once.
    #[serde(skip)]
    start_iso: OnceLock<(DateTime<Utc>, String)>,
}

impl ExecutionInfo {
    /// Builds the ARNs the way Step Functions does, in mapfleet's local region/account.
    pub fn new(
        state_machine_name: &str,
        execution_name: &str,
        input: Value,
        start_time: DateTime<Utc>,
    ) -> Self {
        let (region, account) = (LOCAL_REGION, LOCAL_ACCOUNT);
        ExecutionInfo {
            execution_arn: format!(
                "arn:aws:states:{region}:{account}:execution:{state_machine_name}:{execution_name}"
            ),
            name: execution_name.to_string(),
            state_machine_arn: format!(
                "arn:aws:states:{region}:{account}:stateMachine:{state_machine_name}"
            ),
            state_machine_name: state_machine_name.to_string(),
            role_arn: format!("arn:aws:iam::{account}:role/mapfleet-execution"),
            start_time,
            input,
            redrive_count: 0,
            redrive_date: None,
            start_iso: OnceLock::new(),
        }
    }

    /// `$$.Execution.StartTime`.
    pub fn start_time_iso(&self) -> String {
        let (at, text) = self
            .start_iso
            .get_or_init(|| (self.start_time, iso(&self.start_time)));
        // The field is public: a start time changed after the first use is formatted anew.
        if *at == self.start_time {
            text.clone()
        } else {
            iso(&self.start_time)
        }
    }
}

/// The region mapfleet reports in ARNs.
pub const LOCAL_REGION: &str = "local";
/// The account id mapfleet reports in ARNs (twelve digits, as ARNs require).
pub const LOCAL_ACCOUNT: &str = "000000000000";

/// Whether `resource` is an activity ARN (`arn:aws:states:REGION:ACCOUNT:activity:NAME`),
/// whose tasks the activity's workers take through the Step Functions API.
pub fn is_activity_arn(resource: &str) -> bool {
    let parts: Vec<&str> = resource.split(':').collect();
    parts.len() == 7
        && parts[..3] == ["arn", "aws", "states"]
        && parts[5] == "activity"
        && !parts[6].is_empty()
}

/// Formats a timestamp as Step Functions does in the context object.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Per-state facts for `$$.State`, `$$.Map` and `$$.Task`.
pub struct StateFacts<'a> {
    pub name: &'a str,
    pub entered_time: &'a DateTime<Utc>,
    pub retry_count: u32,
    pub map_item: Option<(usize, &'a Value)>,
    pub task_token: Option<&'a str>,
}

/// Builds `$$` for one evaluation. `with_input` adds `Execution.Input`, which is left out
/// when the state cannot read it: copying a large input for every Map item would make a
/// Map quadratic.
pub fn context_object(info: &ExecutionInfo, facts: &StateFacts<'_>, with_input: bool) -> Value {
    Value::Object(context_members(info, facts, with_input, ContextParts::ALL))
}

/// The members of `$$` in `parts` (in the order of the whole object), for an expression
/// that reads no other: what it finds is what it would find in the whole object.
pub fn context_members(
    info: &ExecutionInfo,
    facts: &StateFacts<'_>,
    with_input: bool,
    parts: ContextParts,
) -> Map<String, Value> {
    let mut ctx = Map::new();
    if parts.has(ContextParts::EXECUTION) {
        let mut execution = object([
            ("Id", Value::String(info.execution_arn.clone())),
            ("Name", Value::String(info.name.clone())),
            ("RoleArn", Value::String(info.role_arn.clone())),
            ("StartTime", Value::String(info.start_time_iso())),
            ("RedriveCount", Value::from(info.redrive_count)),
        ]);
        if with_input {
            execution["Input"] = info.input.clone();
        }
        ctx.insert("Execution".into(), execution);
    }
    if parts.has(ContextParts::STATE) {
        ctx.insert(
            "State".into(),
            object([
                ("EnteredTime", Value::String(iso(facts.entered_time))),
                ("Name", Value::String(facts.name.to_string())),
                ("RetryCount", Value::from(facts.retry_count)),
            ]),
        );
    }
    if parts.has(ContextParts::STATE_MACHINE) {
        ctx.insert(
            "StateMachine".into(),
            json!({ "Id": info.state_machine_arn, "Name": info.state_machine_name }),
        );
    }
    if let Some(token) = facts.task_token
        && parts.has(ContextParts::TASK)
    {
        ctx.insert("Task".into(), json!({ "Token": token }));
    }
    if let Some((index, value)) = facts.map_item
        && parts.has(ContextParts::MAP)
    {
        ctx.insert("Map".into(), map_member(index, value.clone()));
    }
    ctx
}

/// `$$.Map`: `{"Item": {"Index": index, "Value": item}}`.
pub fn map_member(index: usize, item: Value) -> Value {
    object([(
        "Item",
        object([("Index", Value::from(index)), ("Value", item)]),
    )])
}
