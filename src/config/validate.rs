//! The validate step: turns the parsed file (`raw`) into the typed
//! [`Config`], checking what spans several keys and naming file, key and
//! reason in every refusal. It reads the files the configuration points at
//! (secrets, templates, CA files) but opens no sockets.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use lettre::message::Mailbox;

use super::raw::{self, ProviderKind, RawClient, RawConfig, RawEmail, RawProvider};
use super::template::Template;
use super::*;
use crate::dictionary::{Dictionary, Kind};
use crate::limits::{Lockout, Throttling};

pub(super) struct Validator<'a> {
    source: &'a Source,
    base: PathBuf,
}

impl<'a> Validator<'a> {
    pub(super) fn new(source: &'a Source) -> Validator<'a> {
        Validator {
            source,
            base: source.base_dir(),
        }
    }

    pub(super) fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.source, key, reason)
    }

    pub(super) fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }

    pub(super) fn config(&self, raw: RawConfig, options: LoadOptions) -> Result<Config, ConfigError> {
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
        let deny_locks = raw.users.deny_locks;
        let users = UsersConfig {
            deny_locks,
            source: self.users_source(raw.users)?,
            lockout: Lockout {
                after: lockout_after,
                duration: Duration::from_secs(lockout_time),
            },
        };
        let pages = raw.link.map(|link| self.link(link)).transpose()?;
        let delivery = self.delivery(&raw.email.delivery, pages.as_ref(), &clients)?;
        let email = self.email(raw.email, &raw.messages, delivery, pages, options)?;
        let state = self.state(raw.state)?;
        let policies = self.policies(raw.policies, &clients, email.pages.is_some())?;
        let radsec = raw.radsec.map(|r| self.radsec(r)).transpose()?;
        if let (None, Some(i)) = (&radsec, clients.iter().position(|c| c.tls_name.is_some())) {
            return Err(self.err(
                format!("clients[{i}].radsec"),
                "a radsec = true client needs a [radsec] section",
            ));
        }
        Ok(Config {
            source: self.source.clone(),
            server,
            clients,
            users,
            email,
            log: LogConfig { format: raw.log.format },
            state,
            metrics: raw.metrics.map(|m| self.metrics(m)).transpose()?,
            policies,
            control: self.control(raw.control)?,
            radsec,
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
        if raw.pin_queue_per_client == 0 {
            return Err(self.err("server.pin_queue_per_client", "must be at least 1"));
        }
        Ok(ServerConfig {
            listen,
            max_in_flight: raw.max_in_flight,
            pin_queue_per_client: raw.pin_queue_per_client,
            hash_workers,
            receive_buffer: raw.receive_buffer,
            shutdown_grace: Duration::from_secs(raw.shutdown_grace),
            drop_log_interval: Duration::from_secs(raw.drop_log_interval),
        })
    }

    fn client(&self, i: usize, raw: RawClient) -> Result<Client, ConfigError> {
        let key = |k: &str| format!("clients[{i}].{k}");
        let network = network(&raw.address).ok_or_else(|| {
            self.err(
                key("address"),
                format!("`{}` is not an IP address or CIDR network", raw.address),
            )
        })?;
        let secret = match (&raw.secret, &raw.secret_file, raw.radsec) {
            (None, None, true) => Secret::new(RADSEC_SECRET.to_vec()),
            _ => self.secret(raw.secret, raw.secret_file, &key("secret"))?,
        };
        let tls_name = match (raw.radsec, raw.tls_name) {
            (true, Some(name)) if !name.trim().is_empty() => Some(name),
            (true, _) => {
                let reason = "a radsec = true client needs tls_name, the DNS name (SAN) of its certificate";
                return Err(self.err(key("tls_name"), reason));
            }
            (false, Some(_)) => return Err(self.err(key("tls_name"), "only a radsec = true client has a tls_name")),
            (false, None) => None,
        };
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
            network,
            secret,
            // RFC 6614 §2.3: TLS protects the packet; verified when present.
            require_message_authenticator: raw.require_message_authenticator && !raw.radsec,
            challenge_mode: raw.challenge_mode,
            trusted_email,
            tls_name,
        })
    }

    /// A secret given inline or as `<key>_file` (one trailing newline stripped).
    pub(super) fn secret(
        &self,
        inline: Option<raw::RawSecret>,
        file: Option<PathBuf>,
        key: &str,
    ) -> Result<Secret, ConfigError> {
        let bytes = match (inline, file) {
            (Some(s), None) => s.0.into_bytes(),
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

    fn delivery(&self, name: &str, link: Option<&LinkConfig>, clients: &[Client]) -> Result<Delivery, ConfigError> {
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
        Ok(Delivery::Link(link.clone()))
    }

    /// `[link]`: the page server of confirmation and deny links.
    fn link(&self, link: raw::RawLink) -> Result<LinkConfig, ConfigError> {
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
        let http = self.http_limits("link", link.max_connections, link.request_timeout)?;
        let deny_page = match &link.deny_page_file {
            None => Template::built_in_deny_page(),
            Some(path) => {
                let path = self.path(path);
                Template::parse_page(&super::read_text(&path)?)
                    .map_err(|reason| ConfigError::invalid(path.display(), "link.deny_page_file", reason))?
            }
        };
        Ok(LinkConfig {
            listen,
            base_url,
            http,
            deny_page,
        })
    }

    fn metrics(&self, raw: raw::RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let listen = raw.listen.parse().map_err(|_| {
            self.err(
                "metrics.listen",
                format!("`{}` is not an address with port", raw.listen),
            )
        })?;
        let http = self.http_limits("metrics", raw.max_connections, raw.request_timeout)?;
        Ok(MetricsConfig { listen, http })
    }

    fn http_limits(&self, section: &str, max_connections: usize, timeout: u64) -> Result<HttpLimits, ConfigError> {
        if max_connections == 0 {
            return Err(self.err(format!("{section}.max_connections"), "must be at least 1"));
        }
        if timeout == 0 {
            return Err(self.err(format!("{section}.request_timeout"), "must be at least 1 second"));
        }
        Ok(HttpLimits {
            max_connections,
            request_timeout: Duration::from_secs(timeout),
        })
    }

    fn email(
        &self,
        raw: RawEmail,
        messages: &std::collections::BTreeMap<String, String>,
        delivery: Delivery,
        pages: Option<LinkConfig>,
        options: LoadOptions,
    ) -> Result<EmailConfig, ConfigError> {
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
        let wording = self.wording(&raw, messages, matches!(delivery, Delivery::Link(_)), pages.is_some())?;
        let timezone = match &raw.timezone {
            None => jiff::tz::TimeZone::UTC,
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|e| self.err("email.timezone", format!("`{name}` is not a known IANA time zone: {e}")))?,
        };
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
            wording: std::sync::Arc::new(wording),
            timezone,
            pages,
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

/// An IP address or CIDR network (host bits cleared), as `[[clients]]
/// address` and a policy's `calling_station` take it.
pub(super) fn network(text: &str) -> Option<IpNet> {
    match text.parse::<IpNet>() {
        Ok(net) => Some(net.trunc()),
        Err(_) => text.parse::<IpAddr>().ok().map(IpNet::from),
    }
}
