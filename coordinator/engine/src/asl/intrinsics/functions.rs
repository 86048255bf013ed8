//! Evaluation of the intrinsic functions, with AWS's argument rules and limits.

use std::collections::HashSet;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::{Arg, Call, Func, format};
use crate::asl::error::StatesError;
use crate::asl::scope::Scope;

/// AWS's limit on the input of Base64Encode/Base64Decode/Hash, in characters.
const MAX_ENCODE_INPUT: usize = 10_000;
/// Standard alphabet; padding written when encoding and optional when decoding, like
/// Java's `Base64.getEncoder()`/`getDecoder()` that AWS uses.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// AWS's limit on the length of an ArrayRange result.
const MAX_RANGE_ITEMS: i128 = 1000;

pub(super) fn eval(call: &Call, scope: &Scope<'_>) -> Result<Value, StatesError> {
    let f = call.func;
    let mut args = Vec::with_capacity(call.args.len());
    for arg in &call.args {
        args.push(match arg {
            Arg::Str { value, .. } => Value::String(value.clone()),
            Arg::Num(n) => Value::Number(n.clone()),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Null => Value::Null,
            Arg::Path(path) => path.eval(scope)?,
            Arg::Call(inner) => eval(inner, scope)?,
        });
    }
    match f {
        Func::Format => {
            // A literal template keeps its escapes (`\{`) so they are not read as placeholders.
            let template = match call.args.first() {
                Some(Arg::Str { raw, .. }) => raw.as_str(),
                _ => string_arg(f, &args, 0)?,
            };
            format::render(template, &args[1..]).map(Value::String).map_err(|(want, got)| {
                fail(
                    f,
                    format!("The template has {want} placeholder(s) but {got} argument(s) were given"),
                )
            })
        }
        Func::StringToJson => {
            let s = string_arg(f, &args, 0)?;
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(s)
                .map_err(|e| fail(f, format!("The argument is not valid JSON text: {e}")))
        }
        Func::JsonToString => {
            let mut out = String::new();
            format::push_json(&mut out, &args[0]);
            Ok(Value::String(out))
        }
        Func::Array => Ok(Value::Array(args)),
        Func::ArrayPartition => {
            let items = array_arg(f, &args, 0)?;
            let size = int_arg(f, &args, 1)?;
            if size <= 0 {
                return Err(fail(
                    f,
                    format!("The chunk size must be greater than 0, but was {size}"),
                ));
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            Ok(Value::Array(
                items
                    .chunks(size)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        Func::ArrayContains => {
            let items = array_arg(f, &args, 0)?;
            Ok(Value::Bool(items.contains(&args[1])))
        }
        Func::ArrayRange => array_range(f, &args),
        Func::ArrayGetItem => {
            let items = array_arg(f, &args, 0)?;
            let index = int_arg(f, &args, 1)?;
            usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| {
                    fail(
                        f,
                        format!(
                            "The index {index} is out of bounds for an array of {} item(s)",
                            items.len()
                        ),
                    )
                })
        }
        Func::ArrayLength => Ok(Value::from(array_arg(f, &args, 0)?.len())),
        Func::ArrayUnique => {
            let items = array_arg(f, &args, 0)?;
            let mut seen = HashSet::with_capacity(items.len());
            let mut out = Vec::new();
            for item in items {
                if seen.insert(canonical(item)) {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }
        Func::Base64Encode => {
            let s = limited_string_arg(f, &args, 0)?;
            Ok(Value::String(BASE64.encode(s.as_bytes())))
        }
        Func::Base64Decode => {
            let s = limited_string_arg(f, &args, 0)?;
            let bytes = BASE64
                .decode(s.as_bytes())
                .map_err(|e| fail(f, format!("The argument is not valid base64: {e}")))?;
            // Java decodes the bytes as UTF-8 with replacement characters for bad sequences.
            Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        }
        Func::Hash => hash(f, &args),
        Func::JsonMerge => {
            let deep = match &args[2] {
                Value::Bool(b) => *b,
                other => return Err(type_error(f, 2, "a boolean", other)),
            };
            if deep {
                return Err(fail(
                    f,
                    "Deep merge is not supported; the third argument must be false".to_string(),
                ));
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                let (pos, v) = if args[0].is_object() {
                    (1, &args[1])
                } else {
                    (0, &args[0])
                };
                return Err(type_error(f, pos, "an object", v));
            };
            let mut out: Map<String, Value> = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(out))
        }
        Func::MathRandom => {
            let start = int_arg(f, &args, 0)?;
            let end = int_arg(f, &args, 1)?;
            if start >= end {
                return Err(fail(
                    f,
                    format!("The start {start} must be less than the end {end}"),
                ));
            }
            let n = match args.get(2) {
                Some(_) => {
                    let seed = int_arg(f, &args, 2)?;
                    // Reinterpreting the bits keeps every seed distinct, negative ones included.
                    StdRng::seed_from_u64(seed as u64).gen_range(start..end)
                }
                None => StdRng::seed_from_u64(scope.entropy.next_u64()).gen_range(start..end),
            };
            Ok(Value::from(n))
        }
        Func::MathAdd => {
            let a = rounded_int_arg(f, &args, 0)?;
            let b = rounded_int_arg(f, &args, 1)?;
            a.checked_add(b)
                .map(Value::from)
                .ok_or_else(|| fail(f, format!("The sum of {a} and {b} overflows")))
        }
        Func::StringSplit => {
            let s = string_arg(f, &args, 0)?;
            let delimiters = string_arg(f, &args, 1)?;
            // Every character of the second argument is a delimiter; empty pieces are dropped.
            let parts = s
                .split(|c: char| delimiters.contains(c))
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_string()))
                .collect();
            Ok(Value::Array(parts))
        }
        Func::Uuid => Ok(Value::String(
            uuid::Builder::from_random_bytes(scope.entropy.next_bytes16())
                .into_uuid()
                .to_string(),
        )),
    }
}

fn fail(f: Func, why: String) -> StatesError {
    StatesError::intrinsic(format!("Invalid arguments in {}: {why}", f.name()))
}

fn type_error(f: Func, pos: usize, want: &str, got: &Value) -> StatesError {
    fail(
        f,
        format!(
            "The argument at position {} must be {want}, but was {}",
            pos + 1,
            crate::asl::path::json_kind(got)
        ),
    )
}

fn string_arg(f: Func, args: &[Value], pos: usize) -> Result<&str, StatesError> {
    match args.get(pos) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(type_error(f, pos, "a string", other)),
        None => Err(fail(f, format!("Missing argument at position {}", pos + 1))),
    }
}

fn limited_string_arg(f: Func, args: &[Value], pos: usize) -> Result<&str, StatesError> {
    let s = string_arg(f, args, pos)?;
    if s.chars().nth(MAX_ENCODE_INPUT).is_some() {
        return Err(fail(
            f,
            format!("The input must be at most {MAX_ENCODE_INPUT} characters long"),
        ));
    }
    Ok(s)
}

fn array_arg(f: Func, args: &[Value], pos: usize) -> Result<&Vec<Value>, StatesError> {
    match args.get(pos) {
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(type_error(f, pos, "an array", other)),
        None => Err(fail(f, format!("Missing argument at position {}", pos + 1))),
    }
}

/// An integer argument. A float with no fractional part (`3.0`) is accepted as well.
fn int_arg(f: Func, args: &[Value], pos: usize) -> Result<i64, StatesError> {
    let v = args.get(pos).unwrap_or(&Value::Null);
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x >= i64::MIN as f64 && x < i64::MAX as f64 => Ok(x as i64),
        _ => Err(type_error(f, pos, "an integer", v)),
    }
}

/// MathAdd's operands: AWS rounds a non-integer with Java's `Math.round` (half up), so
/// 1.5 → 2, -1.5 → -1, -2.5 → -2.
fn rounded_int_arg(f: Func, args: &[Value], pos: usize) -> Result<i64, StatesError> {
    let v = args.get(pos).unwrap_or(&Value::Null);
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(x) => {
            let r = (x + 0.5).floor();
            if r >= i64::MIN as f64 && r < i64::MAX as f64 {
                Ok(r as i64)
            } else {
                Err(fail(f, format!("The number {x} is out of range")))
            }
        }
        None => Err(type_error(f, pos, "a number", v)),
    }
}

/// `States.ArrayRange(start, end, step)`: both ends inclusive, at most 1000 items.
fn array_range(f: Func, args: &[Value]) -> Result<Value, StatesError> {
    let start = int_arg(f, args, 0)?;
    let end = int_arg(f, args, 1)?;
    let step = int_arg(f, args, 2)?;
    if step == 0 {
        return Err(fail(f, "The step must not be 0".to_string()));
    }
    let (s, e, st) = (i128::from(start), i128::from(end), i128::from(step));
    let count = if (st > 0 && s <= e) || (st < 0 && s >= e) {
        (e - s) / st + 1
    } else {
        0
    };
    if count > MAX_RANGE_ITEMS {
        return Err(fail(
            f,
            format!(
                "The range would have {count} items, more than the maximum of {MAX_RANGE_ITEMS}"
            ),
        ));
    }
    // `count` ≤ 1000 and every item lies between start and end, so none of this overflows.
    let items = (0..count)
        .map(|k| Value::from((s + k * st) as i64))
        .collect();
    Ok(Value::Array(items))
}

fn hash(f: Func, args: &[Value]) -> Result<Value, StatesError> {
    let data = match &args[0] {
        Value::String(s) => s.clone(),
        // Non-string data is hashed as its JSON text.
        other => other.to_string(),
    };
    if data.chars().nth(MAX_ENCODE_INPUT).is_some() {
        return Err(fail(
            f,
            format!("The input must be at most {MAX_ENCODE_INPUT} characters long"),
        ));
    }
    let algorithm = string_arg(f, args, 1)?;
    let digest: Vec<u8> = match algorithm {
        "MD5" => md5::Md5::digest(data.as_bytes()).to_vec(),
        "SHA-1" => sha1::Sha1::digest(data.as_bytes()).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data.as_bytes()).to_vec(),
        "SHA-384" => sha2::Sha384::digest(data.as_bytes()).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data.as_bytes()).to_vec(),
        other => {
            return Err(fail(
                f,
                format!(
                    "The hash algorithm '{other}' is not supported; use one of MD5, SHA-1, \
                     SHA-256, SHA-384, SHA-512"
                ),
            ));
        }
    };
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(Value::String(hex))
}

/// A key equal for equal JSON values: object keys sorted, so `{"a":1,"b":2}` and
/// `{"b":2,"a":1}` collapse, as they do under JSON equality.
fn canonical(v: &Value) -> String {
    fn go(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(item) = m.get(k) {
                        go(item, out);
                    }
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    go(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, &mut out);
    out
}
