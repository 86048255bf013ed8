//! A `redis-server` of a test's own (a free port, a temporary directory, AOF on with
//! `appendfsync everysec`), for tests that kill Redis and tamper with its files. Never the
//! machine's shared Redis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts Redis with AOF (`appendfsync everysec`, no RDB snapshots, no AOF rewrites, so
    /// every write since the start is in one file) and waits until it answers.
    pub fn start() -> RedisServer {
        let mut s = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        s.launch();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", "", "--auto-aof-rewrite-percentage", "0"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log"))
            .stderr(log)
            .spawn()
            .expect("start redis-server (is it installed? .ci/services.sh installs it)");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let mut buf = [0u8; 64];
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
            });
            if up {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis-server did not answer on port {}; see {}",
                self.port,
                self.dir.path().join("redis.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: whatever Redis had not written to its AOF is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, as an orderly shutdown (`systemctl stop`, a pod's termination) sends it:
    /// Redis writes and fsyncs what its AOF lacks, then exits. Waits for the exit (30 s at
    /// most, then `kill -9`).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let started = Instant::now();
        while sent && started.elapsed() < Duration::from_secs(30) {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts Redis again on the same port and directory (it loads its AOF).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The AOF file commands are appended to (Redis 7: `appendonlydir/*.incr.aof`).
    pub fn aof(&self) -> PathBuf {
        let dir = self.dir.path().join("appendonlydir");
        let mut incr: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        incr.retain(|p| p.to_string_lossy().ends_with(".incr.aof"));
        incr.sort();
        incr.pop()
            .unwrap_or_else(|| panic!("no incremental AOF in {}", dir.display()))
    }

    pub fn aof_len(&self) -> u64 {
        std::fs::metadata(self.aof()).map(|m| m.len()).unwrap_or(0)
    }

    /// Cuts the AOF back to at most `len` bytes, at the end of a whole command outside any
    /// `MULTI` (what Redis would have had on disk had it died then), and returns the bytes
    /// cut off. Redis must be stopped.
    pub fn cut_aof_to(&self, len: u64) -> Vec<u8> {
        assert!(self.child.is_none(), "stop Redis before cutting its AOF");
        let path = self.aof();
        let data = std::fs::read(&path).expect("read the AOF");
        let at = clean_cut(&data, len as usize);
        std::fs::write(&path, &data[..at]).expect("write the AOF");
        data[at..].to_vec()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!(
                "the test's Redis files are kept in {}",
                dir.keep().display()
            );
        }
    }
}

/// The largest offset ≤ `limit` where a command outside `MULTI`/`EXEC` ends in the AOF
/// `data` (RESP arrays of bulk strings).
fn clean_cut(data: &[u8], limit: usize) -> usize {
    let mut pos = 0;
    let mut best = 0;
    let mut in_multi = false;
    while let Some((end, first)) = command_at(data, pos) {
        if end > limit {
            break;
        }
        match first.to_ascii_uppercase().as_slice() {
            b"MULTI" => in_multi = true,
            b"EXEC" => in_multi = false,
            _ => {}
        }
        pos = end;
        if !in_multi {
            best = end;
        }
    }
    best
}

/// The command starting at `pos`: where it ends, and its first word.
fn command_at(data: &[u8], pos: usize) -> Option<(usize, Vec<u8>)> {
    let line = |at: usize| -> Option<(usize, &[u8])> {
        let rest = data.get(at..)?;
        let nl = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((at + nl + 2, &rest[..nl]))
    };
    let (mut at, head) = line(pos)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut first = Vec::new();
    for i in 0..n {
        let (next, len) = line(at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let value = data.get(next..next + len)?;
        if i == 0 {
            first = value.to_vec();
        }
        at = next + len + 2;
        if at > data.len() {
            return None;
        }
    }
    Some((at, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_between_whole_commands_outside_transactions() {
        let cmd = |words: &[&str]| -> String {
            let mut s = format!("*{}\r\n", words.len());
            for w in words {
                s += &format!("${}\r\n{w}\r\n", w.len());
            }
            s
        };
        let a = cmd(&["SET", "a", "1"]);
        let multi = cmd(&["MULTI"]) + &cmd(&["SET", "b", "2"]) + &cmd(&["EXEC"]);
        let data = format!("{a}{multi}");
        assert_eq!(clean_cut(data.as_bytes(), data.len()), data.len());
        assert_eq!(clean_cut(data.as_bytes(), data.len() - 1), a.len());
        assert_eq!(clean_cut(data.as_bytes(), a.len() + 3), a.len());
        assert_eq!(clean_cut(data.as_bytes(), 2), 0);
    }
}
