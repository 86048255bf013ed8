//! The console's logins: the same rule as the API (a configured key pair, or anyone with
//! `--allow-anonymous`), plus a short-lived start token that `serve` prints, so the person
//! who started it can open the console without typing a secret.
//!
//! A login gives a session: a random id in an `HttpOnly`, `SameSite=Strict` cookie, kept in
//! memory (a restart of `serve` asks to log in again). The number of sessions is bounded; the
//! oldest is dropped first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mapfleet_auth::Access;
use subtle::ConstantTimeEq;

/// The cookie that carries a session id.
pub const COOKIE: &str = "mapfleet_console";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long the start token printed by `serve` can be exchanged for a session.
pub const START_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// The most sessions kept at once.
const MAX_SESSIONS: usize = 10_000;

/// What a login offers.
pub enum Login<'a> {
    KeyPair {
        access_key_id: &'a str,
        secret: &'a str,
    },
    StartToken(&'a str),
}

/// The console's sessions.
pub struct Sessions {
    access: Access,
    start_token: String,
    started: Instant,
    live: Mutex<HashMap<String, Instant>>,
}

/// A fresh random id: two v4 UUIDs (244 random bits from the OS).
fn random_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    pub fn new(access: Access) -> Sessions {
        Sessions {
            access,
            start_token: random_id(),
            started: Instant::now(),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Whether anyone may use the console without logging in.
    pub fn anonymous(&self) -> bool {
        matches!(self.access, Access::Anonymous)
    }

    /// The token `serve` prints (valid for [`START_TOKEN_TTL`] from start).
    pub fn start_token(&self) -> &str {
        &self.start_token
    }

    /// A new session id when the login is good.
    pub fn login(&self, login: Login<'_>) -> Option<String> {
        let ok = match (&self.access, login) {
            (Access::Anonymous, _) => true,
            (
                Access::Signed(v),
                Login::KeyPair {
                    access_key_id,
                    secret,
                },
            ) => v.accepts_pair(access_key_id, secret),
            (Access::Signed(_), Login::StartToken(t)) => {
                self.started.elapsed() < START_TOKEN_TTL
                    && bool::from(t.as_bytes().ct_eq(self.start_token.as_bytes()))
            }
        };
        if !ok {
            return None;
        }
        let id = random_id();
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, since| now.duration_since(*since) < SESSION_TTL);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), now);
        Some(id)
    }

    pub fn logout(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Whether a request with this cookie header may read.
    pub fn allowed(&self, cookie_header: Option<&str>) -> bool {
        if self.anonymous() {
            return true;
        }
        let Some(id) = cookie_header.and_then(session_cookie) else {
            return false;
        };
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id)
            .is_some_and(|since| since.elapsed() < SESSION_TTL)
    }
}

/// The session id in a `Cookie` header.
pub fn session_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapfleet_auth::{KeyStore, Verifier};
    use std::sync::Arc;

    fn signed() -> Sessions {
        let keys = KeyStore::parse_list("AKID:the-secret").unwrap();
        Sessions::new(Access::Signed(Arc::new(Verifier::new(keys, "states"))))
    }

    #[test]
    fn only_a_known_pair_or_the_start_token_logs_in() {
        let s = signed();
        assert!(!s.allowed(None));
        assert!(
            s.login(Login::KeyPair {
                access_key_id: "AKID",
                secret: "wrong"
            })
            .is_none()
        );
        assert!(s.login(Login::StartToken("guess")).is_none());
        let id = s
            .login(Login::KeyPair {
                access_key_id: "AKID",
                secret: "the-secret",
            })
            .unwrap();
        let cookie = format!("other=1; {COOKIE}={id}");
        assert!(s.allowed(Some(&cookie)));
        assert!(!s.allowed(Some(&format!("{COOKIE}=nope"))));
        s.logout(&id);
        assert!(!s.allowed(Some(&cookie)));
        let token = s.start_token().to_string();
        assert!(s.login(Login::StartToken(&token)).is_some());
    }

    #[test]
    fn anonymous_access_needs_no_login() {
        let s = Sessions::new(Access::Anonymous);
        assert!(s.allowed(None));
    }
}
