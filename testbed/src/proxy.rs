//! A TCP proxy for fault tests: forwards a local port to a target (the broker, Redis) and,
//! on demand, stops forwarding in both directions (a network or broker stall: connections
//! stay open, bytes stop moving), slows it (each chunk read is held a while before it is
//! passed on, both ways: a congested or lossy link), cuts every connection it carries, and
//! resumes. It runs on
//! a runtime of its own, so sync and async tests alike can drive it, and its stalls do not
//! depend on the test's own runtime being free.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Stall,
    /// Each chunk waits this long before it is passed on.
    Slow(Duration),
}

pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped to close every connection open at that moment.
    cuts: watch::Sender<u64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `target`
    /// (`host:port`).
    pub fn start(target: &str) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        // Bound here (not with `block_on`, which a test's own runtime would forbid).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let (cuts, cuts_rx) = watch::channel(0u64);
        let target = target.to_string();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("proxy listener");
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (target, mode, cuts) = (target.clone(), mode_rx.clone(), cuts_rx.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        carry(client, server, mode, cuts).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            mode,
            cuts,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`) with its `host:port` replaced by
    /// the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}/{path}", self.addr)
    }

    /// Stops moving bytes, both ways, on every connection (new ones too) until
    /// [`Proxy::resume`].
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Holds every chunk read, both ways, for `delay` before passing it on, until
    /// [`Proxy::resume`].
    pub fn slow(&self, delay: Duration) {
        self.mode.send_replace(Mode::Slow(delay));
    }

    pub fn resume(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Closes every connection open now (both sides see the TCP connection end).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Stalls for `d` (blocking the caller), then resumes; cutting every connection first
    /// if `cut`.
    pub fn stall_for(&self, d: Duration, cut: bool) {
        self.stall();
        std::thread::sleep(d);
        if cut {
            self.cut();
        }
        self.resume();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Moves bytes between `client` and `server` until either side closes or a cut.
async fn carry(
    client: TcpStream,
    server: TcpStream,
    mode: watch::Receiver<Mode>,
    mut cuts: watch::Receiver<u64>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    cuts.mark_unchanged();
    let pumps = async {
        tokio::join!(
            pump(client_r, server_w, mode.clone()),
            pump(server_r, client_w, mode.clone())
        )
    };
    tokio::select! {
        _ = pumps => {}
        _ = cuts.changed() => {}
    }
    // Dropping the halves closes both connections.
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if forwarding(&mut mode).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Bytes read just before a stall wait with it.
        match forwarding(&mut mode).await {
            Ok(Mode::Slow(delay)) => tokio::time::sleep(delay).await,
            Ok(_) => {}
            Err(_) => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits until the proxy forwards (perhaps slowly); returns how.
async fn forwarding(mode: &mut watch::Receiver<Mode>) -> Result<Mode, watch::error::RecvError> {
    mode.wait_for(|m| *m != Mode::Stall).await.map(|m| *m)
}
