//! What an expression can see while a state runs.

use serde_json::{Map, Value};

use crate::entropy::Entropy;

/// The data a path, payload template or intrinsic function is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `$`: the state's (effective) input, or the task result for ResultSelector.
    pub input: &'a Value,
    /// `$$`: the context object (Execution, State, StateMachine, Map, Task).
    pub context: &'a Value,
    /// `$name`: workflow variables set by `Assign` (JSONPath flavour of variables).
    pub vars: &'a Map<String, Value>,
    /// Where `States.UUID` and an unseeded `States.MathRandom` draw from (the caller's).
    pub entropy: &'a Entropy,
}
