//! config: reads `mailotp.toml` (or the embedded default), checks it, and
//! hands out typed settings.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file,
//! the key and the reason, so `mailotp check` and `mailotp serve` refuse a bad
//! file the same way. Relative paths are relative to the configuration file.
//! This module reads files but opens no sockets and starts nothing.

mod ldap;
mod raw;
mod state;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use lettre::message::Mailbox;
use serde::Deserialize;
use thiserror::Error;
use zeroize::Zeroizing;

pub use ldap::{LdapConfig, LdapTls, USER_PLACEHOLDER};

use crate::dictionary::{AttrDef, Dictionary, Kind};
use crate::limits::{Lockout, Throttling};
use crate::mail::template::Templates;
use raw::{ProviderKind, RawClient, RawConfig, RawEmail, RawProvider};
pub use state::{PoolKey, RedisConfig, StateConfig, POOL_KEY_LEN};

/// The configuration `mailotp serve` runs on without `-c`.
pub const EMBEDDED_CONFIG: &str = include_str!("../../conf/embedded.toml");
/// The demo users of `conf/users.toml`, compiled in for the embedded default.
pub const EMBEDDED_USERS: &str = include_str!("../../conf/users.toml");

/// Where a configuration came from, as error messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
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
pub fn parse_toml<T: for<'de> Deserialize<'de>>(text: &str, file: &dyn fmt::Display) -> Result<T, ConfigError> {
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
        f.write_str("Secret(***)")
    }
}

/// How a client is asked for the OTP.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ChallengeMode {
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
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A RADIUS client (NAS, VPN, proxy) allowed to send requests.
#[derive(Debug, Clone)]
pub struct Client {
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
}

/// `[server]`: sockets and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// Requests worked on at once; more are dropped and counted.
    pub max_in_flight: usize,
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
    /// Text and HTML bodies.
    pub templates: Templates,
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
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
}

/// Options from the command line that change what a configuration may hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// `serve --test-mode`: allows `fixed_otp_for_testing`.
    pub test_mode: bool,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
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
    /// `[metrics] listen`: where Prometheus scrapes `/metrics`; `None` is off.
    pub metrics: Option<SocketAddr>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Config, ConfigError> {
        let source = Source::File(path.to_path_buf());
        let text = read_text(path)?;
        Config::from_text(&text, source, options)
    }

    /// The embedded default.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::from_text(EMBEDDED_CONFIG, Source::Embedded, LoadOptions::default())
    }

    /// Checks configuration text that came from `source`.
    pub fn from_text(text: &str, source: Source, options: LoadOptions) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_toml(text, &source)?;
        Validator {
            source: &source,
            base: source.base_dir(),
        }
        .config(raw, options)
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
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

struct Validator<'a> {
    source: &'a Source,
    base: PathBuf,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.source, key, reason)
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }

    fn config(&self, raw: RawConfig, options: LoadOptions) -> Result<Config, ConfigError> {
        let server = self.server(raw.server)?;
        if raw.clients.is_empty() {
            return Err(self.err("clients", "at least one [[clients]] entry is needed"));
        }
        let clients = raw
            .clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| self.client(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, c) in clients.iter().enumerate() {
            if clients[..i].iter().any(|o| o.name == c.name) {
                return Err(self.err(
                    format!("clients[{i}].name"),
                    format!("client name `{}` is used twice", c.name),
                ));
            }
        }
        let (lockout_after, lockout_time) = (raw.users.lockout_after, raw.users.lockout_time);
        let users = UsersConfig {
            source: self.users_source(raw.users)?,
            lockout: Lockout {
                after: lockout_after,
                duration: Duration::from_secs(lockout_time),
            },
        };
        let delivery = self.delivery(&raw.email.delivery, raw.link, &clients)?;
        let email = self.email(raw.email, delivery, options)?;
        let state = self.state(raw.state)?;
        Ok(Config {
            source: self.source.clone(),
            server,
            clients,
            users,
            email,
            log: LogConfig { format: raw.log.format },
            state,
            metrics: match raw.metrics {
                None => None,
                Some(m) => {
                    Some(m.listen.parse().map_err(|_| {
                        self.err("metrics.listen", format!("`{}` is not an address with port", m.listen))
                    })?)
                }
            },
        })
    }

    fn users_source(&self, raw: raw::RawUsers) -> Result<UsersSource, ConfigError> {
        match raw.backend.as_str() {
            "ldap" => Ok(UsersSource::Ldap(Box::new(self.ldap(raw)?))),
            "file" => {
                self.no_ldap_keys(&raw)?;
                let file = raw
                    .file
                    .ok_or_else(|| self.err("users.file", "required with backend = \"file\""))?;
                Ok(match self.source {
                    Source::Embedded => UsersSource::Embedded,
                    Source::File(_) => UsersSource::File(self.path(&file)),
                })
            }
            other => Err(self.err(
                "users.backend",
                format!("`{other}` is not a supported backend (supported: \"file\", \"ldap\")"),
            )),
        }
    }

    fn server(&self, raw: raw::RawServer) -> Result<ServerConfig, ConfigError> {
        if raw.listen.is_empty() {
            return Err(self.err("server.listen", "at least one address is needed, e.g. \"0.0.0.0:1812\""));
        }
        let listen = raw
            .listen
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse::<SocketAddr>().map_err(|_| {
                    self.err(
                        format!("server.listen[{i}]"),
                        format!("`{a}` is not an address with port, e.g. \"0.0.0.0:1812\" or \"[::]:1812\""),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if raw.max_in_flight == 0 {
            return Err(self.err("server.max_in_flight", "must be at least 1"));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hash_workers = raw.hash_workers.unwrap_or(cores);
        if hash_workers == 0 {
            return Err(self.err("server.hash_workers", "must be at least 1"));
        }
        if raw.drop_log_interval == 0 {
            return Err(self.err("server.drop_log_interval", "must be at least 1 second"));
        }
        Ok(ServerConfig {
            listen,
            max_in_flight: raw.max_in_flight,
            hash_workers,
            receive_buffer: raw.receive_buffer,
            shutdown_grace: Duration::from_secs(raw.shutdown_grace),
            drop_log_interval: Duration::from_secs(raw.drop_log_interval),
        })
    }

    fn client(&self, i: usize, raw: RawClient) -> Result<Client, ConfigError> {
        let key = |k: &str| format!("clients[{i}].{k}");
        let network = match raw.address.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => raw.address.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                self.err(
                    key("address"),
                    format!("`{}` is not an IP address or CIDR network", raw.address),
                )
            })?,
        };
        let secret = self.secret(raw.secret, raw.secret_file, &key("secret"))?;
        let trusted_email = match raw.trusted_email_attribute {
            None => None,
            Some(name) => match Dictionary::builtin().attribute(&name) {
                Some(def) if def.kind == Kind::String => Some(def.clone()),
                Some(def) => {
                    let reason = format!(
                        "`{}` is not a string attribute, so it cannot carry an address",
                        def.name
                    );
                    return Err(self.err(key("trusted_email_attribute"), reason));
                }
                None => {
                    let reason = format!("`{name}` is not an attribute of the dictionary (see dictionary/)");
                    return Err(self.err(key("trusted_email_attribute"), reason));
                }
            },
        };
        Ok(Client {
            name: raw.name,
            network: network.trunc(),
            secret,
            require_message_authenticator: raw.require_message_authenticator,
            challenge_mode: raw.challenge_mode,
            trusted_email,
        })
    }

    /// A secret given inline or as `<key>_file` (one trailing newline stripped).
    fn secret(&self, inline: Option<String>, file: Option<PathBuf>, key: &str) -> Result<Secret, ConfigError> {
        let bytes = match (inline, file) {
            (Some(s), None) => s.into_bytes(),
            (None, Some(f)) => {
                let path = self.path(&f);
                let mut text = read_text(&path)?;
                if text.ends_with('\n') {
                    text.pop();
                }
                text.into_bytes()
            }
            (Some(_), Some(_)) => return Err(self.err(key, format!("give either `{key}` or `{key}_file`, not both"))),
            (None, None) => return Err(self.err(key, format!("`{key}` or `{key}_file` is required"))),
        };
        if bytes.is_empty() {
            return Err(self.err(key, "the secret is empty"));
        }
        Ok(Secret::new(bytes))
    }

    fn delivery(&self, name: &str, link: Option<raw::RawLink>, clients: &[Client]) -> Result<Delivery, ConfigError> {
        match name {
            "otp" => return Ok(Delivery::Otp),
            "link" => {}
            other => {
                return Err(self.err(
                    "email.delivery",
                    format!("`{other}` is not supported (\"otp\" or \"link\")"),
                ));
            }
        }
        let Some(link) = link else {
            return Err(self.err(
                "link",
                "delivery = \"link\" needs a [link] section with listen and base_url",
            ));
        };
        if let Some(i) = clients.iter().position(|c| c.challenge_mode == ChallengeMode::Reject) {
            return Err(self.err(
                format!("clients[{i}].challenge_mode"),
                "link delivery needs Access-Challenge (the user presses Enter after confirming); \"reject\" cannot do that",
            ));
        }
        let listen = link
            .listen
            .parse()
            .map_err(|_| self.err("link.listen", format!("`{}` is not an address with port", link.listen)))?;
        let base_url = link.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(self.err(
                "link.base_url",
                format!("`{}` is not an http:// or https:// URL", link.base_url),
            ));
        }
        if link.max_connections == 0 {
            return Err(self.err("link.max_connections", "must be at least 1"));
        }
        Ok(Delivery::Link(LinkConfig {
            listen,
            base_url,
            max_connections: link.max_connections,
        }))
    }

    fn email(&self, raw: RawEmail, delivery: Delivery, options: LoadOptions) -> Result<EmailConfig, ConfigError> {
        if !(6..=8).contains(&raw.otp_length) {
            return Err(self.err("email.otp_length", format!("{} is outside 6..=8", raw.otp_length)));
        }
        if raw.challenge_validity == 0 {
            return Err(self.err("email.challenge_validity", "must be at least 1 second"));
        }
        if raw.max_attempts == 0 {
            return Err(self.err("email.max_attempts", "must be at least 1"));
        }
        if raw.queue_limit == 0 {
            return Err(self.err("email.queue_limit", "must be at least 1"));
        }
        if let Some(code) = &raw.fixed_otp_for_testing {
            if !options.test_mode {
                return Err(self.err(
                    "email.fixed_otp_for_testing",
                    "a fixed OTP is for test set-ups only: start with `serve --test-mode`",
                ));
            }
            if code.len() != raw.otp_length as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(self.err(
                    "email.fixed_otp_for_testing",
                    format!("must be {} digits", raw.otp_length),
                ));
            }
        }
        let templates = Templates::load(
            raw.body_file.map(|p| self.path(&p)).as_deref(),
            raw.html_body_file.map(|p| self.path(&p)).as_deref(),
            matches!(delivery, Delivery::Link(_)),
        )?;
        let from = raw.provider.email_from.parse::<Mailbox>().map_err(|e| {
            self.err(
                "email.provider.email_from",
                format!("`{}` is not an e-mail address: {e}", raw.provider.email_from),
            )
        })?;
        let subject = raw.provider.email_subject.clone();
        let provider = self.provider(raw.provider)?;
        let throttling = self.throttling(raw.throttling)?;
        Ok(EmailConfig {
            challenge_validity: Duration::from_secs(raw.challenge_validity),
            blocking_timeout: Duration::from_secs(raw.blocking_timeout),
            otp_length: raw.otp_length,
            max_attempts: raw.max_attempts,
            queue_limit: raw.queue_limit,
            fixed_otp: raw.fixed_otp_for_testing,
            from,
            subject,
            templates,
            provider,
            throttling,
            delivery,
        })
    }

    fn throttling(&self, raw: Option<raw::RawThrottling>) -> Result<Throttling, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Throttling::default());
        };
        let limits = [
            ("max_emails_per_hour", raw.max_emails_per_hour),
            ("max_emails_in_five_minutes", raw.max_emails_in_five_minutes),
            (
                "max_emails_per_client_ip_per_hour",
                raw.max_emails_per_client_ip_per_hour,
            ),
        ];
        for (key, value) in limits {
            if value == Some(0) {
                return Err(self.err(
                    format!("email.throttling.{key}"),
                    "0 would refuse every e-mail; leave the key out for no limit",
                ));
            }
        }
        Ok(Throttling {
            per_user_per_hour: raw.max_emails_per_hour,
            per_user_in_five_minutes: raw.max_emails_in_five_minutes,
            per_client_ip_per_hour: raw.max_emails_per_client_ip_per_hour,
        })
    }

    fn provider(&self, raw: RawProvider) -> Result<Provider, ConfigError> {
        const KEY: &str = "email.provider";
        match raw.kind {
            ProviderKind::File => {
                let outbox = raw.outbox.unwrap_or_else(|| PathBuf::from("outbox"));
                Ok(Provider::File {
                    outbox: self.path(&outbox),
                })
            }
            ProviderKind::Smtp => {
                let server = raw
                    .smtp_server
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| self.err(format!("{KEY}.smtp_server"), "required with kind = \"smtp\""))?;
                let port = raw.smtp_port.unwrap_or(match raw.smtp_tls {
                    SmtpTls::Starttls => 587,
                    SmtpTls::Tls => 465,
                    SmtpTls::None => 25,
                });
                let credentials = match (
                    raw.smtp_user,
                    raw.smtp_password.is_some() || raw.smtp_password_file.is_some(),
                ) {
                    (Some(user), true) => {
                        let password = self.secret(
                            raw.smtp_password,
                            raw.smtp_password_file,
                            &format!("{KEY}.smtp_password"),
                        )?;
                        Some((user, password))
                    }
                    (None, false) => None,
                    (Some(_), false) => {
                        return Err(self.err(
                            format!("{KEY}.smtp_password"),
                            "smtp_user is set, so smtp_password or smtp_password_file is required",
                        ))
                    }
                    (None, true) => {
                        return Err(self.err(
                            format!("{KEY}.smtp_user"),
                            "a password is set, so smtp_user is required",
                        ))
                    }
                };
                let ca_file = raw.smtp_ca_file.map(|p| self.path(&p));
                if let Some(ca) = &ca_file {
                    read_text(ca)?;
                }
                Ok(Provider::Smtp(SmtpConfig {
                    server,
                    port,
                    tls: raw.smtp_tls,
                    ca_file,
                    credentials,
                    timeout: Duration::from_secs(raw.smtp_timeout.max(1)),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests;
