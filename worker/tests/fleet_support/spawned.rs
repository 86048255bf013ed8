//! A fleet binary run as a child process whose log (stderr) the test reads: for start-up and
//! shutdown behaviour that only the real process shows (exit codes, panics at exit, threads).
//! Also used by the coordinator's tests (`#[path]`), so it needs nothing but std.

#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process with its stderr collected as it comes; SIGKILLed when dropped.
pub struct Spawned {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `bin args...` with `env` added, no `MAPFLEET_*` variables of the test's own
    /// environment, and `MAPFLEET_LOG=info`.
    pub fn start(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Spawned {
        let mut cmd = Command::new(bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("MAPFLEET_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(args)
            .env("MAPFLEET_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Spawned { child, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the process to exit; its status, `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return Some(status);
            }
            if started.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` until stderr holds `needle` at least `times` times.
    pub fn wait_for_log(&self, needle: &str, times: usize, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.log().matches(needle).count() >= times {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
    }

    /// How many of the process's threads are named `name` (Linux `/proc`; 0 elsewhere).
    pub fn threads_named(&self, name: &str) -> usize {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
            })
            .count()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local TCP port that nothing listens on (bound, then let go): connecting is refused.
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}
