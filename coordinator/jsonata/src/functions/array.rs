//! Array functions.

use std::rc::Rc;

use super::{Ctx, Imp, arg};
use crate::errors::Result;
use crate::evaluator::{Evaluator, append};
use crate::value::{Value, deep_equal};

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
    Ok(append(arg(args, 0), arg(args, 1)))
}

fn f_reverse(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::Array(a, f) if a.len() > 1 => {
            let mut v = a.as_ref().clone();
            v.reverse();
            Value::Array(Rc::new(v), f)
        }
        v => v,
    })
}

fn f_shuffle(ev: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::Array(a, _) if a.len() > 1 => {
            let mut v = a.as_ref().clone();
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
            let mut out: Vec<Value> = vec![];
            for v in a.iter() {
                if !out.iter().any(|o| deep_equal(o, v)) {
                    out.push(v.clone());
                }
            }
            Value::Array(Rc::new(out), f)
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
