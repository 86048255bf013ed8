//! Variable frames. A lambda keeps the frame it was defined in; frames that hold functions
//! can form reference cycles (`$f := function(){ $f() }`), so the evaluator records them and
//! empties them when an evaluation ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::value::Value;

pub type Env = Rc<Frame>;

#[derive(Default)]
pub struct Frame {
    vars: RefCell<HashMap<Arc<str>, Value>>,
    parent: Option<Env>,
}

impl Frame {
    pub fn root() -> Env {
        Rc::new(Frame::default())
    }

    pub fn child(parent: &Env) -> Env {
        Rc::new(Frame {
            vars: RefCell::new(HashMap::new()),
            parent: Some(parent.clone()),
        })
    }

    pub fn bind(&self, name: Arc<str>, value: Value) {
        self.vars.borrow_mut().insert(name, value);
    }

    pub fn lookup(&self, name: &str) -> Value {
        let mut frame = self;
        loop {
            if let Some(v) = frame.vars.borrow().get(name) {
                return v.clone();
            }
            match &frame.parent {
                Some(p) => frame = p,
                None => return Value::Undefined,
            }
        }
    }

    /// Like `lookup`, but tells a missing name from one bound to undefined.
    pub fn get(&self, name: &str) -> Option<Value> {
        let mut frame = self;
        loop {
            if let Some(v) = frame.vars.borrow().get(name) {
                return Some(v.clone());
            }
            match &frame.parent {
                Some(p) => frame = p,
                None => return None,
            }
        }
    }

    pub fn clear(&self) {
        self.vars.borrow_mut().clear();
    }
}
