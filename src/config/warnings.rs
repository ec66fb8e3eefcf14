//! config::warnings: what a valid configuration still does unsafely, said
//! at start by `serve` (log) and `check` (output): a password that would
//! cross the network in clear text, or a custom mail template that leaves
//! out the deny link. Each warning names the key to change.
//! Nothing here refuses a configuration or opens a connection.

use std::net::IpAddr;

use super::{Config, LdapTls, Provider, SmtpTls, UsersSource};

impl Config {
    /// Clear-text credentials this configuration would send, one sentence
    /// each, naming the key that fixes it.
    pub(crate) fn cleartext_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let UsersSource::Ldap(ldap) = &self.users.source {
            if ldap.tls == LdapTls::None {
                warnings.push(format!(
                    "the LDAP bind password and users' PINs cross {} in clear text (ldap:// without STARTTLS): \
                     set [users] ldap_starttls = true, or use an ldaps:// ldap_url",
                    ldap.url
                ));
            }
        }
        if let Provider::Smtp(smtp) = &self.email.provider {
            if smtp.credentials.is_some() && smtp.tls == SmtpTls::None && !is_loopback(&smtp.server) {
                warnings.push(format!(
                    "SMTP AUTH sends smtp_password to {}:{} in clear text: set [email.provider] smtp_tls = \"starttls\" or \"tls\"",
                    smtp.server, smtp.port
                ));
            }
        }
        warnings
    }

    /// With `[link]` configured every mail has a deny link: a custom body
    /// that does not place `{deny_link}` hides it from the user.
    pub(crate) fn template_warnings(&self) -> Vec<String> {
        if self.email.pages.is_none() {
            return Vec::new();
        }
        self.email
            .wording
            .without_deny_link()
            .into_iter()
            .map(|key| {
                format!(
                    "[email] {key} has no {{deny_link}}: users cannot stop a login that is not theirs from that mail"
                )
            })
            .collect()
    }
}

/// Whether `host` names this machine (an address or `localhost`), so that
/// nothing it is sent leaves it.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{load, MINIMAL};

    fn smtp(server: &str, tls: &str, auth: bool) -> Vec<String> {
        let auth = if auth {
            "smtp_user = \"u\"\nsmtp_password = \"p\"\n"
        } else {
            ""
        };
        let provider = format!("kind = \"smtp\"\nsmtp_server = \"{server}\"\nsmtp_tls = \"{tls}\"\n{auth}");
        load(&MINIMAL.replace("kind = \"file\"\n", &provider))
            .unwrap()
            .cleartext_warnings()
    }

    #[test]
    fn smtp_auth_in_clear_to_a_remote_host_is_called_out() {
        let warnings = smtp("mail.example.com", "none", true);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("mail.example.com:25") && warnings[0].contains("[email.provider] smtp_tls"),
            "{warnings:?}"
        );
        assert!(smtp("192.0.2.1", "none", true).len() == 1);
        for (server, tls, auth) in [
            ("127.0.0.1", "none", true),
            ("::1", "none", true),
            ("localhost", "none", true),
            ("mail.example.com", "none", false),
            ("mail.example.com", "starttls", true),
            ("mail.example.com", "tls", true),
        ] {
            assert!(smtp(server, tls, auth).is_empty(), "{server} {tls} {auth}");
        }
    }

    #[test]
    fn an_ldap_bind_without_tls_is_called_out() {
        let ldap = |url: &str, extra: &str| {
            let users = format!(
                "backend = \"ldap\"\nldap_url = \"{url}\"\nbind_dn = \"cn=svc\"\nbind_password = \"pw\"\n\
                 base_dn = \"dc=example\"\nuser_filter = \"(uid={{user}})\"\n{extra}"
            );
            load(&MINIMAL.replace("file = \"users.toml\"\n", &users))
                .unwrap()
                .cleartext_warnings()
        };
        let warnings = ldap("ldap://ldap.example.com", "");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("ldap://ldap.example.com") && warnings[0].contains("[users] ldap_starttls"),
            "{warnings:?}"
        );
        assert!(ldap("ldap://ldap.example.com", "ldap_starttls = true\n").is_empty());
        assert!(ldap("ldaps://ldap.example.com", "").is_empty());
        assert!(load(MINIMAL).unwrap().cleartext_warnings().is_empty());
    }

    #[test]
    fn a_custom_body_without_the_deny_link_is_warned_about_when_link_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mail.txt"), "code {otp}\n").unwrap();
        std::fs::write(dir.path().join("deny.txt"), "code {otp}, not you? {deny_link}\n").unwrap();
        let with = |body: &str, link: bool| {
            let mut text = MINIMAL.replace(
                "[email.provider]\n",
                &format!("[email]\nbody_file = \"{body}\"\n\n[email.provider]\n"),
            );
            if link {
                text.push_str("\n[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"https://otp.example.test\"\n");
            }
            let path = dir.path().join("mailotp.toml");
            std::fs::write(&path, text).unwrap();
            crate::config::Config::load(&path, Default::default())
                .unwrap()
                .template_warnings()
        };
        let warned = with("mail.txt", true);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("email.body_file has no {deny_link}"), "{warned:?}");
        assert!(with("deny.txt", true).is_empty());
        assert!(with("mail.txt", false).is_empty(), "no [link], no deny link");
    }
}
