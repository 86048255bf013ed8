//! The first stage: a definition as written, as serde types. Which fields a state type
//! allows is checked by the builder with [`allowed_fields`].

use serde::Deserialize;
use serde_json::Value;

use crate::asl::definition::QueryLanguage;

/// The top level of a definition, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub(super) struct RawMachine {
    pub(super) Comment: Option<Value>,
    pub(super) StartAt: Option<Value>,
    pub(super) States: Option<Value>,
    pub(super) Version: Option<Value>,
    pub(super) TimeoutSeconds: Option<Value>,
    pub(super) QueryLanguage: Option<Value>,
}

/// A state as written: every field any state type may carry. Which fields a given type
/// allows is checked in [`Builder::state`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub(super) struct RawState {
    pub(super) Type: Option<Value>,
    pub(super) Comment: Option<Value>,
    pub(super) QueryLanguage: Option<Value>,
    pub(super) Next: Option<Value>,
    pub(super) End: Option<Value>,
    // Read from the JSON object instead (see `Builder::state`): named for the field check.
    #[allow(dead_code)]
    pub(super) InputPath: Option<Value>,
    #[allow(dead_code)]
    pub(super) OutputPath: Option<Value>,
    #[allow(dead_code)]
    pub(super) ResultPath: Option<Value>,
    pub(super) Parameters: Option<Value>,
    pub(super) ResultSelector: Option<Value>,
    pub(super) Result: Option<Value>,
    pub(super) Assign: Option<Value>,
    pub(super) Retry: Option<Value>,
    pub(super) Catch: Option<Value>,
    // Task
    pub(super) Resource: Option<Value>,
    pub(super) TimeoutSeconds: Option<Value>,
    pub(super) TimeoutSecondsPath: Option<Value>,
    pub(super) HeartbeatSeconds: Option<Value>,
    pub(super) HeartbeatSecondsPath: Option<Value>,
    pub(super) Credentials: Option<Value>,
    // Choice
    pub(super) Choices: Option<Value>,
    pub(super) Default: Option<Value>,
    // Wait
    pub(super) Seconds: Option<Value>,
    pub(super) SecondsPath: Option<Value>,
    pub(super) Timestamp: Option<Value>,
    pub(super) TimestampPath: Option<Value>,
    // Fail
    pub(super) Error: Option<Value>,
    pub(super) ErrorPath: Option<Value>,
    pub(super) Cause: Option<Value>,
    pub(super) CausePath: Option<Value>,
    // Parallel
    pub(super) Branches: Option<Value>,
    // Map
    pub(super) Iterator: Option<Value>,
    pub(super) ItemProcessor: Option<Value>,
    pub(super) ItemsPath: Option<Value>,
    pub(super) ItemSelector: Option<Value>,
    pub(super) MaxConcurrency: Option<Value>,
    pub(super) MaxConcurrencyPath: Option<Value>,
    pub(super) ToleratedFailurePercentage: Option<Value>,
    pub(super) ToleratedFailurePercentagePath: Option<Value>,
    pub(super) ToleratedFailureCount: Option<Value>,
    pub(super) ToleratedFailureCountPath: Option<Value>,
    pub(super) ItemBatcher: Option<Value>,
    pub(super) ItemReader: Option<Value>,
    pub(super) ResultWriter: Option<Value>,
    pub(super) Label: Option<Value>,
    // JSONata-only fields: named so the error can say what is wrong with them, never read.
    #[allow(dead_code)]
    pub(super) Arguments: Option<Value>,
    #[allow(dead_code)]
    pub(super) Output: Option<Value>,
    #[allow(dead_code)]
    pub(super) Items: Option<Value>,
}

/// Fields each state type accepts besides `Type`, `Comment` and `QueryLanguage`, in the
/// state's query language.
pub(super) fn allowed_fields(type_name: &str, ql: QueryLanguage) -> &'static [&'static str] {
    match ql {
        QueryLanguage::JsonPath => jsonpath_fields(type_name),
        QueryLanguage::JsonAta => jsonata_fields(type_name),
    }
}

/// A JSONata state's fields: `Arguments`/`Output`/`Assign` (and `Items`, `Condition` in the
/// rules) instead of the paths, selectors and `...Path` variants.
fn jsonata_fields(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Pass" => &["Next", "End", "Output", "Assign"],
        "Task" => &[
            "Next",
            "End",
            "Arguments",
            "Output",
            "Assign",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "Credentials",
        ],
        "Choice" => &["Choices", "Default", "Output", "Assign"],
        "Wait" => &["Next", "End", "Seconds", "Timestamp", "Output", "Assign"],
        "Succeed" => &["Output"],
        "Fail" => &["Error", "Cause"],
        "Parallel" => &[
            "Next",
            "End",
            "Arguments",
            "Output",
            "Assign",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Map" => &[
            "Next",
            "End",
            "Output",
            "Assign",
            "Retry",
            "Catch",
            "Iterator",
            "ItemProcessor",
            "Items",
            "ItemSelector",
            "MaxConcurrency",
            "ToleratedFailurePercentage",
            "ToleratedFailureCount",
            "ItemBatcher",
            "ItemReader",
            "ResultWriter",
            "Label",
        ],
        _ => &[],
    }
}

fn jsonpath_fields(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default", "Assign"],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Assign",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Iterator",
            "ItemProcessor",
            "ItemsPath",
            "ItemSelector",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ItemBatcher",
            "ItemReader",
            "ResultWriter",
            "Label",
        ],
        _ => &[],
    }
}
