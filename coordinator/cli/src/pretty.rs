//! An execution's output as `mapfleet run` prints it: the text of
//! `serde_json::to_string_pretty` (two-space indents), byte for byte, written directly
//! rather than through serde's generic serializer, which cost about 6% of a whole
//! 10,000-item embedded run. Numbers, and strings that need escapes, are still written by
//! serde_json itself, so their text cannot differ.
//!
//! The `map_pass` example of `mapfleet-engine` includes this file (`#[path]`) to print as
//! `mapfleet run` does: it may use nothing but `std`, `serde` and `serde_json`.

use std::io::{self, Write};

use serde_json::Value;

/// How much text is gathered before it is written out: a large output is never held whole
/// (a 10,000-item Map's is over 1 MB, and fresh memory costs page faults).
const CHUNK: usize = 64 * 1024;

/// Writes `value` to `to` as `serde_json::to_string_pretty(value)` writes it, in chunks.
pub fn write_pretty(to: &mut impl Write, value: &Value) -> io::Result<()> {
    let mut out = Vec::with_capacity(CHUNK + 4096);
    write_value(&mut out, value, 0, to)?;
    to.write_all(&out)
}

fn write_value(
    out: &mut Vec<u8>,
    value: &Value,
    depth: usize,
    to: &mut impl Write,
) -> io::Result<()> {
    if out.len() >= CHUNK {
        to.write_all(out)?;
        out.clear();
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => serde_text(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.extend_from_slice(b"[]");
                return Ok(());
            }
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, depth + 1);
                write_value(out, item, depth + 1, to)?;
            }
            newline(out, depth);
            out.push(b']');
        }
        Value::Object(members) => {
            if members.is_empty() {
                out.extend_from_slice(b"{}");
                return Ok(());
            }
            out.push(b'{');
            for (i, (key, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, depth + 1);
                write_str(out, key);
                out.extend_from_slice(b": ");
                write_value(out, member, depth + 1, to)?;
            }
            newline(out, depth);
            out.push(b'}');
        }
    }
    Ok(())
}

/// A line break and `depth` indents of two spaces.
fn newline(out: &mut Vec<u8>, depth: usize) {
    static LINE: [u8; 65] = {
        let mut line = [b' '; 65];
        line[0] = b'\n';
        line
    };
    let mut left = 1 + depth * 2;
    out.extend_from_slice(&LINE[..left.min(LINE.len())]);
    left = left.saturating_sub(LINE.len());
    while left > 0 {
        let n = left.min(LINE.len() - 1);
        out.extend_from_slice(&LINE[1..1 + n]);
        left -= n;
    }
}

/// A string in quotes; one that needs an escape is written by serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_text(out, s);
    }
}

/// What serde_json writes for `v` (the same in its compact and pretty forms).
fn serde_text<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec cannot fail, and numbers and strings always serialize.
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_same_text_as_serde_json() {
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(-0.0),
            json!(0.1),
            json!(1e300),
            json!(2.5e-8),
            json!(""),
            json!("plain"),
            json!("quote \" backslash \\ slash /"),
            json!("tab\tnewline\nreturn\rbell\u{7}nul\u{0}del\u{7f}"),
            json!("unicode é ✓ 😀 \u{2028}"),
            json!([]),
            json!({}),
            json!([[]]),
            json!([{}]),
            json!({"a": [], "b": {}, "c": [1, [2, [3, {"d": null}]]]}),
            json!({"items": [{"k": "item-0"}, {"k": "item-1"}], "results": [{"k": "item-0", "i": 0, "done": true}]}),
            json!({"key \"quoted\"\n": "v", "é": {"nested": {"deeper": {"deepest": [1.25, "x"]}}}}),
        ];
        let text = |v: &Value| {
            let mut out = Vec::new();
            write_pretty(&mut out, v).unwrap();
            String::from_utf8(out).unwrap()
        };
        for v in values {
            let want = serde_json::to_string_pretty(&v).unwrap();
            assert_eq!(text(&v), want, "{v}");
        }
        // Written in chunks, the same text.
        let big = json!({ "items": (0..20_000).map(|i| json!({"k": format!("item-{i}"), "i": i})).collect::<Vec<_>>() });
        let mut chunked = Vec::new();
        write_pretty(&mut chunked, &big).unwrap();
        assert_eq!(chunked, serde_json::to_vec_pretty(&big).unwrap());
        // Deeper than the indent block.
        let mut deep = json!("bottom");
        for i in 0..40 {
            deep = json!({ format!("level{i}"): [deep] });
        }
        assert_eq!(text(&deep), serde_json::to_string_pretty(&deep).unwrap());
    }
}
