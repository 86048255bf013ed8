//! The Pratt parser (jsonata.js `parser`) and the tree post-processing (`processAST`) that
//! turns binary `.` chains into paths, attaches predicates, sorts, groups and context
//! bindings to steps, resolves `%` (parent) references to ancestor slots and marks tail calls.

use std::sync::Arc;

use crate::ast::{BinOp, Group, Kind, LambdaDef, Node, SortTerm, Stage};
use crate::errors::{Error, Result, err_at, err_tok};
use crate::lexer::{Lexer, Tok, Token};
use crate::signature::Signature;
use crate::value::RegexLit;

/// Deepest nesting the parser accepts; deeper input fails with U1001 instead of
/// overflowing the stack.
pub const MAX_PARSE_DEPTH: usize = 100;

#[derive(Clone)]
enum RawKind {
    Name(String),
    Variable(String),
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Regex(Arc<RegexLit>),
    Wildcard,
    Descendant,
    Parent,
    /// `and`/`or`/`in` and `?` where they are not operators.
    Operator(&'static str),
    Binary(&'static str, Box<Raw>, Box<Raw>),
    Sort(Box<Raw>, Vec<(Raw, bool)>),
    Group(Box<Raw>, Vec<(Raw, Raw)>),
    Neg(Box<Raw>),
    Array(Vec<Raw>),
    Object(Vec<(Raw, Raw)>),
    Block(Vec<Raw>),
    Call {
        procedure: Box<Raw>,
        args: Vec<Raw>,
        partial: bool,
    },
    Lambda {
        params: Vec<String>,
        signature: Option<Arc<Signature>>,
        body: Box<Raw>,
    },
    Condition(Box<Raw>, Box<Raw>, Option<Box<Raw>>),
    Coalesce(Box<Raw>, Box<Raw>),
    Transform(Box<Raw>, Box<Raw>, Option<Box<Raw>>),
}

#[derive(Clone)]
struct Raw {
    kind: RawKind,
    pos: usize,
    keep_array: bool,
}

fn raw(kind: RawKind, pos: usize) -> Raw {
    Raw {
        kind,
        pos,
        keep_array: false,
    }
}

fn lbp(tok: &Tok) -> u32 {
    match tok {
        Tok::Op(op) => match *op {
            "." => 75,
            "[" | "(" | "@" | "#" => 80,
            "{" => 70,
            "?" => 20,
            "+" | "-" | "&" => 50,
            "*" | "/" | "%" => 60,
            "=" | "<" | ">" | "^" | "!=" | "<=" | ">=" | "~>" | "?:" | "??" | "in" => 40,
            ":=" => 10,
            "and" => 30,
            "or" => 25,
            _ => 0,
        },
        _ => 0,
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Op(o) => o.to_string(),
        Tok::Name(n) => n.clone(),
        Tok::Variable(v) => format!("${v}"),
        Tok::Str(s) => s.clone(),
        Tok::Num(n) => crate::value::js_number_string(*n),
        Tok::Bool(b) => b.to_string(),
        Tok::Null => "null".into(),
        Tok::Regex { pattern, .. } => pattern.clone(),
        Tok::End => "(end)".into(),
    }
}

struct Parser {
    lexer: Lexer,
    node: Token,
    depth: usize,
}

impl Parser {
    fn id_is(&self, op: &str) -> bool {
        matches!(&self.node.tok, Tok::Op(o) if *o == op)
    }

    fn advance(&mut self, expect: Option<&str>, infix: bool) -> Result<()> {
        if let Some(id) = expect
            && !self.id_is(id)
        {
            let code = if self.node.tok == Tok::End {
                "S0203"
            } else {
                "S0202"
            };
            return Err(Error::new(
                code,
                Some(self.node.pos),
                &tok_text(&self.node.tok),
                id,
            ));
        }
        self.node = self.lexer.next(infix)?;
        if let Tok::Op(op) = self.node.tok
            && matches!(op, "!" | "~")
        {
            // `!` and `~` exist only as parts of `!=` and `~>`.
            return Err(err_tok("S0204", self.node.pos, op));
        }
        Ok(())
    }

    fn expression(&mut self, rbp: u32) -> Result<Raw> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return Err(Error::Limit {
                code: "U1001",
                message: format!("Expression nesting exceeds {MAX_PARSE_DEPTH} levels"),
            });
        }
        let t = self.node.clone();
        self.advance(None, true)?;
        let mut left = self.nud(t)?;
        while rbp < lbp(&self.node.tok) {
            let t = self.node.clone();
            self.advance(None, false)?;
            left = self.led(t, left)?;
        }
        self.depth -= 1;
        Ok(left)
    }

    fn nud(&mut self, t: Token) -> Result<Raw> {
        let pos = t.pos;
        Ok(match t.tok {
            Tok::Name(n) => raw(RawKind::Name(n), pos),
            Tok::Variable(v) => raw(RawKind::Variable(v), pos),
            Tok::Str(s) => raw(RawKind::Str(s), pos),
            Tok::Num(n) => raw(RawKind::Num(n), pos),
            Tok::Bool(b) => raw(RawKind::Bool(b), pos),
            Tok::Null => raw(RawKind::Null, pos),
            Tok::Regex { pattern, flags } => {
                raw(RawKind::Regex(compile_regex(&pattern, &flags, pos)?), pos)
            }
            Tok::End => return Err(err_tok("S0207", pos, "(end)")),
            Tok::Op(op) => return self.nud_op(op, pos),
        })
    }

    // The prefix operators, each in its own function: these recurse, and small frames
    // let the nesting limit hold on small (debug-build) stacks.
    #[inline(never)]
    fn nud_op(&mut self, op: &'static str, pos: usize) -> Result<Raw> {
        Ok(match op {
            "and" | "or" | "in" => raw(RawKind::Operator(op), pos),
            "-" => {
                let e = self.expression(70)?;
                raw(RawKind::Neg(Box::new(e)), pos)
            }
            "*" => raw(RawKind::Wildcard, pos),
            "**" => raw(RawKind::Descendant, pos),
            "%" => raw(RawKind::Parent, pos),
            "(" => self.block(pos)?,
            "[" => self.array(pos)?,
            "{" => {
                let pairs = self.object_pairs()?;
                raw(RawKind::Object(pairs), pos)
            }
            "|" => self.transform(pos)?,
            _ => return Err(err_tok("S0211", pos, op)),
        })
    }

    #[inline(never)]
    fn block(&mut self, pos: usize) -> Result<Raw> {
        let mut exprs = vec![];
        while !self.id_is(")") {
            exprs.push(self.expression(0)?);
            if !self.id_is(";") {
                break;
            }
            self.advance(Some(";"), false)?;
        }
        self.advance(Some(")"), true)?;
        Ok(raw(RawKind::Block(exprs), pos))
    }

    #[inline(never)]
    fn array(&mut self, pos: usize) -> Result<Raw> {
        let mut items = vec![];
        if !self.id_is("]") {
            loop {
                let mut item = self.expression(0)?;
                if self.id_is("..") {
                    let rpos = self.node.pos;
                    self.advance(Some(".."), false)?;
                    let rhs = self.expression(0)?;
                    item = raw(RawKind::Binary("..", Box::new(item), Box::new(rhs)), rpos);
                }
                items.push(item);
                if !self.id_is(",") {
                    break;
                }
                self.advance(Some(","), false)?;
            }
        }
        self.advance(Some("]"), true)?;
        Ok(raw(RawKind::Array(items), pos))
    }

    #[inline(never)]
    fn transform(&mut self, pos: usize) -> Result<Raw> {
        let pattern = self.expression(0)?;
        self.advance(Some("|"), false)?;
        let update = self.expression(0)?;
        let mut delete = None;
        if self.id_is(",") {
            self.advance(Some(","), false)?;
            delete = Some(Box::new(self.expression(0)?));
        }
        self.advance(Some("|"), true)?;
        Ok(raw(
            RawKind::Transform(Box::new(pattern), Box::new(update), delete),
            pos,
        ))
    }

    fn object_pairs(&mut self) -> Result<Vec<(Raw, Raw)>> {
        let mut pairs = vec![];
        if !self.id_is("}") {
            loop {
                let k = self.expression(0)?;
                self.advance(Some(":"), false)?;
                let v = self.expression(0)?;
                pairs.push((k, v));
                if !self.id_is(",") {
                    break;
                }
                self.advance(Some(","), false)?;
            }
        }
        self.advance(Some("}"), true)?;
        Ok(pairs)
    }

    fn led(&mut self, t: Token, left: Raw) -> Result<Raw> {
        let pos = t.pos;
        let Tok::Op(op) = t.tok else {
            return Err(err_tok("S0201", pos, &tok_text(&t.tok)));
        };
        let b = |l: Raw, r: Raw| raw(RawKind::Binary(op, Box::new(l), Box::new(r)), pos);
        Ok(match op {
            "." | "+" | "-" | "*" | "/" | "%" | "=" | "<" | ">" | "!=" | "<=" | ">=" | "&"
            | "and" | "or" | "in" | "~>" => {
                let rhs = self.expression(lbp(&Tok::Op(op)))?;
                b(left, rhs)
            }
            "??" => {
                let rhs = self.expression(40)?;
                raw(RawKind::Coalesce(Box::new(left), Box::new(rhs)), pos)
            }
            "?:" => {
                let rhs = self.expression(40)?;
                raw(
                    RawKind::Condition(Box::new(left.clone()), Box::new(left), Some(Box::new(rhs))),
                    pos,
                )
            }
            "?" => {
                let then = self.expression(0)?;
                let mut els = None;
                if self.id_is(":") {
                    self.advance(Some(":"), false)?;
                    els = Some(Box::new(self.expression(0)?));
                }
                raw(RawKind::Condition(Box::new(left), Box::new(then), els), pos)
            }
            "(" => self.call(left, pos)?,
            "[" => {
                if self.id_is("]") {
                    let mut left = left;
                    {
                        let mut step = &mut left;
                        while let RawKind::Binary("[", l, _) = &mut step.kind {
                            step = l;
                        }
                        step.keep_array = true;
                    }
                    self.advance(Some("]"), true)?;
                    left
                } else {
                    let rhs = self.expression(0)?;
                    self.advance(Some("]"), true)?;
                    b(left, rhs)
                }
            }
            "^" => {
                self.advance(Some("("), false)?;
                let mut terms = vec![];
                loop {
                    let mut descending = false;
                    if self.id_is("<") {
                        self.advance(Some("<"), false)?;
                    } else if self.id_is(">") {
                        descending = true;
                        self.advance(Some(">"), false)?;
                    }
                    terms.push((self.expression(0)?, descending));
                    if !self.id_is(",") {
                        break;
                    }
                    self.advance(Some(","), false)?;
                }
                self.advance(Some(")"), true)?;
                raw(RawKind::Sort(Box::new(left), terms), pos)
            }
            "{" => {
                let pairs = self.object_pairs()?;
                raw(RawKind::Group(Box::new(left), pairs), pos)
            }
            ":=" => {
                if !matches!(left.kind, RawKind::Variable(_)) {
                    return Err(err_tok("S0212", left.pos, ""));
                }
                let rhs = self.expression(9)?;
                b(left, rhs)
            }
            "@" | "#" => {
                let rhs = self.expression(80)?;
                if !matches!(rhs.kind, RawKind::Variable(_)) {
                    return Err(err_tok("S0214", rhs.pos, op));
                }
                b(left, rhs)
            }
            _ => return Err(err_tok("S0201", pos, op)),
        })
    }

    fn call(&mut self, left: Raw, pos: usize) -> Result<Raw> {
        let mut args = vec![];
        let mut partial = false;
        if !self.id_is(")") {
            loop {
                if self.id_is("?") {
                    partial = true;
                    args.push(raw(RawKind::Operator("?"), self.node.pos));
                    self.advance(Some("?"), true)?;
                } else {
                    args.push(self.expression(0)?);
                }
                if !self.id_is(",") {
                    break;
                }
                self.advance(Some(","), false)?;
            }
        }
        self.advance(Some(")"), true)?;
        if let RawKind::Name(n) = &left.kind
            && (n == "function" || n == "\u{03BB}")
        {
            let mut params = vec![];
            for (i, a) in args.iter().enumerate() {
                match &a.kind {
                    RawKind::Variable(v) => params.push(v.clone()),
                    _ => {
                        return Err(Error::new("S0208", Some(a.pos), "", &(i + 1).to_string()));
                    }
                }
            }
            let mut signature = None;
            if self.id_is("<") {
                let mut depth = 1;
                let mut sig = String::from("<");
                while depth > 0 && !self.id_is("{") && self.node.tok != Tok::End {
                    self.advance(None, false)?;
                    if self.id_is(">") {
                        depth -= 1;
                    } else if self.id_is("<") {
                        depth += 1;
                    }
                    sig.push_str(&tok_text(&self.node.tok));
                }
                self.advance(Some(">"), false)?;
                signature = Some(Arc::new(Signature::parse(&sig)?));
            }
            self.advance(Some("{"), false)?;
            let body = self.expression(0)?;
            self.advance(Some("}"), true)?;
            return Ok(raw(
                RawKind::Lambda {
                    params,
                    signature,
                    body: Box::new(body),
                },
                pos,
            ));
        }
        Ok(raw(
            RawKind::Call {
                procedure: Box::new(left),
                args,
                partial,
            },
            pos,
        ))
    }
}

/// Translates a JavaScript regex to the `regex` crate's syntax (they agree on nearly
/// everything JSONata users write).
fn compile_regex(pattern: &str, flags: &str, pos: usize) -> Result<Arc<RegexLit>> {
    let mut prefix = String::new();
    if flags.contains('i') || flags.contains('m') {
        prefix.push_str("(?");
        if flags.contains('i') {
            prefix.push('i');
        }
        if flags.contains('m') {
            prefix.push('m');
        }
        prefix.push(')');
    }
    let translated = pattern
        .replace("(?<", "(?P<")
        .replace("(?P<=", "(?<=")
        .replace("(?P<!", "(?<!");
    let regex = regex::Regex::new(&format!("{prefix}{translated}"))
        .map_err(|e| Error::new("S0303", Some(pos), "", &e.to_string()))?;
    Ok(Arc::new(RegexLit {
        source: pattern.to_string(),
        regex,
    }))
}

struct Slot {
    label: usize,
    level: i32,
}

/// The post-processor's state: ancestor slots created by `%` references.
struct Processor {
    slots: Vec<Slot>,
}

/// A parsed expression, ready to evaluate any number of times.
pub struct Parsed {
    pub root: Node,
    /// Binding label of each ancestor slot (`%` references and the steps they resolve to).
    pub labels: Vec<Arc<str>>,
}

pub fn parse(src: &str) -> Result<Parsed> {
    let mut lexer = Lexer::new(src);
    let first = lexer.next(false)?;
    let mut p = Parser {
        lexer,
        node: first,
        depth: 0,
    };
    let expr = p.expression(0)?;
    if p.node.tok != Tok::End {
        return Err(err_tok("S0201", p.node.pos, &tok_text(&p.node.tok)));
    }
    let mut proc = Processor { slots: vec![] };
    let root = proc.process(expr)?;
    if matches!(root.kind, Kind::Parent(_)) || root.seeking_parent.is_some() {
        return Err(err_tok("S0217", root.pos, root.type_name()));
    }
    let labels = proc
        .slots
        .iter()
        .map(|s| Arc::from(format!("!{}", s.label)))
        .collect();
    Ok(Parsed { root, labels })
}

fn push_ancestry(result: &mut Node, value: &Node) {
    let mut slots = value.seeking_parent.clone();
    if let Kind::Parent(slot) = value.kind {
        slots.get_or_insert_with(Vec::new).push(slot);
    }
    if let Some(slots) = slots {
        result
            .seeking_parent
            .get_or_insert_with(Vec::new)
            .extend(slots);
    }
}

impl Processor {
    fn seek_parent(&mut self, node: &mut Node, slot: usize) -> Result<usize> {
        match &mut node.kind {
            Kind::Name(_) | Kind::Wildcard => {
                self.slots[slot].level -= 1;
                if self.slots[slot].level == 0 {
                    if let Some(existing) = node.ancestor_slot {
                        self.slots[slot].label = self.slots[existing].label;
                    }
                    node.ancestor_slot = Some(slot);
                    node.tuple = true;
                }
            }
            Kind::Parent(_) => self.slots[slot].level += 1,
            Kind::Block(exprs) => {
                if let Some(last) = exprs.last_mut() {
                    node.tuple = true;
                    return self.seek_parent(last, slot);
                }
            }
            Kind::Path(steps) => {
                node.tuple = true;
                let mut index = steps.len() as isize - 1;
                let s = self.seek_parent(&mut steps[index as usize], slot)?;
                index -= 1;
                while self.slots[s].level > 0 && index >= 0 {
                    self.seek_parent(&mut steps[index as usize], s)?;
                    index -= 1;
                }
                return Ok(s);
            }
            _ => return Err(err_tok("S0217", node.pos, node.type_name())),
        }
        Ok(slot)
    }

    fn resolve_ancestry(&mut self, path: &mut Node) -> Result<()> {
        let Kind::Path(steps) = &mut path.kind else {
            return Ok(());
        };
        let last = steps.len() - 1;
        let mut slots = steps[last].seeking_parent.clone().unwrap_or_default();
        if let Kind::Parent(s) = steps[last].kind {
            slots.push(s);
        }
        let mut seeking = vec![];
        for slot in slots {
            let mut index = steps.len() as isize - 2;
            while self.slots[slot].level > 0 {
                if index < 0 {
                    seeking.push(slot);
                    break;
                }
                let mut i = index as usize;
                index -= 1;
                while index >= 0
                    && steps[i].focus.is_some()
                    && steps[index as usize].focus.is_some()
                {
                    i = index as usize;
                    index -= 1;
                }
                self.seek_parent(&mut steps[i], slot)?;
            }
        }
        if !seeking.is_empty() {
            path.seeking_parent
                .get_or_insert_with(Vec::new)
                .extend(seeking);
        }
        Ok(())
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_dot(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Binary(".", lhs, rhs) = kind else {
            unreachable!()
        };
        Ok({
            let lstep = self.process(*lhs)?;
            let mut result = if matches!(lstep.kind, Kind::Path(_)) {
                lstep
            } else {
                let parent_slot = if let Kind::Parent(s) = lstep.kind {
                    Some(s)
                } else {
                    None
                };
                let mut p = Node::new(Kind::Path(vec![lstep]), pos);
                if let Some(s) = parent_slot {
                    p.seeking_parent = Some(vec![s]);
                }
                p
            };
            let rest = self.process(*rhs)?;
            let Kind::Path(steps) = &mut result.kind else {
                unreachable!()
            };
            match rest.kind {
                Kind::Path(rsteps) => steps.extend(rsteps),
                _ => {
                    let mut rest = rest;
                    if let Some(p) = rest.predicate.take() {
                        rest.stages = Some(p);
                    }
                    steps.push(rest);
                }
            }
            for step in steps.iter_mut() {
                match &step.kind {
                    Kind::Num(n) => {
                        return Err(Error::new(
                            "S0213",
                            Some(step.pos),
                            "",
                            &crate::value::js_number_string(*n),
                        ));
                    }
                    Kind::Bool(b) => {
                        return Err(Error::new("S0213", Some(step.pos), "", &b.to_string()));
                    }
                    Kind::Null => return Err(Error::new("S0213", Some(step.pos), "", "null")),
                    Kind::Str(s) => step.kind = Kind::Name(s.clone()),
                    _ => {}
                }
            }
            if steps.iter().any(|s| s.keep_array) {
                result.keep_singleton_array = true;
            }
            let Kind::Path(steps) = &mut result.kind else {
                unreachable!()
            };
            if steps[0].is_array_cons() {
                steps[0].cons_array = true;
            }
            let last = steps.len() - 1;
            if steps[last].is_array_cons() {
                steps[last].cons_array = true;
            }
            self.resolve_ancestry(&mut result)?;
            result
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_predicate(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Binary("[", lhs, rhs) = kind else {
            unreachable!()
        };
        Ok({
            let mut result = self.process(*lhs)?;
            let is_path = matches!(result.kind, Kind::Path(_));
            let mut predicate = self.process(*rhs)?;
            {
                let step: &mut Node = match &mut result.kind {
                    Kind::Path(steps) => steps.last_mut().unwrap(),
                    _ => &mut result,
                };
                if step.group.is_some() {
                    return Err(err_at("S0209", pos));
                }
                if let Some(seeking) = predicate.seeking_parent.take() {
                    let mut remaining = vec![];
                    for slot in seeking {
                        if self.slots[slot].level == 1 {
                            self.seek_parent(step, slot)?;
                        } else {
                            self.slots[slot].level -= 1;
                        }
                        remaining.push(slot);
                    }
                    predicate.seeking_parent = Some(remaining);
                    push_ancestry(step, &predicate);
                }
                let list = if is_path {
                    &mut step.stages
                } else {
                    &mut step.predicate
                };
                list.get_or_insert_with(Vec::new)
                    .push(Stage::Filter(predicate));
            }
            result
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_group(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Group(lhs, pairs) = kind else {
            unreachable!()
        };
        Ok({
            let mut result = self.process(*lhs)?;
            if result.group.is_some() {
                return Err(err_at("S0210", pos));
            }
            let mut out = vec![];
            for (k, v) in pairs {
                out.push((self.process(k)?, self.process(v)?));
            }
            result.group = Some(Arc::new(Group { pairs: out, pos }));
            result
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_sort(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Sort(lhs, terms) = kind else {
            unreachable!()
        };
        Ok({
            let mut result = self.process(*lhs)?;
            if !matches!(result.kind, Kind::Path(_)) {
                result = Node::new(Kind::Path(vec![result]), pos);
            }
            let mut sort = Node::new(Kind::Sort(vec![]), pos);
            let mut out = vec![];
            for (e, descending) in terms {
                let e = self.process(e)?;
                push_ancestry(&mut sort, &e);
                out.push(SortTerm {
                    expr: e,
                    descending,
                });
            }
            sort.kind = Kind::Sort(out);
            if let Kind::Path(steps) = &mut result.kind {
                steps.push(sort);
            }
            self.resolve_ancestry(&mut result)?;
            result
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_bind(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Binary(":=", lhs, rhs) = kind else {
            unreachable!()
        };
        Ok({
            let RawKind::Variable(name) = lhs.kind else {
                return Err(err_at("S0212", pos));
            };
            let rhs = self.process(*rhs)?;
            let mut result = Node::new(
                Kind::Bind(Arc::from(name), Box::new(Node::new(Kind::Null, pos))),
                pos,
            );
            push_ancestry(&mut result, &rhs);
            result.kind = match result.kind {
                Kind::Bind(n, _) => Kind::Bind(n, Box::new(rhs)),
                k => k,
            };
            result
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_focus(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Binary("@", lhs, rhs) = kind else {
            unreachable!()
        };
        Ok({
            let RawKind::Variable(name) = rhs.kind else {
                return Err(err_tok("S0214", pos, "@"));
            };
            let mut result = self.process(*lhs)?;
            let step: &mut Node = match &mut result.kind {
                Kind::Path(steps) => steps.last_mut().unwrap(),
                _ => &mut result,
            };
            if step.stages.is_some() || step.predicate.is_some() {
                return Err(err_at("S0215", pos));
            }
            if matches!(step.kind, Kind::Sort(_)) {
                return Err(err_at("S0216", pos));
            }
            if keep_array {
                step.keep_array = true;
            }
            step.focus = Some(Arc::from(name));
            step.tuple = true;
            result
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_index_binding(
        &mut self,
        kind: RawKind,
        pos: usize,
        keep_array: bool,
    ) -> Result<Node> {
        let RawKind::Binary("#", lhs, rhs) = kind else {
            unreachable!()
        };
        Ok({
            let RawKind::Variable(name) = rhs.kind else {
                return Err(err_tok("S0214", pos, "#"));
            };
            let mut result = self.process(*lhs)?;
            if !matches!(result.kind, Kind::Path(_)) {
                let mut step = result;
                if let Some(p) = step.predicate.take() {
                    step.stages = Some(p);
                }
                result = Node::new(Kind::Path(vec![step]), pos);
            }
            let Kind::Path(steps) = &mut result.kind else {
                unreachable!()
            };
            let step = steps.last_mut().unwrap();
            let name: Arc<str> = Arc::from(name);
            match &mut step.stages {
                None => step.index = Some(name),
                Some(stages) => stages.push(Stage::Index(name)),
            }
            step.tuple = true;
            result
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_apply(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Binary("~>", lhs, rhs) = kind else {
            unreachable!()
        };
        Ok({
            let lhs = self.process(*lhs)?;
            let rhs = self.process(*rhs)?;
            let keep = lhs.keep_array || rhs.keep_array;
            let mut n = Node::new(Kind::Apply(Box::new(lhs), Box::new(rhs)), pos);
            n.keep_array = keep;
            n
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_binary(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Binary(op, lhs, rhs) = kind else {
            unreachable!()
        };
        Ok({
            let lhs = self.process(*lhs)?;
            let rhs = self.process(*rhs)?;
            let binop = BinOp::from_symbol(op).ok_or_else(|| err_tok("S0201", pos, op))?;
            let mut n = Node::new(Kind::Null, pos);
            push_ancestry(&mut n, &lhs);
            push_ancestry(&mut n, &rhs);
            n.kind = Kind::Binary(binop, Box::new(lhs), Box::new(rhs));
            n
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_array_constructor(
        &mut self,
        kind: RawKind,
        pos: usize,
        keep_array: bool,
    ) -> Result<Node> {
        let RawKind::Array(items) = kind else {
            unreachable!()
        };
        Ok({
            let mut n = Node::new(Kind::Null, pos);
            let mut out = vec![];
            for item in items {
                let v = self.process(item)?;
                push_ancestry(&mut n, &v);
                out.push(v);
            }
            n.kind = Kind::ArrayCons(out);
            n
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_object_constructor(
        &mut self,
        kind: RawKind,
        pos: usize,
        keep_array: bool,
    ) -> Result<Node> {
        let RawKind::Object(pairs) = kind else {
            unreachable!()
        };
        Ok({
            let mut n = Node::new(Kind::Null, pos);
            let mut out = vec![];
            for (k, v) in pairs {
                let k = self.process(k)?;
                push_ancestry(&mut n, &k);
                let v = self.process(v)?;
                push_ancestry(&mut n, &v);
                out.push((k, v));
            }
            n.kind = Kind::ObjectCons(out);
            n
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_negation(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Neg(e) = kind else {
            unreachable!()
        };
        Ok({
            let e = self.process(*e)?;
            if let Kind::Num(v) = e.kind {
                let mut e = e;
                e.kind = Kind::Num(-v);
                e
            } else {
                let mut n = Node::new(Kind::Null, pos);
                push_ancestry(&mut n, &e);
                n.kind = Kind::Neg(Box::new(e));
                n
            }
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_call(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Call {
            procedure,
            args,
            partial,
        } = kind
        else {
            unreachable!()
        };
        Ok({
            let mut n = Node::new(Kind::Null, pos);
            let mut out = vec![];
            for a in args {
                let a = self.process(a)?;
                push_ancestry(&mut n, &a);
                out.push(a);
            }
            let procedure = Box::new(self.process(*procedure)?);
            n.kind = if partial {
                Kind::Partial {
                    procedure,
                    args: out,
                }
            } else {
                Kind::Call {
                    procedure,
                    args: out,
                }
            };
            n
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_lambda(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Lambda {
            params,
            signature,
            body,
        } = kind
        else {
            unreachable!()
        };
        Ok({
            let body = self.process(*body)?;
            let body = tail_call_optimize(body);
            Node::new(
                Kind::Lambda(Arc::new(LambdaDef {
                    params: params.into_iter().map(Arc::from).collect(),
                    signature,
                    body,
                    thunk: false,
                })),
                pos,
            )
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_condition(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Condition(c, t, e) = kind else {
            unreachable!()
        };
        Ok({
            let mut n = Node::new(Kind::Null, pos);
            let c = self.process(*c)?;
            push_ancestry(&mut n, &c);
            let t = self.process(*t)?;
            push_ancestry(&mut n, &t);
            let e = match e {
                Some(e) => {
                    let e = self.process(*e)?;
                    push_ancestry(&mut n, &e);
                    Some(Box::new(e))
                }
                None => None,
            };
            n.kind = Kind::Condition(Box::new(c), Box::new(t), e);
            n
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_coalesce(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Coalesce(lhs, rhs) = kind else {
            unreachable!()
        };
        // `a ?? b` is `$exists(a) ? a : b`.
        let exists = raw(
            RawKind::Call {
                procedure: Box::new(raw(RawKind::Variable("exists".into()), pos)),
                args: vec![(*lhs).clone()],
                partial: false,
            },
            pos,
        );
        self.process(Raw {
            kind: RawKind::Condition(Box::new(exists), lhs, Some(rhs)),
            pos,
            keep_array,
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_transform(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Transform(p, u, d) = kind else {
            unreachable!()
        };
        Ok({
            let pattern = self.process(*p)?;
            let update = self.process(*u)?;
            let delete = match d {
                Some(d) => Some(self.process(*d)?),
                None => None,
            };
            Node::new(
                Kind::Transform(Arc::new(crate::ast::TransformDef {
                    pattern,
                    update,
                    delete,
                })),
                pos,
            )
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_block(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Block(exprs) = kind else {
            unreachable!()
        };
        Ok({
            let mut n = Node::new(Kind::Null, pos);
            let mut out = vec![];
            for e in exprs {
                let part = self.process(e)?;
                push_ancestry(&mut n, &part);
                let cons =
                    part.cons_array || matches!(&part.kind, Kind::Path(s) if s[0].cons_array);
                if cons {
                    n.cons_array = true;
                }
                out.push(part);
            }
            n.kind = Kind::Block(out);
            n
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_name(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Name(name) = kind else {
            unreachable!()
        };
        Ok({
            let mut step = Node::new(Kind::Name(Arc::from(name)), pos);
            step.keep_array = keep_array;
            let mut p = Node::new(Kind::Path(vec![step]), pos);
            p.keep_singleton_array = keep_array;
            p
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_operator(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Operator(op) = kind else {
            unreachable!()
        };
        Ok({
            if op == "?" {
                Node::new(Kind::Placeholder, pos)
            } else {
                return self.process(Raw {
                    kind: RawKind::Name(op.to_string()),
                    pos,
                    keep_array,
                });
            }
        })
    }

    #[inline(never)]
    #[allow(unused_variables)]
    fn process_parent(&mut self, kind: RawKind, pos: usize, keep_array: bool) -> Result<Node> {
        let RawKind::Parent = kind else {
            unreachable!()
        };
        Ok({
            let slot = self.slots.len();
            self.slots.push(Slot {
                label: slot,
                level: 1,
            });
            Node::new(Kind::Parent(slot), pos)
        })
    }

    fn process(&mut self, expr: Raw) -> Result<Node> {
        let pos = expr.pos;
        let keep_array = expr.keep_array;
        // Each kind is processed in its own function: this one recurses for every nesting
        // level, so its stack frame must stay small.
        let kind = expr.kind;
        let mut result = match &kind {
            RawKind::Binary(".", ..) => self.process_dot(kind, pos, keep_array)?,
            RawKind::Binary("[", ..) => self.process_predicate(kind, pos, keep_array)?,
            RawKind::Group(..) => self.process_group(kind, pos, keep_array)?,
            RawKind::Sort(..) => self.process_sort(kind, pos, keep_array)?,
            RawKind::Binary(":=", ..) => self.process_bind(kind, pos, keep_array)?,
            RawKind::Binary("@", ..) => self.process_focus(kind, pos, keep_array)?,
            RawKind::Binary("#", ..) => self.process_index_binding(kind, pos, keep_array)?,
            RawKind::Binary("~>", ..) => self.process_apply(kind, pos, keep_array)?,
            RawKind::Binary(..) => self.process_binary(kind, pos, keep_array)?,
            RawKind::Array(..) => self.process_array_constructor(kind, pos, keep_array)?,
            RawKind::Object(..) => self.process_object_constructor(kind, pos, keep_array)?,
            RawKind::Neg(..) => self.process_negation(kind, pos, keep_array)?,
            RawKind::Call { .. } => self.process_call(kind, pos, keep_array)?,
            RawKind::Lambda { .. } => self.process_lambda(kind, pos, keep_array)?,
            RawKind::Condition(..) => self.process_condition(kind, pos, keep_array)?,
            RawKind::Coalesce(..) => self.process_coalesce(kind, pos, keep_array)?,
            RawKind::Transform(..) => self.process_transform(kind, pos, keep_array)?,
            RawKind::Block(..) => self.process_block(kind, pos, keep_array)?,
            RawKind::Name(..) => self.process_name(kind, pos, keep_array)?,
            RawKind::Operator(..) => self.process_operator(kind, pos, keep_array)?,
            RawKind::Parent => self.process_parent(kind, pos, keep_array)?,
            RawKind::Variable(v) => Node::new(Kind::Variable(Arc::from(v.as_str())), pos),
            RawKind::Str(s) => Node::new(Kind::Str(Arc::from(s.as_str())), pos),
            RawKind::Num(n) => Node::new(Kind::Num(*n), pos),
            RawKind::Bool(b) => Node::new(Kind::Bool(*b), pos),
            RawKind::Null => Node::new(Kind::Null, pos),
            RawKind::Regex(r) => Node::new(Kind::Regex(r.clone()), pos),
            RawKind::Wildcard => Node::new(Kind::Wildcard, pos),
            RawKind::Descendant => Node::new(Kind::Descendant, pos),
        };
        if keep_array {
            result.keep_array = true;
        }
        Ok(result)
    }
}

fn tail_call_optimize(expr: Node) -> Node {
    match expr.kind {
        Kind::Call { .. } if expr.predicate.is_none() => {
            let pos = expr.pos;
            Node::new(
                Kind::Lambda(Arc::new(LambdaDef {
                    params: vec![],
                    signature: None,
                    body: expr,
                    thunk: true,
                })),
                pos,
            )
        }
        Kind::Condition(c, t, e) => {
            let mut n = Node {
                kind: Kind::Null,
                ..expr
            };
            n.kind = Kind::Condition(
                c,
                Box::new(tail_call_optimize(*t)),
                e.map(|e| Box::new(tail_call_optimize(*e))),
            );
            n
        }
        Kind::Block(mut exprs) => {
            if let Some(last) = exprs.pop() {
                exprs.push(tail_call_optimize(last));
            }
            Node {
                kind: Kind::Block(exprs),
                ..expr
            }
        }
        _ => expr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(src: &str) -> String {
        match parse(src) {
            Ok(_) => "ok".into(),
            Err(e) => e.code().to_string(),
        }
    }

    #[test]
    fn paths_flatten_into_steps() {
        let p = parse("a.b.c").unwrap();
        match &p.root.kind {
            Kind::Path(steps) => assert_eq!(steps.len(), 3),
            _ => panic!("not a path"),
        }
    }

    #[test]
    fn syntax_errors_carry_codes() {
        assert_eq!(code("a.1"), "S0213");
        assert_eq!(code("(1"), "S0203");
        assert_eq!(code("1 ]"), "S0201");
        assert_eq!(code("$x := "), "S0207");
        assert_eq!(code("1 := 2"), "S0212");
        assert_eq!(code("function(a){1}"), "S0208");
        assert_eq!(code("%"), "S0217");
        assert_eq!(code("a{'x':1}{'y':2}"), "S0210");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(code(&src), "U1001");
        let src = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(code(&src), "U1001");
    }

    #[test]
    fn parent_references_resolve_to_steps() {
        assert_eq!(code("a.b.%.c"), "ok");
        assert_eq!(code("a.(%.b)"), "ok");
    }
}
