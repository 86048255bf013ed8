//! Embedded mode's files under `<data-dir>/api/`:
//!
//! | path | holds | written |
//! |---|---|---|
//! | `machines/M.json` | [`MachineRecord`](crate::api::store::MachineRecord) | whole, atomically |
//! | `machines/M.tags.json` | tag key → value | whole, atomically |
//! | `machines/M.revisions.json` | `DEFINITION_ID ROLE_ARN` → [`Revision`](crate::api::store::Revision) | whole, atomically |
//! | `machines/M.executions` | the ARNs of the executions M started, a line each | appended, fsync'd |
//! | `executions/M/E/record.json` | [`ExecRecord`]: status, input, output, error, dates, redrive count | whole, atomically |
//! | `executions/M/E/definition.json` | the definition the execution runs, as sent | once |
//! | `executions/M/E/history.jsonl` | its history events, a line each | appended |
//! | `executions/M/E/resume.json` | the root cursor a redrive resumes from | whole, atomically |
//! | `executions/M/E/mapruns.json` | its map runs' facts, by map run ARN (the fleet's shape) | whole, atomically |
//! | `token.key` | the key of `.waitForTaskToken` tokens' secrets (64 hex digits, mode 0600), so a token from before a restart is known as this store's (TaskTimedOut, not InvalidToken) | once, atomically |
//!
//! `M` and `E` are the machine and execution names with every byte outside `[A-Za-z0-9_-]`
//! written `%XX` (names cannot hold `%`, and `.`/`..` cannot escape). "Atomically": a
//! temporary file is written and fsync'd, renamed over the old one, and the directory
//! fsync'd, so a reader (or a restart after `kill -9` or a power cut) sees the old file or
//! the new one, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use coordinator::driver::Status;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::Event;
use coordinator::engine::token::TokenKey;

/// An execution as embedded mode keeps it (its history apart).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRecord {
    pub info: ExecutionInfo,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_date: Option<DateTime<Utc>>,
    /// The SHA-256 of the definition it runs (`definition.json`).
    pub definition_id: String,
    /// The latest redrive's client token, so a repeated call is answered alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_token: Option<String>,
}

/// A name as a file name: bytes outside `[A-Za-z0-9_-]` as `%XX`.
pub fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The paths of one data directory's API state.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            root: data_dir.join("api"),
        }
    }

    pub fn machines(&self) -> PathBuf {
        self.root.join("machines")
    }

    pub fn machine(&self, name: &str, suffix: &str) -> PathBuf {
        self.machines().join(format!("{}{suffix}", file_name(name)))
    }

    pub fn executions(&self) -> PathBuf {
        self.root.join("executions")
    }

    /// The key of the `.waitForTaskToken` tokens' secrets.
    pub fn token_key(&self) -> PathBuf {
        self.root.join("token.key")
    }

    /// The directory of execution `name` of `machine`.
    pub fn execution(&self, machine: &str, name: &str) -> PathBuf {
        self.executions()
            .join(file_name(machine))
            .join(file_name(name))
    }
}

/// Writes `bytes` to `path` atomically and durably (see the module's notes).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// The store's token key ([`Layout::token_key`]), drawn from the OS and written (readable by
/// its owner only) the first time.
pub fn token_key(layout: &Layout) -> std::io::Result<TokenKey> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = layout.token_key();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return TokenKey::from_hex(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not 64 hex digits", path.display()),
                )
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = coordinator::embedded::os_token_key();
    let text = key.to_hex();
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".token.key.tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(key)
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// [`write_atomic`] of a value as JSON.
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// A JSON file, `None` when it is not there.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Appends one line and fsyncs it.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let created = !path.exists();
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()?;
    if created && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The lines of a file (none when it is not there).
pub fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    match File::open(path) {
        Ok(f) => BufReader::new(f).lines().collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// An execution's history events, in order. A line that does not parse is where a writer
/// stopped mid-line (the process died): it and anything after it are not events.
pub fn read_history(path: &Path) -> std::io::Result<Vec<Event>> {
    let mut out = Vec::new();
    for line in read_lines(path)? {
        match serde_json::from_str::<Event>(&line) {
            Ok(e) => out.push(e),
            Err(_) => break,
        }
    }
    Ok(out)
}

/// The history file of an execution, appended to by its run.
pub struct HistoryFile {
    file: std::io::BufWriter<File>,
}

impl HistoryFile {
    pub fn open(path: &Path) -> std::io::Result<HistoryFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(HistoryFile {
            file: std::io::BufWriter::new(file),
        })
    }

    pub fn push(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.file, event).map_err(std::io::Error::other)?;
        self.file.write_all(b"\n")
    }

    /// Hands what was pushed to the OS (a `kill -9` loses none of it from then on).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// [`HistoryFile::flush`], then to the disk (a power cut loses none of it).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_file_names_that_cannot_escape_or_collide() {
        assert_eq!(file_name("Photos-1_a"), "Photos-1_a");
        assert_eq!(file_name(".."), "%2E%2E");
        assert_eq!(file_name("a.b"), "a%2Eb");
        assert_ne!(file_name("%41"), file_name("A"));
        assert_eq!(file_name("é"), "%C3%A9");
    }

    #[test]
    fn atomic_writes_replace_and_a_torn_history_line_ends_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/record.json");
        write_json(&p, &serde_json::json!({"a": 1})).unwrap();
        write_json(&p, &serde_json::json!({"a": 2})).unwrap();
        let v: Value = read_json(&p).unwrap().unwrap();
        assert_eq!(v["a"], 2);
        assert!(!dir.path().join("x/.record.json.tmp").exists());
        assert!(
            read_json::<Value>(&dir.path().join("none"))
                .unwrap()
                .is_none()
        );

        let h = dir.path().join("h.jsonl");
        let mut f = HistoryFile::open(&h).unwrap();
        let event = Event {
            id: 1,
            previous_event_id: 0,
            event_type: coordinator::engine::history::EventType::ExecutionStarted,
            timestamp: Utc::now(),
            details: serde_json::json!({"input": {}}),
            cursor: String::new(),
        };
        f.push(&event).unwrap();
        f.sync().unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&h)
            .unwrap()
            .write_all(b"{\"id\": 2, \"trunc")
            .unwrap();
        let events = read_history(&h).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, 1);
    }
}
