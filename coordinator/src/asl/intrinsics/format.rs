//! `States.Format`: placeholder substitution, and the way AWS renders values into the text.
//!
//! AWS's implementation is Java: a string argument is inserted raw, anything else as Java's
//! `toString()` of the decoded value, so objects read `{a=1, b=[x, y]}` rather than JSON.

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
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
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
}
