//! A JSON document in a file, read and updated under a lock that holds across processes
//! (several embedded runs, or a worker beside a `mapfleet` command, may share a data dir).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;

/// A JSON document stored at one path; a missing file reads as `T::default()`.
#[derive(Debug)]
pub struct JsonFile {
    path: PathBuf,
    lock_path: PathBuf,
    /// Serialises this process's writers (the file lock is per open file description).
    local: Mutex<()>,
}

impl JsonFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        Self {
            path,
            lock_path: lock_path.into(),
            local: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_file(&self) -> Result<std::fs::File, Error> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?)
    }

    fn load<T: DeserializeOwned + Default>(&self) -> Result<T, Error> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: self.path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the document under a shared lock.
    pub fn read<T: DeserializeOwned + Default>(&self) -> Result<T, Error> {
        let lock = self.lock_file()?;
        lock.lock_shared()?;
        let out = self.load();
        let _ = lock.unlock();
        out
    }

    /// Reads, changes and atomically rewrites the document under an exclusive lock. The
    /// closure returns whether to write, and a result.
    pub fn update<T, R>(&self, f: impl FnOnce(&mut T) -> (bool, R)) -> Result<R, Error>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        let _guard = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let lock = self.lock_file()?;
        lock.lock()?;
        let result = (|| {
            let mut doc: T = self.load()?;
            let (write, r) = f(&mut doc);
            if write {
                let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Corrupt {
                    path: self.path.display().to_string(),
                    message: e.to_string(),
                })?;
                let mut tmp = self.path.clone().into_os_string();
                tmp.push(format!(".tmp-{}", std::process::id()));
                let tmp = PathBuf::from(tmp);
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                std::fs::rename(&tmp, &self.path)?;
            }
            Ok(r)
        })();
        let _ = lock.unlock();
        result
    }
}
