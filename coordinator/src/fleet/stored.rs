//! How a cursor is kept in Redis.
//!
//! Most cursors are small and are stored as their JSON. A Map or Parallel waiting for its
//! children is the exception: its raw input and its effective input can be the whole
//! execution input (a Map over 10,000 items holds them twice), yet its counters change with
//! every batch of finished children. Writing those values on every batch cost about a
//! quarter of a coordinator's CPU. So while such a cursor waits, its two values are kept
//! apart, in the execution's `blobs` hash under the cursor's id, written once per run of the
//! state; the cursor's own entry carries a header naming that run.
//!
//! Both values are fixed for one run of a Map or Parallel (from its `...StateStarted` event
//! until it leaves the children phases: the engine sets `input` only on a transition and
//! `effective_input` only when the state starts), so the run's `started_event` identifies
//! them. The blob repeats that id, and a cursor whose header names another run than its blob
//! is reported unreadable rather than silently given the wrong input.
//!
//! Formats: a cursor entry is `{...}` (the whole cursor) or `B<run>:{...}` (the cursor with
//! null in place of the two values); a blob is `<run>:[input, effective input]`.

use serde_json::Value;

use crate::engine::cursor::{Cursor, Phase};
use crate::engine::dataflow::json_size;

/// Values smaller than this (both together, as JSON) stay inside the cursor: splitting
/// them off saves little and costs a second hash field.
pub const SPLIT_MIN_BYTES: usize = 4096;

/// The run of a waiting Map or Parallel whose values are kept apart from the cursor, if
/// this cursor is one.
pub fn split_run(c: &Cursor) -> Option<u64> {
    // A quiet cursor writes no events: its started_event does not name one run.
    if c.quiet {
        return None;
    }
    let ch = match &c.phase {
        Phase::Children(ch) | Phase::Collecting(ch) | Phase::Aborting(ch) => ch,
        _ => return None,
    };
    if ch.started_event == 0 {
        return None;
    }
    let size =
        json_size(&c.input, SPLIT_MIN_BYTES) + json_size(&ch.effective_input, SPLIT_MIN_BYTES);
    (size >= SPLIT_MIN_BYTES).then_some(ch.started_event)
}

fn effective_input(c: &mut Cursor) -> Option<&mut Value> {
    match &mut c.phase {
        Phase::Children(ch) | Phase::Collecting(ch) | Phase::Aborting(ch) => {
            Some(&mut ch.effective_input)
        }
        _ => None,
    }
}

/// A cursor as stored: its entry, and, when its values are kept apart, their run and (if
/// `blob_needed`) the blob to write.
pub struct Encoded {
    pub entry: String,
    pub run: Option<u64>,
    pub blob: Option<String>,
}

/// Encodes `c` for its entry. `stored_run` is the run whose blob Redis already holds for
/// this cursor, if known: the blob is then not written again.
pub fn encode(c: &mut Cursor, stored_run: Option<u64>) -> Encoded {
    let Some(run) = split_run(c) else {
        return Encoded {
            entry: serde_json::to_string(c).expect("cursors serialize"),
            run: None,
            blob: None,
        };
    };
    // Moved out for the cursor's serialisation and moved back: never copied.
    let input = std::mem::take(&mut c.input);
    let effective = std::mem::take(effective_input(c).expect("a split cursor has children"));
    let mut entry = format!("B{run}:");
    let blob = (stored_run != Some(run)).then(|| {
        let mut blob = format!("{run}:");
        let pair = (&input, &effective);
        blob.push_str(&serde_json::to_string(&pair).expect("values serialize"));
        blob
    });
    entry.push_str(&serde_json::to_string(c).expect("cursors serialize"));
    c.input = input;
    *effective_input(c).expect("a split cursor has children") = effective;
    Encoded {
        entry,
        run: Some(run),
        blob,
    }
}

/// Why a stored cursor entry or its blob cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("a header without ':'")]
    HeaderWithoutColon,
    #[error("a bad run id {0:?}")]
    BadRun(String),
    #[error("its values (run {0}) are missing")]
    MissingBlob(u64),
    #[error("a blob without ':'")]
    BlobWithoutColon,
    #[error("its values are of run {stored}, not {run}")]
    OtherRun { stored: String, run: u64 },
    #[error("a header on a cursor without children")]
    HeaderWithoutChildren,
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// A stored entry, parsed: the cursor, and the run whose blob it needs (its values are null
/// until [`fill`] puts them back).
pub fn decode(entry: &str) -> Result<(Cursor, Option<u64>), StoredError> {
    let (run, json) = match entry.strip_prefix('B') {
        None => (None, entry),
        Some(rest) => {
            let (run, json) = rest
                .split_once(':')
                .ok_or(StoredError::HeaderWithoutColon)?;
            let run: u64 = run
                .parse()
                .map_err(|_| StoredError::BadRun(run.to_string()))?;
            (Some(run), json)
        }
    };
    let cursor = serde_json::from_str(json)?;
    Ok((cursor, run))
}

/// Puts the values of `blob` (of run `run`) back into a cursor [`decode`] returned.
pub fn fill(c: &mut Cursor, run: u64, blob: Option<&str>) -> Result<(), StoredError> {
    let blob = blob.ok_or(StoredError::MissingBlob(run))?;
    let (stored, json) = blob.split_once(':').ok_or(StoredError::BlobWithoutColon)?;
    if stored.parse::<u64>().ok() != Some(run) {
        return Err(StoredError::OtherRun {
            stored: stored.to_string(),
            run,
        });
    }
    let (input, effective): (Value, Value) = serde_json::from_str(json)?;
    c.input = input;
    match effective_input(c) {
        Some(slot) => *slot = effective,
        None => return Err(StoredError::HeaderWithoutChildren),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cursor::{ChildKind, Children};
    use serde_json::json;

    fn map_cursor(items: usize, started_event: u64) -> Cursor {
        let input = json!({ "items": (0..items).map(|i| json!({ "i": i })).collect::<Vec<_>>() });
        Cursor {
            id: String::new(),
            parent: None,
            graph: Default::default(),
            state: Default::default(),
            input: input.clone(),
            vars: Default::default(),
            seq: 3,
            retries: vec![],
            entered_at: chrono::Utc::now(),
            phase: Phase::Children(Box::new(Children {
                kind: ChildKind::Map,
                effective_input: input,
                effective_is_input: false,
                total: items,
                next: 10,
                running: 10,
                succeeded: 0,
                failed: 0,
                max_concurrency: 0,
                tolerated_count: None,
                tolerated_percentage: None,
                failure: None,
                started_event,
                preselected: false,
                distributed: false,
                last_iteration_event: 0,
                run_seed: 0,
            })),
            last_event: 4,
            entered_event: 3,
            quiet: false,
            events: 0,
            redrive: None,
        }
    }

    fn same(a: &Cursor, b: &Cursor) -> bool {
        serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
    }

    #[test]
    fn a_large_waiting_map_keeps_its_values_apart_and_gets_them_back() {
        let mut c = map_cursor(1000, 4);
        let before = c.clone();
        let e = encode(&mut c, None);
        assert!(same(&c, &before), "encoding leaves the cursor as it was");
        assert_eq!(e.run, Some(4));
        assert!(
            e.entry.len() < 1000,
            "the entry is small: {}",
            e.entry.len()
        );
        let (mut back, run) = decode(&e.entry).unwrap();
        assert_eq!(run, Some(4));
        fill(&mut back, 4, e.blob.as_deref()).unwrap();
        assert!(same(&back, &before));
        // Already stored for this run: not written again.
        assert!(encode(&mut c, Some(4)).blob.is_none());
        // Another run's blob is never taken for this one.
        let other = encode(&mut map_cursor(1000, 9), None).blob.unwrap();
        assert!(fill(&mut back, 4, Some(&other)).is_err());
        assert!(fill(&mut back, 4, None).is_err());
    }

    #[test]
    fn small_and_quiet_cursors_stay_whole() {
        for mut c in [map_cursor(3, 4), {
            let mut q = map_cursor(1000, 4);
            q.quiet = true;
            q
        }] {
            let before = c.clone();
            let e = encode(&mut c, None);
            assert!(e.run.is_none() && e.blob.is_none());
            let (back, run) = decode(&e.entry).unwrap();
            assert!(run.is_none());
            assert!(same(&back, &before));
        }
    }
}
