//! The broker's and Redis's passwords, given apart from their URLs so that they never show in
//! `ps` (a command line is readable by every user of the machine) nor in a log line.
//!
//! A password comes from the environment (`MAPFLEET_AMQP_PASSWORD`, `MAPFLEET_REDIS_PASSWORD`)
//! or from a file (`--amqp-password-file`, `--redis-password-file`, or their
//! `MAPFLEET_*_PASSWORD_FILE` variables: a mounted Kubernetes or Compose secret), and is
//! merged into the URL inside the process ([`with_password`]); the user and the vhost or
//! database stay in the URL (`amqp://fleet@rabbit:5672/prod`, `redis://fleet@redis:6379/0`).
//!
//! A password written into a URL still works (the default `guest:guest` and existing scripts
//! rely on it), but when that URL is on the command line the process logs a warning naming
//! the flag and the safe ways ([`warn_if_on_command_line`]). Giving a password both ways is
//! refused: which one wins would be a guess.
//!
//! Every URL that reaches a log line or an error goes through [`crate::config::redact_url`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::redact_url;

/// Which service a password is for: it names the variables, flags and words of its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Amqp,
    Redis,
}

impl Service {
    /// The service in words.
    pub fn name(self) -> &'static str {
        match self {
            Service::Amqp => "RabbitMQ",
            Service::Redis => "Redis",
        }
    }

    /// The environment variable that holds the password itself.
    pub fn password_env(self) -> &'static str {
        match self {
            Service::Amqp => "MAPFLEET_AMQP_PASSWORD",
            Service::Redis => "MAPFLEET_REDIS_PASSWORD",
        }
    }

    /// The environment variable of the password file's path.
    pub fn password_file_env(self) -> &'static str {
        match self {
            Service::Amqp => "MAPFLEET_AMQP_PASSWORD_FILE",
            Service::Redis => "MAPFLEET_REDIS_PASSWORD_FILE",
        }
    }

    /// The flag of the password file's path.
    pub fn password_file_flag(self) -> &'static str {
        match self {
            Service::Amqp => "--amqp-password-file",
            Service::Redis => "--redis-password-file",
        }
    }

    /// The flag of the URL.
    pub fn url_flag(self) -> &'static str {
        match self {
            Service::Amqp => "--amqp",
            Service::Redis => "--redis",
        }
    }

    /// The environment variable of the URL.
    pub fn url_env(self) -> &'static str {
        match self {
            Service::Amqp => "MAPFLEET_AMQP_URL",
            Service::Redis => "MAPFLEET_REDIS_URL",
        }
    }
}

/// Why a password could not be used. No variant carries the password; URLs are redacted.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the {service} password file {path} ({flag}): {source}", service = .service.name(), flag = .service.password_file_flag())]
    ReadFile {
        service: Service,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {service} password file {path} is empty", service = .service.name())]
    EmptyFile { service: Service, path: PathBuf },
    #[error(
        "the {service} password is given twice ({env} and {flag}): give it once",
        service = .service.name(), env = .service.password_env(), flag = .service.password_file_flag()
    )]
    Twice { service: Service },
    #[error(
        "a {service} password is given ({env} or {flag}) but the URL {url} carries one too: \
         leave the password out of the URL",
        service = .service.name(), env = .service.password_env(), flag = .service.password_file_flag()
    )]
    AlsoInUrl { service: Service, url: String },
    #[error(
        "a {service} password is given ({env} or {flag}) but the URL {url} names no user: \
         write it as scheme://USER@host:port/...",
        service = .service.name(), env = .service.password_env(), flag = .service.password_file_flag()
    )]
    NoUser { service: Service, url: String },
    #[error("the {service} URL {url} is not scheme://[user@]host...", service = .service.name())]
    NotAUrl { service: Service, url: String },
}

/// The password given apart from the URL: `service`'s environment variable, or the file
/// (its content without the final line break); `None` when neither is given.
pub fn password(service: Service, file: Option<&Path>) -> Result<Option<String>, CredentialError> {
    let from_env = std::env::var(service.password_env())
        .ok()
        .filter(|p| !p.is_empty());
    match (from_env, file) {
        (Some(_), Some(_)) => Err(CredentialError::Twice { service }),
        (Some(p), None) => Ok(Some(p)),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| CredentialError::ReadFile {
                    service,
                    path: path.to_path_buf(),
                    source,
                })?;
            let p = text.strip_suffix('\n').unwrap_or(&text);
            let p = p.strip_suffix('\r').unwrap_or(p);
            if p.is_empty() {
                return Err(CredentialError::EmptyFile {
                    service,
                    path: path.to_path_buf(),
                });
            }
            Ok(Some(p.to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// `url` with the password given apart from it ([`password`]) written in, percent-encoded;
/// `url` unchanged when none is given. Warns when `url` itself carries a password and is on
/// this process's command line.
///
/// A Redis URL without a user gets `:PASSWORD@` (Redis's `default` user, `requirepass`); an
/// AMQP URL needs its user (RabbitMQ would otherwise be sent `guest`).
pub fn with_password(
    url: &str,
    service: Service,
    file: Option<&Path>,
) -> Result<String, CredentialError> {
    warn_if_on_command_line(url, service);
    let Some(password) = password(service, file)? else {
        return Ok(url.to_string());
    };
    let shown = || redact_url(url);
    let Some(scheme_end) = url.find("://") else {
        return Err(CredentialError::NotAUrl {
            service,
            url: shown(),
        });
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let encoded = percent_encode(&password);
    match authority.rfind('@') {
        Some(at) => {
            let user = &authority[..at];
            if user.contains(':') {
                return Err(CredentialError::AlsoInUrl {
                    service,
                    url: shown(),
                });
            }
            if user.is_empty() && service == Service::Amqp {
                return Err(CredentialError::NoUser {
                    service,
                    url: shown(),
                });
            }
            let insert_at = authority_start + at;
            Ok(format!(
                "{}:{encoded}{}",
                &url[..insert_at],
                &url[insert_at..]
            ))
        }
        None if service == Service::Redis => Ok(format!(
            "{}:{encoded}@{}",
            &url[..authority_start],
            &url[authority_start..]
        )),
        None => Err(CredentialError::NoUser {
            service,
            url: shown(),
        }),
    }
}

/// Logs a warning when `url` carries a password and this process's command line holds it,
/// where `ps` shows it to anyone on the machine. The default URL's `guest` password, or one
/// from the environment, is not on the command line and passes silently.
pub fn warn_if_on_command_line(url: &str, service: Service) {
    let Some(secret) = password_in(url) else {
        return;
    };
    if std::env::args_os().any(|arg| arg.to_string_lossy().contains(secret)) {
        tracing::warn!(
            url = %redact_url(url),
            "the {} password is on the command line ({} URL), where `ps` shows it to every \
             user of this machine: give it in {} or {} instead, and the URL without it",
            service.name(),
            service.url_flag(),
            service.password_env(),
            service.password_file_flag(),
        );
    }
}

/// The `user:password@` part of `url`'s authority that holds the password (with its
/// delimiters, so that a short password does not match other text), if any.
fn password_in(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    (at > colon + 1).then(|| &authority[colon..=at])
}

/// Hands the fleet's URLs to a child process through its environment (which `ps` does not
/// show), never its arguments; this process's password variables are removed from the
/// child's, since the URLs already carry the passwords.
pub trait FleetUrlsEnv {
    fn fleet_urls(&mut self, amqp_url: &str, redis_url: &str) -> &mut Self;
}

impl FleetUrlsEnv for Command {
    fn fleet_urls(&mut self, amqp_url: &str, redis_url: &str) -> &mut Self {
        for service in [Service::Amqp, Service::Redis] {
            self.env_remove(service.password_env())
                .env_remove(service.password_file_env());
        }
        self.env(Service::Amqp.url_env(), amqp_url)
            .env(Service::Redis.url_env(), redis_url)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as the URL parsers of
/// lapin and redis decode it.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The environment is process-wide: these tests read only variables no test sets.

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_password_file_is_merged_into_the_url_encoded() {
        if std::env::var_os(Service::Amqp.password_env()).is_some()
            || std::env::var_os(Service::Redis.password_env()).is_some()
        {
            return; // the caller's environment decides; covered by the fleet tests
        }
        let (_dir, path) = file_with("p@ss:w/rd%\n");
        let url = with_password("amqp://fleet@h:5672/prod", Service::Amqp, Some(&path)).unwrap();
        assert_eq!(url, "amqp://fleet:p%40ss%3Aw%2Frd%25@h:5672/prod");
        let parsed: lapin::uri::AMQPUri = url.parse().unwrap();
        assert_eq!(parsed.authority.userinfo.password, "p@ss:w/rd%");
        assert_eq!(parsed.vhost, "prod");
        assert_eq!(
            with_password("redis://h:6379/0", Service::Redis, Some(&path)).unwrap(),
            "redis://:p%40ss%3Aw%2Frd%25@h:6379/0"
        );
        assert_eq!(
            with_password("redis://fleet@h:6379/", Service::Redis, Some(&path)).unwrap(),
            "redis://fleet:p%40ss%3Aw%2Frd%25@h:6379/"
        );
        assert_eq!(
            with_password("redis+cluster://fleet@h:1,h:2", Service::Redis, Some(&path)).unwrap(),
            "redis+cluster://fleet:p%40ss%3Aw%2Frd%25@h:1,h:2"
        );
        // Nothing given apart: the URL as it is.
        assert_eq!(
            with_password("amqp://guest:guest@h/%2f", Service::Amqp, None).unwrap(),
            "amqp://guest:guest@h/%2f"
        );
    }

    #[test]
    fn conflicts_and_bad_files_are_refused_without_the_password() {
        if std::env::var_os(Service::Amqp.password_env()).is_some() {
            return;
        }
        let (_dir, path) = file_with("hunter2-secret");
        for (url, what) in [
            ("amqp://u:old-secret@h/v", "carries one too"),
            ("amqp://h/v", "names no user"),
        ] {
            let e = with_password(url, Service::Amqp, Some(&path)).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(what), "{text}");
            assert!(
                !text.contains("hunter2") && !text.contains("old-secret"),
                "{text}"
            );
        }
        let (_empty_dir, empty) = file_with("\n");
        let e = with_password("amqp://u@h/v", Service::Amqp, Some(&empty)).unwrap_err();
        assert!(matches!(e, CredentialError::EmptyFile { .. }), "{e}");
        let e = with_password(
            "amqp://u@h/v",
            Service::Amqp,
            Some(Path::new("/nonexistent/pw")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--amqp-password-file"), "{e}");
    }

    #[test]
    fn the_password_part_is_found_with_its_delimiters() {
        assert_eq!(password_in("amqp://u:pw@h/v"), Some(":pw@"));
        assert_eq!(password_in("redis://:pw@h:1/"), Some(":pw@"));
        assert_eq!(password_in("redis://u@h:1/"), None);
        assert_eq!(password_in("redis://h:1/"), None);
        assert_eq!(password_in("redis://u:@h:1/"), None);
    }
}
