//! `[radsec]`: RADIUS over TLS (RFC 6614) — where it listens, the server's
//! certificate and key, the CA client certificates must chain to, and the
//! connection limits; and the RadSec side of `[[clients]]` (`radsec`,
//! `tls_name`).
//!
//! Checking the section reads the files and builds the TLS settings once
//! (`radsec::tls`), so `check` refuses unreadable files and a key that does
//! not match its certificate exactly as `serve` would. Opens no sockets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::validate::Validator;
use super::ConfigError;

/// The secret RFC 6614 §2.3 fixes for RADIUS over TLS, the default of a
/// `radsec = true` client.
pub(crate) const RADSEC_SECRET: &[u8] = b"radsec";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRadsec {
    pub listen: Vec<String>,
    pub certificate_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: u64,
}

fn default_idle_timeout() -> u64 {
    600
}

fn default_max_connections() -> usize {
    256
}

fn default_handshake_timeout() -> u64 {
    10
}

/// `[radsec]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RadsecConfig {
    /// `listen`: addresses for TCP + TLS (RFC 6614's port is 2083).
    pub listen: Vec<SocketAddr>,
    /// `certificate_file`: the server's certificate chain, PEM, leaf first.
    pub certificate_file: PathBuf,
    /// `key_file`: the server's private key, PEM.
    pub key_file: PathBuf,
    /// `ca_file`: the CA(s), PEM, that client certificates must chain to.
    pub ca_file: PathBuf,
    /// `idle_timeout`: a connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// `max_connections`: RadSec connections open at once; one more is
    /// closed at accept.
    pub max_connections: usize,
    /// `handshake_timeout`: how long a new connection has to finish TLS.
    pub handshake_timeout: Duration,
}

impl RadsecConfig {
    /// The certificate, key and CA files, as `tls` reads them.
    pub(crate) fn files(&self) -> crate::tls::TlsFiles<'_> {
        crate::tls::TlsFiles {
            certificate_file: &self.certificate_file,
            key_file: &self.key_file,
            ca_file: &self.ca_file,
        }
    }
}

impl Validator<'_> {
    /// Checks `[radsec]` and loads its files once.
    pub(super) fn radsec(&self, raw: RawRadsec) -> Result<RadsecConfig, ConfigError> {
        if raw.listen.is_empty() {
            return Err(self.err("radsec.listen", "at least one address is needed"));
        }
        let listen = raw
            .listen
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|_| self.err("radsec.listen", format!("`{a}` is not an address:port")))
            })
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        for (key, value) in [
            ("radsec.idle_timeout", raw.idle_timeout),
            ("radsec.max_connections", raw.max_connections as u64),
            ("radsec.handshake_timeout", raw.handshake_timeout),
        ] {
            if value == 0 {
                return Err(self.err(key, "must be at least 1"));
            }
        }
        let config = RadsecConfig {
            listen,
            certificate_file: self.path(&raw.certificate_file),
            key_file: self.path(&raw.key_file),
            ca_file: self.path(&raw.ca_file),
            idle_timeout: Duration::from_secs(raw.idle_timeout),
            max_connections: raw.max_connections,
            handshake_timeout: Duration::from_secs(raw.handshake_timeout),
        };
        crate::tls::server_config(config.files()).map_err(|e| self.err(e.key(), e.to_string()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, MINIMAL};

    const RADSEC_CLIENT: &str = "[[clients]]\nname = \"proxy\"\naddress = \"192.0.2.5\"\nradsec = true\n";

    fn error_of(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn a_radsec_client_needs_a_tls_name_and_a_radsec_section() {
        let without_name = format!("{MINIMAL}\n{RADSEC_CLIENT}");
        assert!(
            error_of(&without_name).contains("clients[1].tls_name"),
            "{}",
            error_of(&without_name)
        );
        let without_section = format!("{without_name}tls_name = \"proxy.example.com\"\n");
        let error = error_of(&without_section);
        assert!(
            error.contains("clients[1].radsec") && error.contains("[radsec]"),
            "{error}"
        );
    }

    #[test]
    fn a_udp_client_has_no_tls_name() {
        let text = MINIMAL.replace(
            "secret = \"s3cret\"",
            "secret = \"s3cret\"\ntls_name = \"vpn.example.com\"",
        );
        assert!(error_of(&text).contains("clients[0].tls_name"), "{}", error_of(&text));
    }

    #[test]
    fn radsec_files_that_cannot_be_read_are_named() {
        let text = format!(
            "{MINIMAL}\n[radsec]\nlisten = [\"127.0.0.1:2083\"]\ncertificate_file = \"nope.pem\"\n\
             key_file = \"nope.key\"\nca_file = \"ca.pem\"\n"
        );
        let error = error_of(&text);
        assert!(
            error.contains("radsec.certificate_file") && error.contains("/etc/mailotp/nope.pem"),
            "{error}"
        );
    }
}
