//! A Map's or Parallel's children held in memory: its items, the results stored so far and
//! which children are live. The in-memory backends (embedded mode's and
//! [`crate::scripted`]'s) keep their children here and answer the [`crate::driver::Backend`]
//! child methods from it.

use serde_json::Value;

use crate::engine::cursor::CursorId;
use crate::ids::{IdMap, IdSet};

/// Items, results and live children by parent cursor.
#[derive(Debug, Default)]
pub struct MemoryChildren {
    items: IdMap<Vec<Value>>,
    results: IdMap<Vec<Option<Value>>>,
    live: IdMap<IdSet>,
}

impl MemoryChildren {
    /// A Map's items, with room for as many results.
    pub fn store_items(&mut self, map: &str, items: Vec<Value>) {
        self.results
            .insert(map.to_string(), vec![None; items.len()]);
        self.items.insert(map.to_string(), items);
    }

    /// Items `from..to` of a Map (clamped to what it has), moved out: the driver asks for
    /// each child's item once, when it starts the child.
    pub fn items(&mut self, map: &str, from: usize, to: usize) -> Vec<Value> {
        self.items
            .get_mut(map)
            .map(|items| {
                let to = to.min(items.len());
                items[from.min(to)..to]
                    .iter_mut()
                    .map(Value::take)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Child `index`'s result.
    pub fn store_result(&mut self, parent: &str, index: usize, output: Option<Value>) {
        let results = match self.results.get_mut(parent) {
            Some(results) => results,
            None => self.results.entry(parent.to_string()).or_default(),
        };
        if results.len() <= index {
            results.resize(index + 1, None);
        }
        results[index] = output;
    }

    /// Takes a parent's `count` results, in order (`null` where none was stored).
    pub fn take_results(&mut self, parent: &str, count: usize) -> Vec<Value> {
        let mut results: Vec<Value> = self
            .results
            .remove(parent)
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.unwrap_or(Value::Null))
            .collect();
        results.resize(count, Value::Null);
        results
    }

    /// Forgets everything of a parent's children.
    pub fn drop_children(&mut self, parent: &str) {
        self.items.remove(parent);
        self.results.remove(parent);
        self.live.remove(parent);
    }

    pub fn add_live(&mut self, parent: &str, children: &[CursorId]) {
        let live = match self.live.get_mut(parent) {
            Some(live) => live,
            None => self.live.entry(parent.to_string()).or_default(),
        };
        live.extend(children.iter().cloned());
    }

    pub fn remove_live(&mut self, parent: &str, child: &str) {
        if let Some(set) = self.live.get_mut(parent) {
            set.remove(child);
        }
    }

    /// A parent's live children, in no particular order.
    pub fn live(&self, parent: &str) -> Vec<CursorId> {
        self.live
            .get(parent)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}
