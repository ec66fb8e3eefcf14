//! users::ldap::conn: opening LDAP connections (ldap://, ldaps://, STARTTLS,
//! the TLS trust) and the service account's connections, bounded in number.
//!
//! Every step runs under the configured per-operation timeout. A connection
//! that failed or timed out is dropped, never put back. This module knows
//! nothing about users or filters; it never sees a user's password except to
//! pass it to one bind.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::{read_text, ConfigError, LdapConfig, LdapTls, Secret};
use crate::users::DirectoryError;

/// Service-account connections open at once at most. Searches are short, so a
/// few connections carry thousands of logins; more would only load the
/// directory.
const SERVICE_CONNECTIONS: usize = 4;

/// `DirectoryError::Unavailable` for `what` failing with `error`.
pub(super) fn unavailable(what: &str, error: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable {
        reason: format!("LDAP {what}: {error}"),
    }
}

/// Runs `step` under `limit`; a timeout or a transport error is `Unavailable`.
async fn timed<T>(
    what: &str,
    limit: Duration,
    step: impl Future<Output = ldap3::result::Result<T>>,
) -> Result<T, DirectoryError> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unavailable(what, e)),
        Err(_) => Err(unavailable(
            what,
            format_args!("no answer within {} s", limit.as_secs()),
        )),
    }
}

/// A permit of `permits` (`size` in all) within `limit`: a directory so slow
/// that every connection is still busy counts as unavailable.
async fn acquire<'a>(
    permits: &'a Semaphore,
    size: usize,
    what: &str,
    limit: Duration,
) -> Result<SemaphorePermit<'a>, DirectoryError> {
    match tokio::time::timeout(limit, permits.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(closed)) => Err(unavailable(what, closed)),
        Err(_) => Err(unavailable(
            what,
            format_args!("all {size} connections busy for {} s", limit.as_secs()),
        )),
    }
}

/// User binds at once at most; each is a connection (and with TLS a
/// handshake) of its own, so a login storm must not open hundreds.
const USER_CONNECTIONS: usize = 32;

/// Opens connections to the directory.
pub(super) struct Connector {
    url: String,
    settings: LdapConnSettings,
    user_permits: Semaphore,
    /// The per-operation limit.
    pub(super) timeout: Duration,
}

impl Connector {
    /// Builds the TLS trust: the system's CAs plus `ldap_ca_file`.
    pub(super) fn new(config: &LdapConfig) -> Result<Connector, ConfigError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(config.timeout);
        if config.tls != LdapTls::None {
            settings = settings
                .set_starttls(config.tls == LdapTls::StartTls)
                .set_config(tls_config(config)?);
        }
        Ok(Connector {
            url: config.url.clone(),
            settings,
            user_permits: Semaphore::new(USER_CONNECTIONS),
            timeout: config.timeout,
        })
    }

    /// Whether `password` binds as `dn`, on a new connection closed after it
    /// (a bind changes who a connection is, so service connections never do
    /// it). Any refusal (wrong password, locked, expired) is the answer; only
    /// a directory that cannot answer is an error.
    pub(super) async fn bind_as(&self, dn: &str, password: &str) -> Result<bool, DirectoryError> {
        let limit = self.timeout;
        let _permit = acquire(&self.user_permits, USER_CONNECTIONS, "user bind", limit).await?;
        let mut ldap = self.open().await?;
        let result = timed("user bind", limit, ldap.simple_bind(dn, password)).await?;
        let _ = tokio::time::timeout(limit, ldap.unbind()).await;
        Ok(result.rc == 0)
    }

    /// A new connection (TLS set up, not bound yet).
    pub(super) async fn open(&self) -> Result<Ldap, DirectoryError> {
        timed("connection to the directory", self.timeout, async {
            let (conn, ldap) = LdapConnAsync::with_settings(self.settings.clone(), &self.url).await?;
            // The connection task ends when the last `Ldap` handle is dropped.
            ldap3::drive!(conn);
            Ok(ldap)
        })
        .await
    }
}

fn tls_config(config: &LdapConfig) -> Result<Arc<ClientConfig>, ConfigError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates only matter if the server uses one of them.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &config.ca_file {
        let invalid = |reason: String| ConfigError::invalid(path.display(), "users.ldap_ca_file", reason);
        let pem = read_text(path)?;
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("holds no PEM certificate".to_owned()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("[users]", "ldap_url", format!("TLS cannot be set up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Bound service-account connections, reused between requests.
pub(super) struct ServiceConnections {
    connector: Arc<Connector>,
    bind_dn: String,
    password: Secret,
    idle: Mutex<Vec<Ldap>>,
    permits: Semaphore,
}

impl ServiceConnections {
    /// None yet; connections open on first use.
    pub(super) fn new(connector: Arc<Connector>, bind_dn: String, password: Secret) -> ServiceConnections {
        ServiceConnections {
            connector,
            bind_dn,
            password,
            idle: Mutex::new(Vec::with_capacity(SERVICE_CONNECTIONS)),
            permits: Semaphore::new(SERVICE_CONNECTIONS),
        }
    }

    /// Runs `op` on a bound service connection. A kept connection that
    /// fails (not one that times out) is dropped and `op` runs once more on a
    /// fresh one, so a directory restart costs no request; a fresh connection
    /// failing is `Unavailable`.
    pub(super) async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, DirectoryError>
    where
        F: Fn(Ldap) -> Fut,
        Fut: Future<Output = ldap3::result::Result<T>>,
    {
        let limit = self.connector.timeout;
        let _permit = acquire(&self.permits, SERVICE_CONNECTIONS, what, limit).await?;
        if let Some(ldap) = self.take_idle() {
            match tokio::time::timeout(limit, op(ldap.clone())).await {
                Ok(Ok(value)) => {
                    self.put_back(ldap);
                    return Ok(value);
                }
                // Closed under us (a directory restart): a fresh connection decides.
                Ok(Err(_)) => {}
                // Slow, not gone: trying again would only double the wait.
                Err(_) => {
                    return Err(unavailable(
                        what,
                        format_args!("no answer within {} s", limit.as_secs()),
                    ))
                }
            }
        }
        let ldap = self.connect().await?;
        let value = timed(what, limit, op(ldap.clone())).await?;
        self.put_back(ldap);
        Ok(value)
    }

    /// A fresh connection bound as the service account, not kept: for
    /// `check --connect` and for noticing that the directory is back.
    pub(super) async fn probe(&self) -> Result<(), DirectoryError> {
        let mut ldap = self.connect().await?;
        let _ = tokio::time::timeout(self.connector.timeout, ldap.unbind()).await;
        Ok(())
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let mut ldap = self.connector.open().await?;
        // Configuration text is UTF-8, so nothing is lost here.
        let password = String::from_utf8_lossy(self.password.expose());
        let bind = ldap.simple_bind(&self.bind_dn, &password);
        let result = timed("service bind", self.connector.timeout, bind).await?;
        if result.rc != 0 {
            return Err(unavailable(
                &format!("service bind as `{}`", self.bind_dn),
                format_args!("refused with result code {} {}", result.rc, result.text),
            ));
        }
        Ok(ldap)
    }

    fn take_idle(&self) -> Option<Ldap> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut ldap) = idle.pop() {
            if !ldap.is_closed() {
                return Some(ldap);
            }
        }
        None
    }

    fn put_back(&self, ldap: Ldap) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < SERVICE_CONNECTIONS {
            idle.push(ldap);
        }
    }
}
