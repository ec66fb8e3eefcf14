//! config: reads `mailotp.toml` (or the embedded default), checks it, and
//! hands out typed settings.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file,
//! the key and the reason, so `mailotp check` and `mailotp serve` refuse a bad
//! file the same way. Relative paths are relative to the configuration file.
//! This module reads files but opens no sockets and starts nothing.

mod control;
mod languages;
mod ldap;
pub(crate) mod messages;
mod policies;
mod radsec;
mod raw;
mod state;
pub(crate) mod template;
mod validate;
mod warnings;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use lettre::message::Mailbox;
use serde::Deserialize;
use thiserror::Error;
use zeroize::Zeroizing;

pub(crate) use control::{ControlConfig, DEFAULT_SOCKET};
pub(crate) use ldap::{LdapConfig, LdapTls, DN_PLACEHOLDER, USER_PLACEHOLDER};

use crate::dictionary::AttrDef;
use crate::limits::{Lockout, Throttling};
use crate::policy::Policies;
pub(crate) use languages::Wording;
pub(crate) use radsec::{RadsecConfig, RADSEC_SECRET};
use raw::RawConfig;
pub(crate) use state::{PoolKey, RedisConfig, StateConfig};
use validate::Validator;

/// `[server] pin_queue_per_client` when the configuration sets none.
pub(crate) const DEFAULT_PIN_QUEUE_PER_CLIENT: usize = 64;

/// The configuration `mailotp serve` runs on without `-c`.
pub(crate) const EMBEDDED_CONFIG: &str = include_str!("../../conf/embedded.toml");
/// The demo users of `conf/users.toml`, compiled in for the embedded default.
pub(crate) const EMBEDDED_USERS: &str = include_str!("../../conf/users.toml");

/// Where a configuration came from, as error messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file given with `-c`.
    File(PathBuf),
    /// The embedded default; relative paths are relative to the working directory.
    Embedded,
}

impl Source {
    fn base_dir(&self) -> PathBuf {
        match self {
            Source::File(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            Source::Embedded => PathBuf::from("."),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Embedded => f.write_str("<embedded default configuration>"),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key has a value that cannot work.
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        /// The file that holds the key.
        file: String,
        /// The key's path, as in `clients[0].secret`.
        key: String,
        /// What is wrong, in words an admin can act on.
        reason: String,
    },
}

impl ConfigError {
    /// An `Invalid` error.
    pub fn invalid(file: impl fmt::Display, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Parses TOML text strictly; an error names the key path and the line.
pub(crate) fn parse_toml<T: for<'de> Deserialize<'de>>(text: &str, file: &dyn fmt::Display) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| format!(" (line {})", text[..s.start.min(text.len())].lines().count().max(1)))
            .unwrap_or_default();
        let reason = inner.message().trim().to_owned();
        ConfigError::invalid(
            file,
            if key == "." { "(top level)".to_owned() } else { key },
            format!("{reason}{line}"),
        )
    })
}

/// A secret from the configuration; its Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    /// The bytes, for the code that needs them (hashing, AUTH).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// How a client is asked for the OTP.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ChallengeMode {
    /// Access-Challenge with State (RFC 2865 §4.4).
    #[default]
    AccessChallenge,
    /// LinOTP classic: Access-Reject with the prompt, then PIN+OTP in one request.
    Reject,
}

/// TLS towards the SMTP server.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, required (port 587 by default).
    #[default]
    Starttls,
    /// Implicit TLS (port 465 by default).
    Tls,
    /// Plain text (port 25 by default); for a relay on localhost.
    None,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A RADIUS client (NAS, VPN, proxy) allowed to send requests.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// Name used in logs.
    pub name: String,
    /// Source addresses it sends from.
    pub network: IpNet,
    /// Shared secret.
    pub secret: Secret,
    /// Drop its Access-Requests that carry no Message-Authenticator.
    pub require_message_authenticator: bool,
    /// How it is asked for the OTP.
    pub challenge_mode: ChallengeMode,
    /// The attribute (e.g. `Mailotp-Email`) whose value replaces the user's
    /// e-mail address, when this client (a front proxy that already looked
    /// the user up) sends it.
    pub trusted_email: Option<AttrDef>,
    /// `radsec = true`: the name (`tls_name`) its certificate must carry;
    /// such a client is served only over RadSec, `None` only over UDP.
    pub tls_name: Option<String>,
}

/// `[server]`: sockets and limits.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    /// Addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// Status-Server and State answers worked on at once; more are dropped
    /// and counted.
    pub max_in_flight: usize,
    /// PIN requests of one client waiting or being checked; more from that
    /// client are dropped and counted (`pin-queue-full`).
    pub pin_queue_per_client: usize,
    /// PIN hashes computed at once (default: one per CPU core).
    pub hash_workers: usize,
    /// Kernel receive buffer per socket in bytes (`SO_RCVBUF`); unset: the system default.
    pub receive_buffer: Option<usize>,
    /// How long SIGTERM waits for requests in progress.
    pub shutdown_grace: Duration,
    /// How often dropped datagrams are summed up in the log (one line per
    /// reason that had drops in the period, so a flood cannot flood the log).
    pub drop_log_interval: Duration,
}

/// `[users]`.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    /// Where users come from.
    pub source: UsersSource,
    /// Failed PINs or OTPs in a row before the user is locked, and for how long.
    pub lockout: Lockout,
    /// `deny_locks`: "this wasn't me" locks the user for the lockout time.
    pub deny_locks: bool,
}

/// Where the users come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersSource {
    /// A users file.
    File(PathBuf),
    /// The demo users compiled into the binary.
    Embedded,
    /// An LDAP directory (OpenLDAP, Active Directory).
    Ldap(Box<LdapConfig>),
}

/// `[email.provider]`: how mail leaves.
#[derive(Debug, Clone)]
pub enum Provider {
    /// An SMTP relay.
    Smtp(SmtpConfig),
    /// `.eml` files in a directory.
    File {
        /// The directory.
        outbox: PathBuf,
    },
}

/// The SMTP relay's settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host name (also the name the TLS certificate must carry).
    pub server: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// An extra CA to trust, PEM.
    pub ca_file: Option<PathBuf>,
    /// AUTH user and password; `None` sends without AUTH.
    pub credentials: Option<(String, Secret)>,
    /// Per-command timeout.
    pub timeout: Duration,
}

/// `[email]`.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// How long a code is good for.
    pub challenge_validity: Duration,
    /// How long a PIN again gets the open challenge and no new e-mail.
    pub blocking_timeout: Duration,
    /// Digits per code, 6 to 8.
    pub otp_length: u32,
    /// Wrong answers before a challenge is void.
    pub max_attempts: u8,
    /// Mails waiting for delivery at most; past it, PIN requests are rejected.
    pub queue_limit: usize,
    /// A fixed code for test set-ups (`--test-mode` only).
    pub fixed_otp: Option<String>,
    /// Sender.
    pub from: Mailbox,
    /// Subject line.
    pub subject: String,
    /// Subjects, bodies and Reply-Messages, per language (`[messages]`,
    /// `templates_dir`).
    pub(crate) wording: std::sync::Arc<Wording>,
    /// `timezone`: where `{time}` and `{expires}` are told (default UTC).
    pub timezone: jiff::tz::TimeZone,
    /// `[link]`, when configured: the page server of confirmation links
    /// (link delivery) and of the deny link every mail then carries.
    pub pages: Option<LinkConfig>,
    /// `[email.throttling]`; all `None` when the section is absent.
    pub throttling: Throttling,
    /// A code or a confirmation link.
    pub delivery: Delivery,
    /// Delivery.
    pub provider: Provider,
}

/// How the second factor reaches the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A code in the e-mail, typed into the VPN client.
    Otp,
    /// A single-use link in the e-mail, confirmed on a page with a POST.
    Link(LinkConfig),
}

/// `[link]`: the confirmation page server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Where the page server listens (plain HTTP; TLS is the reverse proxy's job).
    pub listen: SocketAddr,
    /// What the e-mail links to, without a trailing slash.
    pub base_url: String,
    /// Connections and time per request.
    pub http: HttpLimits,
    /// What the page says once the user stopped a login (`deny_page_file`).
    pub(crate) deny_page: template::Template,
}

/// What an HTTP listener (`[link]`, `[metrics]`) allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `max_connections`: connections served at once; more wait in the
    /// kernel's backlog.
    pub max_connections: usize,
    /// `request_timeout`: how long a request may take to arrive whole
    /// (headers and body) and be answered; then its connection is closed.
    pub request_timeout: Duration,
}

/// `[metrics]`: where Prometheus scrapes `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetricsConfig {
    /// `listen`.
    pub listen: SocketAddr,
    /// Connections and time per request.
    pub http: HttpLimits,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub(crate) struct LogConfig {
    /// Line format.
    pub format: LogFormat,
}

/// Options from the command line that change what a configuration may hold.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LoadOptions {
    /// `serve --test-mode`: allows `fixed_otp_for_testing`.
    pub test_mode: bool,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Where it was read from.
    pub source: Source,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[[clients]]`.
    pub clients: Vec<Client>,
    /// `[users]`.
    pub users: UsersConfig,
    /// `[email]`.
    pub email: EmailConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[state]`: one instance in memory, or a pool through Redis.
    pub state: StateConfig,
    /// `[metrics]`: where Prometheus scrapes `/metrics`; `None` is off.
    pub metrics: Option<MetricsConfig>,
    /// `[[policies]]`, in file order.
    pub policies: Policies,
    /// `[control]`: the operator socket.
    pub control: ControlConfig,
    /// `[radsec]`: RADIUS over TLS; `None` is off.
    pub radsec: Option<RadsecConfig>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub(crate) fn load(path: &Path, options: LoadOptions) -> Result<Config, ConfigError> {
        let source = Source::File(path.to_path_buf());
        let text = read_text(path)?;
        Config::from_text(&text, source, options)
    }

    /// The embedded default.
    pub(crate) fn embedded() -> Result<Config, ConfigError> {
        Config::from_text(EMBEDDED_CONFIG, Source::Embedded, LoadOptions::default())
    }

    /// Checks configuration text that came from `source`.
    pub(crate) fn from_text(text: &str, source: Source, options: LoadOptions) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_toml(text, &source)?;
        Validator::new(&source).config(raw, options)
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })
}

/// Reads a whole binary file (a key), naming it in the error.
fn read_bytes(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
