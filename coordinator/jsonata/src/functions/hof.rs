//! Higher-order functions. The callback gets as many of (value, index/key, whole) as its
//! arity asks for, as in the reference implementation.

use super::{Ctx, Imp, arg};
use crate::errors::{Result, err};
use crate::evaluator::{Evaluator, boolean};
use crate::value::{Map, Value};

pub const DEFS: &[(&str, &str, Imp)] = &[
    ("map", "<af>", f_map),
    ("filter", "<af>", f_filter),
    ("single", "<af?>", f_single),
    ("reduce", "<afj?:j>", f_reduce),
    ("sift", "<o-f?:o>", f_sift),
    ("each", "<o-f:a>", f_each),
    ("sort", "<af?:a>", f_sort),
];

fn arity(f: &Value) -> usize {
    match f {
        Value::Function(f) => f.arity(),
        _ => 0,
    }
}

fn hof_args(f: &Value, a: Value, b: Value, c: &Value) -> Vec<Value> {
    let n = arity(f);
    let mut args = vec![a];
    if n >= 2 {
        args.push(b);
    }
    if n >= 3 {
        args.push(c.clone());
    }
    args
}

fn f_map(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let arr = arg(args, 0);
    if arr.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(args, 1);
    let mut out = vec![];
    for (i, v) in arr.members().into_iter().enumerate() {
        let r = ev.apply(
            &f,
            hof_args(&f, v, Value::Number(i as f64), &arr),
            ctx.input,
            ctx.env,
        )?;
        if !r.is_undefined() {
            out.push(r);
        }
    }
    Ok(Value::sequence(out))
}

fn f_filter(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let arr = arg(args, 0);
    if arr.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(args, 1);
    let mut out = vec![];
    for (i, v) in arr.members().into_iter().enumerate() {
        let r = ev.apply(
            &f,
            hof_args(&f, v.clone(), Value::Number(i as f64), &arr),
            ctx.input,
            ctx.env,
        )?;
        if boolean(&r) == Some(true) {
            out.push(v);
        }
    }
    Ok(Value::sequence(out))
}

fn f_single(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let arr = arg(args, 0);
    if arr.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(args, 1);
    let mut found = None;
    for (i, v) in arr.members().into_iter().enumerate() {
        let positive = if f.is_undefined() {
            true
        } else {
            let r = ev.apply(
                &f,
                hof_args(&f, v.clone(), Value::Number(i as f64), &arr),
                ctx.input,
                ctx.env,
            )?;
            boolean(&r) == Some(true)
        };
        if positive {
            if found.is_some() {
                return Err(err("D3138"));
            }
            found = Some(v);
        }
    }
    found.ok_or_else(|| err("D3139"))
}

fn f_reduce(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let arr = arg(args, 0);
    if arr.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(args, 1);
    let n = arity(&f);
    if n < 2 {
        return Err(err("D3050"));
    }
    let items = arr.members();
    let init = arg(args, 2);
    let (mut result, start) = if init.is_undefined() && !items.is_empty() {
        (items[0].clone(), 1)
    } else {
        (init, 0)
    };
    for (i, item) in items.iter().enumerate().skip(start) {
        let mut a = vec![result, item.clone()];
        if n >= 3 {
            a.push(Value::Number(i as f64));
        }
        if n >= 4 {
            a.push(arr.clone());
        }
        result = ev.apply(&f, a, ctx.input, ctx.env)?;
    }
    Ok(result)
}

fn f_sift(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let Value::Object(o) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let f = arg(args, 1);
    let whole = Value::Object(o.clone());
    let mut out = Map::new();
    for (k, v) in o.iter() {
        let r = ev.apply(
            &f,
            hof_args(&f, v.clone(), Value::string(k), &whole),
            ctx.input,
            ctx.env,
        )?;
        if boolean(&r) == Some(true) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(if out.is_empty() {
        Value::Undefined
    } else {
        Value::object(out)
    })
}

fn f_each(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let Value::Object(o) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let f = arg(args, 1);
    let whole = Value::Object(o.clone());
    let mut out = vec![];
    for (k, v) in o.iter() {
        let r = ev.apply(
            &f,
            hof_args(&f, v.clone(), Value::string(k), &whole),
            ctx.input,
            ctx.env,
        )?;
        if !r.is_undefined() {
            out.push(r);
        }
    }
    Ok(Value::sequence(out))
}

/// Stable merge sort where `swap(a, b)` says whether `b` goes before `a`.
fn merge_sort(
    items: Vec<Value>,
    swap: &mut dyn FnMut(&Value, &Value) -> Result<bool>,
) -> Result<Vec<Value>> {
    if items.len() <= 1 {
        return Ok(items);
    }
    let mut right = items;
    let left = right.drain(..right.len() / 2).collect::<Vec<_>>();
    let left = merge_sort(left, swap)?;
    let right = merge_sort(right, swap)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if swap(&left[i], &right[j])? {
            out.push(right[j].clone());
            j += 1;
        } else {
            out.push(left[i].clone());
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    Ok(out)
}

fn f_sort(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let arr = arg(args, 0);
    let items = match &arr {
        Value::Undefined => return Ok(Value::Undefined),
        Value::Array(a, _) if a.len() <= 1 => return Ok(arr),
        v => v.members(),
    };
    let f = arg(args, 1);
    let sorted = if f.is_undefined() {
        let all_num = items.iter().all(|v| matches!(v, Value::Number(_)));
        let all_str = items.iter().all(|v| matches!(v, Value::String(_)));
        if !all_num && !all_str {
            return Err(err("D3070"));
        }
        merge_sort(items, &mut |a, b| {
            Ok(match (a, b) {
                (Value::Number(x), Value::Number(y)) => x > y,
                (Value::String(x), Value::String(y)) => x > y,
                _ => false,
            })
        })?
    } else {
        merge_sort(items, &mut |a, b| {
            let r = ev.apply(&f, vec![a.clone(), b.clone()], ctx.input, ctx.env)?;
            Ok(boolean(&r) == Some(true))
        })?
    };
    Ok(Value::array(sorted))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::functions::test_support::{code, eval};

    #[test]
    fn callbacks_get_as_many_arguments_as_they_declare() {
        assert_eq!(
            eval("$map([1,2], function($v, $i){ $v * 10 + $i })"),
            Some(json!([10, 21]))
        );
        assert_eq!(eval("$map([1,2], $string)"), Some(json!(["1", "2"])));
        assert_eq!(
            eval("$filter([1,2,3], function($v){ $v > 1 })"),
            Some(json!([2, 3]))
        );
        assert_eq!(
            eval("$reduce([1,2,3], function($a, $b){ $a + $b }, 10)"),
            Some(json!(16))
        );
        assert_eq!(code("$reduce([1,2], function($a){ $a })"), "D3050");
    }

    #[test]
    fn single_sift_each_and_sort() {
        assert_eq!(
            eval("$single([1,2,3], function($v){ $v = 2 })"),
            Some(json!(2))
        );
        assert_eq!(code("$single([1,2,3], function($v){ $v > 1 })"), "D3138");
        assert_eq!(code("$single([1,2,3], function($v){ $v > 5 })"), "D3139");
        assert_eq!(
            eval("$sift({'a': 1, 'b': 2}, function($v){ $v > 1 })"),
            Some(json!({"b": 2}))
        );
        assert_eq!(
            eval("$each({'a': 1}, function($v, $k){ $k & $v })"),
            Some(json!("a1"))
        );
        assert_eq!(
            eval("$sort([3,1,2], function($a, $b){ $a < $b })"),
            Some(json!([3, 2, 1]))
        );
        assert_eq!(code("$sort([1, 'a'])"), "D3070");
    }
}
