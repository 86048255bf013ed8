//! The local object store: one directory per bucket under `<data-dir>/buckets/`.
//!
//! Invariant: a key can never name a path outside its bucket. Keys are split on `/` and every
//! component must be a plain name (no empty, `.` or `..` component), and the resolved parent
//! directory is checked to lie inside the bucket after following symbolic links.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Error, Object, ObjectStore, sha256_hex};

/// Temporary files written before an atomic rename; never listed as keys.
const TMP_PREFIX: &str = ".mapfleet-tmp-";

/// How many entity tags are remembered before the memo is cleared.
const ETAG_MEMO_ENTRIES: usize = 4096;

/// A file version: inode, length and modification time (ns). `put` replaces files by rename,
/// so a new version always has a new inode.
type FileVersion = (u64, u64, i128);

/// Buckets as directories: `<root>/<bucket>/<key>`.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    tmp_counter: AtomicU64,
    /// The sha256 of each file version already read, so that the steps of one item that read
    /// the same photo hash it once (an S3 server computes its ETag once, too).
    etags: std::sync::Mutex<std::collections::HashMap<PathBuf, (FileVersion, String)>>,
}

impl LocalStore {
    /// A store whose buckets are the directories under `root` (usually `<data-dir>/buckets`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            tmp_counter: AtomicU64::new(0),
            etags: Default::default(),
        }
    }

    /// The directory that holds the buckets.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, Error> {
        validate_bucket(bucket)?;
        Ok(self.root.join(bucket))
    }

    /// The path of an object, checked to stay inside its bucket.
    fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, Error> {
        let dir = self.bucket_dir(bucket)?;
        let invalid = |reason| Error::InvalidName {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason,
        };
        if key.is_empty() {
            return Err(invalid("empty key"));
        }
        if key.len() > 1024 {
            return Err(invalid("key longer than 1024 bytes"));
        }
        if key.contains('\0') {
            return Err(invalid("key contains NUL"));
        }
        let mut path = dir;
        for part in key.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(invalid("key has an empty, '.' or '..' path component"));
            }
            if part.starts_with(TMP_PREFIX) {
                return Err(invalid("key component uses the store's temporary prefix"));
            }
            path.push(part);
        }
        Ok(path)
    }

    /// Checks, after resolving links, that `path`'s parent lies inside the bucket directory.
    fn check_inside(&self, bucket: &str, key: &str, path: &Path) -> Result<(), Error> {
        let bucket_dir = self.bucket_dir(bucket)?;
        let Ok(bucket_real) = bucket_dir.canonicalize() else {
            return Err(Error::NoSuchBucket(bucket.to_owned()));
        };
        let parent = path.parent().unwrap_or(&bucket_dir);
        match parent.canonicalize() {
            Ok(real) if real.starts_with(&bucket_real) => Ok(()),
            Ok(_) => Err(Error::InvalidName {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                reason: "key resolves outside its bucket",
            }),
            Err(_) => Err(Error::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
        }
    }
}

impl LocalStore {
    /// The content's sha256, remembered per file version.
    fn etag(&self, path: &Path, meta: &std::fs::Metadata, bytes: &[u8]) -> String {
        use std::os::unix::fs::MetadataExt;
        let version: FileVersion = (
            meta.ino(),
            meta.len(),
            i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        );
        let memo = self.etags.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, etag)) = memo.get(path)
            && *v == version
            && meta.len() == bytes.len() as u64
        {
            return etag.clone();
        }
        drop(memo);
        let etag = sha256_hex(bytes);
        let mut memo = self.etags.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= ETAG_MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(path.to_path_buf(), (version, etag.clone()));
        etag
    }
}

/// Bucket names: 1–255 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub(super) fn validate_bucket(bucket: &str) -> Result<(), Error> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket != "."
        && bucket != ".."
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            bucket: bucket.to_owned(),
            key: String::new(),
            reason: "bucket names are 1-255 characters of A-Z a-z 0-9 . - _",
        })
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Object, Error> {
        let path = self.object_path(bucket, key)?;
        if !self.bucket_dir(bucket)?.is_dir() {
            return Err(Error::NoSuchBucket(bucket.to_owned()));
        }
        self.check_inside(bucket, key, &path)?;
        let no_key = || Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_key()),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(no_key());
        }
        let too_large = || Error::TooLarge {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            limit: max_bytes,
        };
        if meta.len() > max_bytes {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&mut file)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_large());
        }
        let etag = self.etag(&path, &meta, &bytes);
        Ok(Object {
            bytes: bytes.into(),
            etag,
        })
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        _content_type: &str,
    ) -> Result<String, Error> {
        let path = self.object_path(bucket, key)?;
        let bucket_dir = self.bucket_dir(bucket)?;
        if !bucket_dir.is_dir() {
            return Err(Error::NoSuchBucket(bucket.to_owned()));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.check_inside(bucket, key, &path)?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(sha256_hex(&bytes))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        std::fs::create_dir_all(self.bucket_dir(bucket)?)?;
        Ok(())
    }

    async fn list(&self, bucket: &str) -> Result<Vec<String>, Error> {
        let dir = self.bucket_dir(bucket)?;
        if !dir.is_dir() {
            return Err(Error::NoSuchBucket(bucket.to_owned()));
        }
        let mut keys = Vec::new();
        let mut stack = vec![(dir, String::new())];
        while let Some((d, prefix)) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with(TMP_PREFIX) {
                    continue;
                }
                let ty = entry.file_type()?;
                if ty.is_dir() {
                    stack.push((entry.path(), format!("{prefix}{name}/")));
                } else if ty.is_file() {
                    keys.push(format!("{prefix}{name}"));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (LocalStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "mapfleet-store-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (LocalStore::new(dir.join("buckets")), dir)
    }

    #[tokio::test]
    async fn put_get_list_round_trip() {
        let (s, dir) = store();
        s.create_bucket("photos").await.unwrap();
        let etag = s
            .put("photos", "a/b c.jpg", b"hello".to_vec(), "image/jpeg")
            .await
            .unwrap();
        let obj = s.get("photos", "a/b c.jpg", 100).await.unwrap();
        assert_eq!(&*obj.bytes, b"hello");
        assert_eq!(obj.etag, etag);
        assert_eq!(
            s.list("photos").await.unwrap(),
            vec!["a/b c.jpg".to_owned()]
        );
        assert_eq!(
            s.get("photos", "a/b c.jpg", 100).await.unwrap().etag,
            etag,
            "remembered tag"
        );
        let etag2 = s
            .put("photos", "a/b c.jpg", b"world".to_vec(), "")
            .await
            .unwrap();
        assert_ne!(etag, etag2);
        assert_eq!(
            s.get("photos", "a/b c.jpg", 100).await.unwrap().etag,
            etag2,
            "a replaced object has a new tag"
        );
        assert!(matches!(
            s.get("photos", "a/b c.jpg", 3).await,
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            s.get("photos", "nope", 100).await,
            Err(Error::NoSuchKey { .. })
        ));
        assert!(matches!(
            s.get("other", "x", 100).await,
            Err(Error::NoSuchBucket(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn keys_never_escape_their_bucket() {
        let (s, dir) = store();
        s.create_bucket("photos").await.unwrap();
        s.create_bucket("secret").await.unwrap();
        s.put("secret", "k", b"x".to_vec(), "").await.unwrap();
        for key in [
            "../secret/k",
            "a/../../secret/k",
            "/etc/passwd",
            "a//b",
            "./k",
            "",
            "a/",
            "x\0y",
        ] {
            assert!(
                matches!(
                    s.get("photos", key, 100).await,
                    Err(Error::InvalidName { .. })
                ),
                "{key:?} was not refused"
            );
            assert!(matches!(
                s.put("photos", key, vec![], "").await,
                Err(Error::InvalidName { .. })
            ));
        }
        for bucket in ["..", ".", "a/b", "", "x\\y"] {
            assert!(matches!(
                s.get(bucket, "k", 100).await,
                Err(Error::InvalidName { .. })
            ));
        }
        // A symbolic link inside a bucket that points outside it is refused too.
        std::os::unix::fs::symlink(dir.join("buckets/secret"), dir.join("buckets/photos/link"))
            .unwrap();
        assert!(matches!(
            s.get("photos", "link/k", 100).await,
            Err(Error::InvalidName { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
