//! users::ldap: users in an LDAP directory (OpenLDAP, Active Directory). The
//! PIN is the user's directory password; the e-mail address is an attribute.
//!
//! A login is: a search with the service account for exactly one entry
//! matching `user_filter` (the name escaped per RFC 4515), a bind as that
//! entry's DN with the PIN on a connection of its own, and, with
//! `active_filter`, a base search of the DN with it. Unknown users get the
//! same three steps against a DN that does not exist, so time does not tell
//! them apart. The user's canonical name is the entry's `login_attribute`
//! as the directory returns it: every spelling the directory matches (case,
//! spaces, Unicode forms) is the same user. A locked user (asked of the
//! lock gate between search and bind) is bound as for nobody, so the
//! directory never sees a locked user's password guesses. A directory that
//! cannot answer is `Unavailable`, and is reported down to `health` (so
//! Status-Server goes silent) until an operation or a service bind works
//! again. The user's groups (module `groups`) are read only once the PIN
//! was right. Nothing here logs a PIN or the service password.

mod conn;
mod groups;

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{ldap_escape, Scope, SearchEntry, SearchOptions};
use lettre::message::Mailbox;

use self::conn::{Connector, ServiceConnections};
use super::{DirectoryError, LockGate, PinCheck, User, UserDirectory};
use crate::config::{ConfigError, LdapConfig, USER_PLACEHOLDER};
use crate::health::{Backend, Health};
use crate::lifecycle::Lifecycle;

/// LDAP result codes (RFC 4511 appendix A) that are answers, not failures.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const NO_SUCH_OBJECT: u32 = 32;
/// How often a directory marked down is tried again without traffic.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Users from an LDAP directory.
pub struct LdapUsers {
    inner: Arc<Inner>,
}

struct Inner {
    config: Box<LdapConfig>,
    connector: Arc<Connector>,
    service: ServiceConnections,
    /// Bound as for unknown users, so that they cost a bind too.
    absent_dn: String,
    /// Where up and down are reported.
    health: Arc<Health>,
    /// Where the recovery task runs.
    life: Lifecycle,
}

/// The one entry a user name matched.
struct Found {
    dn: String,
    /// The canonical name: the first value of `login_attribute`.
    login: String,
    email: Option<Mailbox>,
    /// Every value of `language_attribute`, in the entry's order.
    languages: Vec<String>,
    /// The values of `group_attribute`, if configured.
    groups: Vec<String>,
}

impl LdapUsers {
    /// Sets up TLS and the service connections; connects on first use, so a directory that
    /// is down at start delays nothing.
    pub fn new(config: Box<LdapConfig>, health: Arc<Health>, life: Lifecycle) -> Result<LdapUsers, ConfigError> {
        let connector = Arc::new(Connector::new(&config)?);
        let service = ServiceConnections::new(
            Arc::clone(&connector),
            config.bind_dn.clone(),
            config.bind_password.clone(),
        );
        let absent_dn = format!(
            "cn=mailotp-absent-{},{}",
            hex::encode(rand::random::<[u8; 8]>()),
            config.base_dn
        );
        Ok(LdapUsers {
            inner: Arc::new(Inner {
                config,
                connector,
                service,
                absent_dn,
                health,
                life,
            }),
        })
    }
}

impl Inner {
    async fn check(
        self: &Arc<Self>,
        name: &str,
        password: &str,
        gate: &dyn LockGate,
    ) -> Result<PinCheck, DirectoryError> {
        let found = self.note(self.find(name).await)?;
        let locked = gate.is_locked(found.as_ref().map_or(name, |f| f.login.as_str())).await;
        // A locked user's password is not tried: bound as for nobody instead.
        let dn = match &found {
            Some(f) if !locked => f.dn.as_str(),
            _ => self.absent_dn.as_str(),
        };
        let bound = self.note(self.connector.bind_as(dn, password).await)?;
        let active = self.note(self.is_active(dn).await)?;
        Ok(match found {
            None => PinCheck::UnknownUser,
            Some(f) if locked => PinCheck::Locked(f.login),
            Some(f) if !bound => PinCheck::WrongPin(f.login),
            Some(f) if !active => PinCheck::Inactive(f.login),
            Some(Found {
                dn,
                login,
                email: Some(email),
                languages,
                groups,
            }) => PinCheck::Valid(User {
                name: login,
                email,
                groups: self.note(self.groups(&dn, groups).await)?,
                languages,
            }),
            Some(Found {
                dn, login, email: None, ..
            }) => {
                // Answered like an inactive user, but the admin needs to know why.
                tracing::warn!(%dn, attribute = %self.config.email_attribute, "user has no usable e-mail address in the directory");
                PinCheck::Inactive(login)
            }
        })
    }

    /// The entry `name` matches; `None` for none or several.
    async fn find(&self, name: &str) -> Result<Option<Found>, DirectoryError> {
        let config = &self.config;
        let filter = config.user_filter.replace(USER_PLACEHOLDER, &ldap_escape(name));
        let (base, filter, attribute, login) = (
            config.base_dn.as_str(),
            filter.as_str(),
            config.email_attribute.as_str(),
            config.login_attribute.as_str(),
        );
        let group_attribute = config.groups.attribute.as_deref();
        let language = config.language_attribute.as_deref();
        let wanted: Vec<&str> = [Some(attribute), Some(login), group_attribute, language]
            .into_iter()
            .flatten()
            .collect();
        let result = self
            .service
            .run("user search", |mut ldap| {
                let wanted = wanted.clone();
                async move {
                    ldap.with_search_options(SearchOptions::new().sizelimit(2))
                        .search(base, Scope::Subtree, filter, wanted)
                        .await
                }
            })
            .await?;
        let (entries, outcome) = (result.0, result.1);
        match outcome.rc {
            SUCCESS if entries.len() == 1 => {}
            SUCCESS | SIZE_LIMIT_EXCEEDED => return Ok(None),
            rc => {
                return Err(conn::unavailable(
                    "user search",
                    format_args!("result code {rc} {} (base_dn `{base}`)", outcome.text),
                ))
            }
        }
        let entry = SearchEntry::construct(entries.into_iter().next().expect("one entry"));
        let values = |wanted: &str| {
            entry
                .attrs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(wanted))
                .map(|(_, values)| values.as_slice())
        };
        let first = |wanted: &str| values(wanted).and_then(<[String]>::first);
        let groups = group_attribute
            .and_then(values)
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        let email = first(attribute).and_then(|value| value.parse::<Mailbox>().ok());
        let Some(login) = first(login).filter(|l| !l.is_empty()).cloned() else {
            // Without a canonical name the user cannot be counted: nobody.
            tracing::warn!(dn = %entry.dn, attribute = %login, "user has no login_attribute in the directory; treated as unknown");
            return Ok(None);
        };
        let languages = language.and_then(values).map(<[String]>::to_vec).unwrap_or_default();
        Ok(Some(Found {
            dn: entry.dn,
            login,
            email,
            languages,
            groups,
        }))
    }

    /// Whether `dn` is inside `active_filter` (always, without one).
    async fn is_active(&self, dn: &str) -> Result<bool, DirectoryError> {
        let Some(filter) = self.config.active_filter.as_deref() else {
            return Ok(true);
        };
        let result = self
            .service
            .run("active_filter search", |mut ldap| async move {
                ldap.search(dn, Scope::Base, filter, vec!["1.1"]).await
            })
            .await?;
        match result.1.rc {
            SUCCESS => Ok(result.0.len() == 1),
            NO_SUCH_OBJECT => Ok(false),
            rc => Err(conn::unavailable(
                "active_filter search",
                format_args!("result code {rc} {}", result.1.text),
            )),
        }
    }

    /// Reports what the directory just did to `health`.
    fn note<T>(self: &Arc<Self>, outcome: Result<T, DirectoryError>) -> Result<T, DirectoryError> {
        match &outcome {
            Ok(_) => self.mark_up(),
            Err(e) => {
                if self.health.down(Backend::Directory) {
                    tracing::error!(error = %e, "LDAP directory unavailable: no answers (Status-Server included) until it is back");
                    self.life.spawn(recover(Arc::downgrade(self), self.life.clone()));
                }
            }
        }
        outcome
    }

    fn mark_up(&self) {
        if self.health.up(Backend::Directory) {
            tracing::info!("LDAP directory reachable again: answering");
        }
    }
}

/// Tries a service bind every second until one works (a login that worked
/// meanwhile makes the next try work too), so that Status-Server answers
/// resume even when no login comes; ends early when the directory is dropped
/// (reload) or the server stops.
async fn recover(inner: Weak<Inner>, life: Lifecycle) {
    loop {
        tokio::select! {
            _ = life.cancelled() => return,
            _ = tokio::time::sleep(RECOVERY_INTERVAL) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if inner.service.probe().await.is_ok() {
            inner.mark_up();
            return;
        }
    }
}

#[async_trait]
impl UserDirectory for LdapUsers {
    async fn check_pin(&self, name: &str, pin: &[u8], gate: &dyn LockGate) -> Result<PinCheck, DirectoryError> {
        // ldap3 binds with text; a PIN that is not UTF-8 cannot be anyone's.
        let Ok(password) = std::str::from_utf8(pin) else {
            return Ok(PinCheck::Unusable);
        };
        // An empty password makes a simple bind unauthenticated, which many
        // servers let "succeed" (RFC 4513 §5.1.2): refuse before binding.
        if password.is_empty() {
            return Ok(PinCheck::Unusable);
        }
        self.inner.check(name, password, gate).await
    }

    /// The directory is not counted; 0.
    fn len(&self) -> usize {
        0
    }

    /// Binds as the service account on a new connection.
    async fn check_connection(&self) -> Result<(), DirectoryError> {
        self.inner.service.probe().await
    }

    /// With the service account: the entry `name` matches, whether it is
    /// active (in `active_filter`, with an e-mail address), and its groups.
    async fn lookup(&self, name: &str) -> Result<Option<(User, bool)>, DirectoryError> {
        let inner = &self.inner;
        let Some(found) = inner.find(name).await? else {
            return Ok(None);
        };
        let active = inner.is_active(&found.dn).await? && found.email.is_some();
        let groups = inner.groups(&found.dn, found.groups).await?;
        let email = found
            .email
            .unwrap_or_else(|| Mailbox::new(None, lettre::Address::new("no-address", "invalid").expect("an address")));
        Ok(Some((
            User {
                name: found.login,
                email,
                groups,
                languages: found.languages,
            },
            active,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LdapTls, Secret};
    use crate::users::NoLockout;

    /// A directory on a port where nothing listens.
    fn nowhere() -> (LdapUsers, Arc<Health>) {
        let config = LdapConfig {
            url: "ldap://127.0.0.1:1".to_owned(),
            tls: LdapTls::None,
            ca_file: None,
            bind_dn: "cn=svc,dc=example,dc=test".to_owned(),
            bind_password: Secret::new(b"svc".to_vec()),
            base_dn: "dc=example,dc=test".to_owned(),
            user_filter: "(uid={user})".to_owned(),
            email_attribute: "mail".to_owned(),
            login_attribute: "uid".to_owned(),
            active_filter: None,
            timeout: Duration::from_secs(2),
            language_attribute: None,
            groups: Default::default(),
        };
        let health = Arc::new(Health::default());
        let life = Lifecycle::new(Duration::from_secs(1));
        (
            LdapUsers::new(Box::new(config), Arc::clone(&health), life).unwrap(),
            health,
        )
    }

    #[tokio::test]
    async fn empty_and_non_utf8_pins_are_refused_before_any_connection() {
        let (users, health) = nowhere();
        assert_eq!(
            users.check_pin("alice", b"", &NoLockout).await.unwrap(),
            PinCheck::Unusable
        );
        assert_eq!(
            users.check_pin("alice", b"\xff\xfe", &NoLockout).await.unwrap(),
            PinCheck::Unusable
        );
        assert!(health.all_up(), "nothing was tried, so nothing failed");
    }

    #[tokio::test]
    async fn an_unreachable_directory_is_unavailable_and_reported_down() {
        let (users, health) = nowhere();
        let err = users
            .check_pin("alice", b"pw", &NoLockout)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("LDAP"), "{err}");
        assert!(!health.all_up());
        assert!(users.check_connection().await.is_err());
    }
}
