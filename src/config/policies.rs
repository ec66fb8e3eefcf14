//! The validate step for `[[policies]]`: conditions, `second_factor`, the
//! overrides of `[email]` and `reply`, checked against the clients, `[link]`
//! and the dictionary. A policy that can never apply (after one without
//! conditions) is refused, as are unknown client names and reply attributes,
//! and link delivery where `[email]`'s would be refused.

use super::raw::{RawPolicy, RawSecondFactor};
use super::validate::{network, Validator};
use super::{ChallengeMode, Client, ConfigError};
use crate::dictionary::Dictionary;
use crate::policy::{Conditions, Policies, Policy, PolicyDelivery, SecondFactor};

impl Validator<'_> {
    /// `link`: whether `[link]` is configured.
    pub(super) fn policies(
        &self,
        raw: Vec<RawPolicy>,
        clients: &[Client],
        link: bool,
    ) -> Result<Policies, ConfigError> {
        let mut policies: Vec<Policy> = Vec::with_capacity(raw.len());
        for (i, raw) in raw.into_iter().enumerate() {
            let key = |k: &str| format!("policies[{i}].{k}");
            if raw.name.is_empty() {
                return Err(self.err(key("name"), "the name is empty"));
            }
            if policies.iter().any(|p| p.name == raw.name) {
                return Err(self.err(key("name"), format!("policy name `{}` is used twice", raw.name)));
            }
            if let Some(all) = policies.iter().find(|p| p.conditions.is_empty()) {
                let reason = format!(
                    "policy `{}` can never apply: policy `{}` before it has no conditions and matches everyone",
                    raw.name, all.name
                );
                return Err(self.err(key("name"), reason));
            }
            let policy = self.policy(&key, raw, clients)?;
            if policy.delivery == Some(PolicyDelivery::Link) {
                self.link_delivery(&key, &policy, clients, link)?;
            }
            policies.push(policy);
        }
        Ok(Policies(policies))
    }

    fn policy(&self, key: &dyn Fn(&str) -> String, raw: RawPolicy, clients: &[Client]) -> Result<Policy, ConfigError> {
        for (k, list) in [
            ("users", &raw.users),
            ("groups", &raw.groups),
            ("clients", &raw.clients),
        ] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                return Err(self.err(key(k), "an empty list matches nobody; leave the key out instead"));
            }
        }
        if let Some(unknown) = raw
            .clients
            .iter()
            .flatten()
            .find(|name| !clients.iter().any(|c| &c.name == *name))
        {
            return Err(self.err(
                key("clients"),
                format!("`{unknown}` is not the name of a [[clients]] entry"),
            ));
        }
        let calling_station = match raw.calling_station {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(self.err(
                    key("calling_station"),
                    "an empty list matches nobody; leave the key out instead",
                ))
            }
            Some(list) => Some(
                list.iter()
                    .map(|net| {
                        network(net).ok_or_else(|| {
                            self.err(
                                key("calling_station"),
                                format!("`{net}` is not an IP address or CIDR network"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        if let Some(length) = raw.otp_length.filter(|l| !(6..=8).contains(l)) {
            return Err(self.err(key("otp_length"), format!("{length} is outside 6..=8")));
        }
        if raw.challenge_validity == Some(0) {
            return Err(self.err(key("challenge_validity"), "must be at least 1 second"));
        }
        if raw.max_attempts == Some(0) {
            return Err(self.err(key("max_attempts"), "must be at least 1"));
        }
        let delivery = match raw.delivery.as_deref() {
            None => None,
            Some("otp") => Some(PolicyDelivery::Otp),
            Some("link") => Some(PolicyDelivery::Link),
            Some(other) => {
                return Err(self.err(
                    key("delivery"),
                    format!("`{other}` is not supported (\"otp\" or \"link\")"),
                ))
            }
        };
        let reply = Dictionary::builtin()
            .reply_attributes(&raw.reply)
            .map_err(|(name, reason)| self.err(key(&format!("reply.{name}")), reason))?;
        Ok(Policy {
            name: raw.name,
            conditions: Conditions {
                users: raw.users,
                groups: raw.groups,
                clients: raw.clients,
                calling_station,
            },
            second_factor: match raw.second_factor {
                RawSecondFactor::Email => SecondFactor::Email,
                RawSecondFactor::None => SecondFactor::None,
                RawSecondFactor::Deny => SecondFactor::Deny,
            },
            challenge_validity: raw.challenge_validity.map(std::time::Duration::from_secs),
            otp_length: raw.otp_length,
            max_attempts: raw.max_attempts,
            delivery,
            reply,
        })
    }

    /// `delivery = "link"` in a policy: as for `[email]`'s, it needs `[link]`
    /// and Access-Challenge from every client the policy can apply to.
    fn link_delivery(
        &self,
        key: &dyn Fn(&str) -> String,
        policy: &Policy,
        clients: &[Client],
        link: bool,
    ) -> Result<(), ConfigError> {
        if !link {
            return Err(self.err(
                key("delivery"),
                "delivery = \"link\" needs a [link] section with listen and base_url",
            ));
        }
        let applies = |c: &&Client| {
            policy
                .conditions
                .clients
                .as_ref()
                .is_none_or(|names| names.contains(&c.name))
        };
        match clients
            .iter()
            .filter(applies)
            .find(|c| c.challenge_mode == ChallengeMode::Reject)
        {
            Some(client) => Err(self.err(
                key("delivery"),
                format!(
                    "link delivery needs Access-Challenge (the user presses Enter after confirming); \
                     client `{}` has challenge_mode = \"reject\" and the policy can apply to it",
                    client.name
                ),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, MINIMAL};
    use crate::policy::{PolicyDelivery, SecondFactor};

    fn with_policies(policies: &str) -> String {
        format!("{MINIMAL}\n{policies}")
    }

    #[test]
    fn policies_load_in_file_order() {
        let text = with_policies(
            "[[policies]]\nname = \"admins\"\ngroups = [\"vpn-admins\"]\nclients = [\"vpn\"]\n\
             calling_station = [\"10.0.0.0/8\", \"2001:db8::1\"]\nreply = { Filter-Id = \"admins\" }\nchallenge_validity = 60\n\
             [[policies]]\nname = \"backup\"\nusers = [\"backup\"]\nsecond_factor = \"none\"\n\
             [[policies]]\nname = \"rest\"\nsecond_factor = \"deny\"\n",
        );
        let policies = load(&text).unwrap().policies;
        let names: Vec<_> = policies.0.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["admins", "backup", "rest"]);
        let admins = &policies.0[0];
        assert_eq!(admins.second_factor, SecondFactor::Email);
        assert_eq!(
            (admins.reply[0].attr_type, admins.reply[0].value.as_slice()),
            (11, &b"admins"[..])
        );
        assert_eq!(admins.conditions.calling_station.as_ref().unwrap().len(), 2);
        assert_eq!(admins.challenge_validity, Some(std::time::Duration::from_secs(60)));
        assert_eq!(policies.0[1].challenge_validity, None);
        assert_eq!(policies.0[1].second_factor, SecondFactor::None);
        assert_eq!(policies.0[2].second_factor, SecondFactor::Deny);
        assert!(load(MINIMAL).unwrap().policies.0.is_empty());
    }

    #[test]
    fn check_refuses_what_cannot_work_naming_file_and_key() {
        let cases = [
            (
                "[[policies]]\nname = \"all\"\n[[policies]]\nname = \"late\"\nusers = [\"a\"]\n",
                "key `policies[1].name`: policy `late` can never apply: policy `all` before it has no conditions",
            ),
            (
                "[[policies]]\nname = \"p\"\nclients = [\"vpn\", \"vpn9\"]\n",
                "key `policies[0].clients`: `vpn9` is not the name of a [[clients]] entry",
            ),
            (
                "[[policies]]\nname = \"p\"\nreply = { Colour = \"red\" }\n",
                "key `policies[0].reply.Colour`: `Colour` is not an attribute of the dictionary",
            ),
            (
                "[[policies]]\nname = \"p\"\nreply = { State = \"x\" }\n",
                "key `policies[0].reply.State`: State is set by mailotp itself",
            ),
            (
                "[[policies]]\nname = \"p\"\ncalling_station = [\"10.0.0.0/33\"]\n",
                "key `policies[0].calling_station`: `10.0.0.0/33` is not an IP address",
            ),
            (
                "[[policies]]\nname = \"p\"\nsecond_factor = \"sms\"\n",
                "key `policies[0].second_factor`",
            ),
            ("[[policies]]\nname = \"p\"\ncolour = 1\n", "key `policies[0].colour`"),
            (
                "[[policies]]\nname = \"p\"\ngroups = []\n",
                "key `policies[0].groups`: an empty list",
            ),
            (
                "[[policies]]\nname = \"p\"\notp_length = 9\n",
                "key `policies[0].otp_length`: 9 is outside 6..=8",
            ),
            (
                "[[policies]]\nname = \"p\"\nchallenge_validity = 0\n",
                "key `policies[0].challenge_validity`: must be at least 1 second",
            ),
            (
                "[[policies]]\nname = \"p\"\nusers = [\"a\"]\n[[policies]]\nname = \"p\"\nusers = [\"b\"]\n",
                "key `policies[1].name`: policy name `p` is used twice",
            ),
            (
                "[[policies]]\nname = \"p\"\nmax_attempts = 0\n",
                "key `policies[0].max_attempts`: must be at least 1",
            ),
            (
                "[[policies]]\nname = \"p\"\ndelivery = \"sms\"\n",
                "key `policies[0].delivery`: `sms` is not supported",
            ),
            (
                "[[policies]]\nname = \"p\"\ndelivery = \"link\"\n",
                "key `policies[0].delivery`: delivery = \"link\" needs a [link] section",
            ),
        ];
        for (policies, want) in cases {
            let err = load(&with_policies(policies)).unwrap_err().to_string();
            assert!(err.starts_with("/etc/mailotp/mailotp.toml: "), "{err}");
            assert!(err.contains(want), "{err}\nwanted: {want}");
        }
    }

    const LINK: &str = "[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"https://otp.example.test\"\n";

    /// MINIMAL with a second client, `nas`, in challenge_mode = "reject".
    fn with_reject_client(policies: &str) -> String {
        let clients = "[[clients]]\nname = \"nas\"\naddress = \"10.9.0.0/24\"\nsecret = \"s3cret\"\nchallenge_mode = \"reject\"\n";
        with_policies(&format!("{clients}{LINK}{policies}"))
    }

    #[test]
    fn max_attempts_and_delivery_per_policy() {
        let text = with_policies(&format!(
            "{LINK}[[policies]]\nname = \"strict\"\nusers = [\"a\"]\nmax_attempts = 1\ndelivery = \"link\"\n\
             [[policies]]\nname = \"codes\"\ndelivery = \"otp\"\n"
        ));
        let policies = load(&text).unwrap().policies;
        assert_eq!(policies.0[0].max_attempts, Some(1));
        assert_eq!(policies.0[0].delivery, Some(PolicyDelivery::Link));
        assert_eq!(
            (policies.0[1].max_attempts, policies.0[1].delivery),
            (None, Some(PolicyDelivery::Otp))
        );
    }

    #[test]
    fn link_delivery_is_refused_where_a_reject_mode_client_could_use_it() {
        let err = load(&with_reject_client("[[policies]]\nname = \"p\"\ndelivery = \"link\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `policies[0].delivery`: link delivery needs Access-Challenge")
                && err.contains("client `nas`"),
            "{err}"
        );
        // Scoped to the client that can do Access-Challenge: fine.
        let scoped = "[[policies]]\nname = \"p\"\nclients = [\"vpn\"]\ndelivery = \"link\"\n";
        assert!(load(&with_reject_client(scoped)).is_ok());
    }
}
