//! How AWS turns values into text: `States.Format`'s placeholder substitution and
//! `States.JsonToString`'s JSON.
//!
//! AWS's implementation is Java: a Format argument that is a string is inserted raw, anything
//! else as Java's `toString()` of the decoded value, so objects read `{a=1, b=[x, y]}` rather
//! than JSON. Floating-point numbers print as Java's `Double.toString` does (`1.0E20`), in
//! Format and in JsonToString (Jackson writes doubles that way too).

use std::fmt::Write as _;

use serde_json::Value;

/// Number of `{}` placeholders in a Format template. A backslash escapes the next character,
/// so `\{}` is a literal brace pair, not a placeholder.
pub(super) fn count_placeholders(template: &str) -> usize {
    let mut n = 0;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                n += 1;
            }
            _ => {}
        }
    }
    n
}

/// Substitutes `args` into `template` in order. `Err` carries the counts when they differ.
pub(super) fn render(template: &str, args: &[Value]) -> Result<String, (usize, usize)> {
    let want = count_placeholders(template);
    if want != args.len() {
        return Err((want, args.len()));
    }
    let mut out = String::with_capacity(template.len());
    let mut next = args.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            }
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                if let Some(arg) = next.next() {
                    push_java_string(&mut out, arg);
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Java's `toString()` of the value as Jackson would decode it into plain Java objects.
pub(super) fn push_java_string(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => push_number(out, n),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_java_string(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                push_java_string(out, item);
            }
            out.push('}');
        }
    }
}

/// Compact JSON, as Jackson writes it: no spaces, doubles in Java's notation.
pub(super) fn push_json(out: &mut String, v: &Value) {
    match v {
        Value::Number(n) => push_number(out, n),
        Value::String(s) => push_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(out, k);
                out.push(':');
                push_json(out, item);
            }
            out.push('}');
        }
        Value::Null | Value::Bool(_) => out.push_str(&v.to_string()),
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json escapes exactly what Jackson does by default: `"`, `\` and control characters.
    out.push_str(&Value::String(s.to_string()).to_string());
}

fn push_number(out: &mut String, n: &serde_json::Number) {
    match n.as_f64() {
        Some(x) if n.is_f64() => push_java_double(out, x),
        _ => {
            let _ = write!(out, "{n}");
        }
    }
}

/// Java's `Double.toString`: plain decimal with at least one fractional digit when
/// 10^-3 <= |x| < 10^7, otherwise `d.dddE±n`. Both use the shortest round-trip digits.
fn push_java_double(out: &mut String, x: f64) {
    if !x.is_finite() {
        // JSON cannot hold these; keep something readable rather than panic.
        let _ = write!(out, "{x}");
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    let abs = x.abs();
    if (1e-3..1e7).contains(&abs) {
        let plain = format!("{x}");
        out.push_str(&plain);
        if !plain.contains('.') {
            out.push_str(".0");
        }
        return;
    }
    // Rust's `{:e}` gives the shortest digits as `d[.ddd]e[-]n`.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    out.push_str(mantissa);
    if !mantissa.contains('.') {
        out.push_str(".0");
    }
    out.push('E');
    out.push_str(exponent);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn placeholders_and_escapes() {
        assert_eq!(count_placeholders("a {} b {}"), 2);
        assert_eq!(count_placeholders("a \\{} b {}"), 1);
        assert_eq!(count_placeholders("{ } {x}"), 0);
        assert_eq!(
            render("x={} y={}", &[json!("s"), json!(1)]).unwrap(),
            "x=s y=1"
        );
        assert_eq!(render("\\{}{}\\\\", &[json!(null)]).unwrap(), "{}null\\");
        assert_eq!(
            render("{}", &[json!({"Arg1": 1, "Arg2": [], "o": {"s": "t"}})]).unwrap(),
            "{Arg1=1, Arg2=[], o={s=t}}"
        );
        assert_eq!(
            render("{}", &[json!([1, "a", [true]])]).unwrap(),
            "[1, a, [true]]"
        );
        assert_eq!(render("{} {}", &[json!(1)]), Err((2, 1)));
    }

    #[test]
    fn java_doubles() {
        let cases = [
            (1.1, "1.1"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.001, "0.001"),
            (1234567.5, "1234567.5"),
            (1e7, "1.0E7"),
            (1e20, "1.0E20"),
            (-1.5e-7, "-1.5E-7"),
            (0.0001, "1.0E-4"),
            (123456789.123, "1.23456789123E8"),
        ];
        for (x, want) in cases {
            let mut out = String::new();
            push_java_double(&mut out, x);
            assert_eq!(out, want, "{x}");
        }
        let mut out = String::new();
        push_json(
            &mut out,
            &json!({"a": [1, 2.5, 1e20, "q\"uote"], "b": null, "c": {"d": true}}),
        );
        assert_eq!(
            out,
            r#"{"a":[1,2.5,1.0E20,"q\"uote"],"b":null,"c":{"d":true}}"#
        );
        assert_eq!(
            render("{} {}", &[json!(2.0), json!([1e-5])]).unwrap(),
            "2.0 [1.0E-5]"
        );
    }
}
