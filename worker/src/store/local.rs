//! The local object store: one directory per bucket under `<data-dir>/buckets/`.
//!
//! Invariant: a key can never name a path outside its bucket. Keys are split on `/` and every
//! component must be a plain name (no empty, `.` or `..` component), and every symbolic link
//! on the way is resolved and checked:
//!
//! - A read resolves the whole path (directory links and a link in the last component alike);
//!   a path that leaves the bucket's real directory is [`Error::OutsideBucket`] (Access
//!   Denied, naming the key). The resolved file is then opened with `O_NOFOLLOW`, and the
//!   file actually opened is checked again through `/proc/self/fd`, so swapping a component
//!   for a link between the check and the open cannot reach outside either.
//! - A write refuses a key whose existing directories or existing link lead outside, before
//!   creating anything; it writes a new file and renames it over the key, so it replaces a
//!   link rather than writing through it.
//! - Links that stay inside the bucket (to another object, or a directory of it) are
//!   followed, consistently for reads and writes' directories. The bucket directory itself
//!   may be a link (e.g. to another disk): containment is checked against its real path.
//!   Listings show regular files only, never links.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Error, Object, ObjectInfo, ObjectStore, sha256_hex};

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

    /// The bucket directory's real path (it may itself be a link).
    fn bucket_real(&self, bucket: &str) -> Result<PathBuf, Error> {
        let bucket_dir = self.bucket_dir(bucket)?;
        match bucket_dir.canonicalize() {
            Ok(real) if real.is_dir() => Ok(real),
            _ => Err(Error::NoSuchBucket(bucket.to_owned())),
        }
    }

    /// Checks, after resolving links, that `path`'s parent lies inside the bucket directory.
    fn check_inside(&self, bucket: &str, key: &str, path: &Path) -> Result<(), Error> {
        let bucket_real = self.bucket_real(bucket)?;
        let parent = path.parent().unwrap_or(&bucket_real);
        match parent.canonicalize() {
            Ok(real) if real.starts_with(&bucket_real) => Ok(()),
            Ok(_) => Err(outside(bucket, key)),
            Err(_) => Err(Error::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
        }
    }

    /// Opens an object for reading: the whole path resolved and checked to stay inside the
    /// bucket, the resolved file opened without following a link, and what was opened
    /// checked again (see the module docs).
    fn open_inside(&self, bucket: &str, key: &str, path: &Path) -> Result<std::fs::File, Error> {
        let bucket_real = self.bucket_real(bucket)?;
        let no_key = || Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        // A dangling link, or a missing file or directory (or a file where a directory of
        // the key should be), is a missing key.
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(no_key());
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(outside(bucket, key)),
            Err(e) => return Err(e.into()),
        };
        if !real.starts_with(&bucket_real) {
            return Err(outside(bucket, key));
        }
        // O_NONBLOCK: a FIFO planted in a bucket must not hang the read (it is no regular
        // file and is refused below); it changes nothing for regular files.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&real)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_key()),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(outside(bucket, key)),
            Err(e) => return Err(e.into()),
        };
        if let Some(opened) = opened_path(&file)
            && !opened.starts_with(&bucket_real)
        {
            return Err(outside(bucket, key));
        }
        Ok(file)
    }

    /// Refuses a write whose key leads outside the bucket through links that exist already:
    /// the deepest existing directory on the way, and the key itself when it is a link.
    /// Runs before any directory is created, so none is ever created outside.
    fn check_write(&self, bucket: &str, key: &str, path: &Path) -> Result<(), Error> {
        let bucket_real = self.bucket_real(bucket)?;
        let mut dir = path.parent();
        while let Some(d) = dir {
            match d.canonicalize() {
                Ok(real) if real.starts_with(&bucket_real) => break,
                Ok(_) => return Err(outside(bucket, key)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => dir = d.parent(),
                Err(e) => return Err(e.into()),
            }
        }
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            // A dangling link counts as leaving: where it would lead cannot be checked.
            match path.canonicalize() {
                Ok(real) if real.starts_with(&bucket_real) => {}
                _ => return Err(outside(bucket, key)),
            }
        }
        Ok(())
    }
}

/// The refusal of a key that leads outside its bucket.
fn outside(bucket: &str, key: &str) -> Error {
    Error::OutsideBucket {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    }
}

/// The path of an open file as the kernel sees it, where `/proc` tells.
fn opened_path(file: &std::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
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
        let no_key = || Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        let mut file = self.open_inside(bucket, key, &path)?;
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
        self.check_write(bucket, key, &path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.check_inside(bucket, key, &path)?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let result = (|| {
            // create_new: O_EXCL, which never follows a link planted at the temporary name.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
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

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Error> {
        use std::io::{Seek, SeekFrom};
        let path = self.object_path(bucket, key)?;
        if !self.bucket_dir(bucket)?.is_dir() {
            return Err(Error::NoSuchBucket(bucket.to_owned()));
        }
        let mut file = self.open_inside(bucket, key, &path)?;
        if !file.metadata()?.is_file() {
            return Err(Error::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::with_capacity(len.min(16 << 20) as usize);
        file.take(len).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectInfo>, Error> {
        use std::os::unix::fs::MetadataExt;
        let keys = self.list(bucket).await?;
        let mut out = Vec::new();
        for key in keys
            .into_iter()
            .filter(|k| k.starts_with(prefix) && start_after.is_none_or(|a| k.as_str() > a))
            .take(max)
        {
            let path = self.object_path(bucket, &key)?;
            let meta = std::fs::metadata(&path)?;
            // The local store's entity tag is the content's sha256 (see `get`).
            let etag = self.get(bucket, &key, u64::MAX).await?.etag;
            out.push(ObjectInfo {
                key,
                size: meta.len(),
                etag,
                last_modified: meta.mtime(),
            });
        }
        Ok(out)
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, Error> {
        Ok(self.bucket_dir(bucket)?.is_dir())
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

    /// What a Distributed Map reads through: ranges of an object, pages of a listing.
    #[tokio::test]
    async fn ranges_pages_and_bucket_checks() {
        let (s, dir) = store();
        s.create_bucket("in").await.unwrap();
        s.put("in", "items.jsonl", b"0123456789".to_vec(), "")
            .await
            .unwrap();
        for key in ["p/a", "p/b", "p/c", "q/d"] {
            s.put("in", key, key.as_bytes().to_vec(), "").await.unwrap();
        }
        assert_eq!(
            s.get_range("in", "items.jsonl", 0, 4).await.unwrap(),
            b"0123"
        );
        assert_eq!(s.get_range("in", "items.jsonl", 8, 4).await.unwrap(), b"89");
        assert!(
            s.get_range("in", "items.jsonl", 20, 4)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            s.get_range("in", "nope", 0, 4).await,
            Err(Error::NoSuchKey { .. })
        ));
        assert!(matches!(
            s.get_range("out", "items.jsonl", 0, 4).await,
            Err(Error::NoSuchBucket(_))
        ));
        let page = s.list_page("in", "p/", None, 2).await.unwrap();
        let keys: Vec<&str> = page.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/a", "p/b"]);
        assert_eq!(page[0].size, 3);
        assert_eq!(page[0].etag, sha256_hex(b"p/a"));
        let page = s.list_page("in", "p/", Some("p/b"), 2).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].key, "p/c");
        assert!(s.bucket_exists("in").await.unwrap());
        assert!(!s.bucket_exists("out").await.unwrap());
        std::fs::remove_dir_all(dir).unwrap();
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
            s.get("photos", "a/b c.jpg/under-a-file", 100).await,
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
        // A key over S3's 1024 bytes: refused by name, never turned into a path.
        let long = "k/".repeat(600) + "x.jpg";
        for (key, reason) in [
            (long.as_str(), "1024"),
            ("/etc/passwd", "'..'"),
            ("x\0y", "NUL"),
        ] {
            match s.get("photos", key, 100).await {
                Err(e @ Error::InvalidName { .. }) => {
                    assert!(e.to_string().contains(reason), "{key:?}: {e}")
                }
                other => panic!("{key:?}: {:?}", other.map(|_| ())),
            }
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
            Err(Error::OutsideBucket { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn file_links_leaving_the_bucket_are_refused_for_reads_and_writes() {
        let (s, dir) = store();
        s.create_bucket("photos").await.unwrap();
        let outside_file = dir.join("secret.jpg");
        std::fs::write(&outside_file, b"not yours").unwrap();
        let photos = dir.join("buckets/photos");
        std::os::unix::fs::symlink(&outside_file, photos.join("link.jpg")).unwrap();
        std::fs::create_dir_all(photos.join("sub")).unwrap();
        std::os::unix::fs::symlink("../../../secret.jpg", photos.join("sub/rel.jpg")).unwrap();
        for key in ["link.jpg", "sub/rel.jpg"] {
            let err = s.get("photos", key, 100).await.unwrap_err();
            assert!(matches!(err, Error::OutsideBucket { .. }), "{key}: {err:?}");
            let message = err.to_string();
            assert!(
                message.contains("Access Denied") && message.contains(key),
                "{message}"
            );
            assert!(matches!(
                s.put("photos", key, b"x".to_vec(), "").await,
                Err(Error::OutsideBucket { .. })
            ));
        }
        assert_eq!(std::fs::read(&outside_file).unwrap(), b"not yours");
        // A write through a directory link that leaves the bucket creates nothing outside.
        std::os::unix::fs::symlink(&dir, photos.join("up")).unwrap();
        assert!(matches!(
            s.put("photos", "up/new/x.jpg", b"x".to_vec(), "").await,
            Err(Error::OutsideBucket { .. })
        ));
        assert!(!dir.join("new").exists());
        // A dangling link is a missing key to read, and no place to write.
        std::os::unix::fs::symlink(dir.join("gone.jpg"), photos.join("dangling.jpg")).unwrap();
        assert!(matches!(
            s.get("photos", "dangling.jpg", 100).await,
            Err(Error::NoSuchKey { .. })
        ));
        assert!(matches!(
            s.put("photos", "dangling.jpg", b"x".to_vec(), "").await,
            Err(Error::OutsideBucket { .. })
        ));
        assert!(!dir.join("gone.jpg").exists());
        // Links are never listed; only the one regular file is.
        s.put("photos", "real.jpg", b"ok".to_vec(), "")
            .await
            .unwrap();
        assert_eq!(s.list("photos").await.unwrap(), vec!["real.jpg".to_owned()]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn links_inside_the_bucket_are_followed() {
        let (s, dir) = store();
        s.create_bucket("photos").await.unwrap();
        s.put("photos", "a/real.jpg", b"pixels".to_vec(), "")
            .await
            .unwrap();
        let photos = dir.join("buckets/photos");
        std::os::unix::fs::symlink("a/real.jpg", photos.join("alias.jpg")).unwrap();
        std::os::unix::fs::symlink("a", photos.join("dir")).unwrap();
        assert_eq!(
            &*s.get("photos", "alias.jpg", 100).await.unwrap().bytes,
            b"pixels"
        );
        assert_eq!(
            &*s.get("photos", "dir/real.jpg", 100).await.unwrap().bytes,
            b"pixels"
        );
        // A write to the link replaces the link with the object, never the file behind it.
        s.put("photos", "alias.jpg", b"new".to_vec(), "")
            .await
            .unwrap();
        assert_eq!(
            &*s.get("photos", "alias.jpg", 100).await.unwrap().bytes,
            b"new"
        );
        assert_eq!(
            &*s.get("photos", "a/real.jpg", 100).await.unwrap().bytes,
            b"pixels"
        );
        // The bucket directory itself may be a link (another disk, say).
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("k.jpg"), b"far").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("buckets/linked")).unwrap();
        assert_eq!(&*s.get("linked", "k.jpg", 100).await.unwrap().bytes, b"far");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
