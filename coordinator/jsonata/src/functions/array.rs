//! Array functions.

use super::{Ctx, Imp, arg};
use crate::errors::Result;
use crate::evaluator::{Evaluator, append};
use crate::value::{List, Value, deep_equal};

pub const DEFS: &[(&str, &str, Imp)] = &[
    ("count", "<a:n>", f_count),
    ("append", "<xx:a>", f_append),
    ("reverse", "<a:a>", f_reverse),
    ("shuffle", "<a:a>", f_shuffle),
    ("distinct", "<x:x>", f_distinct),
    ("zip", "<a+>", f_zip),
];

fn f_count(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(Value::Number(match arg(args, 0) {
        Value::Undefined => 0.0,
        v => v.members().len() as f64,
    }))
}

fn f_append(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let len = |v: &Value| v.as_slice().map(|s| s.len()).unwrap_or(1);
    if len(&arg(args, 0)) + len(&arg(args, 1)) > crate::errors::MAX_NODES {
        return Err(crate::errors::too_large("Array"));
    }
    Ok(append(arg(args, 0), arg(args, 1)))
}

fn f_reverse(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::Array(a, f) if a.len() > 1 => {
            let mut v = a.to_vec();
            v.reverse();
            Value::Array(List::rc(v), f)
        }
        v => v,
    })
}

fn f_shuffle(ev: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::Array(a, _) if a.len() > 1 => {
            let mut v = a.to_vec();
            for i in (1..v.len()).rev() {
                let j = ((ev.rng)() * (i + 1) as f64).floor() as usize;
                v.swap(i, j.min(i));
            }
            Value::array(v)
        }
        v => v,
    })
}

fn f_distinct(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::Array(a, f) if a.len() > 1 => {
            Value::Array(a.clone(), f).check_size("Input of $distinct")?;
            let mut out: Vec<Value> = vec![];
            for v in a.iter() {
                if !out.iter().any(|o| deep_equal(o, v)) {
                    out.push(v.clone());
                }
            }
            Value::Array(List::rc(out), f)
        }
        v => v,
    })
}

fn f_zip(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let len = args
        .iter()
        .map(|a| a.as_slice().map(|s| s.len()).unwrap_or(0))
        .min()
        .unwrap_or(0);
    Ok(Value::array(
        (0..len)
            .map(|i| {
                Value::array(
                    args.iter()
                        .map(|a| a.as_slice().map(|s| s[i].clone()).unwrap_or_default())
                        .collect(),
                )
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::functions::test_support::{code, eval};

    #[test]
    fn array_functions() {
        assert_eq!(eval("$count([1,2,3])"), Some(json!(3)));
        assert_eq!(eval("$count(nothing)"), Some(json!(0)));
        assert_eq!(eval("$append(1, [2, 3])"), Some(json!([1, 2, 3])));
        assert_eq!(eval("$reverse([1, 2, 3])"), Some(json!([3, 2, 1])));
        assert_eq!(
            eval("$distinct([1, {'a': 1}, 1, {'a': 1}])"),
            Some(json!([1, {"a": 1}]))
        );
        assert_eq!(
            eval("$zip([1, 2], [3, 4, 5])"),
            Some(json!([[1, 3], [2, 4]]))
        );
        assert_eq!(eval("$count($shuffle([1, 2, 3, 4]))"), Some(json!(4)));
        assert_eq!(code("$count(1, 2)"), "T0410");
    }
}
