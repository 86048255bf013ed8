//! Function signatures (`<s-nn?:s>`) and argument validation (jsonata.js `signature.js`):
//! the signature becomes a regex over one symbol per argument; `-` lets the context value
//! stand in for a missing first argument, `a` accepts any value as a one-member array.

use regex::Regex;

use crate::errors::{Error, Result};
use crate::value::Value;

#[derive(Debug)]
pub struct Param {
    regex: String,
    kind: String,
    context: bool,
    context_regex: Option<Regex>,
    subtype: Option<String>,
}

#[derive(Debug)]
pub struct Signature {
    pub definition: String,
    pub params: Vec<Param>,
    regex: Regex,
}

/// The one-letter type symbol of a value (`m` for missing).
pub fn symbol(v: &Value) -> char {
    match v {
        Value::Function(_) => 'f',
        Value::String(_) => 's',
        Value::Number(_) => 'n',
        Value::Bool(_) => 'b',
        Value::Null => 'l',
        Value::Array(..) => 'a',
        Value::Object(_) => 'o',
        Value::Undefined => 'm',
    }
}

fn closing(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 1;
    let mut pos = start;
    while pos < chars.len() {
        pos += 1;
        match chars.get(pos) {
            Some(c) if *c == close => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Some(c) if *c == open => depth += 1,
            _ => {}
        }
    }
    pos
}

impl Signature {
    pub fn parse(sig: &str) -> Result<Signature> {
        let chars: Vec<char> = sig.chars().collect();
        let mut params: Vec<Param> = vec![];
        let mut pos = 1;
        let new_param = |regex: String, kind: String| Param {
            regex,
            kind,
            context: false,
            context_regex: None,
            subtype: None,
        };
        while pos < chars.len() {
            let c = chars[pos];
            if c == ':' {
                break;
            }
            match c {
                's' | 'n' | 'b' | 'l' | 'o' => params.push(new_param(format!("[{c}m]"), c.into())),
                'a' => params.push(new_param("[asnblfom]".into(), "a".into())),
                'f' => params.push(new_param("f".into(), "f".into())),
                'j' => params.push(new_param("[asnblom]".into(), "j".into())),
                'x' => params.push(new_param("[asnblfom]".into(), "x".into())),
                '-' => {
                    if let Some(p) = params.last_mut() {
                        p.context = true;
                        p.context_regex = Regex::new(&format!("^{}", p.regex)).ok();
                        p.regex.push('?');
                    }
                }
                '?' | '+' => {
                    if let Some(p) = params.last_mut() {
                        p.regex.push(c);
                    }
                }
                '(' => {
                    let end = closing(&chars, pos, '(', ')');
                    let choice: String = chars[pos + 1..end.min(chars.len())].iter().collect();
                    if choice.contains('<') {
                        return Err(Error::new("S0402", Some(pos), "", &choice));
                    }
                    params.push(new_param(format!("[{choice}m]"), format!("({choice})")));
                    pos = end;
                }
                '<' => {
                    let Some(p) = params.last_mut().filter(|p| p.kind == "a" || p.kind == "f")
                    else {
                        return Err(Error::new("S0401", Some(pos), "", ""));
                    };
                    let end = closing(&chars, pos, '<', '>');
                    p.subtype = Some(chars[pos + 1..end.min(chars.len())].iter().collect());
                    pos = end;
                }
                _ => {}
            }
            pos += 1;
        }
        let re: String = params.iter().map(|p| format!("({})", p.regex)).collect();
        let regex = Regex::new(&format!("^{re}$"))
            .map_err(|e| Error::new("S0401", None, "", &e.to_string()))?;
        Ok(Signature {
            definition: sig.to_string(),
            params,
            regex,
        })
    }

    /// The arguments as the function receives them, or T0410/T0411/T0412 (the caller adds
    /// the function's name as the error token).
    pub fn validate(&self, args: &[Value], context: &Value) -> Result<Vec<Value>> {
        let supplied: String = args.iter().map(symbol).collect();
        let Some(caps) = self.regex.captures(&supplied) else {
            return Err(self.validation_error(args, &supplied));
        };
        let mut out = Vec::with_capacity(args.len().max(self.params.len()));
        let mut arg_index = 0;
        for (i, param) in self.params.iter().enumerate() {
            let m = caps.get(i + 1).map(|m| m.as_str()).unwrap_or("");
            if m.is_empty() {
                if param.context && param.context_regex.is_some() {
                    let ctype = symbol(context).to_string();
                    if param
                        .context_regex
                        .as_ref()
                        .is_some_and(|r| r.is_match(&ctype))
                    {
                        out.push(context.clone());
                    } else {
                        return Err(Error::new("T0411", None, "", &(arg_index + 1).to_string()));
                    }
                } else {
                    out.push(args.get(arg_index).cloned().unwrap_or_default());
                    arg_index += 1;
                }
                continue;
            }
            for single in m.chars() {
                let arg = args.get(arg_index).cloned().unwrap_or_default();
                if param.kind == "a" {
                    if single == 'm' {
                        out.push(Value::Undefined);
                    } else {
                        let mut ok = true;
                        if let Some(sub) = &param.subtype {
                            if single != 'a' && m != sub {
                                ok = false;
                            } else if single == 'a'
                                && let Some(items) = arg.as_slice()
                                && let Some(first) = items.first()
                            {
                                let t = symbol(first);
                                ok = sub.starts_with(t) && items.iter().all(|v| symbol(v) == t);
                            }
                        }
                        if !ok {
                            return Err(Error::new(
                                "T0412",
                                None,
                                "",
                                &(arg_index + 1).to_string(),
                            ));
                        }
                        if single != 'a' {
                            out.push(Value::array(vec![arg]));
                        } else {
                            out.push(arg);
                        }
                    }
                } else {
                    out.push(arg);
                }
                arg_index += 1;
            }
        }
        Ok(out)
    }

    fn validation_error(&self, args: &[Value], supplied: &str) -> Error {
        let mut partial = String::from("^");
        let mut good_to = 0;
        for p in &self.params {
            partial.push('(');
            partial.push_str(&p.regex);
            partial.push(')');
            match Regex::new(&partial).ok().and_then(|r| r.find(supplied)) {
                Some(m) => good_to = m.end(),
                None => break,
            }
        }
        let _ = args;
        Error::new("T0410", None, "", &(good_to + 1).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_substitution_and_optional_args() {
        let sig = Signature::parse("<s-nn?:s>").unwrap();
        let out = sig
            .validate(&[Value::Number(1.0)], &Value::string("ctx"))
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_str(), Some("ctx"));
        let e = sig
            .validate(&[Value::Number(1.0)], &Value::Number(2.0))
            .unwrap_err();
        assert_eq!(e.code(), "T0411");
    }

    #[test]
    fn arrays_accept_singletons_and_check_member_types() {
        let sig = Signature::parse("<a<n>:n>").unwrap();
        let out = sig
            .validate(&[Value::Number(1.0)], &Value::Undefined)
            .unwrap();
        assert!(out[0].is_array());
        let bad = Value::array(vec![Value::Number(1.0), Value::string("x")]);
        assert_eq!(
            sig.validate(&[bad], &Value::Undefined).unwrap_err().code(),
            "T0412"
        );
        assert_eq!(
            sig.validate(&[Value::Number(1.0), Value::Number(2.0)], &Value::Undefined)
                .unwrap_err()
                .code(),
            "T0410"
        );
    }
}
