//! The Jayway path dialect AWS accepts: parsing into segments, and writing them back out as
//! Jayway's canonical form (for messages) or as RFC 9535 (for `serde_json_path`).

use std::fmt::Write as _;

use super::PathSyntaxError;

/// Deepest `(`/`[` nesting allowed inside a filter expression: bounds the recursion inside
/// `serde_json_path` for hostile input.
const MAX_FILTER_DEPTH: usize = 32;

/// What `$` refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Root {
    /// `$...`: the state input.
    Input,
    /// `$$...`: the context object.
    Context,
    /// `$name...`: a workflow variable.
    Var(String),
}

/// One selector inside a segment.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Selector {
    Name(String),
    Index(i64),
    Wildcard,
    /// `[start:end:step]`, any part optional.
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `[?(...)]`: the filter expression text after `?`, kept verbatim for RFC 9535.
    Filter(String),
    /// `['a','b']` or `[0,1]`.
    Union(Vec<Selector>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Segment {
    /// `..` before the selector.
    pub(super) descendant: bool,
    pub(super) selector: Selector,
}

impl Segment {
    pub(super) fn is_definite(&self) -> bool {
        !self.descendant && matches!(self.selector, Selector::Name(_) | Selector::Index(_))
    }
}

/// `['name']` with Jayway's quoting (single quotes, no escaping), as in AWS's messages.
pub(super) fn push_bracket_name(out: &mut String, name: &str) {
    out.push_str("['");
    out.push_str(name);
    out.push_str("']");
}

pub(super) fn push_jayway_selector(out: &mut String, sel: &Selector) {
    match sel {
        Selector::Name(n) => push_bracket_name(out, n),
        Selector::Index(i) => {
            let _ = write!(out, "[{i}]");
        }
        Selector::Wildcard => out.push_str("[*]"),
        Selector::Slice(a, b, c) => {
            out.push('[');
            push_slice(out, *a, *b, *c);
            out.push(']');
        }
        Selector::Filter(f) => {
            out.push_str("[?");
            out.push_str(f);
            out.push(']');
        }
        Selector::Union(items) => {
            out.push('[');
            for (k, s) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                match s {
                    Selector::Name(n) => {
                        out.push('\'');
                        out.push_str(n);
                        out.push('\'');
                    }
                    Selector::Index(i) => {
                        let _ = write!(out, "{i}");
                    }
                    _ => {}
                }
            }
            out.push(']');
        }
    }
}

fn push_slice(out: &mut String, a: Option<i64>, b: Option<i64>, c: Option<i64>) {
    if let Some(a) = a {
        let _ = write!(out, "{a}");
    }
    out.push(':');
    if let Some(b) = b {
        let _ = write!(out, "{b}");
    }
    if let Some(c) = c {
        let _ = write!(out, ":{c}");
    }
}

/// RFC 9535 text for the segments (the root is always `$`: we pick the root value ourselves).
pub(super) fn to_rfc9535(segments: &[Segment]) -> String {
    let mut out = String::from("$");
    for seg in segments {
        if seg.descendant {
            out.push_str("..");
        }
        out.push('[');
        push_rfc_selector(&mut out, &seg.selector);
        out.push(']');
    }
    out
}

fn push_rfc_selector(out: &mut String, sel: &Selector) {
    match sel {
        Selector::Name(n) => push_rfc_string(out, n),
        Selector::Index(i) => {
            let _ = write!(out, "{i}");
        }
        Selector::Wildcard => out.push('*'),
        Selector::Slice(a, b, c) => push_slice(out, *a, *b, *c),
        Selector::Filter(f) => {
            out.push('?');
            out.push_str(f);
        }
        Selector::Union(items) => {
            for (k, s) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                push_rfc_selector(out, s);
            }
        }
    }
}

/// An RFC 9535 single-quoted string literal.
fn push_rfc_string(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// Recursive-descent-free parser for the Jayway path dialect (a flat loop: no recursion, so
/// hostile input cannot overflow the stack).
pub(super) struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Parser { text, pos: 0 }
    }

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

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn err(&self, why: &str) -> PathSyntaxError {
        PathSyntaxError(format!(
            "The value '{}' is not a valid JSONPath: {why} at position {}",
            self.text, self.pos
        ))
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.pos += 1;
        }
    }

    pub(super) fn root(&mut self) -> Result<Root, PathSyntaxError> {
        if !self.eat("$") {
            return Err(self.err("a path must start with '$'"));
        }
        if self.eat("$") {
            return Ok(Root::Context);
        }
        let name_len = self
            .rest()
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(self.rest().len(), |(i, _)| i);
        if name_len == 0 {
            return Ok(Root::Input);
        }
        let name = self.rest()[..name_len].to_string();
        self.pos += name_len;
        Ok(Root::Var(name))
    }

    /// The segments after the root. Reference paths use the same parser and reject what
    /// they do not allow afterwards, so both kinds report syntax errors alike.
    pub(super) fn segments(&mut self) -> Result<Vec<Segment>, PathSyntaxError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            let descendant = self.eat("..");
            if descendant {
                let selector = match self.peek() {
                    Some('[') => self.bracket()?,
                    Some('*') => {
                        self.pos += 1;
                        Selector::Wildcard
                    }
                    Some(_) => Selector::Name(self.dot_name()?),
                    None => return Err(self.err("a path must not end with '..'")),
                };
                out.push(Segment {
                    descendant,
                    selector,
                });
                continue;
            }
            let selector = match c {
                '.' => {
                    self.pos += 1;
                    if self.eat("*") {
                        Selector::Wildcard
                    } else {
                        Selector::Name(self.dot_name()?)
                    }
                }
                '[' => self.bracket()?,
                _ => return Err(self.err("expected '.' or '['")),
            };
            out.push(Segment {
                descendant: false,
                selector,
            });
        }
        Ok(out)
    }

    fn dot_name(&mut self) -> Result<String, PathSyntaxError> {
        let len = self
            .rest()
            .char_indices()
            .find(|&(_, c)| {
                matches!(c, '.' | '[' | ']' | '(' | ')' | '\'' | '"') || c.is_whitespace()
            })
            .map_or(self.rest().len(), |(i, _)| i);
        if len == 0 {
            return Err(self.err("expected a property name"));
        }
        let name = self.rest()[..len].to_string();
        self.pos += len;
        Ok(name)
    }

    fn bracket(&mut self) -> Result<Selector, PathSyntaxError> {
        self.pos += 1; // '['
        self.skip_spaces();
        let sel = match self.peek() {
            Some('\'' | '"') => {
                let mut names = vec![self.quoted()?];
                self.skip_spaces();
                while self.eat(",") {
                    self.skip_spaces();
                    names.push(self.quoted()?);
                    self.skip_spaces();
                }
                if names.len() == 1 {
                    Selector::Name(names.remove(0))
                } else {
                    Selector::Union(names.into_iter().map(Selector::Name).collect())
                }
            }
            Some('*') => {
                self.pos += 1;
                self.skip_spaces();
                Selector::Wildcard
            }
            Some('?') => {
                self.pos += 1;
                return self.filter();
            }
            Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => self.indices()?,
            _ => return Err(self.err("unexpected character after '['")),
        };
        if !self.eat("]") {
            return Err(self.err("expected ']'"));
        }
        Ok(sel)
    }

    /// A quoted property name. A backslash protects the next character from ending the
    /// string; only an escaped quote of the same kind is unescaped, everything else is kept
    /// verbatim. That is what AWS does (`$['a\"b']` reads the key `a\"b`).
    fn quoted(&mut self) -> Result<String, PathSyntaxError> {
        let Some(q) = self.bump() else {
            return Err(self.err("expected a quoted name"));
        };
        let mut name = String::new();
        loop {
            match self.bump() {
                None => return Err(self.err("unterminated quoted name")),
                Some('\\') => match self.bump() {
                    Some(c) if c == q => name.push(c),
                    Some(c) => {
                        name.push('\\');
                        name.push(c);
                    }
                    None => return Err(self.err("unterminated quoted name")),
                },
                Some(c) if c == q => return Ok(name),
                Some(c) => name.push(c),
            }
        }
    }

    fn int(&mut self) -> Result<Option<i64>, PathSyntaxError> {
        self.skip_spaces();
        let start = self.pos;
        self.eat("-");
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let s = &self.text[start..self.pos];
        self.skip_spaces();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| self.err("invalid array index"))
    }

    /// `[0]`, `[0,1,2]`, `[1:3]`, `[:2]`, `[1:]`, `[::2]`.
    fn indices(&mut self) -> Result<Selector, PathSyntaxError> {
        let first = self.int()?;
        if self.eat(":") {
            let end = self.int()?;
            let step = if self.eat(":") { self.int()? } else { None };
            return Ok(Selector::Slice(first, end, step));
        }
        let Some(first) = first else {
            return Err(self.err("expected an array index"));
        };
        let mut items = vec![Selector::Index(first)];
        while self.eat(",") {
            match self.int()? {
                Some(i) => items.push(Selector::Index(i)),
                None => return Err(self.err("expected an array index")),
            }
        }
        Ok(if items.len() == 1 {
            Selector::Index(first)
        } else {
            Selector::Union(items)
        })
    }

    /// `[?(expr)]` (Jayway) or `[?expr]` (RFC 9535). The expression runs to the `]` that
    /// closes the bracket, skipping quoted strings and nested brackets.
    fn filter(&mut self) -> Result<Selector, PathSyntaxError> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut regex = false;
        loop {
            let Some(c) = self.bump() else {
                return Err(self.err("unterminated filter expression"));
            };
            if let Some(q) = quote {
                if c == '\\' {
                    self.bump();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            if regex {
                if c == '\\' {
                    self.bump();
                } else if c == '/' {
                    regex = false;
                }
                continue;
            }
            match c {
                '\'' | '"' => quote = Some(c),
                '/' if self.text[start..self.pos - 1].trim_end().ends_with("=~") => regex = true,
                '(' | '[' => {
                    depth += 1;
                    if depth > MAX_FILTER_DEPTH {
                        return Err(self.err("filter expression nested too deeply"));
                    }
                }
                ')' => depth = depth.saturating_sub(1),
                ']' if depth == 0 => break,
                ']' => depth -= 1,
                _ => {}
            }
        }
        let expr = self.text[start..self.pos - 1].trim();
        if expr.is_empty() {
            return Err(self.err("empty filter expression"));
        }
        Ok(Selector::Filter(jayway_filter_to_rfc(expr)))
    }
}

/// Rewrites the Jayway-only parts of a filter expression that have an RFC 9535 equivalent:
/// `X =~ /re/` (a full match) becomes `match(X, 're')`. Everything else is passed through and
/// left to the RFC parser, which rejects what it does not know.
fn jayway_filter_to_rfc(expr: &str) -> String {
    let Some(op) = expr.find("=~") else {
        return expr.to_string();
    };
    let (lhs, rhs) = (expr[..op].trim(), expr[op + 2..].trim());
    // Only the simple, common shape `(@.x =~ /re/flags)` is rewritten.
    let (open, lhs) = match lhs.strip_prefix('(') {
        Some(l) => (true, l.trim()),
        None => (false, lhs),
    };
    let rhs = if open {
        rhs.strip_suffix(')').map(str::trim)
    } else {
        Some(rhs)
    };
    let Some(rhs) = rhs else {
        return expr.to_string();
    };
    let Some(body) = rhs.strip_prefix('/') else {
        return expr.to_string();
    };
    let Some(end) = body.rfind('/') else {
        return expr.to_string();
    };
    let (re, flags) = (&body[..end], &body[end + 1..]);
    let mut pattern = String::new();
    if flags.contains('i') {
        pattern.push_str("(?i)");
    }
    // In Jayway's /.../ literal a backslash-slash is a slash; other escapes are regex escapes.
    pattern.push_str(&re.replace("\\/", "/"));
    let mut out = String::from("match(");
    out.push_str(lhs);
    out.push_str(", ");
    push_rfc_string(&mut out, &pattern);
    out.push(')');
    out
}
