//! config::ldap: the `[users]` keys of `backend = "ldap"`, checked into an
//! [`LdapConfig`]. Filters are parsed here so that a typo fails `check`
//! rather than every login; nothing here opens a connection.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawUsers;
use super::validate::Validator;
use super::{read_text, ConfigError, Secret};

/// What `{user}` in `user_filter` stands for.
pub(crate) const USER_PLACEHOLDER: &str = "{user}";

/// How the connection to the directory is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapTls {
    /// `ldap://` without STARTTLS: passwords cross the network in clear.
    None,
    /// `ldap://` with `ldap_starttls = true`.
    StartTls,
    /// `ldaps://`.
    Ldaps,
}

/// `[users] backend = "ldap"`: where the directory is and how users are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapConfig {
    /// `ldap_url` as written, e.g. `ldaps://ldap.example.com`.
    pub url: String,
    /// TLS mode from the URL scheme and `ldap_starttls`.
    pub tls: LdapTls,
    /// `ldap_ca_file`: an extra CA (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// The service account that searches for users.
    pub bind_dn: String,
    /// The service account's password.
    pub bind_password: Secret,
    /// Where users are searched (whole subtree).
    pub base_dn: String,
    /// The search filter; `{user}` is replaced by the escaped user name.
    pub user_filter: String,
    /// The attribute that holds the e-mail address.
    pub email_attribute: String,
    /// The attribute whose value is the user's canonical name (`uid`;
    /// `sAMAccountName` in Active Directory): lockout, throttles and
    /// challenges count under it, whatever spelling the user typed.
    pub login_attribute: String,
    /// Users outside this filter are inactive; `None`: everyone found is active.
    pub active_filter: Option<String>,
    /// Limit for each LDAP operation (connect, bind, search).
    pub timeout: Duration,
    /// `language_attribute` (e.g. `preferredLanguage`): the user's language.
    pub language_attribute: Option<String>,
    /// Where the user's groups (for `[[policies]]`) come from.
    pub groups: LdapGroups,
}

/// The user's groups, for `[[policies]]`: the values of an attribute of the
/// user's entry, and/or the entries a search with the user's DN finds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdapGroups {
    /// `group_attribute`, e.g. `memberOf`: each value is a group (a DN, or a
    /// name).
    pub attribute: Option<String>,
    /// `group_filter`; `{dn}` is replaced by the user's DN, escaped.
    pub filter: Option<String>,
    /// `group_base_dn`: where `filter` searches (whole subtree); `base_dn`
    /// when not given.
    pub base_dn: String,
}

/// What `{dn}` in `group_filter` stands for.
pub(crate) const DN_PLACEHOLDER: &str = "{dn}";

impl Validator<'_> {
    /// Checks the LDAP keys of `[users]`.
    pub(super) fn ldap(&self, raw: RawUsers) -> Result<LdapConfig, ConfigError> {
        if raw.file.is_some() {
            return Err(self.err("users.file", "only for backend = \"file\"; LDAP users need no file"));
        }
        let url = self.required(raw.ldap_url, "users.ldap_url")?;
        let tls = self.ldap_tls(&url, raw.ldap_starttls.unwrap_or(false))?;
        let ca_file = raw.ldap_ca_file.map(|p| self.path(&p));
        if let Some(ca) = &ca_file {
            if tls == LdapTls::None {
                return Err(self.err(
                    "users.ldap_ca_file",
                    "the connection uses no TLS: use ldaps:// or ldap_starttls = true",
                ));
            }
            read_text(ca)?;
        }
        let bind_dn = self.required(raw.bind_dn, "users.bind_dn")?;
        let bind_password = self.secret(raw.bind_password, raw.bind_password_file, "users.bind_password")?;
        let base_dn = self.required(raw.base_dn, "users.base_dn")?;
        let groups = self.ldap_groups(raw.group_attribute, raw.group_filter, raw.group_base_dn, &base_dn)?;
        let user_filter = self.required(raw.user_filter, "users.user_filter")?;
        if !user_filter.contains(USER_PLACEHOLDER) {
            return Err(self.err(
                "users.user_filter",
                format!("must contain {USER_PLACEHOLDER}, e.g. \"(uid={USER_PLACEHOLDER})\""),
            ));
        }
        let probe = user_filter.replace(USER_PLACEHOLDER, "x");
        self.filter(&probe, &user_filter, "users.user_filter")?;
        if let Some(active) = &raw.active_filter {
            self.filter(active, active, "users.active_filter")?;
        }
        let email_attribute = self.attribute(raw.email_attribute, "mail", "users.email_attribute")?;
        let login_attribute = self.attribute(raw.login_attribute, "uid", "users.login_attribute")?;
        let timeout = raw.timeout.unwrap_or(5);
        if timeout == 0 {
            return Err(self.err("users.timeout", "must be at least 1 second"));
        }
        Ok(LdapConfig {
            url,
            tls,
            ca_file,
            bind_dn,
            bind_password,
            base_dn,
            user_filter,
            email_attribute,
            login_attribute,
            active_filter: raw.active_filter,
            timeout: Duration::from_secs(timeout),
            language_attribute: raw
                .language_attribute
                .map(|a| self.attribute(Some(a), "preferredLanguage", "users.language_attribute"))
                .transpose()?,
            groups,
        })
    }

    /// `group_attribute`, `group_filter` and `group_base_dn`.
    fn ldap_groups(
        &self,
        attribute: Option<String>,
        filter: Option<String>,
        group_base_dn: Option<String>,
        base_dn: &str,
    ) -> Result<LdapGroups, ConfigError> {
        let attribute = match attribute {
            Some(a) => Some(self.attribute(Some(a), "memberOf", "users.group_attribute")?),
            None => None,
        };
        if let Some(filter) = &filter {
            if !filter.contains(DN_PLACEHOLDER) {
                return Err(self.err(
                    "users.group_filter",
                    format!("must contain {DN_PLACEHOLDER}, e.g. \"(&(objectClass=groupOfNames)(member={DN_PLACEHOLDER}))\""),
                ));
            }
            self.filter(&filter.replace(DN_PLACEHOLDER, "x"), filter, "users.group_filter")?;
        } else if group_base_dn.is_some() {
            return Err(self.err("users.group_base_dn", "only with group_filter"));
        }
        Ok(LdapGroups {
            attribute,
            filter,
            base_dn: group_base_dn.unwrap_or_else(|| base_dn.to_owned()),
        })
    }

    /// An attribute name key, `default` when absent.
    fn attribute(&self, value: Option<String>, default: &str, key: &str) -> Result<String, ConfigError> {
        let value = value.unwrap_or_else(|| default.to_owned());
        let attribute_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';');
        if value.is_empty() || !value.chars().all(attribute_char) {
            return Err(self.err(key, format!("`{value}` is not an attribute name, e.g. \"{default}\"")));
        }
        Ok(value)
    }

    /// With `backend = "file"`, LDAP keys are a mistake worth naming.
    pub(super) fn no_ldap_keys(&self, raw: &RawUsers) -> Result<(), ConfigError> {
        let set = [
            ("ldap_url", raw.ldap_url.is_some()),
            ("ldap_starttls", raw.ldap_starttls.is_some()),
            ("ldap_ca_file", raw.ldap_ca_file.is_some()),
            ("bind_dn", raw.bind_dn.is_some()),
            ("bind_password", raw.bind_password.is_some()),
            ("bind_password_file", raw.bind_password_file.is_some()),
            ("base_dn", raw.base_dn.is_some()),
            ("user_filter", raw.user_filter.is_some()),
            ("email_attribute", raw.email_attribute.is_some()),
            ("login_attribute", raw.login_attribute.is_some()),
            ("active_filter", raw.active_filter.is_some()),
            ("timeout", raw.timeout.is_some()),
            ("language_attribute", raw.language_attribute.is_some()),
            ("group_attribute", raw.group_attribute.is_some()),
            ("group_filter", raw.group_filter.is_some()),
            ("group_base_dn", raw.group_base_dn.is_some()),
        ];
        match set.iter().find(|(_, is_set)| *is_set) {
            Some((key, _)) => Err(self.err(format!("users.{key}"), "only for backend = \"ldap\"")),
            None => Ok(()),
        }
    }

    fn required(&self, value: Option<String>, key: &str) -> Result<String, ConfigError> {
        value
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| self.err(key, "required with backend = \"ldap\""))
    }

    fn ldap_tls(&self, url: &str, starttls: bool) -> Result<LdapTls, ConfigError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("ldaps://") {
            (LdapTls::Ldaps, rest)
        } else if let Some(rest) = url.strip_prefix("ldap://") {
            (if starttls { LdapTls::StartTls } else { LdapTls::None }, rest)
        } else {
            return Err(self.err("users.ldap_url", format!("`{url}` is not an ldap:// or ldaps:// URL")));
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() || host.contains(['/', '?', '@', ' ']) {
            return Err(self.err(
                "users.ldap_url",
                format!("`{url}` must name only a host and port, e.g. \"ldaps://ldap.example.com:636\""),
            ));
        }
        if starttls && tls == LdapTls::Ldaps {
            return Err(self.err(
                "users.ldap_starttls",
                "ldaps:// is TLS already; STARTTLS is for ldap:// URLs",
            ));
        }
        Ok(tls)
    }

    /// Whether `filter` parses; errors show the filter as written (`shown`).
    fn filter(&self, filter: &str, shown: &str, key: &str) -> Result<(), ConfigError> {
        if !filter.starts_with('(') || ldap3::parse_filter(filter).is_err() {
            return Err(self.err(
                key,
                format!("`{shown}` is not an LDAP filter (RFC 4515), e.g. \"(uid={USER_PLACEHOLDER})\""),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{self, Config, LoadOptions, UsersSource};

    const GOOD: &str = r#"ldap_url = "ldap://ldap.example.com:389"
bind_dn = "cn=svc,dc=example,dc=com"
bind_password = "pw"
base_dn = "dc=example,dc=com"
user_filter = "(uid={user})"
"#;

    /// The minimal configuration with `users` as its `[users]` lines.
    fn load(users: &str) -> Result<Config, ConfigError> {
        let users = format!("backend = \"ldap\"\n{users}");
        config::tests::load(&config::tests::MINIMAL.replace("file = \"users.toml\"\n", &users))
    }

    fn ldap(users: &str) -> LdapConfig {
        match load(users).unwrap().users.source {
            UsersSource::Ldap(config) => *config,
            other => panic!("not LDAP: {other:?}"),
        }
    }

    #[test]
    fn shipped_ldap_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        for (file, attribute) in [
            ("ldap-openldap.toml", "uid={user}"),
            ("ldap-active-directory.toml", "sAMAccountName={user}"),
        ] {
            let config = Config::load(&dir.join(file), LoadOptions::default()).unwrap();
            let UsersSource::Ldap(ldap) = config.users.source else {
                panic!("{file} is not an LDAP configuration");
            };
            assert_eq!(ldap.tls, LdapTls::Ldaps, "{file}");
            assert!(ldap.user_filter.contains(attribute), "{file}");
            assert_eq!(ldap.email_attribute, "mail");
            assert!(ldap.active_filter.is_some());
            assert!(
                ldap.groups.attribute.is_some() || ldap.groups.filter.is_some(),
                "{file}"
            );
        }
    }

    #[test]
    fn defaults_and_tls_modes() {
        let c = ldap(GOOD);
        assert_eq!(
            (c.tls, c.email_attribute.as_str(), c.login_attribute.as_str(), c.timeout),
            (LdapTls::None, "mail", "uid", Duration::from_secs(5))
        );
        let c = ldap(&format!("{GOOD}login_attribute = \"sAMAccountName\"\n"));
        assert_eq!(c.login_attribute, "sAMAccountName");
        assert_eq!(c.active_filter, None);
        assert_eq!(
            c.groups,
            LdapGroups {
                attribute: None,
                filter: None,
                base_dn: "dc=example,dc=com".to_owned(),
            }
        );
        let c = ldap(&format!(
            "{GOOD}group_attribute = \"memberOf\"\ngroup_filter = \"(member={{dn}})\"\ngroup_base_dn = \"ou=groups,dc=example,dc=com\"\n"
        ));
        assert_eq!(
            (
                c.groups.attribute.as_deref(),
                c.groups.filter.as_deref(),
                c.groups.base_dn.as_str()
            ),
            (Some("memberOf"), Some("(member={dn})"), "ou=groups,dc=example,dc=com")
        );
        let c = ldap(&format!("{GOOD}ldap_starttls = true\n"));
        assert_eq!(c.tls, LdapTls::StartTls);
        let c = ldap(&GOOD.replace("ldap://ldap.example.com:389", "ldaps://ldap.example.com"));
        assert_eq!(c.tls, LdapTls::Ldaps);
    }

    #[test]
    fn mistakes_name_file_key_and_reason() {
        let without = |key: &str| {
            GOOD.lines()
                .filter(|l| !l.starts_with(key))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let cases = [
            (without("ldap_url"), "users.ldap_url", "required"),
            (without("bind_dn"), "users.bind_dn", "required"),
            (without("bind_password"), "users.bind_password", "is required"),
            (without("base_dn"), "users.base_dn", "required"),
            (
                GOOD.replace("ldap://", "http://"),
                "users.ldap_url",
                "not an ldap:// or ldaps:// URL",
            ),
            (
                GOOD.replace(":389", ":389/dc=x"),
                "users.ldap_url",
                "only a host and port",
            ),
            (
                format!("{}ldap_starttls = true\n", GOOD.replace("ldap://", "ldaps://")),
                "users.ldap_starttls",
                "TLS already",
            ),
            (
                format!("{GOOD}ldap_ca_file = \"ca.pem\"\n"),
                "users.ldap_ca_file",
                "no TLS",
            ),
            (
                GOOD.replace("(uid={user})", "(uid=fixed)"),
                "users.user_filter",
                "must contain {user}",
            ),
            (
                GOOD.replace("(uid={user})", "(uid={user}"),
                "users.user_filter",
                "`(uid={user}` is not an LDAP filter",
            ),
            (
                format!("{GOOD}active_filter = \"enabled\"\n"),
                "users.active_filter",
                "not an LDAP filter",
            ),
            (
                format!("{GOOD}email_attribute = \"e mail\"\n"),
                "users.email_attribute",
                "not an attribute name",
            ),
            (
                format!("{GOOD}login_attribute = \"\"\n"),
                "users.login_attribute",
                "not an attribute name",
            ),
            (format!("{GOOD}timeout = 0\n"), "users.timeout", "at least 1 second"),
            (
                format!("{GOOD}group_filter = \"(member=x)\"\n"),
                "users.group_filter",
                "must contain {dn}",
            ),
            (
                format!("{GOOD}group_filter = \"(member={{dn}}\"\n"),
                "users.group_filter",
                "not an LDAP filter",
            ),
            (
                format!("{GOOD}group_base_dn = \"ou=groups\"\n"),
                "users.group_base_dn",
                "only with group_filter",
            ),
            (
                format!("{GOOD}group_attribute = \"member of\"\n"),
                "users.group_attribute",
                "not an attribute name",
            ),
            (
                format!("{GOOD}file = \"users.toml\"\n"),
                "users.file",
                "only for backend = \"file\"",
            ),
            (
                format!("{GOOD}bind_password_file = \"x\"\n"),
                "users.bind_password",
                "not both",
            ),
        ];
        for (users, key, reason) in cases {
            let err = load(&users).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("/etc/mailotp/mailotp.toml: key `{key}`: ")),
                "{err}"
            );
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn ldap_keys_are_refused_with_the_users_file() {
        let text =
            config::tests::MINIMAL.replace("file = \"users.toml\"\n", "file = \"users.toml\"\nbind_dn = \"cn=x\"\n");
        let err = config::tests::load(&text).unwrap_err().to_string();
        assert!(
            err.ends_with("key `users.bind_dn`: only for backend = \"ldap\""),
            "{err}"
        );
        let err = load("").unwrap_err().to_string();
        assert!(err.contains("key `users.ldap_url`"), "{err}");
    }
}
