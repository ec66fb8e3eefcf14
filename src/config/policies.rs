//! The validate step for `[[policies]]`: conditions, `second_factor` and
//! `reply`, checked against the clients and the dictionary. A policy that can
//! never apply (after one without conditions) is refused, as are unknown
//! client names and reply attributes.

use super::raw::{RawPolicy, RawSecondFactor};
use super::validate::{network, Validator};
use super::{Client, ConfigError};
use crate::dictionary::Dictionary;
use crate::policy::{Conditions, Policies, Policy, SecondFactor};

impl Validator<'_> {
    pub(super) fn policies(&self, raw: Vec<RawPolicy>, clients: &[Client]) -> Result<Policies, ConfigError> {
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
            policies.push(self.policy(&key, raw, clients)?);
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
            reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, MINIMAL};
    use crate::policy::SecondFactor;

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
        ];
        for (policies, want) in cases {
            let err = load(&with_policies(policies)).unwrap_err().to_string();
            assert!(err.starts_with("/etc/mailotp/mailotp.toml: "), "{err}");
            assert!(err.contains(want), "{err}\nwanted: {want}");
        }
    }
}
