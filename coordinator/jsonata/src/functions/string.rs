//! String functions, JSON serialisation as `$string` does it, and regex matching (the
//! matcher protocol `$match`, `$contains`, `$replace` and `$split` share).

use std::rc::Rc;

use base64::Engine;

use super::{Ctx, Imp, arg};
use crate::errors::{Error, Result, check_len, err, err_val};
use crate::evaluator::Evaluator;
use crate::value::{Flags, Function, Map, RegexLit, Value, js_number_string, round15};

pub const DEFS: &[(&str, &str, Imp)] = &[
    ("string", "<x-b?:s>", f_string),
    ("substring", "<s-nn?:s>", f_substring),
    ("substringBefore", "<s-s:s>", f_substring_before),
    ("substringAfter", "<s-s:s>", f_substring_after),
    ("lowercase", "<s-:s>", f_lowercase),
    ("uppercase", "<s-:s>", f_uppercase),
    ("length", "<s-:n>", f_length),
    ("trim", "<s-:s>", f_trim),
    ("pad", "<s-ns?:s>", f_pad),
    ("match", "<s-f<s:o>n?:a<o>>", f_match),
    ("contains", "<s-(sf):b>", f_contains),
    ("replace", "<s-(sf)(sf)n?:s>", f_replace),
    ("split", "<s-(sf)n?:a<s>>", f_split),
    ("join", "<a<s>s?:s>", f_join),
    ("base64encode", "<s-:s>", f_base64encode),
    ("base64decode", "<s-:s>", f_base64decode),
    ("encodeUrlComponent", "<s-:s>", f_encode_url_component),
    ("encodeUrl", "<s-:s>", f_encode_url),
    ("decodeUrlComponent", "<s-:s>", f_decode_url_component),
    ("decodeUrl", "<s-:s>", f_decode_url),
];

fn json_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json(v: &Value, pretty: bool, indent: usize, out: &mut String) {
    // Past the size or depth limit the caller reports an error (or, in a message, makes
    // do with a cut-off rendering); stop expanding.
    if out.len() > crate::errors::MAX_STRING_BYTES || indent > crate::MAX_INPUT_DEPTH {
        return;
    }
    let nl = |out: &mut String, level: usize| {
        if pretty {
            out.push('\n');
            for _ in 0..level {
                out.push_str("  ");
            }
        }
    };
    match v {
        Value::Undefined | Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.fract() == 0.0 {
                out.push_str(&js_number_string(*n))
            } else if n.is_finite() {
                out.push_str(&js_number_string(round15(*n)))
            } else {
                out.push_str("null")
            }
        }
        Value::String(s) => json_escape(s, out),
        Value::Function(_) => out.push_str("\"\""),
        Value::Array(a, _) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, indent + 1);
                write_json(item, pretty, indent + 1, out);
            }
            nl(out, indent);
            out.push(']');
        }
        Value::Object(o) => {
            let entries: Vec<_> = o.iter().filter(|(_, v)| !v.is_undefined()).collect();
            if entries.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, indent + 1);
                json_escape(k, out);
                out.push(':');
                if pretty {
                    out.push(' ');
                }
                write_json(item, pretty, indent + 1, out);
            }
            nl(out, indent);
            out.push('}');
        }
    }
}

/// `JSON.stringify` with the reference implementation's replacer (15 significant digits,
/// functions as `""`).
pub fn to_json_string(v: &Value, pretty: bool) -> String {
    let mut out = String::new();
    write_json(v, pretty, 0, &mut out);
    out
}

fn has_infinite(v: &Value) -> bool {
    match v {
        Value::Number(n) => !n.is_finite(),
        Value::Array(a, _) => a.iter().any(has_infinite),
        Value::Object(o) => o.values().any(has_infinite),
        _ => false,
    }
}

fn checked(s: String) -> Result<String> {
    check_len(s.len())?;
    Ok(s)
}

/// `$string(v)` for a defined value.
pub fn string_of(v: &Value, pretty: bool) -> Result<String> {
    Ok(match v {
        Value::String(s) => s.to_string(),
        Value::Function(_) => String::new(),
        Value::Number(n) if !n.is_finite() => return Err(err("D3001")),
        v if v.check_size("Value").is_err() => return Err(crate::errors::too_large("String")),
        v if has_infinite(v) => return Err(err("D1001")),
        Value::Array(a, f) if f.has(Flags::OUTER_WRAPPER) && !a.is_empty() => {
            checked(to_json_string(&a[0], pretty))?
        }
        v => checked(to_json_string(v, pretty))?,
    })
}

fn f_string(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let v = arg(args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let pretty = matches!(arg(args, 1), Value::Bool(true));
    Ok(Value::string(&string_of(&v, pretty)?))
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// JavaScript's `Array.prototype.slice` index normalisation.
fn js_index(i: f64, len: usize) -> usize {
    let len = len as f64;
    let i = i.trunc();
    let r = if i < 0.0 {
        (len + i).max(0.0)
    } else {
        i.min(len)
    };
    r as usize
}

pub fn substring(s: &str, start: f64, length: Option<f64>) -> String {
    let cs = chars(s);
    let len = cs.len();
    let mut start = start;
    if (len as f64) + start < 0.0 {
        start = 0.0;
    }
    match length {
        Some(l) => {
            if l <= 0.0 {
                return String::new();
            }
            let end = if start >= 0.0 {
                start + l
            } else {
                len as f64 + start + l
            };
            let (a, b) = (js_index(start, len), js_index(end, len));
            if a >= b {
                String::new()
            } else {
                cs[a..b].iter().collect()
            }
        }
        None => cs[js_index(start, len)..].iter().collect(),
    }
}

fn f_substring(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let start = arg(args, 1).as_f64().unwrap_or(0.0);
    let length = arg(args, 2).as_f64();
    Ok(Value::string(&substring(&s, start, length)))
}

fn f_substring_before(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let Value::String(c) = arg(args, 1) else {
        return Ok(Value::String(s));
    };
    Ok(match s.find(c.as_ref()) {
        Some(i) => Value::string(&s[..i]),
        None => Value::String(s),
    })
}

fn f_substring_after(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let Value::String(c) = arg(args, 1) else {
        return Ok(Value::String(s));
    };
    Ok(match s.find(c.as_ref()) {
        Some(i) => Value::string(&s[i + c.len()..]),
        None => Value::String(s),
    })
}

fn f_lowercase(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => Value::string(&s.to_lowercase()),
        _ => Value::Undefined,
    })
}

fn f_uppercase(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => Value::string(&s.to_uppercase()),
        _ => Value::Undefined,
    })
}

fn f_length(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => Value::Number(s.chars().count() as f64),
        _ => Value::Undefined,
    })
}

fn f_trim(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let mut out = String::new();
    let mut in_space = false;
    for c in s.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r') {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    let out = out.strip_prefix(' ').unwrap_or(&out);
    let out = out.strip_suffix(' ').unwrap_or(out);
    Ok(Value::string(out))
}

fn f_pad(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let width = arg(args, 1).as_f64().unwrap_or(0.0);
    let pad = match arg(args, 2) {
        Value::String(p) if !p.is_empty() => p.to_string(),
        _ => " ".to_string(),
    };
    let pad_len = width.abs().trunc() as i64 - s.chars().count() as i64;
    if pad_len <= 0 {
        return Ok(Value::String(s));
    }
    check_len(s.len() + pad_len as usize * pad.len().min(4))?;
    let padding: String = pad.chars().cycle().take(pad_len as usize).collect();
    Ok(Value::string(&if width > 0.0 {
        format!("{s}{padding}")
    } else {
        format!("{padding}{s}")
    }))
}

pub struct MatchInfo {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub groups: Vec<Value>,
}

fn byte_of_char(s: &str, ci: usize) -> usize {
    s.char_indices().nth(ci).map(|(b, _)| b).unwrap_or(s.len())
}

fn char_of_byte(s: &str, b: usize) -> usize {
    s[..b].chars().count()
}

/// The first match at or after character `from`, as a global JavaScript regex's `exec`.
pub fn regex_exec(re: &RegexLit, s: &str, from: usize) -> Option<MatchInfo> {
    let b = byte_of_char(s, from);
    let caps = re.regex.captures_at(s, b)?;
    let m = caps.get(0)?;
    let groups = (1..caps.len())
        .map(|i| match caps.get(i) {
            Some(g) => Value::string(g.as_str()),
            None => Value::Undefined,
        })
        .collect();
    Some(MatchInfo {
        text: m.as_str().to_string(),
        start: char_of_byte(s, m.start()),
        end: char_of_byte(s, m.end()),
        groups,
    })
}

/// The object a regex returns when invoked as a function: `{match, start, end, groups, next}`.
pub fn regex_match_object(re: &std::sync::Arc<RegexLit>, s: &Rc<str>, from: usize) -> Value {
    match regex_exec(re, s, from) {
        None => Value::Undefined,
        Some(m) => {
            let mut o = Map::new();
            o.insert("match".into(), Value::string(&m.text));
            o.insert("start".into(), Value::Number(m.start as f64));
            o.insert("end".into(), Value::Number(m.end as f64));
            o.insert("groups".into(), Value::array(m.groups));
            o.insert(
                "next".into(),
                Value::func(Function::RegexNext {
                    re: re.clone(),
                    text: s.clone(),
                    from: m.end,
                }),
            );
            Value::object(o)
        }
    }
}

/// All matches of a matcher (a regex, or a function following the matcher protocol),
/// at most `limit`.
pub fn matches(
    ev: &mut Evaluator,
    matcher: &Value,
    s: &str,
    limit: Option<usize>,
    ctx: &Ctx,
) -> Result<Vec<MatchInfo>> {
    let mut out = vec![];
    if limit == Some(0) {
        return Ok(out);
    }
    if let Value::Function(f) = matcher
        && let Function::Regex(re) = &**f
    {
        let len = s.chars().count();
        let mut cur = regex_exec(re, s, 0);
        while let Some(m) = cur {
            let end = m.end;
            out.push(m);
            if limit.is_some_and(|l| out.len() >= l) || end >= len {
                break;
            }
            cur = regex_exec(re, s, end);
            if cur.as_ref().is_some_and(|m| m.text.is_empty()) {
                return Err(Error::new("D1004", None, "", &re.source));
            }
        }
        return Ok(out);
    }
    let mut result = ev.apply(matcher, vec![Value::string(s)], ctx.input, ctx.env)?;
    while let Value::Object(o) = &result {
        let (Some(Value::String(m)), Some(Value::Number(start)), Some(Value::Number(end))) =
            (o.get("match"), o.get("start"), o.get("end"))
        else {
            return Err(err("T1010"));
        };
        out.push(MatchInfo {
            text: m.to_string(),
            start: *start as usize,
            end: *end as usize,
            groups: o.get("groups").map(|g| g.members()).unwrap_or_default(),
        });
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let next = o.get("next").cloned().unwrap_or_default();
        if !next.is_function() {
            break;
        }
        result = ev.apply(&next, vec![], ctx.input, ctx.env)?;
    }
    if !result.is_undefined() && !result.is_function() && out.is_empty() {
        return Err(err("T1010"));
    }
    Ok(out)
}

fn f_match(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let limit = match arg(args, 2) {
        Value::Number(n) if n < 0.0 => return Err(err_val("D3040", &js_number_string(n))),
        Value::Number(n) => Some(n as usize),
        _ => None,
    };
    let ms = matches(ev, &arg(args, 1), &s, limit, ctx)?;
    Ok(Value::sequence(
        ms.into_iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("match".into(), Value::string(&m.text));
                o.insert("index".into(), Value::Number(m.start as f64));
                o.insert("groups".into(), Value::array(m.groups));
                Value::object(o)
            })
            .collect(),
    ))
}

fn f_contains(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    Ok(Value::Bool(match arg(args, 1) {
        Value::Undefined => return Ok(Value::Undefined),
        Value::String(t) => s.contains(t.as_ref()),
        m => !matches(ev, &m, &s, Some(1), ctx)?.is_empty(),
    }))
}

fn substitute(replacement: &str, m: &MatchInfo) -> String {
    let r: Vec<char> = replacement.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    while pos < r.len() {
        let Some(idx) = r[pos..].iter().position(|c| *c == '$').map(|i| i + pos) else {
            break;
        };
        out.extend(&r[pos..idx]);
        pos = idx + 1;
        match r.get(pos) {
            Some('$') => {
                out.push('$');
                pos += 1;
            }
            Some('0') => {
                out.push_str(&m.text);
                pos += 1;
            }
            _ => {
                let ng = m.groups.len();
                let max_digits = if ng == 0 {
                    1
                } else {
                    (ng as f64).log10().floor() as usize + 1
                };
                let parse = |n: usize| -> Option<usize> {
                    let s: String = r[pos..(pos + n).min(r.len())]
                        .iter()
                        .take_while(|c| c.is_ascii_digit())
                        .collect();
                    s.parse().ok()
                };
                let mut index = parse(max_digits);
                if max_digits > 1 && index.is_some_and(|i| i > ng) {
                    index = parse(max_digits - 1);
                }
                match index {
                    Some(i) => {
                        if ng > 0
                            && i >= 1
                            && let Some(Value::String(g)) = m.groups.get(i - 1)
                        {
                            out.push_str(g);
                        }
                        pos += i.to_string().len();
                    }
                    None => out.push('$'),
                }
            }
        }
    }
    if pos < r.len() {
        out.extend(&r[pos..]);
    }
    out
}

fn f_replace(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let pattern = arg(args, 1);
    let replacement = arg(args, 2);
    if pattern.as_str() == Some("") {
        return Err(err("D3010"));
    }
    let limit = match arg(args, 3) {
        Value::Number(n) if n < 0.0 => return Err(err("D3011")),
        Value::Number(n) => Some(n as usize),
        _ => None,
    };
    if limit == Some(0) {
        return Ok(Value::String(s));
    }
    if let Value::String(p) = &pattern {
        let rep = match &replacement {
            Value::String(r) => r.to_string(),
            v => string_of(v, false)?,
        };
        let mut out = String::new();
        let mut rest: &str = &s;
        let mut count = 0;
        while let Some(i) = rest.find(p.as_ref()) {
            if limit.is_some_and(|l| count >= l) {
                break;
            }
            out.push_str(&rest[..i]);
            out.push_str(&rep);
            check_len(out.len())?;
            rest = &rest[i + p.len()..];
            count += 1;
        }
        out.push_str(rest);
        return Ok(Value::string(&out));
    }
    let ms = matches(ev, &pattern, &s, limit, ctx)?;
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    for m in ms {
        out.extend(&cs[pos.min(cs.len())..m.start.min(cs.len()).max(pos.min(cs.len()))]);
        check_len(out.len())?;
        match &replacement {
            Value::String(r) => out.push_str(&substitute(r, &m)),
            f => {
                let mut o = Map::new();
                o.insert("match".into(), Value::string(&m.text));
                o.insert("start".into(), Value::Number(m.start as f64));
                o.insert("end".into(), Value::Number(m.end as f64));
                o.insert("groups".into(), Value::array(m.groups.clone()));
                match ev.apply(f, vec![Value::object(o)], ctx.input, ctx.env)? {
                    Value::String(r) => out.push_str(&r),
                    v => return Err(err_val("D3012", &to_json_string(&v, false))),
                }
            }
        }
        pos = m.start + m.text.chars().count();
    }
    if pos < cs.len() {
        out.extend(&cs[pos..]);
    }
    Ok(Value::string(&out))
}

fn f_split(ev: &mut Evaluator, args: &[Value], ctx: &Ctx) -> Result<Value> {
    let Value::String(s) = arg(args, 0) else {
        return Ok(Value::Undefined);
    };
    let limit = match arg(args, 2) {
        Value::Number(n) if n < 0.0 => return Err(err("D3020")),
        Value::Number(n) => Some(n as usize),
        _ => None,
    };
    let mut out: Vec<Value> = vec![];
    match arg(args, 1) {
        Value::String(sep) => {
            let parts: Vec<String> = if sep.is_empty() {
                s.chars().map(|c| c.to_string()).collect()
            } else {
                s.split(sep.as_ref()).map(|p| p.to_string()).collect()
            };
            for p in parts {
                if limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
                out.push(Value::string(&p));
            }
        }
        m => {
            let cs: Vec<char> = s.chars().collect();
            let ms = matches(ev, &m, &s, limit, ctx)?;
            let mut start = 0;
            let count = ms.len();
            for m in ms {
                out.push(Value::string(
                    &cs[start.min(cs.len())..m.start.min(cs.len()).max(start.min(cs.len()))]
                        .iter()
                        .collect::<String>(),
                ));
                start = m.end;
            }
            if limit.is_none_or(|l| count < l) {
                out.push(Value::string(
                    &cs[start.min(cs.len())..].iter().collect::<String>(),
                ));
            }
        }
    }
    Ok(Value::array(out))
}

fn f_join(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    let strs = arg(args, 0);
    if strs.is_undefined() {
        return Ok(Value::Undefined);
    }
    let sep = arg(args, 1);
    let sep = sep.as_str().unwrap_or("");
    let parts: Vec<String> = strs
        .members()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    check_len(parts.iter().map(|p| p.len() + sep.len()).sum())?;
    Ok(Value::string(&parts.join(sep)))
}

fn f_base64encode(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => {
            Value::string(&base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
        }
        _ => Value::Undefined,
    })
}

fn f_base64decode(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim().as_bytes())
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.trim().as_bytes())
                })
                .unwrap_or_default();
            Value::string(&String::from_utf8_lossy(&bytes))
        }
        _ => Value::Undefined,
    })
}

fn encode(s: &str, keep: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || keep.contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn decode(s: &str, reserved: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = vec![];
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| err_val("D3140", s))?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| err_val("D3140", s))?;
            if b < 0x80 && reserved.contains(b as char) {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(b);
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| err_val("D3140", s))
}

const COMPONENT_KEEP: &str = "-_.!~*'()";
const URI_KEEP: &str = "-_.!~*'();/?:@&=+$,#";

fn f_encode_url_component(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => Value::string(&encode(&s, COMPONENT_KEEP)),
        _ => Value::Undefined,
    })
}

fn f_encode_url(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => Value::string(&encode(&s, URI_KEEP)),
        _ => Value::Undefined,
    })
}

fn f_decode_url_component(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => Value::string(&decode(&s, "")?),
        _ => Value::Undefined,
    })
}

fn f_decode_url(_: &mut Evaluator, args: &[Value], _: &Ctx) -> Result<Value> {
    Ok(match arg(args, 0) {
        Value::String(s) => Value::string(&decode(&s, ";/?:@&=+$,#")?),
        _ => Value::Undefined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_counts_code_points_and_negative_starts() {
        assert_eq!(substring("hello world", 3.0, Some(5.0)), "lo wo");
        assert_eq!(substring("hello world", -5.0, None), "world");
        assert_eq!(substring("hello world", -5.0, Some(2.0)), "wo");
        assert_eq!(substring("😀abc", 1.0, Some(2.0)), "ab");
    }

    #[test]
    fn json_serialisation_matches_javascript() {
        let v = Value::from_json(&serde_json::json!({"a": [1, 2.5, "x\n"], "b": {}}));
        assert_eq!(to_json_string(&v, false), r#"{"a":[1,2.5,"x\n"],"b":{}}"#);
        assert_eq!(
            to_json_string(&v, true),
            "{\n  \"a\": [\n    1,\n    2.5,\n    \"x\\n\"\n  ],\n  \"b\": {}\n}"
        );
    }

    #[test]
    fn replacement_groups() {
        let m = MatchInfo {
            text: "ab".into(),
            start: 0,
            end: 2,
            groups: vec![Value::string("a"), Value::string("b")],
        };
        assert_eq!(substitute("$2$1$$$0", &m), "ba$ab");
    }

    #[test]
    fn url_codecs() {
        assert_eq!(encode("a b/ü", COMPONENT_KEEP), "a%20b%2F%C3%BC");
        assert_eq!(decode("a%20b%2F", ";/?:@&=+$,#").unwrap(), "a b%2F");
        assert!(decode("%E0%A4%A", "").is_err());
    }
}
