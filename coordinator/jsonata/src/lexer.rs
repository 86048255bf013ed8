//! The tokenizer (jsonata.js `tokenizer`). Positions count characters, as JSONata reports
//! them; a token's position is the character offset just after it.

use crate::errors::{Error, Result, err_at, err_tok};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Op(&'static str),
    Name(String),
    Variable(String),
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Regex { pattern: String, flags: String },
    End,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const OPERATORS: &[&str] = &[
    "..", ":=", "!=", ">=", "<=", "**", "~>", "?:", "??", ".", "[", "]", "{", "}", "(", ")", ",",
    "@", "#", ";", ":", "?", "+", "-", "*", "/", "%", "|", "=", "<", ">", "^", "&", "!", "~",
];

fn is_single_op(c: char) -> bool {
    ".[]{}(),@#;:?+-*/%|=<>^&!~".contains(c)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0B}')
}

pub struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    pub fn new(src: &str) -> Lexer {
        Lexer {
            chars: src.chars().collect(),
            pos: 0,
        }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn tok(&self, tok: Tok) -> Token {
        Token { tok, pos: self.pos }
    }

    /// The next token; `infix` is true where an operator is expected, which is where a `/`
    /// means division rather than the start of a regex.
    pub fn next(&mut self, infix: bool) -> Result<Token> {
        loop {
            while self.at(self.pos).is_some_and(is_space) {
                self.pos += 1;
            }
            if self.at(self.pos) == Some('/') && self.at(self.pos + 1) == Some('*') {
                let start = self.pos;
                self.pos += 2;
                loop {
                    if self.pos >= self.chars.len() {
                        return Err(err_at("S0106", start));
                    }
                    if self.at(self.pos) == Some('*') && self.at(self.pos + 1) == Some('/') {
                        self.pos += 2;
                        break;
                    }
                    self.pos += 1;
                }
                continue;
            }
            break;
        }
        let Some(c) = self.at(self.pos) else {
            return Ok(self.tok(Tok::End));
        };
        if !infix && c == '/' {
            self.pos += 1;
            return self.scan_regex();
        }
        if let Some(n) = self.at(self.pos + 1) {
            let two: String = [c, n].iter().collect();
            if let Some(op) = OPERATORS[..9].iter().find(|o| **o == two) {
                self.pos += 2;
                return Ok(self.tok(Tok::Op(op)));
            }
        }
        if is_single_op(c) {
            self.pos += 1;
            let op = OPERATORS
                .iter()
                .find(|o| o.len() == 1 && o.starts_with(c))
                .copied()
                .unwrap_or("?");
            return Ok(self.tok(Tok::Op(op)));
        }
        if c == '"' || c == '\'' {
            return self.scan_string(c);
        }
        if c.is_ascii_digit() {
            return self.scan_number();
        }
        if c == '`' {
            self.pos += 1;
            let start = self.pos;
            while let Some(ch) = self.at(self.pos) {
                if ch == '`' {
                    let name: String = self.chars[start..self.pos].iter().collect();
                    self.pos += 1;
                    return Ok(self.tok(Tok::Name(name)));
                }
                self.pos += 1;
            }
            return Err(err_at("S0105", self.pos));
        }
        let start = self.pos;
        let mut i = self.pos;
        while let Some(ch) = self.at(i) {
            if is_space(ch) || is_single_op(ch) {
                break;
            }
            i += 1;
        }
        self.pos = i;
        if c == '$' {
            let name: String = self.chars[start + 1..i].iter().collect();
            return Ok(self.tok(Tok::Variable(name)));
        }
        let name: String = self.chars[start..i].iter().collect();
        Ok(self.tok(match name.as_str() {
            "and" => Tok::Op("and"),
            "or" => Tok::Op("or"),
            "in" => Tok::Op("in"),
            "true" => Tok::Bool(true),
            "false" => Tok::Bool(false),
            "null" => Tok::Null,
            _ => Tok::Name(name),
        }))
    }

    fn scan_string(&mut self, quote: char) -> Result<Token> {
        self.pos += 1;
        let mut s = String::new();
        let mut pending_high: Option<u32> = None;
        while let Some(c) = self.at(self.pos) {
            if c == '\\' {
                self.pos += 1;
                let e = self.at(self.pos).unwrap_or('\0');
                let mapped = match e {
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '/' => Some('/'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    _ => None,
                };
                if let Some(m) = mapped {
                    s.push(m);
                } else if e == 'u' {
                    let hex: String = self.chars.iter().skip(self.pos + 1).take(4).collect();
                    if hex.len() == 4 && hex.chars().all(|h| h.is_ascii_hexdigit()) {
                        let cp = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                        self.pos += 4;
                        if (0xD800..0xDC00).contains(&cp) {
                            pending_high = Some(cp);
                        } else if (0xDC00..0xE000).contains(&cp) {
                            if let Some(h) = pending_high.take() {
                                let full = 0x10000 + ((h - 0xD800) << 10) + (cp - 0xDC00);
                                s.push(char::from_u32(full).unwrap_or('\u{FFFD}'));
                            } else {
                                s.push('\u{FFFD}');
                            }
                        } else {
                            s.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                    } else {
                        return Err(err_at("S0104", self.pos));
                    }
                } else {
                    return Err(err_tok("S0103", self.pos, &e.to_string()));
                }
            } else if c == quote {
                self.pos += 1;
                return Ok(self.tok(Tok::Str(s)));
            } else {
                s.push(c);
            }
            self.pos += 1;
        }
        Err(err_at("S0101", self.pos))
    }

    fn scan_number(&mut self) -> Result<Token> {
        let start = self.pos;
        let mut i = self.pos;
        let digits = |i: &mut usize, l: &Lexer| {
            let s = *i;
            while l.at(*i).is_some_and(|c| c.is_ascii_digit()) {
                *i += 1;
            }
            *i > s
        };
        if self.at(i) == Some('0') {
            i += 1;
        } else {
            digits(&mut i, self);
        }
        if self.at(i) == Some('.') && self.at(i + 1).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
            digits(&mut i, self);
        }
        if matches!(self.at(i), Some('e' | 'E')) {
            let mut j = i + 1;
            if matches!(self.at(j), Some('+' | '-')) {
                j += 1;
            }
            if digits(&mut j, self) {
                i = j;
            }
        }
        let text: String = self.chars[start..i].iter().collect();
        let n: f64 = text.parse().unwrap_or(f64::NAN);
        if !n.is_finite() {
            return Err(Error::new("S0102", Some(start), &text, ""));
        }
        self.pos = i;
        Ok(self.tok(Tok::Num(n)))
    }

    fn scan_regex(&mut self) -> Result<Token> {
        let start = self.pos;
        let mut depth: i32 = 0;
        while let Some(c) = self.at(self.pos) {
            if c == '/' && depth == 0 {
                let mut backslashes = 0;
                while self.pos > backslashes && self.at(self.pos - backslashes - 1) == Some('\\') {
                    backslashes += 1;
                }
                if backslashes % 2 == 0 {
                    let pattern: String = self.chars[start..self.pos].iter().collect();
                    if pattern.is_empty() {
                        return Err(err_at("S0301", self.pos));
                    }
                    self.pos += 1;
                    let fstart = self.pos;
                    while matches!(self.at(self.pos), Some('i' | 'm')) {
                        self.pos += 1;
                    }
                    let flags: String = self.chars[fstart..self.pos].iter().collect();
                    return Ok(self.tok(Tok::Regex { pattern, flags }));
                }
            }
            let prev_escape = self.pos > 0 && self.at(self.pos - 1) == Some('\\');
            if matches!(c, '(' | '[' | '{') && !prev_escape {
                depth += 1;
            }
            if matches!(c, ')' | ']' | '}') && !prev_escape {
                depth -= 1;
            }
            self.pos += 1;
        }
        Err(err_at("S0302", self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(src: &str) -> Vec<Tok> {
        let mut l = Lexer::new(src);
        let mut out = vec![];
        let mut infix = false;
        loop {
            let t = l.next(infix).unwrap();
            if t.tok == Tok::End {
                return out;
            }
            infix = !matches!(t.tok, Tok::Op(_));
            out.push(t.tok);
        }
    }

    #[test]
    fn slash_is_division_after_an_operand_and_regex_otherwise() {
        assert_eq!(all("a / b")[1], Tok::Op("/"));
        assert!(matches!(all("/ab+/i")[0], Tok::Regex { ref flags, .. } if flags == "i"));
    }

    #[test]
    fn strings_numbers_names() {
        assert_eq!(
            all(r#""a\u0041\n" 1.5e3 `x y` $v and"#),
            vec![
                Tok::Str("aA\n".into()),
                Tok::Num(1500.0),
                Tok::Name("x y".into()),
                Tok::Variable("v".into()),
                Tok::Op("and")
            ]
        );
    }

    #[test]
    fn comments_are_skipped_and_unterminated_ones_rejected() {
        assert_eq!(all("/* c */ a"), vec![Tok::Name("a".into())]);
        assert_eq!(Lexer::new("/* x").next(false).unwrap_err().code(), "S0106");
    }
}
