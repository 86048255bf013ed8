//! The functions AWS Step Functions adds to JSONata: `$partition`, `$range`, `$hash`,
//! `$random` (optionally seeded), `$uuid` and `$parse`. Randomness and UUIDs come from the
//! evaluation environment, so evaluation stays deterministic for a given environment.

use md5::Digest;

use super::{Ctx, Imp, arg};
use crate::errors::{Result, err_val};
use crate::evaluator::Evaluator;
use crate::value::{Value, js_number_string};

pub const DEFS: &[(&str, &str, Imp)] = &[
    ("partition", "<an:a>", f_partition),
    ("range", "<nnn?:a>", f_range),
    ("hash", "<ss?:s>", f_hash),
    ("random", "<n?:n>", f_random),
    ("uuid", "<:s>", f_uuid),
    ("parse", "<s-:j>", f_parse),
];

fn invalid(what: &str) -> crate::errors::Error {
    err_val("D3200", what)
}

fn f_partition(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let items = arg(args, 0).members();
    let size = arg(args, 1).as_f64().unwrap_or(0.0);
    if size < 1.0 || size.fract() != 0.0 {
        return Err(invalid("$partition chunk size must be a positive integer"));
    }
    Ok(Value::array(
        items
            .chunks(size as usize)
            .map(|c| Value::array(c.to_vec()))
            .collect(),
    ))
}

/// `$range(start, end, step)`: from `start` to `end` inclusive (as `States.ArrayRange`),
/// counting down for a negative step.
fn f_range(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let start = arg(args, 0).as_f64().unwrap_or(0.0);
    let end = arg(args, 1).as_f64().unwrap_or(0.0);
    let step = arg(args, 2).as_f64().unwrap_or(1.0);
    if step == 0.0 || !step.is_finite() {
        return Err(invalid("$range step must not be zero"));
    }
    let count = ((end - start) / step).floor() + 1.0;
    if count > 1e7 {
        return Err(invalid("$range would produce more than 1e7 values"));
    }
    let values: Vec<Value> = (0..count.max(0.0) as usize)
        .map(|i| Value::Number(start + i as f64 * step))
        .collect();
    // Step Functions returns a one-number range as that number (a singleton sequence, as
    // recorded against AWS: `$range(1, 9, 9)` is `1`); an empty range stays `[]`.
    if values.len() == 1 {
        Ok(Value::sequence(values))
    } else {
        Ok(Value::array(values))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn f_hash(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let alg = arg(args, 1);
    let b = s.as_bytes();
    let out = match alg.as_str().unwrap_or("SHA-256") {
        "MD5" => hex(&md5::Md5::digest(b)),
        "SHA-1" => hex(&sha1::Sha1::digest(b)),
        "SHA-256" => hex(&sha2::Sha256::digest(b)),
        "SHA-384" => hex(&sha2::Sha384::digest(b)),
        "SHA-512" => hex(&sha2::Sha512::digest(b)),
        other => return Err(invalid(&format!("$hash algorithm {other}"))),
    };
    Ok(Value::string(&out))
}

/// SplitMix64, for `$random(seed)`: the same seed always gives the same number.
pub fn splitmix(seed: u64) -> (u64, f64) {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let next = z;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (next, (z >> 11) as f64 / (1u64 << 53) as f64)
}

fn f_random(ev: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(Value::Number(match arg(args, 0) {
        Value::Number(seed) => {
            if seed.fract() != 0.0 {
                return Err(invalid(&format!("$random seed {}", js_number_string(seed))));
            }
            splitmix(seed as i64 as u64).1
        }
        _ => (ev.rng)(),
    }))
}

fn f_uuid(ev: &mut Evaluator, _: &[Value], _: &Ctx) -> Result<Value> {
    Ok(Value::string(&(ev.uuid)()))
}

fn f_parse(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let j: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| invalid(&format!("$parse: {e}")))?;
    Ok(Value::from_json(&j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_is_deterministic() {
        assert_eq!(splitmix(42).1, splitmix(42).1);
        assert!((0.0..1.0).contains(&splitmix(7).1));
    }

    fn run(src: &str) -> serde_json::Value {
        let expr = crate::Expression::parse(src).unwrap();
        let mut env = crate::Environment::new(0, 1);
        env.aws_functions = true;
        expr.evaluate(None, &mut env).unwrap().unwrap()
    }

    #[test]
    fn ranges_are_inclusive_and_can_count_down() {
        assert_eq!(
            run("$range(0, 10, 2)"),
            serde_json::json!([0, 2, 4, 6, 8, 10])
        );
        assert_eq!(run("$range(5, 1, -2)"), serde_json::json!([5, 3, 1]));
        assert_eq!(run("$range(1, 9, 9)"), serde_json::json!(1));
        assert_eq!(
            run("$partition([1,2,3,4,5], 2)"),
            serde_json::json!([[1, 2], [3, 4], [5]])
        );
        assert_eq!(run("$parse('{\"a\": [1]}').a"), serde_json::json!([1]));
        assert_eq!(run("$random(3) = $random(3)"), serde_json::json!(true));
        let u = run("$uuid()");
        assert_eq!(u.as_str().unwrap().len(), 36);
    }

    #[test]
    fn digests_are_hex() {
        assert_eq!(
            hex(&sha2::Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
