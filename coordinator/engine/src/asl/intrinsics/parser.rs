//! Parser for intrinsic calls: `States.Name(arg, ...)` where an argument is a single-quoted
//! string, a number, `true`/`false`/`null`, a path (`$.x`, `$$.x`, `$var`) or another call.

use serde_json::Value;

use super::{Arg, Call, Func, IntrinsicSyntaxError, format};
use crate::asl::path::Path;

/// AWS allows at most 10 nested intrinsics in one field. It also bounds our recursion.
const MAX_NESTING: usize = 10;
/// Longest call text we accept; bounds the work done on hostile input.
const MAX_LEN: usize = 256 * 1024;

pub(super) fn parse(text: &str) -> Result<Call, IntrinsicSyntaxError> {
    if text.len() > MAX_LEN {
        return Err(IntrinsicSyntaxError(format!(
            "The intrinsic function call is longer than {MAX_LEN} characters"
        )));
    }
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    let call = p.call(1)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.err("unexpected text after the closing ')'"));
    }
    Ok(call)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn err(&self, why: &str) -> IntrinsicSyntaxError {
        IntrinsicSyntaxError(format!(
            "Invalid intrinsic function call '{}': {why} at position {}",
            self.text, self.pos
        ))
    }

    fn call(&mut self, depth: usize) -> Result<Call, IntrinsicSyntaxError> {
        if depth > MAX_NESTING {
            return Err(self.err("intrinsic functions are nested more than 10 deep"));
        }
        let start = self.pos;
        if !self.rest().starts_with("States.") {
            return Err(self.err("expected 'States.'"));
        }
        self.pos += "States.".len();
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        let func = Func::from_name(name)
            .ok_or_else(|| self.err(&format!("unknown intrinsic function '{name}'")))?;
        if !self.eat('(') {
            return Err(self.err("expected '(' after the function name"));
        }
        let mut args = Vec::new();
        self.skip_ws();
        if !self.eat(')') {
            loop {
                self.skip_ws();
                args.push(self.arg(depth)?);
                self.skip_ws();
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(self.err("expected ',' or ')'"));
                }
            }
        }
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            return Err(self.err(&format!(
                "{} takes {} but was given {} argument(s)",
                func.name(),
                arity_text(min, max),
                args.len()
            )));
        }
        if func == Func::Format
            && let Some(Arg::Str { raw, .. }) = args.first()
        {
            let want = format::count_placeholders(raw);
            if want != args.len() - 1 {
                return Err(self.err(&format!(
                    "States.Format has {want} placeholder(s) but {} value argument(s)",
                    args.len() - 1
                )));
            }
        }
        Ok(Call { func, args })
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, IntrinsicSyntaxError> {
        match self.peek() {
            Some('\'') => self.string(),
            Some('$') => self.path(),
            Some('S') if self.rest().starts_with("States.") => {
                Ok(Arg::Call(Box::new(self.call(depth + 1)?)))
            }
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(_) => {
                for (word, arg) in [
                    ("true", Arg::Bool(true)),
                    ("false", Arg::Bool(false)),
                    ("null", Arg::Null),
                ] {
                    if self.rest().starts_with(word) {
                        let after = self.rest()[word.len()..].chars().next();
                        if after.is_none_or(|c| c == ',' || c == ')' || c.is_whitespace()) {
                            self.pos += word.len();
                            return Ok(arg);
                        }
                    }
                }
                Err(self.err("expected an argument"))
            }
            None => Err(self.err("unexpected end of the call")),
        }
    }

    /// `'...'` with the escapes AWS allows: `\'`, `\{`, `\}` and `\\`. Any other backslash
    /// sequence is rejected, as AWS rejects e.g. `\"` when the definition is created.
    fn string(&mut self) -> Result<Arg, IntrinsicSyntaxError> {
        self.bump(); // opening quote
        let start = self.pos;
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(self.err("unterminated string literal")),
                Some('\'') => break,
                Some('\\') => match self.bump() {
                    Some(c @ ('\'' | '{' | '}' | '\\')) => value.push(c),
                    _ => return Err(self.err("invalid escape sequence in a string literal")),
                },
                Some(c) => value.push(c),
            }
        }
        let raw = self.text[start..self.pos - 1].to_string();
        Ok(Arg::Str { value, raw })
    }

    fn number(&mut self) -> Result<Arg, IntrinsicSyntaxError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Number(n)) => Ok(Arg::Num(n)),
            _ => Err(self.err(&format!("invalid number '{text}'"))),
        }
    }

    /// A path runs to the next `,` or `)` that is not inside brackets or quotes, so
    /// `$['a,b']` and `$.a[?(@.x > 1)]` are read whole.
    fn path(&mut self) -> Result<Arg, IntrinsicSyntaxError> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            if let Some(q) = quote {
                self.bump();
                if c == '\\' {
                    self.bump();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '\'' | '"' if depth > 0 => quote = Some(c),
                '[' | '(' => depth += 1,
                ']' | ')' if depth > 0 => depth -= 1,
                ',' | ')' => break,
                _ => {}
            }
            self.bump();
        }
        let text = self.text[start..self.pos].trim_end();
        Path::parse(text)
            .map(Arg::Path)
            .map_err(|e| self.err(&format!("invalid path: {e}")))
    }
}

fn arity_text(min: usize, max: usize) -> String {
    if min == max {
        format!("{min} argument(s)")
    } else if max == usize::MAX {
        format!("at least {min} argument(s)")
    } else {
        format!("{min} to {max} arguments")
    }
}
