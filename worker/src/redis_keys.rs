//! The Redis keys the worker's photo stores use on a fleet, on top of `shared`'s schema
//! (`shared::redis_schema`) and the coordinator's (`coordinator::fleet::keys`). `P` is the
//! fleet prefix (`--prefix`), `C` a face collection id, `T` a metadata table name.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{faces:C}:meta` | hash | `created_ms`, `seq` (last change), `floor` (see below) |
//! | `P:{faces:C}:faces` | hash | FaceId → indexed face and embedding (JSON) |
//! | `P:{faces:C}:order` | sorted set | FaceId → `seq` when indexed (ListFaces' order) |
//! | `P:{faces:C}:reserved` | hash | FaceId → reservation: face, embedding, expiry (JSON) |
//! | `P:{faces:C}:expiry` | sorted set | FaceId → reservation expiry (Unix ms) |
//! | `P:{faces:C}:changes` | sorted set | FaceId → `seq` of its last change |
//! | `P:table:T` | hash | `Username` → metadata item (JSON) |
//! | `P:analysis:H` | hash | a photo's shared analysis, expiring ([`crate::face::shared_analyses`]) |
//!
//! A collection's keys share the hash tag `{faces:C}`, so a Redis Cluster keeps them in one
//! slot and one script may change them all. `changes` lets a worker bring its cached copy of
//! the collection up to date by reading only the faces changed since the `seq` it holds; it
//! is trimmed to its newest entries, and `floor` is the highest `seq` trimmed away: a copy
//! older than that reloads the whole collection. The collection and table keys never
//! expire: a collection and a table are durable data, like the Rekognition collection and
//! the DynamoDB table they stand for.

/// Key names for one fleet prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoKeys {
    prefix: String,
}

/// The keys of one face collection, in the order the collection scripts take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionKeys {
    pub meta: String,
    pub faces: String,
    pub order: String,
    pub reserved: String,
    pub expiry: String,
    pub changes: String,
}

impl CollectionKeys {
    /// `KEYS[1..6]` of every collection script.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.meta,
            &self.faces,
            &self.order,
            &self.reserved,
            &self.expiry,
            &self.changes,
        ]
    }
}

impl PhotoKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys of collection `id` (a validated id: `[a-zA-Z0-9_.-]`, so never a brace).
    pub fn collection(&self, id: &str) -> CollectionKeys {
        let k = |part: &str| format!("{}:{{faces:{id}}}:{part}", self.prefix);
        CollectionKeys {
            meta: k("meta"),
            faces: k("faces"),
            order: k("order"),
            reserved: k("reserved"),
            expiry: k("expiry"),
            changes: k("changes"),
        }
    }

    /// The metadata table `name`.
    pub fn table(&self, name: &str) -> String {
        format!("{}:table:{name}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_keys_share_one_hash_tag_under_the_prefix() {
        let k = PhotoKeys::new("p");
        for key in k.collection("rider-photos").all() {
            assert!(key.starts_with("p:{faces:rider-photos}:"), "{key}");
        }
        assert_eq!(
            k.table("mapfleet-rider-photos"),
            "p:table:mapfleet-rider-photos"
        );
    }
}
