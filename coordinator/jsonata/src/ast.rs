//! The processed syntax tree the evaluator walks (jsonata.js's output of `processAST`):
//! paths as lists of steps, predicates and stages on steps, focus/index/ancestor bindings
//! marking tuple-stream steps. Every node keeps its character position.

use std::sync::Arc;

use crate::signature::Signature;
use crate::value::RegexLit;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Concat,
    And,
    Or,
    In,
    Range,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Concat => "&",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::In => "in",
            BinOp::Range => "..",
        }
    }

    pub fn from_symbol(s: &str) -> Option<BinOp> {
        Some(match s {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "=" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            "&" => BinOp::Concat,
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "in" => BinOp::In,
            ".." => BinOp::Range,
            _ => return None,
        })
    }
}

#[derive(Clone)]
pub enum Stage {
    Filter(Node),
    Index(Arc<str>),
}

#[derive(Clone)]
pub struct SortTerm {
    pub expr: Node,
    pub descending: bool,
}

pub struct LambdaDef {
    pub params: Vec<Arc<str>>,
    pub signature: Option<Arc<Signature>>,
    pub body: Node,
    /// A tail call wrapped by the optimiser: evaluating it yields a thunk the caller's
    /// trampoline runs, so tail recursion does not grow the stack.
    pub thunk: bool,
}

#[derive(Clone)]
pub enum Kind {
    Path(Vec<Node>),
    Name(Arc<str>),
    Variable(Arc<str>),
    Str(Arc<str>),
    Num(f64),
    Bool(bool),
    Null,
    Regex(Arc<RegexLit>),
    Wildcard,
    Descendant,
    /// `%`: the slot id resolved to a binding label by the parser.
    Parent(usize),
    Binary(BinOp, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    ArrayCons(Vec<Node>),
    ObjectCons(Vec<(Node, Node)>),
    Block(Vec<Node>),
    Condition(Box<Node>, Box<Node>, Option<Box<Node>>),
    Call {
        procedure: Box<Node>,
        args: Vec<Node>,
    },
    Partial {
        procedure: Box<Node>,
        args: Vec<Node>,
    },
    Placeholder,
    Lambda(Arc<LambdaDef>),
    Apply(Box<Node>, Box<Node>),
    Bind(Arc<str>, Box<Node>),
    Sort(Vec<SortTerm>),
    Transform(Arc<TransformDef>),
}

pub struct TransformDef {
    pub pattern: Node,
    pub update: Node,
    pub delete: Option<Node>,
}

#[derive(Clone)]
pub struct Node {
    pub kind: Kind,
    pub pos: usize,
    pub keep_array: bool,
    pub cons_array: bool,
    pub keep_singleton_array: bool,
    pub tuple: bool,
    pub focus: Option<Arc<str>>,
    pub index: Option<Arc<str>>,
    /// Ancestor slot this step records for a `%` further on (labels live in `Parsed`).
    pub ancestor_slot: Option<usize>,
    pub seeking_parent: Option<Vec<usize>>,
    pub predicate: Option<Vec<Stage>>,
    pub stages: Option<Vec<Stage>>,
    pub group: Option<Arc<Group>>,
}

pub struct Group {
    pub pairs: Vec<(Node, Node)>,
    pub pos: usize,
}

impl Node {
    pub fn new(kind: Kind, pos: usize) -> Node {
        Node {
            kind,
            pos,
            keep_array: false,
            cons_array: false,
            keep_singleton_array: false,
            tuple: false,
            focus: None,
            index: None,
            ancestor_slot: None,
            seeking_parent: None,
            predicate: None,
            stages: None,
            group: None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Path(_) => "path",
            Kind::Name(_) => "name",
            Kind::Variable(_) => "variable",
            Kind::Str(_) => "string",
            Kind::Num(_) => "number",
            Kind::Bool(_) | Kind::Null => "value",
            Kind::Regex(_) => "regex",
            Kind::Wildcard => "wildcard",
            Kind::Descendant => "descendant",
            Kind::Parent(_) => "parent",
            Kind::Binary(..) => "binary",
            Kind::Neg(_) | Kind::ArrayCons(_) | Kind::ObjectCons(_) => "unary",
            Kind::Block(_) => "block",
            Kind::Condition(..) => "condition",
            Kind::Call { .. } => "function",
            Kind::Partial { .. } => "partial",
            Kind::Placeholder => "operator",
            Kind::Lambda(_) => "lambda",
            Kind::Apply(..) => "apply",
            Kind::Bind(..) => "bind",
            Kind::Sort(_) => "sort",
            Kind::Transform(_) => "transform",
        }
    }

    pub fn is_array_cons(&self) -> bool {
        matches!(self.kind, Kind::ArrayCons(_))
    }
}
