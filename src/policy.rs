//! policy: `[[policies]]`, different rules for different people and places.
//!
//! [`Policies::resolve`] is a pure function of who asks (canonical name and
//! groups) and from where (client name, Calling-Station-Id) to the policy
//! that applies: the first in file order whose given conditions all match.
//! `auth` resolves it once, after the PIN was right, and hands the result to
//! its decision as a value. This module holds plain values: it parses no file
//! (`config` builds them), asks no directory and logs nothing.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::dictionary::WireAttribute;

/// What a right PIN leads to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SecondFactor {
    /// A code or link by e-mail (`[email]`).
    #[default]
    Email,
    /// None: the PIN alone is enough (service accounts).
    None,
    /// Refused, answered like a wrong PIN.
    Deny,
}

/// The conditions of a policy: each one given must match (a list matches
/// when any of its values does); none given matches everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Conditions {
    /// Canonical user names.
    pub users: Option<Vec<String>>,
    /// Group names: a group the user is in matches by its name, or (a
    /// directory's DN) by the value of its first RDN.
    pub groups: Option<Vec<String>>,
    /// `[[clients]]` names.
    pub clients: Option<Vec<String>>,
    /// Networks the Calling-Station-Id (as an IP address) must be in.
    pub calling_station: Option<Vec<IpNet>>,
}

impl Conditions {
    /// Whether no condition is given (the policy matches everyone).
    pub(crate) fn is_empty(&self) -> bool {
        self.users.is_none() && self.groups.is_none() && self.clients.is_none() && self.calling_station.is_none()
    }

    fn matches(&self, who: &Subject<'_>) -> bool {
        let users = self.users.as_ref().is_none_or(|u| u.iter().any(|u| u == who.user));
        let groups = self
            .groups
            .as_ref()
            .is_none_or(|g| g.iter().any(|g| who.groups.iter().any(|mine| group_matches(mine, g))));
        let clients = self.clients.as_ref().is_none_or(|c| c.iter().any(|c| c == who.client));
        let station = self.calling_station.as_ref().is_none_or(|nets| {
            let ip = who.calling_station.and_then(|s| s.trim().parse::<IpAddr>().ok());
            ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
        });
        users && groups && clients && station
    }
}

/// One `[[policies]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Its name, for logs and metrics.
    pub name: String,
    /// When it applies.
    pub conditions: Conditions,
    /// What a right PIN leads to.
    pub second_factor: SecondFactor,
    /// `challenge_validity` instead of `[email]`'s.
    pub challenge_validity: Option<Duration>,
    /// `otp_length` instead of `[email]`'s.
    pub otp_length: Option<u32>,
    /// `max_attempts` instead of `[email]`'s.
    pub max_attempts: Option<u8>,
    /// `delivery` instead of `[email]`'s.
    pub delivery: Option<PolicyDelivery>,
    /// Added to Access-Accept after the user's own `reply`.
    pub reply: Vec<WireAttribute>,
}

/// How a policy's second factor reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PolicyDelivery {
    /// A code in the e-mail.
    Otp,
    /// A link in the e-mail, confirmed on the `[link]` page.
    Link,
}

/// Who asks and from where: what a policy's conditions look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// The canonical user name.
    pub user: &'a str,
    /// The groups the user is in.
    pub groups: &'a [String],
    /// The name of the RADIUS client the request came from.
    pub client: &'a str,
    /// The Calling-Station-Id as sent, if any.
    pub calling_station: Option<&'a str>,
}

/// All policies, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policies(pub Vec<Policy>);

impl Policies {
    /// The first policy whose conditions all match; `None`: the `[email]`
    /// settings apply.
    pub(crate) fn resolve(&self, who: &Subject<'_>) -> Option<&Policy> {
        self.0.iter().find(|p| p.conditions.matches(who))
    }

    /// The policy named `name`, as a challenge remembers it; `None` when
    /// no policy has that name (any more: the `[email]` settings apply).
    pub(crate) fn named(&self, name: &str) -> Option<&Policy> {
        self.0.iter().find(|p| p.name == name)
    }
}

/// Whether the group `mine` (a name, or a directory's DN) is `wanted`: the
/// whole of it, or the value of its first RDN (`cn=vpn-admins,ou=groups,…`
/// is `vpn-admins`).
fn group_matches(mine: &str, wanted: &str) -> bool {
    mine == wanted || first_rdn_value(mine).is_some_and(|v| v == wanted)
}

/// The value of the first RDN of the DN `dn` (RFC 4514), unescaped; `None`
/// when `dn` is no DN (no `=` before the first unescaped `,`) or the RDN is
/// multi-valued.
fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => break,
            '+' => return None,
            '\\' => {
                let next = chars.next()?;
                match next.to_digit(16).zip(chars.clone().next().and_then(|n| n.to_digit(16))) {
                    // `\2C`: a hex pair (one byte; enough for ASCII names).
                    Some((hi, lo)) => {
                        chars.next();
                        value.push(char::from_u32(hi * 16 + lo)?);
                    }
                    None => value.push(next),
                }
            }
            c => value.push(c),
        }
    }
    Some(value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, conditions: Conditions, second_factor: SecondFactor) -> Policy {
        Policy {
            name: name.to_owned(),
            conditions,
            second_factor,
            challenge_validity: None,
            otp_length: None,
            max_attempts: None,
            delivery: None,
            reply: Vec::new(),
        }
    }

    fn who<'a>(user: &'a str, groups: &'a [String], client: &'a str, station: Option<&'a str>) -> Subject<'a> {
        Subject {
            user,
            groups,
            client,
            calling_station: station,
        }
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn the_first_policy_whose_conditions_all_match_applies() {
        let policies = Policies(vec![
            policy(
                "contractors-off-vpn2",
                Conditions {
                    groups: strings(&["contractors"]),
                    clients: strings(&["vpn2"]),
                    ..Conditions::default()
                },
                SecondFactor::Deny,
            ),
            policy(
                "office",
                Conditions {
                    calling_station: Some(vec!["10.0.0.0/8".parse().unwrap()]),
                    ..Conditions::default()
                },
                SecondFactor::Email,
            ),
            policy(
                "backup",
                Conditions {
                    users: strings(&["backup"]),
                    ..Conditions::default()
                },
                SecondFactor::None,
            ),
        ]);
        let contractor = ["staff".to_owned(), "contractors".to_owned()];
        let name = |w: Subject<'_>| policies.resolve(&w).map(|p| p.name.clone());
        assert_eq!(
            name(who("carol", &contractor, "vpn2", None)).as_deref(),
            Some("contractors-off-vpn2")
        );
        assert_eq!(name(who("carol", &contractor, "vpn1", None)), None);
        assert_eq!(
            name(who("carol", &contractor, "vpn1", Some(" 10.1.2.3"))).as_deref(),
            Some("office")
        );
        // First match wins: backup from the office is "office".
        assert_eq!(
            name(who("backup", &[], "vpn1", Some("10.1.2.3"))).as_deref(),
            Some("office")
        );
        assert_eq!(
            name(who("backup", &[], "vpn1", Some("192.0.2.1"))).as_deref(),
            Some("backup")
        );
        // A Calling-Station-Id that is no IP address is in no network.
        assert_eq!(name(who("carol", &[], "vpn1", Some("00-11-22-33-44-55"))), None);
        assert_eq!(name(who("Backup", &[], "vpn1", None)), None);
    }

    #[test]
    fn a_directory_group_matches_by_its_whole_dn_or_its_first_rdn_value() {
        let policies = Policies(vec![policy(
            "admins",
            Conditions {
                groups: strings(&["vpn-admins", "cn=ops,ou=groups,dc=example,dc=test"]),
                ..Conditions::default()
            },
            SecondFactor::None,
        )]);
        let applies = |groups: &[&str]| {
            let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            policies.resolve(&who("a", &groups, "c", None)).is_some()
        };
        assert!(applies(&["cn=vpn-admins,ou=groups,dc=example,dc=test"]));
        assert!(applies(&["vpn-admins"]));
        assert!(applies(&["cn=ops,ou=groups,dc=example,dc=test"]));
        assert!(
            !applies(&["cn=ops,ou=other,dc=example,dc=test"]),
            "ops only by its whole DN"
        );
        assert!(!applies(&["cn=vpn-admins-old,ou=groups,dc=example,dc=test"]));
        assert!(
            !applies(&["cn=staff,ou=vpn-admins,dc=example,dc=test"]),
            "only the first RDN"
        );
        assert!(!applies(&["cn=vpn-admins+uid=x,ou=groups"]), "a multi-valued RDN");
        assert_eq!(first_rdn_value(r"cn=a\,b\2Cc,ou=x").as_deref(), Some("a,b,c"));
        assert_eq!(first_rdn_value("vpn-admins"), None);
    }

    #[test]
    fn a_policy_without_conditions_matches_everyone() {
        let policies = Policies(vec![policy("all", Conditions::default(), SecondFactor::Deny)]);
        assert!(policies.0[0].conditions.is_empty());
        assert_eq!(policies.resolve(&who("x", &[], "c", None)).unwrap().name, "all");
    }
}
