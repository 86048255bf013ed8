//! A fleet binary run as a child process whose log (stderr) the test reads: for start-up and
//! shutdown behaviour that only the real process shows (exit codes, panics at exit, threads);
//! and the start-up checks every fleet service must pass against a broker that is not there
//! or refuses its login ([`gives_up_on_a_refused_broker`], [`a_wrong_password_ends_it_at_once`],
//! [`sigterm_while_retrying_exits_cleanly`]), run on `mapfleet-worker` and on
//! `mapfleet coordinator` alike. Also used by the coordinator's tests (`#[path]`), so it
//! needs nothing but std.

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

/// How long a service may take to exit in these checks: generous for a loaded 2-core
/// machine, and far below what the faults used to take (retries without end, 5.5 minutes
/// for a wrong password).
pub const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// Waits for `s` to exit (`why` it should, in the failure); its status and log. An exit
/// with a panic fails.
pub fn exited(s: &mut Spawned, why: &str) -> (ExitStatus, String) {
    let Some(status) = s.wait_exit(EXIT_LIMIT) else {
        panic!("{why}, but it runs after {EXIT_LIMIT:?}: {}", s.log());
    };
    let log = s.log();
    assert!(!log.contains("panicked"), "{log}");
    (status, log)
}

/// Waits until `s` logged `needle` `times` times, sends it SIGTERM, and checks that it
/// exits 0 (without a panic).
pub fn terminate_after(s: &mut Spawned, needle: &str, times: usize) {
    assert!(s.wait_for_log(needle, times, EXIT_LIMIT), "{}", s.log());
    s.terminate();
    let (status, log) = exited(s, "SIGTERM ends it");
    assert!(status.success(), "exit {status:?}: {log}");
}

/// A broker URL whose port nothing listens on.
fn refused_broker() -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", refused_port())
}

/// A service that `start(amqp_url, connect_timeout_secs)` starts against a refused broker
/// port retries (`while_retrying` looks at it then), says the connection was refused and
/// gives up once its 4 s connect time-out has passed. Returns its log.
pub fn gives_up_on_a_refused_broker(
    start: impl FnOnce(&str, &str) -> Spawned,
    while_retrying: impl FnOnce(&Spawned),
) -> String {
    let mut s = start(&refused_broker(), "4");
    assert!(
        s.wait_for_log("AMQP connect failed", 3, EXIT_LIMIT),
        "{}",
        s.log()
    );
    while_retrying(&s);
    let (status, log) = exited(&mut s, "it gives up");
    assert!(!status.success(), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(log.contains("giving up"), "{log}");
    log
}

/// A service started against `amqp_url` (which carries `guest:guest`) with a wrong password
/// and a connect time-out far above [`EXIT_LIMIT`] ends at once, without a retry, saying the
/// login was refused and never showing the password.
pub fn a_wrong_password_ends_it_at_once(amqp_url: &str, start: impl FnOnce(&str, &str) -> Spawned) {
    let amqp = amqp_url.replacen("guest:guest@", "guest:not-the-password@", 1);
    assert_ne!(amqp, amqp_url, "the test broker URL carries guest:guest");
    let started = Instant::now();
    let mut s = start(&amqp, "600");
    let (status, log) = exited(&mut s, "a refused login ends it");
    eprintln!("exited after {:?}", started.elapsed());
    assert!(!status.success(), "{log}");
    assert!(log.contains("refused the login"), "{log}");
    assert!(log.contains("ACCESS_REFUSED"), "{log}");
    assert!(
        !log.contains("not-the-password"),
        "the password is never shown: {log}"
    );
    assert_eq!(log.matches("AMQP connect failed").count(), 0, "{log}");
}

/// SIGTERM while a service retries a refused broker port (its connect time-out far away):
/// it exits 0, without a panic.
pub fn sigterm_while_retrying_exits_cleanly(start: impl FnOnce(&str, &str) -> Spawned) {
    let mut s = start(&refused_broker(), "600");
    terminate_after(&mut s, "AMQP connect failed", 4);
}
