//! users: who may log in, their e-mail address, and the PIN check.
//!
//! [`UserDirectory`] is the seam `auth` talks to; [`open`] picks the backend
//! `[users] backend` names. [`FileUsers`] reads the users file of argon2 PIN
//! hashes; [`LdapUsers`] asks an LDAP directory and reports to `health`.
//! A user has one canonical name, whatever spelling found them: the users
//! file's name, or the LDAP entry's `login_attribute`; every verdict on a user
//! that exists carries it, so that lockout, throttles and challenges count
//! under it. Once a directory knows whom a name means, and before it checks
//! the PIN, it asks the [`LockGate`]: a locked user's PIN is never checked (no
//! bind that could count against the account in the directory), and costs
//! the time of an unknown user's. PIN hashes run on a fixed set of threads of
//! their own ([`HashThreads`]),
//! never on the UDP loop. An unknown user costs one hash of a
//! dummy PIN, so time does not tell known and unknown users apart. Nothing
//! here logs a PIN.

mod file;
mod hash;
mod ldap;

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use lettre::message::Mailbox;
use thiserror::Error;

use crate::config::{ConfigError, UsersConfig, UsersSource};
use crate::dictionary::WireAttribute;
use crate::health::Health;
use crate::lifecycle::Lifecycle;

pub use file::{load_file, FileUsers};
pub use hash::{HashStats, HashThreads, PIN_LANE};
pub use ldap::LdapUsers;

/// A user whose PIN was right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The canonical name: as the users file writes it, or the entry's
    /// `login_attribute` as the directory returns it (not the User-Name as
    /// typed, which may differ in case, spaces or Unicode form).
    pub name: String,
    /// Where the codes go.
    pub email: Mailbox,
    /// The groups the user is in, for `[[policies]]`.
    pub groups: Vec<String>,
    /// The languages the user reads, best first (users file `language`, LDAP
    /// `language_attribute`); `config::Wording` picks the one it has.
    pub languages: Vec<String>,
}

/// The verdict on a PIN. `auth` answers all but `Valid` the same way; the
/// variants exist for the log, and carry the canonical name of a user that
/// exists for the lockout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// The PIN is right and the user may log in.
    Valid(User),
    /// The user (canonical name) exists but the PIN is wrong.
    WrongPin(String),
    /// No such user.
    UnknownUser,
    /// The PIN is right but the account (canonical name) is switched off
    /// (`active = false`, outside `active_filter`, no e-mail address).
    Inactive(String),
    /// The user (canonical name) is locked: the PIN was not checked.
    Locked(String),
    /// A password that cannot be anyone's (LDAP: empty, or not UTF-8), refused
    /// without asking the directory; answered as a wrong PIN, counted nowhere.
    Unusable,
}

/// Asked by a directory once it has found whom a name means, before it
/// checks the PIN.
#[async_trait]
pub trait LockGate: Send + Sync {
    /// Whether `name` is locked: the canonical name of the user found, or,
    /// for nobody, the name as typed (asked all the same, so that unknown
    /// users cost the same round trip).
    async fn is_locked(&self, name: &str) -> bool;
}

/// No lockout: for checking PINs outside the server (tests, tools).
pub struct NoLockout;

#[async_trait]
impl LockGate for NoLockout {
    async fn is_locked(&self, _name: &str) -> bool {
        false
    }
}

impl PinCheck {
    /// The canonical name of the user the verdict is about, if one was found.
    pub fn canonical(&self) -> Option<&str> {
        match self {
            PinCheck::Valid(user) => Some(&user.name),
            PinCheck::WrongPin(name) | PinCheck::Inactive(name) | PinCheck::Locked(name) => Some(name),
            PinCheck::UnknownUser | PinCheck::Unusable => None,
        }
    }
}

/// Why a directory could not answer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The hash threads are gone (the server is stopping), or the directory is
    /// unreachable, too slow, or refuses the service account.
    #[error("PIN check could not run: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// Where users are looked up and PINs checked.
#[async_trait]
pub trait UserDirectory: Send + Sync + 'static {
    /// Checks `pin` for `name` as typed, unless `gate` says the user it means
    /// is locked.
    async fn check_pin(&self, name: &str, pin: &[u8], gate: &dyn LockGate) -> Result<PinCheck, DirectoryError>;

    /// Number of users, for the start-up summary.
    fn len(&self) -> usize;

    /// Whether there are no users.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For `check --connect`: whether the backend's server can be used (for
    /// LDAP, a service bind on a new connection). The users file has none.
    async fn check_connection(&self) -> Result<(), DirectoryError> {
        Ok(())
    }

    /// The attributes an Access-Accept for the canonical `name` carries (the
    /// users file's `reply`). Cheap and local: the State path must not need the directory.
    fn reply_attributes(&self, _name: &str) -> Vec<WireAttribute> {
        Vec::new()
    }

    /// For `check --explain`: the user `name` (as typed) means, without a
    /// PIN, and whether the account is active; `None` for nobody.
    async fn lookup(&self, _name: &str) -> Result<Option<(User, bool)>, DirectoryError> {
        Err(DirectoryError::Unavailable {
            reason: "this user directory cannot look users up without a PIN".to_owned(),
        })
    }

    /// The groups of the canonical `name` that are known without asking a
    /// server (the users file's `groups`), for the policy of a State's answer.
    fn local_groups(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }

    /// The languages of the canonical `name` known without asking a server
    /// (the users file's `language`), for the words of a State's answer.
    fn local_languages(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }
}

/// A hash for `mailotp hash-pin`: argon2id with the crate's recommended
/// parameters (m=19456 KiB, t=2, p=1) and a random salt.
pub fn hash_pin(pin: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pin, &salt)
        .expect("argon2 with default parameters hashes any PIN")
        .to_string()
}

/// The directory `[users]` asks for, for `check`: an LDAP directory reports
/// its health to a flag nobody reads, under a lifecycle nobody drains.
pub fn open(config: &UsersConfig, hashes: HashThreads) -> Result<Box<dyn UserDirectory>, ConfigError> {
    open_reporting(
        config,
        hashes,
        Arc::default(),
        &Lifecycle::new(std::time::Duration::ZERO),
    )
}

/// The directory `[users]` asks for; an LDAP directory reports up and down to
/// `health`, which the request handler reads for Status-Server, and tries
/// to recover on `life`.
pub fn open_reporting(
    config: &UsersConfig,
    hashes: HashThreads,
    health: Arc<Health>,
    life: &Lifecycle,
) -> Result<Box<dyn UserDirectory>, ConfigError> {
    Ok(match &config.source {
        UsersSource::Ldap(ldap) => Box::new(LdapUsers::new(ldap.clone(), health, life.clone())?),
        source => Box::new(FileUsers::load(source, hashes)?),
    })
}
