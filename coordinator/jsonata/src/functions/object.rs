//! Object, boolean and type functions, `$error`/`$assert` and `$clone`.

use super::{Ctx, Imp, arg};
use crate::errors::{Error, Result};
use crate::evaluator::{Evaluator, append, boolean, lookup};
use crate::value::{Function, Map, Value};

pub const DEFS: &[(&str, &str, Imp)] = &[
    ("keys", "<x-:a<s>>", f_keys),
    ("lookup", "<x-s:x>", f_lookup),
    ("spread", "<x-:a<o>>", f_spread),
    ("merge", "<a<o>:o>", f_merge),
    ("error", "<s?:x>", f_error),
    ("assert", "<bs?:x>", f_assert),
    ("type", "<x:s>", f_type),
    ("clone", "<(oa)-:o>", f_clone),
    ("boolean", "<x-:b>", f_boolean),
    ("not", "<x-:b>", f_not),
    ("exists", "<x:b>", f_exists),
];

fn keys(v: &Value, depth: usize) -> Vec<String> {
    match v {
        Value::Array(_, _) if depth > crate::MAX_INPUT_DEPTH => vec![],
        Value::Array(a, _) => {
            let mut out: Vec<String> = vec![];
            for item in a.iter() {
                for k in keys(item, depth + 1) {
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
            }
            out
        }
        Value::Object(o) => o.keys().cloned().collect(),
        _ => vec![],
    }
}

fn f_keys(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(Value::sequence(
        keys(&arg(args, 0), 0)
            .iter()
            .map(|k| Value::string(k))
            .collect(),
    ))
}

fn f_lookup(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let key = arg(args, 1);
    Ok(lookup(&arg(args, 0), key.as_str().unwrap_or_default()))
}

fn spread(v: &Value) -> Value {
    match v {
        Value::Array(a, _) => {
            let mut result = Value::sequence(vec![]);
            for item in a.iter() {
                result = append(result, spread(item));
            }
            result
        }
        Value::Object(o) => Value::sequence(
            o.iter()
                .map(|(k, v)| {
                    let mut m = Map::new();
                    m.insert(k.clone(), v.clone());
                    Value::object(m)
                })
                .collect(),
        ),
        v => v.clone(),
    }
}

fn f_spread(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let v = arg(args, 0);
    v.check_size("Input of $spread")?;
    Ok(spread(&v))
}

fn f_merge(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let v = arg(args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let mut out = Map::new();
    for o in v.members() {
        if let Value::Object(m) = o {
            for (k, v) in m.iter() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::object(out))
}

fn f_error(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let message = match arg(args, 0) {
        Value::String(s) => s.to_string(),
        _ => "$error() function evaluated".into(),
    };
    Err(Error::User {
        code: "D3137".into(),
        message,
    })
}

fn f_assert(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    if matches!(arg(args, 0), Value::Bool(false)) {
        let message = match arg(args, 1) {
            Value::String(s) => s.to_string(),
            _ => "$assert() statement failed".into(),
        };
        return Err(Error::User {
            code: "D3141".into(),
            message,
        });
    }
    Ok(Value::Undefined)
}

fn f_type(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::Undefined => Value::Undefined,
        v => Value::string(v.type_name()),
    })
}

/// A deep copy with fresh objects (the transform operator relies on their identity).
pub fn deep_clone(v: &Value) -> Value {
    match v {
        Value::Array(a, _) => Value::array(
            a.iter()
                .filter(|v| !v.is_undefined())
                .map(|v| match v {
                    Value::Function(_) => Value::Null,
                    v => deep_clone(v),
                })
                .collect(),
        ),
        Value::Object(o) => Value::object(
            o.iter()
                .filter(|(_, v)| !v.is_undefined() && !v.is_function())
                .map(|(k, v)| (k.clone(), deep_clone(v)))
                .collect(),
        ),
        v => v.clone(),
    }
}

fn f_clone(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let v = arg(args, 0);
    v.check_size("Input of $clone")?;
    Ok(deep_clone(&v))
}

fn f_boolean(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match boolean(&arg(args, 0)) {
        Some(b) => Value::Bool(b),
        None => Value::Undefined,
    })
}

fn f_not(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match boolean(&arg(args, 0)) {
        Some(b) => Value::Bool(!b),
        None => Value::Undefined,
    })
}

fn f_exists(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(Value::Bool(!arg(args, 0).is_undefined()))
}

#[allow(dead_code)]
fn is_lambda(v: &Value) -> bool {
    matches!(v, Value::Function(f) if matches!(**f, Function::Lambda(_)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::functions::test_support::{code, eval};

    #[test]
    fn objects_merge_spread_and_keys() {
        assert_eq!(
            eval("$merge([{'a': 1}, {'a': 2, 'b': 3}])"),
            Some(json!({"a": 2, "b": 3}))
        );
        assert_eq!(
            eval("$spread({'a': 1, 'b': 2})"),
            Some(json!([{"a": 1}, {"b": 2}]))
        );
        assert_eq!(
            eval("$keys([{'a': 1}, {'a': 2, 'b': 3}])"),
            Some(json!(["a", "b"]))
        );
        assert_eq!(eval("$lookup({'a': 1}, 'a')"), Some(json!(1)));
    }

    #[test]
    fn booleans_types_errors() {
        assert_eq!(eval("$boolean([0, ''])"), Some(json!(false)));
        assert_eq!(eval("$boolean(function(){1})"), Some(json!(false)));
        assert_eq!(eval("$type(null)"), Some(json!("null")));
        assert_eq!(eval("$exists(nothing)"), Some(json!(false)));
        assert_eq!(code("$error('boom')"), "D3137");
        assert_eq!(code("$assert(false)"), "D3141");
        assert_eq!(code("$assert(1)"), "T0410");
    }
}
