//! The Lua scripts of the Redis face collection. Each runs atomically, which is what makes
//! "nothing changed since the copy I searched, so reserve" race-free across processes.
//!
//! Every script takes the collection's six keys in [`crate::redis_keys::CollectionKeys::all`]
//! order and answers a flat array of strings whose first element says what happened
//! (`missing` when the collection does not exist). Similarity is never computed here: Lua
//! would have to decode every embedding and would block Redis for the whole scan; workers
//! compute it on their cached copy, and the scripts only check that the copy is current.

use std::sync::LazyLock;

use shared::redis::Script;

/// Helpers every script starts with. `log` records a change to one face id (indexed,
/// deleted, reserved, released): it bumps `seq` and moves the id to the top of `changes`,
/// so a worker's copy at `seq` N catches up by re-reading the ids scored above N. `trim`
/// keeps `changes` to ARGV's limit and records in `floor` the highest `seq` dropped.
const PRELUDE: &str = r#"
local META, FACES, ORDER, RESERVED, EXPIRY, CHANGES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local function log(id)
  local seq = redis.call('HINCRBY', META, 'seq', 1)
  redis.call('ZADD', CHANGES, seq, id)
  return seq
end
local function trim(limit)
  local n = redis.call('ZCARD', CHANGES)
  if n > limit then
    local cut = redis.call('ZRANGE', CHANGES, n - limit - 1, n - limit - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', CHANGES, 0, n - limit - 1)
    redis.call('HSET', META, 'floor', cut[2])
  end
end
if redis.call('EXISTS', META) == 0 then return {'missing'} end
"#;

/// ARGV: now ms. Creates the collection unless it exists (the prelude's existence check does
/// not apply: this script has its own).
const CREATE: &str = r#"
if redis.call('HSETNX', KEYS[1], 'created_ms', ARGV[1]) == 0 then return {'exists'} end
redis.call('HSET', KEYS[1], 'seq', 0, 'floor', 0)
return {'created'}
"#;

/// ARGV: the seq the caller's copy is at (-1 for none), and the `created_ms` of the
/// collection it copied. Answers `full SEQ CREATED` followed by every face and reservation
/// when the copy cannot catch up from `changes` (none, too old, or of a collection since
/// recreated), else `delta SEQ CREATED` followed by, for each id changed since the copy's
/// seq, `d ID` (forget it) and then its current state. States are `f ID JSON` (indexed) and
/// `r ID JSON` (reserved).
const SYNC: &str = r#"
local seq = tonumber(redis.call('HGET', META, 'seq') or '0')
local floor = tonumber(redis.call('HGET', META, 'floor') or '0')
local created = redis.call('HGET', META, 'created_ms') or ''
local since = tonumber(ARGV[1])
local out
if since < 0 or since < floor or since > seq or created ~= ARGV[2] then
  out = {'full', tostring(seq), created}
  local all = redis.call('HGETALL', FACES)
  for i = 1, #all, 2 do table.insert(out, 'f'); table.insert(out, all[i]); table.insert(out, all[i + 1]) end
  all = redis.call('HGETALL', RESERVED)
  for i = 1, #all, 2 do table.insert(out, 'r'); table.insert(out, all[i]); table.insert(out, all[i + 1]) end
else
  out = {'delta', tostring(seq), created}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', CHANGES, '(' .. since, '+inf')) do
    table.insert(out, 'd'); table.insert(out, id)
    local f = redis.call('HGET', FACES, id)
    if f then table.insert(out, 'f'); table.insert(out, id); table.insert(out, f) end
    local r = redis.call('HGET', RESERVED, id)
    if r then table.insert(out, 'r'); table.insert(out, id); table.insert(out, r) end
  end
end
return out
"#;

/// ARGV: expected seq, face id, reservation JSON, its expiry ms, now ms, changes limit.
/// Stores the reservation only if nothing changed since the caller's copy (which held no
/// match): otherwise `stale SEQ`, and the caller catches up and checks the new faces. Also
/// releases expired reservations, after the check so that housekeeping never makes the
/// caller stale.
const RESERVE: &str = r#"
local seq = tonumber(redis.call('HGET', META, 'seq') or '0')
if seq ~= tonumber(ARGV[1]) then return {'stale', tostring(seq)} end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', ARGV[5])) do
  redis.call('HDEL', RESERVED, id)
  redis.call('ZREM', EXPIRY, id)
  log(id)
end
redis.call('HSET', RESERVED, ARGV[2], ARGV[3])
redis.call('ZADD', EXPIRY, ARGV[4], ARGV[2])
local after = log(ARGV[2])
trim(tonumber(ARGV[6]))
return {'reserved', tostring(after)}
"#;

/// ARGV: face id, stored face JSON, changes limit. Releases the reservation with that id and
/// adds the face, unless a face with that id is already indexed: then that face is answered
/// unchanged (`exists JSON`), which makes a redelivered IndexFaces harmless.
const INDEX: &str = r#"
local id = ARGV[1]
local released = redis.call('HDEL', RESERVED, id)
redis.call('ZREM', EXPIRY, id)
local existing = redis.call('HGET', FACES, id)
if existing then
  if released == 1 then log(id); trim(tonumber(ARGV[3])) end
  return {'exists', existing}
end
redis.call('HSET', FACES, id, ARGV[2])
redis.call('ZADD', ORDER, log(id), id)
trim(tonumber(ARGV[3]))
return {'indexed', ARGV[2]}
"#;

/// ARGV: changes limit, then face ids. Answers `deleted` and the ids that were indexed.
const DELETE: &str = r#"
local out = {'deleted'}
for i = 2, #ARGV do
  if redis.call('HDEL', FACES, ARGV[i]) == 1 then
    redis.call('ZREM', ORDER, ARGV[i])
    log(ARGV[i])
    table.insert(out, ARGV[i])
  end
end
trim(tonumber(ARGV[1]))
return out
"#;

/// No ARGV. Answers `faces` and the indexed faces' JSON in the order they were indexed.
const LIST: &str = r#"
local out = {'faces'}
local ids = redis.call('ZRANGE', ORDER, 0, -1)
-- In chunks: Lua's unpack has a stack limit of a few thousand values.
for i = 1, #ids, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #ids) do table.insert(chunk, ids[j]) end
  for _, f in ipairs(redis.call('HMGET', FACES, unpack(chunk))) do
    if f then table.insert(out, f) end
  end
end
return out
"#;

pub(super) struct Scripts {
    pub create: Script,
    pub sync: Script,
    pub reserve: Script,
    pub index: Script,
    pub delete: Script,
    pub list: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
    Scripts {
        create: Script::new(CREATE),
        sync: with_prelude(SYNC),
        reserve: with_prelude(RESERVE),
        index: with_prelude(INDEX),
        delete: with_prelude(DELETE),
        list: with_prelude(LIST),
    }
});
