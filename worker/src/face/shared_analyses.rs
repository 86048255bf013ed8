//! Photo analyses shared by the workers of a fleet, in its Redis.
//!
//! A rider photo's steps (face-detection, then face-search and index-face) are separate
//! messages on one queue, so on a fleet of N workers a later step lands on another worker
//! than the one that analysed the photo (N-1 times in N). Without sharing, that worker
//! decodes the photo, detects, aligns and measures its faces again: about 25 ms of a core
//! per photo on the workshop photos, which is most of what a second worker loses against
//! the first. With sharing, each worker that analyses a photo, or embeds one of its faces,
//! leaves the result in Redis for a short while, and a worker that misses its own cache
//! looks there before doing the work.
//!
//! What is shared is exactly what [`super::local`] would compute (the detections, the face
//! details, the aligned crops, the SFace embeddings, byte for byte), so results never depend
//! on which worker ran a step. One hash per photo, keyed by the photo's identity (bucket,
//! key, entity tag: a replaced object is a different photo):
//!
//! | field | holds |
//! |---|---|
//! | `faces` | JSON: the entity tag, and per face its detection and `FaceDetail` |
//! | `crop:I` | face I's aligned 112×112 RGB crop (37,632 bytes) |
//! | `emb:I` | face I's embedding, little-endian `f32`s |
//!
//! The crops are what the embeddings are made from: once every face of a photo has its
//! embedding, they are deleted and the entry is a couple of KB. Every write renews the key's
//! time to live (`--shared-analysis-secs`, default 30 s), so the entries of photos whose
//! later steps never come (rejected photos) go by themselves; Redis holds at most the photos
//! analysed in that window. Sharing is a cache: a Redis error is logged and the step does
//! the work itself.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::redis_conn::RedisConn;

use super::FaceDetail;
use super::cache::{Analysis, AnalyzedFace, Key};
use super::yunet::Detection;

/// The `faces` field.
#[derive(Serialize, Deserialize)]
struct Header {
    etag: String,
    faces: Vec<HeaderFace>,
}

#[derive(Serialize, Deserialize)]
struct HeaderFace {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    score: f32,
    landmarks: [[f32; 2]; 5],
    detail: FaceDetail,
}

fn header(a: &Analysis) -> Header {
    Header {
        etag: a.etag.clone(),
        faces: a
            .faces
            .iter()
            .map(|f| {
                let d = &f.detection;
                HeaderFace {
                    x: d.x,
                    y: d.y,
                    w: d.w,
                    h: d.h,
                    score: d.score,
                    landmarks: d.landmarks,
                    detail: f.detail.clone(),
                }
            })
            .collect(),
    }
}

/// The header as JSON whose numbers read back bit for bit: each `f32` is written as the
/// `f64` it widens to (exact), whose shortest form parses back to the same `f64`
/// (`float_roundtrip`), which narrows back exactly. (An `f32`'s own shortest form would be
/// parsed through an `f64` and rounded twice.)
fn header_json(h: &Header) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&serde_json::to_value(h)?)
}

fn embedding_bytes(e: &[f32]) -> Vec<u8> {
    e.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn embedding_from(bytes: &[u8]) -> Option<Arc<[f32]>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// The hash's fields to write for `a`: the header, the crops of faces without an embedding
/// yet, and the embeddings there are.
fn fields(a: &Analysis) -> Result<Vec<(String, Vec<u8>)>, serde_json::Error> {
    let mut out = vec![("faces".to_string(), header_json(&header(a))?)];
    let complete = a.faces.iter().all(|f| f.embedding.get().is_some());
    for (i, f) in a.faces.iter().enumerate() {
        if let Some(e) = f.embedding.get() {
            out.push((format!("emb:{i}"), embedding_bytes(e)));
        }
        if !complete && !f.crop.is_empty() {
            out.push((format!("crop:{i}"), f.crop.clone()));
        }
    }
    Ok(out)
}

/// The analysis in a hash's fields, if it is whole: the header parses, and every face has
/// its crop (the right size) or its embedding.
fn analysis_from(fields: &std::collections::HashMap<String, Vec<u8>>) -> Option<Analysis> {
    let header: Header = serde_json::from_slice(fields.get("faces")?).ok()?;
    let crop_len = super::align::CROP * super::align::CROP * 3;
    let faces = header
        .faces
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let embedding = std::sync::OnceLock::new();
            if let Some(e) = fields
                .get(&format!("emb:{i}"))
                .and_then(|b| embedding_from(b))
            {
                let _ = embedding.set(e);
            }
            let crop = fields
                .get(&format!("crop:{i}"))
                .filter(|c| c.len() == crop_len)
                .cloned()
                .unwrap_or_default();
            if crop.is_empty() && embedding.get().is_none() {
                return None;
            }
            Some(AnalyzedFace {
                detection: Detection {
                    x: f.x,
                    y: f.y,
                    w: f.w,
                    h: f.h,
                    score: f.score,
                    landmarks: f.landmarks,
                },
                detail: f.detail,
                crop,
                embedding,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Analysis {
        etag: header.etag,
        faces,
    })
}

/// The key of a photo's shared analysis: `P:analysis:H`, H from the sha256 of (bucket, key,
/// entity tag), so that any object key (any length, any bytes) makes a short key. Photos
/// given as bytes have an empty bucket and key and their sha256 as the tag.
pub fn redis_key(prefix: &str, bucket: &str, key: &str, etag: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [bucket, key, etag] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!(
        "{prefix}:analysis:{}",
        crate::store::hex(&h.finalize()[..16])
    )
}

/// Analyses other workers left in the fleet's Redis, and the place to leave ours.
pub struct SharedAnalyses {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
}

impl SharedAnalyses {
    /// Analyses under `prefix`, each kept `ttl` after its last write.
    pub fn new(conn: RedisConn, prefix: impl Into<String>, ttl: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            ttl,
        }
    }

    fn ttl_ms(&self) -> u64 {
        (self.ttl.as_millis() as u64).max(1)
    }
}

fn skipped(what: &str, e: impl std::fmt::Display) {
    tracing::debug!(error = %e, "shared analysis: {what} skipped");
}

impl SharedAnalyses {
    fn key(&self, key: &Key) -> String {
        redis_key(&self.prefix, &key.0, &key.1, &key.2)
    }

    /// Runs a read; a Redis error is logged and reads as nothing.
    async fn read<T: shared::redis::FromRedisValue>(&self, cmd: &shared::redis::Cmd) -> Option<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| skipped("read", e))
            .ok()
    }

    /// Runs `pipe`'s writes to the hash `k` and renews its time to live; a Redis error is
    /// logged.
    async fn write(&self, mut pipe: shared::redis::Pipeline, k: &str) {
        pipe.cmd("PEXPIRE").arg(k).arg(self.ttl_ms()).ignore();
        let mut conn = self.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            skipped("write", e);
        }
    }

    /// The photo's analysis, if a worker left one usable here (every face with its crop or
    /// its embedding).
    pub(crate) async fn get(&self, key: &Key) -> Option<Analysis> {
        let mut cmd = shared::redis::cmd("HGETALL");
        cmd.arg(self.key(key));
        let fields: std::collections::HashMap<String, Vec<u8>> = self.read(&cmd).await?;
        if fields.is_empty() {
            return None;
        }
        analysis_from(&fields).filter(|a| a.etag == key.2)
    }

    /// Face `i`'s embedding, if a worker left it.
    pub(crate) async fn embedding(&self, key: &Key, i: usize) -> Option<Arc<[f32]>> {
        let mut cmd = shared::redis::cmd("HGET");
        cmd.arg(self.key(key)).arg(format!("emb:{i}"));
        let bytes: Option<Vec<u8>> = self.read(&cmd).await?;
        embedding_from(&bytes?)
    }

    /// Leaves the analysis (with the embeddings it has).
    pub(crate) async fn put(&self, key: &Key, analysis: &Analysis) {
        let fields = match fields(analysis) {
            Ok(f) => f,
            Err(e) => return skipped("write", e),
        };
        let k = self.key(key);
        let mut pipe = shared::redis::pipe();
        pipe.cmd("HSET").arg(&k);
        for (f, v) in &fields {
            pipe.arg(f).arg(v.as_slice());
        }
        pipe.ignore();
        self.write(pipe, &k).await;
    }

    /// Leaves face `i`'s embedding; `complete: Some(n)`: every one of the photo's `n` faces
    /// now has its embedding, so their crops are no longer needed.
    pub(crate) async fn put_embedding(
        &self,
        key: &Key,
        i: usize,
        embedding: &[f32],
        complete: Option<usize>,
    ) {
        let k = self.key(key);
        let mut pipe = shared::redis::pipe();
        pipe.cmd("HSET")
            .arg(&k)
            .arg(format!("emb:{i}"))
            .arg(embedding_bytes(embedding))
            .ignore();
        if let Some(faces) = complete {
            let mut del = shared::redis::cmd("HDEL");
            del.arg(&k);
            for j in 0..faces {
                del.arg(format!("crop:{j}"));
            }
            pipe.add_command(del).ignore();
        }
        self.write(pipe, &k).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::{BoolAttribute, BoundingBox, Landmark, Pose, Quality};

    fn sample(embedded: bool) -> Analysis {
        let crop_len = super::super::align::CROP * super::super::align::CROP * 3;
        let face = |n: u8| {
            let embedding = std::sync::OnceLock::new();
            if embedded {
                let _ = embedding.set(Arc::<[f32]>::from(vec![0.1f32 * n as f32, -1.5e-7, 3.25]));
            }
            AnalyzedFace {
                detection: Detection {
                    x: 10.5,
                    y: 20.25,
                    w: 100.0 / 3.0,
                    h: 41.0,
                    score: 0.912_345_7,
                    landmarks: [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.1, 0.3]],
                },
                detail: FaceDetail {
                    bounding_box: BoundingBox {
                        width: 0.1,
                        height: 1.0 / 7.0,
                        left: 0.3,
                        top: 0.4,
                    },
                    sunglasses: BoolAttribute {
                        value: false,
                        confidence: 97.123_46,
                    },
                    landmarks: vec![Landmark {
                        kind: "eyeLeft".into(),
                        x: 0.25,
                        y: 1.0 / 3.0,
                    }],
                    pose: Pose {
                        roll: 1.5,
                        yaw: -2.0 / 3.0,
                        pitch: 0.0,
                    },
                    quality: Quality {
                        brightness: 55.5,
                        sharpness: 1.0 / 9.0,
                    },
                    confidence: 99.999,
                },
                crop: (0..crop_len).map(|i| (i as u8).wrapping_mul(n)).collect(),
                embedding,
            }
        };
        Analysis {
            etag: "etag-1".into(),
            faces: vec![face(1), face(2)],
        }
    }

    fn as_map(fields: Vec<(String, Vec<u8>)>) -> std::collections::HashMap<String, Vec<u8>> {
        fields.into_iter().collect()
    }

    fn same(a: &Analysis, b: &Analysis) {
        assert_eq!(a.etag, b.etag);
        assert_eq!(a.faces.len(), b.faces.len());
        for (x, y) in a.faces.iter().zip(&b.faces) {
            assert_eq!(x.detection, y.detection);
            assert_eq!(x.detail, y.detail);
            assert_eq!(x.embedding.get(), y.embedding.get());
        }
    }

    #[test]
    fn an_analysis_comes_back_bit_for_bit() {
        let a = sample(false);
        let back = analysis_from(&as_map(fields(&a).unwrap())).expect("whole");
        same(&a, &back);
        for (x, y) in a.faces.iter().zip(&back.faces) {
            assert_eq!(x.crop, y.crop);
        }

        // With every embedding, the crops are not written and not needed.
        let e = sample(true);
        let f = fields(&e).unwrap();
        assert!(f.iter().all(|(k, _)| !k.starts_with("crop:")), "crops sent");
        let back = analysis_from(&as_map(f)).expect("whole");
        same(&e, &back);
        assert!(back.faces.iter().all(|f| f.crop.is_empty()));
    }

    #[test]
    fn every_float_of_the_header_reads_back_bit_for_bit() {
        // f32s spread over the whole range (a fixed xorshift sequence of bit patterns).
        let mut x: u32 = 0x9e37_79b9;
        let mut a = sample(false);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            a.faces[0].detection.score = v;
            a.faces[0].detail.pose.yaw = -v;
            let back = analysis_from(&as_map(fields(&a).unwrap())).expect("whole");
            assert_eq!(back.faces[0].detection.score.to_bits(), v.to_bits());
            assert_eq!(back.faces[0].detail.pose.yaw.to_bits(), (-v).to_bits());
        }
    }

    #[test]
    fn a_partial_or_damaged_entry_is_not_used() {
        let a = sample(false);
        // A face with neither its crop nor its embedding (crops deleted, one embedding
        // lost): the analysis is not whole.
        let mut m = as_map(fields(&a).unwrap());
        m.remove("crop:1");
        assert!(analysis_from(&m).is_none());
        // A crop of the wrong size, a bad header.
        let mut m = as_map(fields(&a).unwrap());
        m.get_mut("crop:0").unwrap().pop();
        assert!(analysis_from(&m).is_none());
        let mut m = as_map(fields(&a).unwrap());
        m.insert("faces".into(), b"{".to_vec());
        assert!(analysis_from(&m).is_none());
        assert!(embedding_from(&[1, 2, 3]).is_none());
    }

    #[test]
    fn keys_are_short_and_tell_photos_apart() {
        let k = |b: &str, n: &str, e: &str| redis_key("p", b, n, e);
        assert_eq!(k("b", "k", "e"), k("b", "k", "e"));
        assert_ne!(k("b", "k", "e"), k("b", "k", "f"));
        // The parts are length-prefixed: moving a character between them is another photo.
        assert_ne!(k("bk", "", "e"), k("b", "k", "e"));
        assert!(k("b", &"x".repeat(5000), "e").len() < 50);
        assert!(k("b", "k", "e").starts_with("p:analysis:"));
    }
}
