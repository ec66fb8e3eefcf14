//! The users file: `[[users]]` entries with name, e-mail, argon2 PIN hash,
//! `active`, `reply` and `groups`. Read whole at start (and on reload);
//! lookups never touch disk.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::dictionary::{Dictionary, WireAttribute};

use super::{DirectoryError, HashThreads, LockGate, PinCheck, User, UserDirectory};
use crate::config::{parse_toml, read_text, ConfigError, UsersSource, EMBEDDED_USERS};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsersFile {
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    email: String,
    pin: String,
    #[serde(default = "default_active")]
    active: bool,
    #[serde(default)]
    reply: BTreeMap<String, toml::Value>,
    #[serde(default)]
    groups: Vec<String>,
    language: Option<String>,
}

fn default_active() -> bool {
    true
}

#[derive(Debug)]
struct Entry {
    user: User,
    pin_hash: Arc<str>,
    active: bool,
    reply: Vec<WireAttribute>,
}

/// Users from a users file.
#[derive(Debug)]
pub struct FileUsers {
    users: HashMap<String, Entry>,
    dummy_hash: Arc<str>,
    hashes: HashThreads,
}

impl FileUsers {
    /// Reads and checks the users file (or the embedded demo users).
    pub fn load(source: &UsersSource, hashes: HashThreads) -> Result<FileUsers, ConfigError> {
        match source {
            UsersSource::File(path) => FileUsers::parse(&read_text(path)?, &path.display(), hashes),
            UsersSource::Embedded => FileUsers::parse(EMBEDDED_USERS, &"<embedded demo users>", hashes),
            UsersSource::Ldap(_) => Err(ConfigError::invalid(
                "[users]",
                "backend",
                "\"ldap\" has no users file to read",
            )),
        }
    }

    /// Checks users-file text that came from `file`.
    pub fn parse(text: &str, file: &dyn std::fmt::Display, hashes: HashThreads) -> Result<FileUsers, ConfigError> {
        let raw: RawUsersFile = parse_toml(text, file)?;
        let mut users = HashMap::with_capacity(raw.users.len());
        let mut dummy_params = None;
        for (i, u) in raw.users.into_iter().enumerate() {
            let err = |key: &str, reason: String| ConfigError::invalid(file, format!("users[{i}].{key}"), reason);
            if u.name.is_empty() {
                return Err(err("name", "the name is empty".to_owned()));
            }
            let email = u
                .email
                .parse::<Mailbox>()
                .map_err(|e| err("email", format!("`{}` is not an e-mail address: {e}", u.email)))?;
            let parsed = PasswordHash::new(&u.pin)
                .map_err(|e| err("pin", format!("not a PIN hash from `mailotp hash-pin`: {e}")))?;
            if !parsed.algorithm.as_str().starts_with("argon2") {
                return Err(err(
                    "pin",
                    format!("hash algorithm `{}` is not argon2", parsed.algorithm),
                ));
            }
            dummy_params.get_or_insert_with(|| argon2::Params::try_from(&parsed).ok());
            let reply = Dictionary::builtin()
                .reply_attributes(&u.reply)
                .map_err(|(key, reason)| err(&format!("reply.{key}"), reason))?;
            let entry = Entry {
                user: User {
                    name: u.name.clone(),
                    email,
                    groups: u.groups,
                    languages: u.language.into_iter().collect(),
                },
                pin_hash: Arc::from(u.pin.as_str()),
                active: u.active,
                reply,
            };
            if users.insert(u.name.clone(), entry).is_some() {
                return Err(err("name", format!("user `{}` is listed twice", u.name)));
            }
        }
        let dummy_hash = dummy_hash(dummy_params.flatten());
        Ok(FileUsers {
            users,
            dummy_hash,
            hashes,
        })
    }
}

/// A hash of a random PIN with the users' own argon2 cost, so that checking
/// an unknown user takes as long as checking a known one.
fn dummy_hash(params: Option<argon2::Params>) -> Arc<str> {
    let params = params.unwrap_or_default();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    let pin: [u8; 16] = rand::random();
    let hash = argon.hash_password(&pin, &salt).expect("argon2 hashes a random PIN");
    Arc::from(hash.to_string())
}

#[async_trait]
impl UserDirectory for FileUsers {
    async fn check_pin(&self, name: &str, pin: &[u8], gate: &dyn LockGate) -> Result<PinCheck, DirectoryError> {
        let entry = self.users.get(name);
        let locked = gate.is_locked(entry.map_or(name, |e| e.user.name.as_str())).await;
        let Some(entry) = entry.filter(|_| !locked) else {
            self.hashes.verify(Arc::clone(&self.dummy_hash), pin).await?;
            return Ok(entry.map_or(PinCheck::UnknownUser, |e| PinCheck::Locked(e.user.name.clone())));
        };
        let (ok, _waited) = self.hashes.verify(Arc::clone(&entry.pin_hash), pin).await?;
        Ok(match (ok, entry.active) {
            (false, _) => PinCheck::WrongPin(entry.user.name.clone()),
            (true, false) => PinCheck::Inactive(entry.user.name.clone()),
            (true, true) => PinCheck::Valid(entry.user.clone()),
        })
    }

    fn len(&self) -> usize {
        self.users.len()
    }

    fn reply_attributes(&self, name: &str) -> Vec<WireAttribute> {
        self.users.get(name).map(|e| e.reply.clone()).unwrap_or_default()
    }

    async fn lookup(&self, name: &str) -> Result<Option<(User, bool)>, DirectoryError> {
        Ok(self.users.get(name).map(|e| (e.user.clone(), e.active)))
    }

    fn local_groups(&self, name: &str) -> Vec<String> {
        self.users.get(name).map(|e| e.user.groups.clone()).unwrap_or_default()
    }

    fn local_languages(&self, name: &str) -> Vec<String> {
        self.users
            .get(name)
            .map(|e| e.user.languages.clone())
            .unwrap_or_default()
    }
}

/// Reads users from a path, for tests and `check`.
pub fn load_file(path: &Path, hashes: HashThreads) -> Result<FileUsers, ConfigError> {
    FileUsers::load(&UsersSource::File(path.to_path_buf()), hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{hash_pin, NoLockout};

    fn users(text: &str) -> Result<FileUsers, ConfigError> {
        FileUsers::parse(text, &"users.toml", HashThreads::new(2))
    }

    /// Locks everyone, and remembers whom it was asked about.
    #[derive(Default)]
    struct LockAll(std::sync::Mutex<Vec<String>>);

    #[async_trait]
    impl LockGate for LockAll {
        async fn is_locked(&self, name: &str) -> bool {
            self.0.lock().unwrap().push(name.to_owned());
            true
        }
    }

    #[tokio::test]
    async fn a_locked_user_is_answered_before_the_pin_is_checked() {
        let text = format!(
            "[[users]]\nname = \"alice\"\nemail = \"alice@example.com\"\npin = \"{}\"\n",
            hash_pin(b"4321")
        );
        let (users, gate) = (users(&text).unwrap(), LockAll::default());
        assert_eq!(
            users.check_pin("alice", b"4321", &gate).await.unwrap(),
            PinCheck::Locked("alice".into())
        );
        // Nobody is asked about too (the same round trip), and stays nobody.
        assert_eq!(
            users.check_pin("bob", b"4321", &gate).await.unwrap(),
            PinCheck::UnknownUser
        );
        assert_eq!(*gate.0.lock().unwrap(), ["alice", "bob"]);
    }

    #[tokio::test]
    async fn pins_are_checked_against_argon2_hashes() {
        let hash = hash_pin(b"4321");
        let text = format!(
            "[[users]]\nname = \"alice\"\nemail = \"alice@example.com\"\npin = \"{hash}\"\n\
             [[users]]\nname = \"off\"\nemail = \"off@example.com\"\npin = \"{hash}\"\nactive = false\n"
        );
        let users = users(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert!(
            matches!(users.check_pin("alice", b"4321", &NoLockout).await.unwrap(), PinCheck::Valid(u) if u.name == "alice")
        );
        assert_eq!(
            users.check_pin("alice", b"4322", &NoLockout).await.unwrap(),
            PinCheck::WrongPin("alice".into())
        );
        // The users file matches names exactly: other spellings are nobody.
        for variant in ["ALICE", " alice", "alice "] {
            assert_eq!(
                users.check_pin(variant, b"4321", &NoLockout).await.unwrap(),
                PinCheck::UnknownUser
            );
        }
        assert_eq!(
            users.check_pin("nobody", b"4321", &NoLockout).await.unwrap(),
            PinCheck::UnknownUser
        );
        assert_eq!(
            users.check_pin("off", b"4321", &NoLockout).await.unwrap(),
            PinCheck::Inactive("off".into())
        );
    }

    #[test]
    fn bad_users_files_name_the_key() {
        let cases = [
            (
                "[[users]]\nname = \"a\"\nemail = \"nope\"\npin = \"x\"\n",
                "users.toml: key `users[0].email`",
            ),
            (
                "[[users]]\nname = \"a\"\nemail = \"a@b.c\"\npin = \"plain\"\n",
                "users.toml: key `users[0].pin`",
            ),
            (
                "[[users]]\nname = \"a\"\nemail = \"a@b.c\"\npin = \"x\"\ncolour = 1\n",
                "users.toml: key `users[0].colour`",
            ),
        ];
        for (text, want) in cases {
            let err = users(text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn reply_attributes_are_encoded_and_unknown_names_refused() {
        let hash = hash_pin(b"4321");
        let text = format!(
            "[[users]]\nname = \"alice\"\nemail = \"a@b.c\"\npin = \"{hash}\"\n\
             reply = {{ Class = \"vpn-staff\", Session-Timeout = 3600 }}\n"
        );
        let alice = users(&text).unwrap();
        let reply = alice.reply_attributes("alice");
        assert_eq!(reply.len(), 2);
        assert_eq!((reply[0].attr_type, reply[0].value.as_slice()), (25, &b"vpn-staff"[..]));
        assert_eq!(
            (reply[1].attr_type, reply[1].value.as_slice()),
            (27, &[0, 0, 0x0e, 0x10][..])
        );
        assert!(alice.reply_attributes("nobody").is_empty());
        let bad = text.replace("Class", "Colour");
        let err = users(&bad).unwrap_err().to_string();
        assert_eq!(
            err,
            "users.toml: key `users[0].reply.Colour`: `Colour` is not an attribute of the dictionary"
        );
    }

    #[test]
    fn embedded_demo_users_load() {
        let users = FileUsers::load(&UsersSource::Embedded, HashThreads::new(1)).unwrap();
        assert!(users.len() >= 2);
    }
}
