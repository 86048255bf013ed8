//! Typed configuration shared by every fleet process, layered defaults → `MAPFLEET_*`
//! environment → command-line flags (clap resolves the layers: a flag beats its env var,
//! which beats the default written here). Binaries `#[command(flatten)]` [`FleetConfig`]
//! next to their own options.
//!
//! Secrets: the passwords come from the environment or files ([`crate::credentials`]) and are
//! merged into the URLs by [`FleetConfig::resolve_credentials`], which every binary calls
//! once after parsing; URLs may carry passwords, so print them only through [`redact_url`]
//! (the `Debug` and `Display` of [`FleetConfig`] already do).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::{self, CredentialError, Service};
use crate::tls::TlsFiles;
use crate::topology::{Route, Topology};

/// Connection and topology settings every fleet process needs.
/// The default `--delivery-limit`: deliveries of one step before it is dead-lettered. Embedded
/// mode gives a transiently failing task as many attempts.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;

#[derive(Clone, clap::Args)]
pub struct FleetConfig {
    /// RabbitMQ URL (`amqp://user@host:port/vhost`; `%2f` is the default vhost), the
    /// password given apart in MAPFLEET_AMQP_PASSWORD or `--amqp-password-file`: a password
    /// written in a URL on the command line shows in `ps` (a warning says so).
    /// `amqps://` is TLS, the broker's certificate verified against the system's CAs and
    /// `--amqp-ca-file`; there is no fallback to plain TCP.
    #[arg(
        long = "amqp",
        env = "MAPFLEET_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// A file holding the RabbitMQ password of the `--amqp` URL's user (a mounted secret; a
    /// final line break is ignored). Or MAPFLEET_AMQP_PASSWORD, the password itself, read from
    /// the environment only.
    #[arg(long, env = "MAPFLEET_AMQP_PASSWORD_FILE", value_name = "FILE")]
    pub amqp_password_file: Option<PathBuf>,

    /// PEM file of CA certificates to trust for `amqps://`, besides the system's.
    #[arg(long, env = "MAPFLEET_AMQP_CA_FILE", value_name = "FILE")]
    pub amqp_ca_file: Option<PathBuf>,

    /// PEM certificate chain this process presents to the broker (`amqps://` with client
    /// certificates); needs `--amqp-key-file`.
    #[arg(long, env = "MAPFLEET_AMQP_CERT_FILE", value_name = "FILE")]
    pub amqp_cert_file: Option<PathBuf>,

    /// PEM private key of `--amqp-cert-file` (a file: never the key itself).
    #[arg(long, env = "MAPFLEET_AMQP_KEY_FILE", value_name = "FILE")]
    pub amqp_key_file: Option<PathBuf>,

    /// Redis URL (`redis://[user@]host:port/db`; an ACL user, or Redis's `default` user when
    /// none is named), the password given apart in MAPFLEET_REDIS_PASSWORD or
    /// `--redis-password-file`. `rediss://` is TLS, the server's certificate verified (against
    /// `--redis-ca-file` if given, else the system's CAs). A Redis Cluster is
    /// `redis+cluster://[user@]host:port[,host:port...]` (its seed nodes; `rediss+cluster://`
    /// for TLS).
    #[arg(
        long = "redis",
        env = "MAPFLEET_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// A file holding the Redis password (of the `--redis` URL's user). Or
    /// MAPFLEET_REDIS_PASSWORD, the password itself, read from the environment only.
    #[arg(long, env = "MAPFLEET_REDIS_PASSWORD_FILE", value_name = "FILE")]
    pub redis_password_file: Option<PathBuf>,

    /// PEM file of the CA certificates that sign the Redis server's certificate
    /// (`rediss://`); they replace the system's CAs for Redis.
    #[arg(long, env = "MAPFLEET_REDIS_CA_FILE", value_name = "FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// PEM certificate chain this process presents to Redis (`rediss://` with client
    /// certificates); needs `--redis-key-file`.
    #[arg(long, env = "MAPFLEET_REDIS_CERT_FILE", value_name = "FILE")]
    pub redis_cert_file: Option<PathBuf>,

    /// PEM private key of `--redis-cert-file` (a file: never the key itself).
    #[arg(long, env = "MAPFLEET_REDIS_KEY_FILE", value_name = "FILE")]
    pub redis_key_file: Option<PathBuf>,

    /// Namespace of every exchange, queue and Redis key, so several fleets (or tests) can
    /// share one broker and one Redis.
    #[arg(long, env = "MAPFLEET_PREFIX", default_value = "mapfleet")]
    pub prefix: String,

    /// Unacked deliveries a consumer may hold. Workers default it to their task slots
    /// (`--concurrency`): more would sit idle in one worker while another starves. It counts
    /// messages: a step batch (the coordinators' `--step-batch`) is one delivery however
    /// many steps it carries; only as many steps run as there are slots.
    #[arg(long, env = "MAPFLEET_PREFETCH")]
    pub prefetch: Option<u16>,

    /// Deliveries of one message before the broker dead-letters it (the quorum queues'
    /// `x-delivery-limit`). Every process of a fleet must agree: queues are declared once
    /// with it and a different value is refused by the broker.
    #[arg(long, env = "MAPFLEET_DELIVERY_LIMIT", default_value_t = DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,

    /// Extra steps queues, `NAME=ARN[,ARN...]`, separated by `;` in the env var: those
    /// resources go to `<prefix>.steps.NAME` instead of the default queue.
    #[arg(long = "route", env = "MAPFLEET_ROUTES", value_delimiter = ';')]
    pub routes: Vec<Route>,

    /// Serve Prometheus metrics on this address (`/metrics`); off when unset. The endpoint
    /// has no authentication: keep it on loopback or a private network (a warning is logged
    /// for any other address).
    #[arg(long, env = "MAPFLEET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// At start-up, give up reaching RabbitMQ (and Redis) after this many seconds of
    /// retrying, and exit with the last error. A wrong password or a failed TLS handshake
    /// ends the process at once. Once connected, a lost broker is waited for however long it
    /// is away (tried every second), since the work waits in it.
    #[arg(long, env = "MAPFLEET_CONNECT_TIMEOUT_SECS", default_value_t = 30)]
    pub connect_timeout_secs: u64,

    /// Unconfirmed publishes allowed at once per publisher (the confirm window).
    #[arg(long, env = "MAPFLEET_CONFIRM_WINDOW", default_value_t = 256)]
    pub confirm_window: usize,
}

impl FleetConfig {
    /// The defaults, as if no env var and no flag were given.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: FleetConfig,
        }
        // Parse with env lookups disabled: `defaults` must not depend on the environment.
        use clap::{CommandFactory, FromArgMatches};
        let cmd = Only::command().mut_args(|a| a.env(None::<&str>));
        let matches = cmd.get_matches_from(["defaults"]);
        Only::from_arg_matches(&matches)
            .expect("defaults parse")
            .config
    }

    /// Merges the passwords given apart (environment, files) into the URLs, and warns about a
    /// password on the command line ([`credentials::with_password`]). Binaries call it once,
    /// right after parsing.
    pub fn resolve_credentials(&mut self) -> Result<(), CredentialError> {
        self.amqp_url = credentials::with_password(
            &self.amqp_url,
            Service::Amqp,
            self.amqp_password_file.as_deref(),
        )?;
        self.redis_url = credentials::with_password(
            &self.redis_url,
            Service::Redis,
            self.redis_password_file.as_deref(),
        )?;
        Ok(())
    }

    pub fn topology(&self) -> Topology {
        Topology::new(self.prefix.clone(), self.delivery_limit).with_routes(self.routes.clone())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The certificate files for `amqps://`.
    pub fn amqp_tls(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.amqp_ca_file.clone(),
            cert_file: self.amqp_cert_file.clone(),
            key_file: self.amqp_key_file.clone(),
        }
    }

    /// The certificate files for `rediss://`.
    pub fn redis_tls(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.redis_ca_file.clone(),
            cert_file: self.redis_cert_file.clone(),
            key_file: self.redis_key_file.clone(),
        }
    }
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("amqp_password_file", &self.amqp_password_file)
            .field("amqp_tls", &self.amqp_tls())
            .field("redis_url", &redact_url(&self.redis_url))
            .field("redis_password_file", &self.redis_password_file)
            .field("redis_tls", &self.redis_tls())
            .field("prefix", &self.prefix)
            .field("prefetch", &self.prefetch)
            .field("delivery_limit", &self.delivery_limit)
            .field("routes", &self.routes)
            .field("metrics_addr", &self.metrics_addr)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("confirm_window", &self.confirm_window)
            .finish()
    }
}

impl std::fmt::Display for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "amqp={} redis={} prefix={} delivery_limit={}",
            redact_url(&self.amqp_url),
            redact_url(&self.redis_url),
            self.prefix,
            self.delivery_limit
        )
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`; URLs without a password are
/// returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: FleetConfig,
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://:s3cr@t@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redact_url("amqp://user@h/"), "amqp://user@h/");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn flags_override_defaults_and_debug_hides_secrets() {
        let d = FleetConfig::defaults();
        assert_eq!(d.prefix, "mapfleet");
        assert_eq!(d.delivery_limit, 5);
        let cli = Cli::parse_from([
            "x",
            "--amqp",
            "amqp://u:pw@h:1/%2f",
            "--prefix",
            "p",
            "--delivery-limit",
            "3",
            "--route",
            "heavy=arn:a,arn:b",
        ]);
        assert_eq!(cli.config.prefix, "p");
        assert_eq!(cli.config.topology().delivery_limit(), 3);
        assert_eq!(cli.config.routes[0].resources.len(), 2);
        let shown = format!("{:?} {}", cli.config, cli.config);
        assert!(!shown.contains("pw"), "{shown}");
    }

    #[test]
    fn password_files_are_merged_and_never_shown() {
        if std::env::var_os("MAPFLEET_AMQP_PASSWORD").is_some()
            || std::env::var_os("MAPFLEET_REDIS_PASSWORD").is_some()
        {
            return; // the caller's environment would be a second source
        }
        let dir = tempfile::tempdir().unwrap();
        let (amqp, redis) = (dir.path().join("amqp"), dir.path().join("redis"));
        std::fs::write(&amqp, "amqp-pw\n").unwrap();
        std::fs::write(&redis, "redis-pw").unwrap();
        let mut cli = Cli::parse_from([
            "x",
            "--amqp",
            "amqp://fleet@h:5672/prod",
            "--amqp-password-file",
            amqp.to_str().unwrap(),
            "--redis",
            "redis://fleet@h:6379/",
            "--redis-password-file",
            redis.to_str().unwrap(),
        ]);
        cli.config.resolve_credentials().unwrap();
        assert_eq!(cli.config.amqp_url, "amqp://fleet:amqp-pw@h:5672/prod");
        assert_eq!(cli.config.redis_url, "redis://fleet:redis-pw@h:6379/");
        let shown = format!("{:?} {}", cli.config, cli.config);
        assert!(
            !shown.contains("amqp-pw") && !shown.contains("redis-pw"),
            "{shown}"
        );
        assert!(shown.contains("prod"), "{shown}");
    }
}
