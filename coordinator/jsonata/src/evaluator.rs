//! The evaluator (jsonata.js `evaluate` and friends): sequences with singleton flattening,
//! tuple streams for `@`/`#`/`%` bindings, predicates, grouping, sorting, function
//! application with tail-call trampolining, partial application and transforms.
//!
//! Evaluation is bounded: every `eval` counts towards a nesting depth limit (U1001, as the
//! reference implementation's test harness reports it) and a step/deadline budget.

use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use crate::ast::{BinOp, Group, Kind, Node, SortTerm, Stage, TransformDef};
use crate::env::{Env, Frame};
use crate::errors::{Error, Result, err, err_at, err_tok};
use crate::functions::{self, Ctx};
use crate::value::{Flags, Function, Lambda, List, Map, Obj, Value, deep_equal};

pub struct Limits {
    pub max_depth: usize,
    pub max_steps: Option<u64>,
    pub deadline: Option<Instant>,
}

pub struct Evaluator<'a> {
    labels: &'a [Arc<str>],
    limits: Limits,
    depth: usize,
    steps: u64,
    /// Frames that received a function value: emptied when the evaluation ends to break
    /// closure reference cycles.
    holders: Vec<Weak<Frame>>,
    pub(crate) now_millis: i64,
    pub(crate) rng: &'a mut dyn FnMut() -> f64,
    pub(crate) uuid: &'a mut dyn FnMut() -> String,
    pub(crate) aws: bool,
}

fn tuple_get(t: &Value, key: &str) -> Value {
    match t {
        Value::Object(m) => m.get(key).cloned().unwrap_or_default(),
        _ => Value::Undefined,
    }
}

fn tuple_map(t: &Value) -> Map {
    match t {
        Value::Object(m) => Map::clone(m),
        _ => Map::new(),
    }
}

fn is_empty_seq(v: &Value) -> bool {
    match v {
        Value::Undefined => true,
        Value::Array(a, _) => a.is_empty(),
        _ => false,
    }
}

/// jsonata.js `fn.append`: concatenation that treats non-arrays as singletons.
pub fn append(a: Value, b: Value) -> Value {
    if a.is_undefined() {
        return b;
    }
    if b.is_undefined() {
        return a;
    }
    let mut items = match a {
        Value::Array(v, _) => std::mem::take(&mut Rc::unwrap_or_clone(v).0),
        v => vec![v],
    };
    match b {
        Value::Array(v, _) => items.extend(v.iter().cloned()),
        v => items.push(v),
    }
    // Like JavaScript's `concat`, the result is a plain array, not a sequence.
    Value::array(items)
}

/// JSONata's effective boolean value (`fn.boolean`); `None` for undefined.
pub fn boolean(v: &Value) -> Option<bool> {
    boolean_at(v, 0)
}

fn boolean_at(v: &Value, depth: usize) -> Option<bool> {
    Some(match v {
        Value::Undefined => return None,
        // Arrays nested deeper than any input can be count as false rather than recurse on.
        Value::Array(_, _) if depth > crate::MAX_INPUT_DEPTH => false,
        Value::Array(a, _) => match a.len() {
            0 => false,
            1 => boolean_at(&a[0], depth + 1).unwrap_or(false),
            _ => a.iter().any(|v| boolean_at(v, depth + 1) == Some(true)),
        },
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => *n != 0.0,
        Value::Object(o) => !o.is_empty(),
        Value::Bool(b) => *b,
        Value::Function(_) => false,
        Value::Null => false,
    })
}

/// Name lookup on an input (`fn.lookup`): arrays map and flatten.
pub fn lookup(input: &Value, key: &str) -> Value {
    match input {
        Value::Array(..) => {
            // Nested arrays are walked with an explicit stack (they can be deep).
            let mut out = vec![];
            let mut stack: Vec<std::slice::Iter<Value>> = vec![];
            if let Value::Array(a, _) = input {
                stack.push(a.iter());
            }
            while let Some(top) = stack.last_mut() {
                let Some(v) = top.next() else {
                    stack.pop();
                    continue;
                };
                match v {
                    Value::Array(a, _) => stack.push(a.iter()),
                    Value::Object(o) => match o.get(key) {
                        None | Some(Value::Undefined) => {}
                        Some(Value::Array(r, _)) => out.extend(r.iter().cloned()),
                        Some(r) => out.push(r.clone()),
                    },
                    _ => {}
                }
            }
            Value::sequence(out)
        }
        Value::Object(o) => o.get(key).cloned().unwrap_or_default(),
        _ => Value::Undefined,
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(
        labels: &'a [Arc<str>],
        limits: Limits,
        now_millis: i64,
        rng: &'a mut dyn FnMut() -> f64,
        uuid: &'a mut dyn FnMut() -> String,
        aws: bool,
    ) -> Self {
        Evaluator {
            labels,
            limits,
            depth: 0,
            steps: 0,
            holders: vec![],
            now_millis,
            rng,
            uuid,
            aws,
        }
    }

    pub(crate) fn bind(&mut self, env: &Env, name: Arc<str>, value: Value) {
        if value.is_function() {
            self.holders.push(Rc::downgrade(env));
        }
        env.bind(name, value);
    }

    fn frame_from_tuple(&mut self, env: &Env, tuple: &Value) -> Env {
        let frame = Frame::child(env);
        if let Value::Object(m) = tuple {
            for (k, v) in m.iter() {
                self.bind(&frame, Arc::from(k.as_str()), v.clone());
            }
        }
        frame
    }

    fn label(&self, slot: usize) -> Arc<str> {
        self.labels
            .get(slot)
            .cloned()
            .unwrap_or_else(|| Arc::from(format!("!{slot}")))
    }

    fn tick(&mut self) -> Result<()> {
        self.steps += 1;
        if let Some(max) = self.limits.max_steps
            && self.steps > max
        {
            return Err(Error::Limit {
                code: "U1001",
                message: "Expression evaluation timeout: Check for infinite loop".into(),
            });
        }
        if self.steps.is_multiple_of(256)
            && let Some(deadline) = self.limits.deadline
            && Instant::now() > deadline
        {
            return Err(Error::Limit {
                code: "U1001",
                message: "Expression evaluation timeout: Check for infinite loop".into(),
            });
        }
        Ok(())
    }

    pub fn eval(&mut self, node: &Node, input: &Value, env: &Env) -> Result<Value> {
        self.depth += 1;
        let r = self.eval_counted(node, input, env);
        self.depth -= 1;
        r.map(|v| flatten_singleton(node, v))
    }

    fn eval_counted(&mut self, node: &Node, input: &Value, env: &Env) -> Result<Value> {
        if self.depth > self.limits.max_depth {
            return Err(Error::Limit {
                code: "U1001",
                message: "Stack overflow error: Check for non-terminating recursive function.  Consider rewriting as tail-recursive.".into(),
            });
        }
        self.tick()?;
        let mut result = self.eval_node(node, input, env)?;
        if node.predicate.is_some() || node.group.is_some() {
            result = self.eval_predicates_and_group(node, result, env)?;
        }
        Ok(result)
    }

    #[inline(never)]
    fn eval_predicates_and_group(
        &mut self,
        node: &Node,
        mut result: Value,
        env: &Env,
    ) -> Result<Value> {
        if let Some(preds) = &node.predicate {
            for p in preds {
                if let Stage::Filter(e) = p {
                    result = self.eval_filter(e, result, env)?;
                }
            }
        }
        if !matches!(node.kind, Kind::Path(_))
            && let Some(g) = &node.group
        {
            result = self.eval_group(g, result, env)?;
        }
        Ok(result)
    }

    // Each kind's work lives in its own function so that this dispatcher's stack frame,
    // which every nesting level pays for, stays small (debug builds give every local of
    // every match arm its own slot).
    fn eval_node(&mut self, node: &Node, input: &Value, env: &Env) -> Result<Value> {
        match &node.kind {
            Kind::Path(steps) => self.eval_path(node, steps, input, env),
            Kind::Binary(op, l, r) => self.eval_binary(*op, l, r, node.pos, input, env),
            Kind::Neg(e) => self.eval_neg(node, e, input, env),
            Kind::ArrayCons(items) => self.eval_array(node, items, input, env),
            Kind::ObjectCons(pairs) => self.eval_group_pairs(pairs, node.pos, input.clone(), env),
            Kind::Name(n) => Ok(lookup(input, n)),
            Kind::Str(s) => Ok(Value::string(s)),
            Kind::Num(n) => Ok(Value::Number(*n)),
            Kind::Bool(b) => Ok(Value::Bool(*b)),
            Kind::Null => Ok(Value::Null),
            Kind::Wildcard => Ok(eval_wildcard(input)),
            Kind::Descendant => {
                input.check_size("Input of **")?;
                Ok(eval_descendants(input))
            }
            Kind::Parent(slot) => Ok(env.lookup(&self.label(*slot))),
            Kind::Condition(c, t, e) => self.eval_condition(c, t, e.as_deref(), input, env),
            Kind::Block(exprs) => self.eval_block(exprs, input, env),
            Kind::Bind(name, rhs) => self.eval_bind(name, rhs, input, env),
            Kind::Regex(r) => Ok(Value::func(Function::Regex(r.clone()))),
            Kind::Call { procedure, args } => {
                self.eval_function(node, procedure, args, input, env, None)
            }
            Kind::Variable(name) => Ok(self.eval_variable(name, input, env)),
            Kind::Lambda(def) => Ok(Value::func(Function::Lambda(Lambda {
                def: def.clone(),
                env: env.clone(),
                input: input.clone(),
            }))),
            Kind::Partial { procedure, args } => {
                self.eval_partial(node, procedure, args, input, env)
            }
            Kind::Apply(l, r) => self.eval_apply(node, l, r, input, env),
            Kind::Transform(def) => Ok(Value::func(Function::Transform {
                def: def.clone(),
                env: env.clone(),
            })),
            Kind::Sort(_) | Kind::Placeholder => Ok(Value::Undefined),
        }
    }

    #[inline(never)]
    fn eval_neg(&mut self, node: &Node, e: &Node, input: &Value, env: &Env) -> Result<Value> {
        match self.eval(e, input, env)? {
            Value::Undefined => Ok(Value::Undefined),
            Value::Number(n) => Ok(Value::Number(-n)),
            v => Err(Error::new(
                "D1002",
                Some(node.pos),
                "-",
                &functions::string::to_json_string(&v, false),
            )),
        }
    }

    #[inline(never)]
    fn eval_array(
        &mut self,
        node: &Node,
        items: &[Node],
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let mut out: Vec<Value> = vec![];
        for item in items {
            let v = self.eval(item, input, env)?;
            match v {
                Value::Undefined => {}
                v if item.is_array_cons() => out.push(v),
                Value::Array(a, _) => {
                    if out.len() + a.len() > crate::errors::MAX_NODES {
                        return Err(crate::errors::too_large("Array"));
                    }
                    out.extend(a.iter().cloned())
                }
                v => out.push(v),
            }
        }
        let flags = if node.cons_array {
            Flags::CONS
        } else {
            Flags::default()
        };
        Ok(Value::Array(List::rc(out), flags))
    }

    #[inline(never)]
    fn eval_condition(
        &mut self,
        c: &Node,
        t: &Node,
        e: Option<&Node>,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let cond = self.eval(c, input, env)?;
        if boolean(&cond) == Some(true) {
            self.eval(t, input, env)
        } else if let Some(e) = e {
            self.eval(e, input, env)
        } else {
            Ok(Value::Undefined)
        }
    }

    #[inline(never)]
    fn eval_block(&mut self, exprs: &[Node], input: &Value, env: &Env) -> Result<Value> {
        let frame = Frame::child(env);
        let mut result = Value::Undefined;
        for e in exprs {
            result = self.eval(e, input, &frame)?;
        }
        Ok(result)
    }

    #[inline(never)]
    fn eval_bind(
        &mut self,
        name: &Arc<str>,
        rhs: &Node,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let v = self.eval(rhs, input, env)?;
        self.bind(env, name.clone(), v.clone());
        Ok(v)
    }

    fn eval_variable(&self, name: &str, input: &Value, env: &Env) -> Value {
        if name.is_empty() {
            match input {
                Value::Array(a, f) if f.has(Flags::OUTER_WRAPPER) => {
                    a.first().cloned().unwrap_or_default()
                }
                v => v.clone(),
            }
        } else {
            self.lookup_var(env, name)
        }
    }

    fn lookup_var(&self, env: &Env, name: &str) -> Value {
        match env.get(name) {
            Some(v) => v,
            None => functions::builtin(name, self.aws)
                .map(|b| Value::func(Function::Builtin(b)))
                .unwrap_or_default(),
        }
    }

    fn eval_path(
        &mut self,
        node: &Node,
        steps: &[Node],
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let mut input_seq = if input.is_array() && !matches!(steps[0].kind, Kind::Variable(_)) {
            input.clone()
        } else {
            Value::sequence(vec![input.clone()])
        };
        let mut result = Value::Undefined;
        let mut is_tuple = false;
        let mut tuples: Option<Vec<Value>> = None;
        for (ii, step) in steps.iter().enumerate() {
            if step.tuple {
                is_tuple = true;
            }
            if ii == 0 && step.cons_array {
                result = self.eval(step, &input_seq, env)?;
            } else if is_tuple {
                tuples = Some(self.eval_tuple_step(step, &input_seq, tuples, env)?);
            } else {
                result = self.eval_step(step, &input_seq, env, ii == steps.len() - 1)?;
            }
            if !is_tuple && is_empty_seq(&result) {
                break;
            }
            if step.focus.is_none() {
                input_seq = result.clone();
            }
        }
        let mut stream = Value::Undefined;
        if is_tuple {
            let tuples = tuples.unwrap_or_default();
            stream = Value::Array(
                List::rc(tuples.clone()),
                Flags::SEQUENCE.with(Flags::TUPLE_STREAM),
            );
            if node.tuple {
                result = stream.clone();
            } else {
                result = Value::sequence(tuples.iter().map(|t| tuple_get(t, "@")).collect());
            }
        }
        if node.keep_singleton_array {
            if let Value::Array(_, f) = &result
                && f.has(Flags::CONS)
                && !f.has(Flags::SEQUENCE)
            {
                result = Value::sequence(vec![result]);
            }
            result = result.with_flags(Flags::KEEP_SINGLETON);
        }
        if let Some(g) = &node.group {
            result = self.eval_group(g, if is_tuple { stream } else { result }, env)?;
        }
        Ok(result)
    }

    fn eval_step(&mut self, step: &Node, input: &Value, env: &Env, last: bool) -> Result<Value> {
        if let Kind::Sort(terms) = &step.kind {
            let mut r = self.eval_sort(terms, step.pos, input.clone(), env)?;
            if let Some(stages) = &step.stages {
                r = self.eval_stages(stages, r, env)?;
            }
            return Ok(r);
        }
        let mut results = vec![];
        for item in input.members() {
            let mut res = self.eval(step, &item, env)?;
            if let Some(stages) = &step.stages {
                for s in stages {
                    if let Stage::Filter(p) = s {
                        res = self.eval_filter(p, res, env)?;
                    }
                }
            }
            if !res.is_undefined() {
                results.push(res);
            }
        }
        if last && results.len() == 1 && results[0].is_array() && !results[0].is_sequence() {
            return Ok(results.pop().unwrap_or_default());
        }
        let mut out = vec![];
        for r in results {
            match r {
                Value::Array(a, f) if !f.has(Flags::CONS) => out.extend(a.iter().cloned()),
                r => out.push(r),
            }
        }
        Ok(Value::sequence(out))
    }

    fn eval_tuple_step(
        &mut self,
        step: &Node,
        input: &Value,
        tuples: Option<Vec<Value>>,
        env: &Env,
    ) -> Result<Vec<Value>> {
        if let Kind::Sort(terms) = &step.kind {
            let mut result = match tuples {
                Some(t) => {
                    let stream =
                        Value::Array(List::rc(t), Flags::SEQUENCE.with(Flags::TUPLE_STREAM));
                    self.eval_sort(terms, step.pos, stream, env)?
                }
                None => {
                    let sorted = self.eval_sort(terms, step.pos, input.clone(), env)?;
                    let out: Vec<Value> = sorted
                        .members()
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let mut m = Map::new();
                            m.insert("@".into(), v);
                            if let Some(idx) = &step.index {
                                m.insert(idx.to_string(), Value::Number(i as f64));
                            }
                            Value::object(m)
                        })
                        .collect();
                    Value::Array(List::rc(out), Flags::SEQUENCE.with(Flags::TUPLE_STREAM))
                }
            };
            if let Some(stages) = &step.stages {
                result = self.eval_stages(stages, result, env)?;
            }
            return Ok(result.members());
        }
        let tuples = match tuples {
            Some(t) => t,
            None => input
                .members()
                .into_iter()
                .map(|v| {
                    let mut m = Map::new();
                    m.insert("@".into(), v);
                    Value::object(m)
                })
                .collect(),
        };
        let mut result = vec![];
        for tuple in &tuples {
            let step_env = self.frame_from_tuple(env, tuple);
            let context = tuple_get(tuple, "@");
            let res = self.eval(step, &context, &step_env)?;
            if res.is_undefined() {
                continue;
            }
            let is_stream = res.flags().has(Flags::TUPLE_STREAM);
            let items = match &res {
                Value::Array(a, _) => a.to_vec(),
                v => vec![v.clone()],
            };
            for (bb, r) in items.into_iter().enumerate() {
                let mut t = tuple_map(tuple);
                if is_stream {
                    if let Value::Object(m) = &r {
                        for (k, v) in m.iter() {
                            t.insert(k.clone(), v.clone());
                        }
                    }
                } else {
                    if let Some(focus) = &step.focus {
                        t.insert(focus.to_string(), r);
                        t.insert("@".into(), context.clone());
                    } else {
                        t.insert("@".into(), r);
                    }
                    if let Some(idx) = &step.index {
                        t.insert(idx.to_string(), Value::Number(bb as f64));
                    }
                    if let Some(slot) = step.ancestor_slot {
                        t.insert(self.label(slot).to_string(), context.clone());
                    }
                }
                result.push(Value::object(t));
            }
        }
        let mut result = Value::Array(List::rc(result), Flags::SEQUENCE.with(Flags::TUPLE_STREAM));
        if let Some(stages) = &step.stages {
            result = self.eval_stages(stages, result, env)?;
        }
        Ok(result.members())
    }

    fn eval_stages(&mut self, stages: &[Stage], input: Value, env: &Env) -> Result<Value> {
        let mut result = input;
        for stage in stages {
            match stage {
                Stage::Filter(p) => result = self.eval_filter(p, result, env)?,
                Stage::Index(name) => {
                    let flags = result.flags();
                    let items: Vec<Value> = result
                        .members()
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut m = tuple_map(&t);
                            m.insert(name.to_string(), Value::Number(i as f64));
                            Value::object(m)
                        })
                        .collect();
                    result = Value::Array(List::rc(items), flags);
                }
            }
        }
        Ok(result)
    }

    fn eval_filter(&mut self, pred: &Node, input: Value, env: &Env) -> Result<Value> {
        let is_stream = input.flags().has(Flags::TUPLE_STREAM);
        let flags = if is_stream {
            Flags::SEQUENCE.with(Flags::TUPLE_STREAM)
        } else {
            Flags::SEQUENCE
        };
        let items = match &input {
            Value::Undefined => return Ok(Value::Array(List::rc(vec![]), flags)),
            Value::Array(a, _) => a.clone(),
            v => List::rc(vec![v.clone()]),
        };
        let mut results = vec![];
        if let Kind::Num(n) = pred.kind {
            let mut idx = n.floor();
            if idx < 0.0 {
                idx += items.len() as f64;
            }
            if idx >= 0.0
                && let Some(item) = items.get(idx as usize)
            {
                if item.is_array() {
                    return Ok(item.clone());
                }
                results.push(item.clone());
            }
            return Ok(Value::Array(List::rc(results), flags));
        }
        let len = items.len() as f64;
        for (index, item) in items.iter().enumerate() {
            let res = if is_stream {
                let e = self.frame_from_tuple(env, item);
                self.eval(pred, &tuple_get(item, "@"), &e)?
            } else {
                self.eval(pred, item, env)?
            };
            let nums: Option<Vec<f64>> = match &res {
                Value::Number(n) => Some(vec![*n]),
                Value::Array(a, _) if a.iter().all(|v| matches!(v, Value::Number(_))) => {
                    Some(a.iter().filter_map(|v| v.as_f64()).collect())
                }
                _ => None,
            };
            match nums {
                Some(nums) => {
                    for n in nums {
                        let mut ii = n.floor();
                        if ii < 0.0 {
                            ii += len;
                        }
                        if ii == index as f64 {
                            results.push(item.clone());
                        }
                    }
                }
                None => {
                    if boolean(&res) == Some(true) {
                        results.push(item.clone());
                    }
                }
            }
        }
        Ok(Value::Array(List::rc(results), flags))
    }

    fn eval_binary(
        &mut self,
        op: BinOp,
        l: &Node,
        r: &Node,
        pos: usize,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let lhs = self.eval(l, input, env)?;
        if op == BinOp::And || op == BinOp::Or {
            let lb = boolean(&lhs).unwrap_or(false);
            if op == BinOp::And && !lb {
                return Ok(Value::Bool(false));
            }
            if op == BinOp::Or && lb {
                return Ok(Value::Bool(true));
            }
            let rhs = self.eval(r, input, env)?;
            return Ok(Value::Bool(boolean(&rhs).unwrap_or(false)));
        }
        let rhs = self.eval(r, input, env)?;
        binary(op, lhs, rhs).map_err(|e| e.at(pos))
    }

    fn eval_group(&mut self, g: &Group, input: Value, env: &Env) -> Result<Value> {
        self.eval_group_pairs(&g.pairs, g.pos, input, env)
    }

    fn eval_group_pairs(
        &mut self,
        pairs: &[(Node, Node)],
        pos: usize,
        input: Value,
        env: &Env,
    ) -> Result<Value> {
        let reduce = input.flags().has(Flags::TUPLE_STREAM);
        let mut items = match &input {
            Value::Array(a, _) => a.to_vec(),
            v => vec![v.clone()],
        };
        if items.is_empty() {
            items.push(Value::Undefined);
        }
        let mut groups: indexmap::IndexMap<String, (Value, usize)> = indexmap::IndexMap::new();
        for item in &items {
            let e = if reduce {
                self.frame_from_tuple(env, item)
            } else {
                env.clone()
            };
            let ctx = if reduce {
                tuple_get(item, "@")
            } else {
                item.clone()
            };
            for (pi, (k, _)) in pairs.iter().enumerate() {
                let key = self.eval(k, &ctx, &e)?;
                let key = match key {
                    Value::Undefined => continue,
                    Value::String(s) => s,
                    v => {
                        return Err(Error::new(
                            "T1003",
                            Some(pos),
                            "",
                            &functions::string::to_json_string(&v, false),
                        ));
                    }
                };
                match groups.get_mut(key.as_ref()) {
                    Some((data, idx)) => {
                        if *idx != pi {
                            return Err(Error::new("D1009", Some(pos), "", &key));
                        }
                        *data = append(std::mem::take(data), item.clone());
                    }
                    None => {
                        groups.insert(key.to_string(), (item.clone(), pi));
                    }
                }
            }
        }
        let mut result = Map::new();
        for (key, (data, idx)) in groups {
            let v = if reduce {
                let tuple = reduce_tuple_stream(&data);
                let mut m = tuple_map(&tuple);
                let ctx = m.shift_remove("@").unwrap_or_default();
                let e = self.frame_from_tuple(env, &Value::object(m));
                self.eval(&pairs[idx].1, &ctx, &e)?
            } else {
                self.eval(&pairs[idx].1, &data, env)?
            };
            if !v.is_undefined() {
                result.insert(key, v);
            }
        }
        Ok(Value::object(result))
    }

    fn eval_sort(
        &mut self,
        terms: &[SortTerm],
        pos: usize,
        input: Value,
        env: &Env,
    ) -> Result<Value> {
        let is_tuple = input.flags().has(Flags::TUPLE_STREAM);
        let items = match &input {
            Value::Array(a, _) => a.to_vec(),
            Value::Undefined => return Ok(Value::Undefined),
            v => vec![v.clone()],
        };
        if items.len() <= 1 {
            return Ok(input);
        }
        // Each item's sort keys once, then a stable merge sort on them.
        let mut keyed = vec![];
        for item in items {
            let mut keys = vec![];
            for t in terms {
                let k = if is_tuple {
                    let e = self.frame_from_tuple(env, &item);
                    self.eval(&t.expr, &tuple_get(&item, "@"), &e)?
                } else {
                    self.eval(&t.expr, &item, env)?
                };
                keys.push(k);
            }
            keyed.push((keys, item));
        }
        let mut error = None;
        let cmp = |a: &(Vec<Value>, Value), b: &(Vec<Value>, Value)| -> std::cmp::Ordering {
            use std::cmp::Ordering::*;
            for (i, t) in terms.iter().enumerate() {
                let (x, y) = (&a.0[i], &b.0[i]);
                let c = match (x, y) {
                    (Value::Undefined, Value::Undefined) => Equal,
                    (Value::Undefined, _) => return Greater,
                    (_, Value::Undefined) => return Less,
                    (Value::Number(p), Value::Number(q)) => p.partial_cmp(q).unwrap_or(Equal),
                    (Value::String(p), Value::String(q)) => p.cmp(q),
                    (Value::Number(_) | Value::String(_), Value::Number(_) | Value::String(_)) => {
                        error.get_or_insert_with(|| {
                            Error::new("T2007", Some(pos), "", &both_values(x, y))
                        });
                        Equal
                    }
                    _ => {
                        error.get_or_insert(Error::new("T2008", Some(pos), "", ""));
                        Equal
                    }
                };
                let c = if t.descending { c.reverse() } else { c };
                if c != Equal {
                    return c;
                }
            }
            Equal
        };
        keyed.sort_by(cmp);
        if let Some(e) = error {
            return Err(e);
        }
        let flags = if is_tuple {
            Flags::SEQUENCE.with(Flags::TUPLE_STREAM)
        } else {
            Flags::default()
        };
        Ok(Value::Array(
            List::rc(keyed.into_iter().map(|(_, v)| v).collect()),
            flags,
        ))
    }

    fn eval_function(
        &mut self,
        node: &Node,
        procedure: &Node,
        args: &[Node],
        input: &Value,
        env: &Env,
        applyto: Option<Value>,
    ) -> Result<Value> {
        let proc = self.eval(procedure, input, env)?;
        if proc.is_undefined()
            && let Kind::Path(steps) = &procedure.kind
            && let Kind::Name(n) = &steps[0].kind
            && !self.lookup_var(env, n).is_undefined()
        {
            return Err(err_tok("T1005", node.pos, n));
        }
        let mut evaluated = vec![];
        if let Some(c) = applyto {
            evaluated.push(c);
        }
        for a in args {
            evaluated.push(self.eval(a, input, env)?);
        }
        let name = proc_name(procedure);
        self.apply(&proc, evaluated, input, env)
            .map_err(|e| with_token(e, &name).at(node.pos))
    }

    /// Applies a function value, running the trampoline for tail calls.
    pub fn apply(
        &mut self,
        proc: &Value,
        args: Vec<Value>,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let mut result = self.apply_inner(proc, args, input, env)?;
        while let Some((def_body, l_input, l_env)) = thunk_of(&result) {
            let Kind::Call { procedure, args } = &def_body.body.kind else {
                break;
            };
            self.tick()?;
            let next = self.eval(procedure, &l_input, &l_env)?;
            let mut evaluated = vec![];
            for a in args {
                evaluated.push(self.eval(a, &l_input, &l_env)?);
            }
            let name = proc_name(procedure);
            result = self
                .apply_inner(&next, evaluated, input, env)
                .map_err(|e| with_token(e, &name).at(def_body.body.pos))?;
        }
        Ok(result)
    }

    fn apply_inner(
        &mut self,
        proc: &Value,
        args: Vec<Value>,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let Value::Function(f) = proc else {
            return Err(err("T1006"));
        };
        let args = match f.signature() {
            Some(sig) => self.validate(f, sig, args, input)?,
            None => args,
        };
        match &**f {
            Function::Lambda(l) => self.apply_lambda(l, args),
            Function::Builtin(b) => {
                let ctx = Ctx { input, env };
                (b.imp)(self, &args, &ctx).map_err(|e| with_token(e, b.name))
            }
            Function::Partial { func, args: bound } => {
                self.apply_partial(func, bound, args, input, env)
            }
            Function::Chain(f1, f2) => self.apply_chain(f1, f2, args, input, env),
            Function::Regex(re) => Ok(match args.first() {
                Some(Value::String(s)) => functions::string::regex_match_object(re, s, 0),
                _ => Value::Undefined,
            }),
            Function::RegexNext { re, text, from } => regex_next(re, text, *from),
            Function::Transform { def, env: tenv } => {
                let obj = args.into_iter().next().unwrap_or_default();
                self.transform(def, tenv, obj)
            }
        }
    }

    #[inline(never)]
    fn validate(
        &mut self,
        f: &Function,
        sig: &crate::signature::Signature,
        args: Vec<Value>,
        input: &Value,
    ) -> Result<Vec<Value>> {
        let name = match f {
            Function::Builtin(b) => b.name,
            _ => "",
        };
        sig.validate(&args, input).map_err(|e| with_token(e, name))
    }

    #[inline(never)]
    fn apply_lambda(&mut self, l: &Lambda, args: Vec<Value>) -> Result<Value> {
        let frame = Frame::child(&l.env);
        let mut args = args.into_iter();
        for p in l.def.params.iter() {
            let v = args.next().unwrap_or_default();
            self.bind(&frame, p.clone(), v);
        }
        self.eval(&l.def.body, &l.input, &frame)
    }

    #[inline(never)]
    fn apply_partial(
        &mut self,
        func: &Value,
        bound: &[Option<Value>],
        args: Vec<Value>,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let mut supplied = args.into_iter();
        let full: Vec<Value> = bound
            .iter()
            .map(|a| match a {
                Some(v) => v.clone(),
                None => supplied.next().unwrap_or_default(),
            })
            .collect();
        self.apply(func, full, input, env)
    }

    #[inline(never)]
    fn apply_chain(
        &mut self,
        f1: &Value,
        f2: &Value,
        args: Vec<Value>,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let x = self.apply(f1, args, input, env)?;
        self.apply(f2, vec![x], input, env)
    }

    fn eval_partial(
        &mut self,
        node: &Node,
        procedure: &Node,
        args: &[Node],
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let mut evaluated = vec![];
        for a in args {
            if matches!(a.kind, Kind::Placeholder) {
                evaluated.push(None);
            } else {
                evaluated.push(Some(self.eval(a, input, env)?));
            }
        }
        let proc = self.eval(procedure, input, env)?;
        if proc.is_undefined()
            && let Kind::Path(steps) = &procedure.kind
            && let Kind::Name(n) = &steps[0].kind
            && !self.lookup_var(env, n).is_undefined()
        {
            return Err(err_tok("T1007", node.pos, n));
        }
        if !proc.is_function() {
            return Err(err_tok("T1008", node.pos, &proc_name(procedure)));
        }
        Ok(Value::func(Function::Partial {
            func: proc,
            args: evaluated,
        }))
    }

    fn eval_apply(
        &mut self,
        node: &Node,
        l: &Node,
        r: &Node,
        input: &Value,
        env: &Env,
    ) -> Result<Value> {
        let lhs = self.eval(l, input, env)?;
        if let Kind::Call { procedure, args } = &r.kind {
            return self.eval_function(r, procedure, args, input, env, Some(lhs));
        }
        let func = self.eval(r, input, env)?;
        if !func.is_function() {
            return Err(err_at("T2006", node.pos));
        }
        if lhs.is_function() {
            return Ok(Value::func(Function::Chain(lhs, func)));
        }
        self.apply(&func, vec![lhs], &Value::Null, env)
            .map_err(|e| e.at(node.pos))
    }

    fn transform(&mut self, def: &TransformDef, env: &Env, obj: Value) -> Result<Value> {
        if obj.is_undefined() {
            return Ok(Value::Undefined);
        }
        let clone = self.lookup_var(env, "clone");
        if !clone.is_function() {
            return Err(err_at("T2013", def.pattern.pos));
        }
        let result = self.apply(&clone, vec![obj], &Value::Null, env)?;
        let matches = self.eval(&def.pattern, &result, env)?;
        let mut mods: HashMap<*const Obj, Rc<Obj>> = HashMap::new();
        for m in matches.members() {
            let (ptr, current) = match &m {
                Value::Object(rc) => {
                    let ptr = Rc::as_ptr(rc);
                    (
                        Some(ptr),
                        Value::Object(mods.get(&ptr).cloned().unwrap_or_else(|| rc.clone())),
                    )
                }
                v => (None, v.clone()),
            };
            let update = self.eval(&def.update, &current, env)?;
            let mut updated = current.clone();
            match &update {
                Value::Undefined => {}
                Value::Object(u) => {
                    if let Value::Object(c) = &current {
                        let mut nm = Map::clone(c);
                        for (k, v) in u.iter() {
                            nm.insert(k.clone(), v.clone());
                        }
                        updated = Value::object(nm);
                    }
                }
                v => {
                    return Err(Error::new(
                        "T2011",
                        Some(def.update.pos),
                        "",
                        &functions::string::to_json_string(v, false),
                    ));
                }
            }
            if let Some(del) = &def.delete {
                let deletions = self.eval(del, &updated, env)?;
                if !deletions.is_undefined() {
                    let list = deletions.members();
                    if !list.iter().all(|v| matches!(v, Value::String(_))) {
                        return Err(Error::new(
                            "T2012",
                            Some(del.pos),
                            "",
                            &functions::string::to_json_string(&deletions, false),
                        ));
                    }
                    if let Value::Object(c) = &updated {
                        let mut nm = Map::clone(c);
                        for k in list {
                            if let Value::String(k) = k {
                                nm.shift_remove(k.as_ref());
                            }
                        }
                        updated = Value::object(nm);
                    }
                }
            }
            if let (Some(ptr), Value::Object(u)) = (ptr, updated) {
                mods.insert(ptr, u);
            }
        }
        Ok(rebuild(&result, &mods))
    }

    /// Ends an evaluation: empties frames that hold functions so closures do not leak.
    pub fn finish(&mut self) {
        for w in self.holders.drain(..) {
            if let Some(f) = w.upgrade() {
                f.clear();
            }
        }
    }
}

fn regex_next(re: &Arc<crate::value::RegexLit>, text: &Rc<str>, from: usize) -> Result<Value> {
    if from >= text.chars().count() {
        return Ok(Value::Undefined);
    }
    let next = functions::string::regex_match_object(re, text, from);
    if let Value::Object(m) = &next
        && m.get("match").and_then(|v| v.as_str()) == Some("")
    {
        return Err(Error::new("D1004", None, "", &re.source));
    }
    Ok(next)
}

/// Singleton sequences become their member and empty ones undefined, unless marked to
/// keep their array (`[]`).
fn flatten_singleton(node: &Node, result: Value) -> Value {
    match result {
        Value::Array(a, f) if f.has(Flags::SEQUENCE) && !f.has(Flags::TUPLE_STREAM) => {
            let f = if node.keep_array {
                f.with(Flags::KEEP_SINGLETON)
            } else {
                f
            };
            if a.is_empty() {
                Value::Undefined
            } else if a.len() == 1 && !f.has(Flags::KEEP_SINGLETON) {
                a[0].clone()
            } else {
                Value::Array(a, f)
            }
        }
        r => r,
    }
}

fn rebuild(v: &Value, mods: &HashMap<*const Obj, Rc<Obj>>) -> Value {
    match v {
        Value::Object(rc) => {
            let base = mods.get(&Rc::as_ptr(rc)).unwrap_or(rc);
            Value::object(
                base.iter()
                    .map(|(k, v)| (k.clone(), rebuild(v, mods)))
                    .collect(),
            )
        }
        Value::Array(a, f) => {
            Value::Array(List::rc(a.iter().map(|v| rebuild(v, mods)).collect()), *f)
        }
        v => v.clone(),
    }
}

/// The parts of a tail-call thunk: the call, and the input and frame to evaluate it in.
fn thunk_of(v: &Value) -> Option<(Arc<crate::ast::LambdaDef>, Value, Env)> {
    match v {
        Value::Function(f) => match &**f {
            Function::Lambda(l) if l.def.thunk => {
                Some((l.def.clone(), l.input.clone(), l.env.clone()))
            }
            _ => None,
        },
        _ => None,
    }
}

fn proc_name(procedure: &Node) -> String {
    match &procedure.kind {
        Kind::Path(steps) => match &steps[0].kind {
            Kind::Name(n) => n.to_string(),
            _ => String::new(),
        },
        Kind::Variable(v) => v.to_string(),
        _ => String::new(),
    }
}

fn with_token(e: Error, name: &str) -> Error {
    match e {
        Error::Type {
            code,
            position,
            message,
        } if message.contains("function  ") => Error::Type {
            code,
            position,
            message: message.replacen("function  ", &format!("function {name} "), 1),
        },
        e => e,
    }
}

fn eval_wildcard(input: &Value) -> Value {
    let input = match input {
        Value::Array(a, f) if f.has(Flags::OUTER_WRAPPER) && !a.is_empty() => &a[0],
        v => v,
    };
    let mut out = vec![];
    let mut push = |v: &Value| match v {
        Value::Array(_, _) => flatten(v, &mut out),
        v => out.push(v.clone()),
    };
    match input {
        Value::Object(o) => o.values().for_each(&mut push),
        Value::Array(a, _) => a.iter().for_each(&mut push),
        _ => {}
    }
    Value::sequence(out)
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    let mut stack: Vec<std::slice::Iter<Value>> = match v {
        Value::Array(a, _) => vec![a.iter()],
        v => {
            out.push(v.clone());
            return;
        }
    };
    while let Some(top) = stack.last_mut() {
        match top.next() {
            None => {
                stack.pop();
            }
            Some(Value::Array(a, _)) => stack.push(a.iter()),
            Some(v) => out.push(v.clone()),
        }
    }
}

fn eval_descendants(input: &Value) -> Value {
    if input.is_undefined() {
        return Value::Undefined;
    }
    let mut out = vec![];
    descendants(input, &mut out);
    if out.len() == 1 {
        out.pop().unwrap_or_default()
    } else {
        Value::sequence(out)
    }
}

fn descendants(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a, _) => a.iter().for_each(|m| descendants(m, out)),
        Value::Object(o) => {
            out.push(v.clone());
            o.values().for_each(|m| descendants(m, out));
        }
        v => out.push(v.clone()),
    }
}

fn reduce_tuple_stream(data: &Value) -> Value {
    match data {
        Value::Array(a, _) => {
            let mut result = tuple_map(&a[0]);
            for t in a.iter().skip(1) {
                if let Value::Object(m) = t {
                    for (k, v) in m.iter() {
                        let prev = result.shift_remove(k).unwrap_or_default();
                        result.insert(k.clone(), append(prev, v.clone()));
                    }
                }
            }
            Value::object(result)
        }
        v => v.clone(),
    }
}

/// `"a" and 1`, for the messages about mismatched operand types.
fn both_values(a: &Value, b: &Value) -> String {
    format!(
        "{} and {}",
        functions::string::to_json_string(a, false),
        functions::string::to_json_string(b, false)
    )
}

fn num_check(v: &Value, code: &'static str, op: BinOp) -> Result<Option<f64>> {
    match v {
        Value::Undefined => Ok(None),
        Value::Number(n) if !n.is_finite() => Err(Error::new(
            "D1001",
            None,
            op.symbol(),
            &crate::value::js_number_string(*n),
        )),
        Value::Number(n) => Ok(Some(*n)),
        _ => Err(Error::new(code, None, op.symbol(), "")),
    }
}

/// The binary operators other than `and`/`or` (which short-circuit in the evaluator).
pub fn binary(op: BinOp, lhs: Value, rhs: Value) -> Result<Value> {
    use BinOp::*;
    Ok(match op {
        Add | Sub | Mul | Div | Mod => {
            let l = num_check(&lhs, "T2001", op)?;
            let r = num_check(&rhs, "T2002", op)?;
            let (Some(l), Some(r)) = (l, r) else {
                return Ok(Value::Undefined);
            };
            let v = match op {
                Add => l + r,
                Sub => l - r,
                Mul => l * r,
                Div => l / r,
                _ => l % r,
            };
            Value::Number(v)
        }
        Eq | Ne => {
            if lhs.is_undefined() || rhs.is_undefined() {
                return Ok(Value::Bool(false));
            }
            for v in [&lhs, &rhs] {
                if matches!(v, Value::Array(..) | Value::Object(_)) {
                    v.check_size("Operand of =")?;
                }
            }
            let eq = deep_equal(&lhs, &rhs);
            Value::Bool(if op == Eq { eq } else { !eq })
        }
        Lt | Le | Gt | Ge => {
            let comparable =
                |v: &Value| matches!(v, Value::Undefined | Value::String(_) | Value::Number(_));
            if !comparable(&lhs) || !comparable(&rhs) {
                return Err(Error::new("T2010", None, op.symbol(), ""));
            }
            if lhs.is_undefined() || rhs.is_undefined() {
                return Ok(Value::Undefined);
            }
            let ord = match (&lhs, &rhs) {
                (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => {
                    return Err(Error::new(
                        "T2009",
                        None,
                        op.symbol(),
                        &both_values(&lhs, &rhs),
                    ));
                }
            };
            let Some(ord) = ord else {
                return Ok(Value::Bool(false));
            };
            Value::Bool(match op {
                Lt => ord.is_lt(),
                Le => ord.is_le(),
                Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        Concat => {
            let s = |v: &Value| -> Result<String> {
                Ok(match v {
                    Value::Undefined => String::new(),
                    v => functions::string::string_of(v, false)?,
                })
            };
            let (l, r) = (s(&lhs)?, s(&rhs)?);
            crate::errors::check_len(l.len() + r.len())?;
            Value::string(&(l + &r))
        }
        Range => {
            let int = |v: &Value, code| match v {
                Value::Undefined => Ok(None),
                Value::Number(n) if n.fract() == 0.0 => Ok(Some(*n)),
                _ => Err(err(code)),
            };
            let l = int(&lhs, "T2003")?;
            let r = int(&rhs, "T2004")?;
            let (Some(l), Some(r)) = (l, r) else {
                return Ok(Value::Undefined);
            };
            if l > r {
                return Ok(Value::Undefined);
            }
            let size = r - l + 1.0;
            if size > 1e7 {
                return Err(Error::new(
                    "D2014",
                    None,
                    "",
                    &crate::value::js_number_string(size),
                ));
            }
            let mut out = Vec::with_capacity(size as usize);
            let mut i = l;
            while i <= r {
                out.push(Value::Number(i));
                i += 1.0;
            }
            Value::sequence(out)
        }
        In => {
            if lhs.is_undefined() || rhs.is_undefined() {
                return Ok(Value::Bool(false));
            }
            let found = rhs.members().iter().any(|v| match (v, &lhs) {
                (Value::Object(a), Value::Object(b)) => Rc::ptr_eq(a, b),
                (Value::Array(a, _), Value::Array(b, _)) => Rc::ptr_eq(a, b),
                (a, b) => deep_equal(a, b),
            });
            Value::Bool(found)
        }
        And | Or => Value::Undefined,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    fn eval(src: &str, input: Json) -> Option<Json> {
        crate::Expression::parse(src)
            .unwrap()
            .evaluate(Some(&input), &mut crate::Environment::new(0, 1))
            .unwrap()
    }

    fn code(src: &str, input: Json) -> String {
        crate::Expression::parse(src)
            .and_then(|e| e.evaluate(Some(&input), &mut crate::Environment::new(0, 1)))
            .unwrap_err()
            .code()
            .to_string()
    }

    #[test]
    fn singleton_sequences_flatten_unless_kept() {
        let data = json!({"a": [{"b": 1}, {"b": [2, 3]}], "c": [{"b": 1}]});
        assert_eq!(eval("a.b", data.clone()), Some(json!([1, 2, 3])));
        assert_eq!(eval("c.b", data.clone()), Some(json!(1)));
        assert_eq!(eval("c.b[]", data.clone()), Some(json!([1])));
        assert_eq!(eval("a[0].b", data.clone()), Some(json!(1)));
        assert_eq!(eval("a[-1].b[1]", data), Some(json!(3)));
    }

    #[test]
    fn undefined_propagates_and_null_does_not() {
        assert_eq!(eval("x + 1", json!({})), None);
        assert_eq!(eval("x = null", json!({"x": null})), Some(json!(true)));
        assert_eq!(eval("[x, 1]", json!({})), Some(json!([1])));
        assert_eq!(eval("{'k': x}", json!({})), Some(json!({})));
        assert_eq!(code("x + 1", json!({"x": null})), "T2001");
    }

    #[test]
    fn focus_index_and_parent_bindings() {
        let data = json!({"o": [{"id": "a", "items": [1, 2]}, {"id": "b", "items": [3]}]});
        // `@` binds the step without moving the context on, so the next step starts from `$o`.
        assert_eq!(
            eval("o@$o.$o.items@$i.{'id': $o.id, 'i': $i}", data.clone()),
            Some(json!([{"id": "a", "i": 1}, {"id": "a", "i": 2}, {"id": "b", "i": 3}]))
        );
        assert_eq!(eval("o#$n[$n = 1].id", data.clone()), Some(json!("b")));
        assert_eq!(
            eval("o.items.{'v': $, 'id': %.id}", data),
            Some(json!([
                {"v": 1, "id": "a"}, {"v": 2, "id": "a"}, {"v": 3, "id": "b"}
            ]))
        );
    }

    #[test]
    fn sorting_is_stable_and_grouping_collects() {
        let data = json!([{"k": "x", "v": 2}, {"k": "y", "v": 1}, {"k": "x", "v": 1}]);
        assert_eq!(eval("$^(v).k", data.clone()), Some(json!(["y", "x", "x"])));
        assert_eq!(eval("$^(>v, k).v", data.clone()), Some(json!([2, 1, 1])));
        assert_eq!(
            eval("${k: $sum(v)}", data.clone()),
            Some(json!({"x": 3, "y": 1}))
        );
        assert_eq!(code("${k: 1, 'x': 2}", data), "D1009");
    }

    #[test]
    fn closures_partial_application_and_chains() {
        assert_eq!(
            eval(
                "($add := function($a){ function($b){ $a + $b } }; $add(2)(3))",
                json!(null)
            ),
            Some(json!(5))
        );
        assert_eq!(
            eval("($f := $substring(?, 0, 2); $f('hello'))", json!(null)),
            Some(json!("he"))
        );
        assert_eq!(
            eval(
                "($f := $uppercase ~> $substring(?, 1); $f('abc'))",
                json!(null)
            ),
            Some(json!("BC"))
        );
        assert_eq!(
            eval("'abc' ~> $uppercase()", json!(null)),
            Some(json!("ABC"))
        );
        assert_eq!(code("1 ~> 2", json!(null)), "T2006");
    }

    #[test]
    fn transforms_copy_and_modify() {
        let data = json!({"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {"x": 2}]});
        assert_eq!(
            eval("$ ~> |a|{'b': 10}, ['c']|", data.clone()),
            Some(json!({"a": {"b": 10}, "l": [{"x": 1}, {"x": 2}]}))
        );
        assert_eq!(
            eval("$ ~> |l[x > 1]|{'y': true}|", data.clone()),
            Some(json!({"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {"x": 2, "y": true}]}))
        );
        // The input is not modified.
        assert_eq!(
            eval("($t := $ ~> |a|{'b': 0}|; a.b)", data.clone()),
            Some(json!(1))
        );
        assert_eq!(code("$ ~> |a|5|", data), "T2011");
    }

    #[test]
    fn conditionals_and_default_operators() {
        assert_eq!(eval("x ? 'y' : 'n'", json!({"x": 0})), Some(json!("n")));
        assert_eq!(eval("x ?: 'd'", json!({"x": ""})), Some(json!("d")));
        assert_eq!(eval("x ?? 'd'", json!({"x": ""})), Some(json!("")));
        assert_eq!(eval("y ?? 'd'", json!({})), Some(json!("d")));
    }

    #[test]
    fn wildcards_descendants_and_regexes() {
        let data = json!({"a": {"b": {"c": 1}}, "d": [2, 3]});
        assert_eq!(eval("**.c", data.clone()), Some(json!(1)));
        assert_eq!(
            eval("*", data.clone()),
            Some(json!([{"b": {"c": 1}}, 2, 3]))
        );
        assert_eq!(
            eval("$match('a1b22', /[0-9]+/).match", json!(null)),
            Some(json!(["1", "22"]))
        );
        assert_eq!(
            eval("$replace('a1b22', /([0-9])/, '<$1>')", json!(null)),
            Some(json!("a<1>b<2><2>"))
        );
        assert_eq!(code("$split('abc', /x*/)", json!(null)), "D1004");
    }

    #[test]
    fn ranges_and_comparisons_check_types() {
        assert_eq!(eval("[1..3]", json!(null)), Some(json!([1, 2, 3])));
        assert_eq!(code("[1..1.5]", json!(null)), "T2004");
        assert_eq!(code("1 < 'a'", json!(null)), "T2009");
        assert_eq!(code("[1..20000000]", json!(null)), "D2014");
    }
}
