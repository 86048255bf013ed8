//! A worker's cached copy of one Redis face collection: every indexed face and reservation
//! with its embedding, as of one `seq`. Searching it costs no round trip per face; the sync
//! script brings it up to date (only the changed faces travel) before every search.
//! Pure: no IO, so its logic is tested without Redis.

use std::collections::HashMap;

use crate::face::FaceError;
use crate::face::collection::{Hit, Reservation, StoredFace, rank_hits};

/// What a sync changed in the copy.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Changed {
    /// Reloaded from scratch: any face may be new.
    All,
    /// Only these face ids changed.
    Ids(Vec<String>),
}

#[derive(Debug, Default)]
pub(super) struct Mirror {
    /// The collection's `seq` this copy reflects; `None` before the first sync.
    pub seq: Option<u64>,
    /// The copied collection's `created_ms`: a collection recreated under the same id starts
    /// its `seq` again, and the copy must not mistake it for the old one.
    pub created: String,
    faces: HashMap<String, StoredFace>,
    reserved: HashMap<String, Reservation>,
}

fn corrupt(what: &str) -> FaceError {
    FaceError::Internal(format!("face collection: unexpected sync reply: {what}"))
}

impl Mirror {
    /// Applies the sync script's reply (see `scripts::SYNC` for its shape). A reply it cannot
    /// read empties the copy, so that the next sync reloads it whole rather than trusting a
    /// half-applied change.
    pub fn apply(&mut self, reply: &[String]) -> Result<Changed, FaceError> {
        let out = self.apply_reply(reply);
        if out.is_err() {
            *self = Self::default();
        }
        out
    }

    fn apply_reply(&mut self, reply: &[String]) -> Result<Changed, FaceError> {
        let (kind, seq, created) = match reply {
            [kind, seq, created, ..] => (kind.as_str(), seq, created),
            _ => return Err(corrupt("too short")),
        };
        let seq: u64 = seq.parse().map_err(|_| corrupt("seq"))?;
        let mut changed = match kind {
            "full" => {
                self.faces.clear();
                self.reserved.clear();
                None
            }
            "delta" => Some(Vec::new()),
            other => return Err(corrupt(other)),
        };
        let mut rest = reply[3..].iter();
        while let Some(tag) = rest.next() {
            let id = rest.next().ok_or_else(|| corrupt("id"))?.clone();
            match tag.as_str() {
                "d" => {
                    self.faces.remove(&id);
                    self.reserved.remove(&id);
                    if let Some(ids) = changed.as_mut() {
                        ids.push(id);
                    }
                }
                "f" => {
                    let json = rest.next().ok_or_else(|| corrupt("face"))?;
                    let face: StoredFace =
                        serde_json::from_str(json).map_err(|e| corrupt(&e.to_string()))?;
                    self.faces.insert(id, face);
                }
                "r" => {
                    let json = rest.next().ok_or_else(|| corrupt("reservation"))?;
                    let r: Reservation =
                        serde_json::from_str(json).map_err(|e| corrupt(&e.to_string()))?;
                    self.reserved.insert(id, r);
                }
                other => return Err(corrupt(other)),
            }
        }
        self.seq = Some(seq);
        self.created.clone_from(created);
        Ok(changed.map_or(Changed::All, Changed::Ids))
    }

    /// The local store's search, on this copy: indexed faces and unexpired reservations other
    /// than `own`, at or above `threshold`, best first, at most `max`. With `only`, just those
    /// face ids are considered (the ones a sync brought in).
    pub fn hits(
        &self,
        embedding: &[f32],
        threshold: f32,
        max: usize,
        own: Option<&str>,
        now_ms: u64,
        only: &Changed,
    ) -> Vec<Hit> {
        let wanted = |id: &str| match only {
            Changed::All => true,
            Changed::Ids(ids) => ids.iter().any(|x| x == id),
        };
        let indexed = self
            .faces
            .iter()
            .filter(|(id, _)| wanted(id))
            .map(|(_, f)| (&f.face, f.embedding.as_slice(), false));
        let reserved = self
            .reserved
            .iter()
            .filter(|(id, r)| wanted(id) && r.expires_at_ms > now_ms && Some(id.as_str()) != own)
            .map(|(_, r)| (&r.face, r.embedding.as_slice(), true));
        rank_hits(embedding, indexed.chain(reserved), threshold, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::face::test_face as face;

    fn stored(id: &str, axis: usize) -> String {
        let mut embedding = vec![0.0; 4];
        embedding[axis] = 1.0;
        serde_json::to_string(&StoredFace {
            face: face(id),
            embedding,
        })
        .unwrap()
    }

    fn reservation(id: &str, expires_at_ms: u64) -> String {
        serde_json::to_string(&Reservation {
            face: face(id),
            embedding: vec![1.0, 0.0, 0.0, 0.0],
            expires_at_ms,
        })
        .unwrap()
    }

    fn reply(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn full_then_delta_keeps_the_copy_current() {
        let mut m = Mirror::default();
        let (a, b) = (stored("a", 0), stored("b", 1));
        let changed = m
            .apply(&reply(&["full", "2", "7", "f", "a", &a, "f", "b", &b]))
            .unwrap();
        assert_eq!(changed, Changed::All);
        assert_eq!((m.seq, m.created.as_str()), (Some(2), "7"));
        let x = [1.0, 0.0, 0.0, 0.0];
        let hits = m.hits(&x, 70.0, 5, None, 0, &Changed::All);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].face.face_id, "a");

        // "a" deleted, "c" reserved (matches x), "z" touched but gone.
        let c = reservation("c", 1_000);
        let changed = m
            .apply(&reply(&[
                "delta", "5", "7", "d", "a", "d", "c", "r", "c", &c, "d", "z",
            ]))
            .unwrap();
        assert_eq!(
            changed,
            Changed::Ids(vec!["a".into(), "c".into(), "z".into()])
        );
        let hits = m.hits(&x, 70.0, 5, None, 10, &changed);
        assert_eq!(hits.len(), 1);
        assert!(hits[0].reserved && hits[0].face.face_id == "c");
        // Expired, or the searcher's own reservation: no match.
        assert!(m.hits(&x, 70.0, 5, None, 1_000, &Changed::All).is_empty());
        assert!(m.hits(&x, 70.0, 5, Some("c"), 10, &Changed::All).is_empty());
        // Only the changed ids are considered with `Ids`.
        let y = [0.0, 1.0, 0.0, 0.0];
        assert!(m.hits(&y, 70.0, 5, None, 10, &changed).is_empty());
        assert_eq!(m.hits(&y, 70.0, 5, None, 10, &Changed::All).len(), 1);
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let mut m = Mirror::default();
        for bad in [
            reply(&[]),
            reply(&["full", "1"]),
            reply(&["full", "x", "7"]),
            reply(&["what", "1", "7"]),
            reply(&["delta", "1", "7", "f", "a"]),
            reply(&["delta", "1", "7", "f", "a", "{not json"]),
            reply(&["delta", "1", "7", "q", "a"]),
            reply(&["delta", "1", "7", "d"]),
        ] {
            assert!(
                matches!(m.apply(&bad), Err(FaceError::Internal(_))),
                "{bad:?}"
            );
            // Nothing half-applied is trusted: the next sync reloads the whole collection.
            assert_eq!(m.seq, None);
        }
    }
}
