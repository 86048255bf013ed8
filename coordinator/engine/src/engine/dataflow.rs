//! Input and output processing, in AWS's order:
//! InputPath → Parameters → (the state's work) → ResultSelector → ResultPath → OutputPath,
//! with Assign evaluated on the result beside them.

use serde_json::{Map, Value};

use crate::asl::definition::Common;
use crate::asl::error::StatesError;
use crate::asl::path::{Path, ReferencePath};
use crate::asl::scope::Scope;
use crate::asl::template::Template;
use crate::entropy::Entropy;

/// `InputPath`: `None` (an explicit null) gives `{}`.
pub fn input_path(
    path: &Option<Path>,
    input: &Value,
    context: &Value,
    vars: &Map<String, Value>,
    entropy: &Entropy,
) -> Result<Value, StatesError> {
    match path {
        None => Ok(Value::Object(Map::new())),
        Some(p) if p.is_root() => Ok(input.clone()),
        Some(p) => p.eval(&Scope {
            input,
            context,
            vars,
            entropy,
        }),
    }
}

/// `Parameters` (or a Map's `ItemSelector`) applied to the effective input.
pub fn parameters(
    template: &Option<Template>,
    effective: Value,
    context: &Value,
    vars: &Map<String, Value>,
    entropy: &Entropy,
) -> Result<Value, StatesError> {
    match template {
        None => Ok(effective),
        Some(t) => t.eval(&Scope {
            input: &effective,
            context,
            vars,
            entropy,
        }),
    }
}

/// The state's effective input: InputPath, then Parameters.
pub fn effective_input(
    common: &Common,
    input: &Value,
    context: &Value,
    vars: &Map<String, Value>,
    entropy: &Entropy,
) -> Result<Value, StatesError> {
    if let (Some(p), Some(t)) = (&common.input_path, &common.parameters)
        && p.is_root()
    {
        // Parameters read the input where it is: no copy of it first.
        return t.eval(&Scope {
            input,
            context,
            vars,
            entropy,
        });
    }
    let selected = input_path(&common.input_path, input, context, vars, entropy)?;
    parameters(&common.parameters, selected, context, vars, entropy)
}

/// Whether [`effective_input`] is the state's input itself (no InputPath but `$`, no
/// Parameters): it cannot fail then.
pub fn input_is_effective(common: &Common) -> bool {
    common.parameters.is_none() && common.input_path.as_ref().is_some_and(Path::is_root)
}

/// What a state produced, after ResultSelector, ready for ResultPath/OutputPath/Assign.
pub fn select_result(
    common: &Common,
    result: Value,
    context: &Value,
    vars: &Map<String, Value>,
    entropy: &Entropy,
) -> Result<Value, StatesError> {
    match &common.result_selector {
        None => Ok(result),
        Some(t) => t.eval(&Scope {
            input: &result,
            context,
            vars,
            entropy,
        }),
    }
}

/// `ResultPath`: where the result goes inside the raw state input. `None` (null) discards it.
pub fn result_path(
    path: &Option<ReferencePath>,
    input: &Value,
    result: Value,
) -> Result<Value, StatesError> {
    match path {
        None => Ok(input.clone()),
        Some(p) if p.is_root() => Ok(result),
        Some(p) => p.set(input.clone(), result),
    }
}

/// [`result_path`] into an input the caller no longer needs.
pub fn result_path_into(
    path: &Option<ReferencePath>,
    input: Value,
    result: Value,
) -> Result<Value, StatesError> {
    match path {
        None => Ok(input),
        Some(p) if p.is_root() => Ok(result),
        Some(p) => p.set(input, result),
    }
}

/// `OutputPath`: `None` (an explicit null) gives `{}`.
pub fn output_path(
    path: &Option<Path>,
    value: Value,
    context: &Value,
    vars: &Map<String, Value>,
    entropy: &Entropy,
) -> Result<Value, StatesError> {
    match path {
        None => Ok(Value::Object(Map::new())),
        Some(p) if p.is_root() => Ok(value),
        Some(p) => p.eval(&Scope {
            input: &value,
            context,
            vars,
            entropy,
        }),
    }
}

/// Evaluates an `Assign` block against `$` = the state result; the new values become visible
/// from the next state on.
pub fn assign(
    template: &Option<Template>,
    result: &Value,
    context: &Value,
    vars: &Map<String, Value>,
    entropy: &Entropy,
) -> Result<Option<Map<String, Value>>, StatesError> {
    let Some(t) = template else { return Ok(None) };
    match t.eval(&Scope {
        input: result,
        context,
        vars,
        entropy,
    })? {
        Value::Object(m) => Ok(Some(m)),
        _ => Ok(None),
    }
}

/// `States.DataLimitExceeded` when a payload is over `limit` bytes (AWS: 256 KiB); 0 means
/// no limit.
pub fn check_size(value: &Value, what: &str, limit: usize) -> Result<(), StatesError> {
    if limit == 0 {
        return Ok(());
    }
    let size = json_size(value, limit + 1);
    if size > limit {
        return Err(StatesError::data_limit(format!(
            "The {what} of {size}+ bytes exceeds the maximum number of bytes service limit ({limit})."
        )));
    }
    Ok(())
}

/// [`check_size`] for what state `state` returned (its message is built only when it fails).
pub fn check_result_size(value: &Value, state: &str, limit: usize) -> Result<(), StatesError> {
    if limit == 0 || json_size(value, limit + 1) <= limit {
        return Ok(());
    }
    check_size(
        value,
        &format!("state/task '{state}' returned a result with a size"),
        limit,
    )
}

/// The length of `value` as compact JSON, counted without serialising it, and counting
/// stops once it passes `cap`. Escapes are counted as one byte, so this never exceeds the
/// true length: a payload it rejects is certainly over the limit.
pub fn json_size(value: &Value, cap: usize) -> usize {
    fn walk(v: &Value, total: &mut usize, cap: usize) {
        if *total > cap {
            return;
        }
        match v {
            Value::Null => *total += 4,
            Value::Bool(b) => *total += if *b { 4 } else { 5 },
            Value::Number(n) => *total += number_len(n),
            Value::String(s) => *total += s.len() + 2,
            Value::Array(a) => {
                *total += 2 + a.len().saturating_sub(1);
                for x in a {
                    walk(x, total, cap);
                }
            }
            Value::Object(m) => {
                *total += 2 + m.len().saturating_sub(1);
                for (k, x) in m {
                    *total += k.len() + 3;
                    walk(x, total, cap);
                }
            }
        }
    }
    let mut total = 0;
    walk(value, &mut total, cap);
    total
}

/// The length of a number as JSON, without formatting an integer.
fn number_len(n: &serde_json::Number) -> usize {
    let digits = |mut u: u64| {
        let mut len = 1;
        while u >= 10 {
            u /= 10;
            len += 1;
        }
        len
    };
    if let Some(u) = n.as_u64() {
        digits(u)
    } else if let Some(i) = n.as_i64() {
        1 + digits(i.unsigned_abs())
    } else {
        n.to_string().len()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_size_counts_numbers_as_serde_json_writes_them() {
        for v in [
            json!(0),
            json!(9),
            json!(10),
            json!(-1),
            json!(-10),
            json!(12345),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(-0.25),
            json!(1e300),
            json!({"a": [1, -22, 333, 4.5], "b": {"c": 1000000}}),
        ] {
            let len = serde_json::to_string(&v).unwrap().len();
            assert_eq!(json_size(&v, usize::MAX), len, "{v}");
        }
    }

    #[test]
    fn a_result_over_the_limit_is_named_by_its_state() {
        let v = json!({"k": "x".repeat(2000)});
        assert!(check_result_size(&v, "Big", 0).is_ok());
        assert!(check_result_size(&v, "Big", 4096).is_ok());
        let e = check_result_size(&v, "Big", 1024).unwrap_err();
        assert_eq!(
            e.cause,
            "The state/task 'Big' returned a result with a size of 2008+ bytes exceeds the maximum number of bytes service limit (1024)."
        );
    }
}
