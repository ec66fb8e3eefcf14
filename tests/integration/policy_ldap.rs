//! `[[policies]]` with groups from a real slapd: `group_attribute` on the
//! user's entry and `group_filter` under `group_base_dn`, each choosing a
//! policy (its reply attribute in the Accept, also on the State's answer,
//! which asks no directory); a user outside the group does not get its
//! exempt policy; a user DN with filter metacharacters is escaped into
//! `{dn}`; `check --explain` asks the directory.
//!
//! The test schema (core, cosine, inetorgperson) has no `memberOf` and slapd
//! without the memberof overlay would not fill it in for entries loaded with
//! slapadd, so `group_attribute` reads `seeAlso` (in `person`'s MAY list,
//! DN-valued), which carries group DNs as memberOf does.

use crate::harness::*;
use crate::slapd::*;

const GROUPS: &str = "ou=groups,dc=example,dc=test";

/// A user of the extra entries, with its password in clear (slapd binds it).
fn person(uid: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
         mail: {}@example.test\nuserPassword: {}\n{extra}\n",
        uid.trim_end_matches("(*)"),
        password(uid)
    )
}

fn password(uid: &str) -> String {
    format!("ldap-{}-5521", uid.trim_end_matches("(*)"))
}

fn group(cn: &str, members: &[&str]) -> String {
    let members: String = members
        .iter()
        .map(|m| format!("member: uid={m},ou=people,{BASE_DN}\n"))
        .collect();
    format!("dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n{members}\n")
}

/// gina is in vpn-admins and ivan in service by `seeAlso`; by groupOfNames
/// ivan is in vpn-admins, `eve(*)` only in odd; hank is in nothing.
fn seeded() -> Slapd {
    let mut ldif = format!("dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n");
    ldif.push_str(&person("gina", &format!("seeAlso: cn=vpn-admins,{GROUPS}\n")));
    ldif.push_str(&person("ivan", &format!("seeAlso: cn=service,{GROUPS}\n")));
    ldif.push_str(&person("hank", &format!("seeAlso: cn=other,{GROUPS}\n")));
    ldif.push_str(&person("eve(*)", ""));
    ldif.push_str(&group("vpn-admins", &["ivan"]));
    ldif.push_str(&group("odd", &["eve(*)"]));
    Slapd::start_seeded(&ldif)
}

/// mailotp on `slapd` with the `[users]` lines `groups` and `policies`.
fn start(slapd: &Slapd, smtp: &SmtpSink, groups: &str, policies: &str) -> (Server, Setup) {
    let mut setup = Setup::new(smtp.port);
    setup.users = format!(
        "backend = \"ldap\"\nldap_url = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\n\
         bind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"{BASE_DN}\"\n\
         user_filter = \"(&(objectClass=inetOrgPerson)(uid={{user}}))\"\ntimeout = 2\n{groups}",
        slapd.url()
    );
    setup.extra = policies.to_owned();
    let server = Server::start_in(without_users_file(&setup), &setup.args, 1);
    (server, setup)
}

/// The configuration directory without the users file line LDAP does not take.
fn without_users_file(setup: &Setup) -> tempfile::TempDir {
    let dir = setup.write();
    let path = dir.path().join("mailotp.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("file = \"users.toml\"\n", "")).unwrap();
    dir
}

fn login(server: &Server, uid: &str) -> Reply {
    send_pin(server, uid, &password(uid)).expect("an answer")
}

const POLICIES: &str = "[[policies]]\nname = \"admins\"\ngroups = [\"vpn-admins\"]\n\
                        reply = { Filter-Id = \"admins\" }\n\
                        [[policies]]\nname = \"service\"\ngroups = [\"cn=service,ou=groups,dc=example,dc=test\"]\n\
                        second_factor = \"none\"\nreply = { Filter-Id = \"service\" }\n\
                        [[policies]]\nname = \"odd\"\ngroups = [\"odd\"]\nsecond_factor = \"none\"\n\
                        reply = { Filter-Id = \"odd\" }\n";

#[test]
fn group_attribute_values_choose_the_policy_by_rdn_value_or_whole_dn() {
    let (slapd, smtp) = (seeded(), SmtpSink::start());
    let (server, _) = start(&slapd, &smtp, "group_attribute = \"seeAlso\"\n", POLICIES);
    // By its whole DN: service is exempt.
    let ivan = login(&server, "ivan");
    assert_eq!(
        (ivan.code.as_str(), ivan.attr("Filter-Id")),
        ("Access-Accept", Some("service"))
    );
    // By its first RDN's value; the policy's reply comes on the State's
    // answer, where no directory is asked.
    let gina = login(&server, "gina");
    assert_eq!(gina.code, "Access-Challenge");
    let otp = smtp.wait_for_mails(1)[0].otp();
    let accept = send_otp(&server, "gina", &otp, &gina.state()).unwrap();
    assert_eq!(
        (accept.code.as_str(), accept.attr("Filter-Id")),
        ("Access-Accept", Some("admins"))
    );
    // Not in the group: no exempt policy, no reply attribute.
    let hank = login(&server, "hank");
    assert_eq!((hank.code.as_str(), hank.attr("Filter-Id")), ("Access-Challenge", None));
}

#[test]
fn group_filter_finds_the_groups_with_the_dn_escaped_and_explain_asks_it() {
    let (slapd, smtp) = (seeded(), SmtpSink::start());
    let groups = format!("group_filter = \"(|(member={{dn}})(uniqueMember={{dn}}))\"\ngroup_base_dn = \"{GROUPS}\"\n");
    let (server, setup) = start(&slapd, &smtp, &groups, POLICIES);
    let ivan = login(&server, "ivan");
    assert_eq!(ivan.code, "Access-Challenge", "vpn-admins by groupOfNames");
    let otp = smtp.wait_for_mails(1)[0].otp();
    let accept = send_otp(&server, "ivan", &otp, &ivan.state()).unwrap();
    assert_eq!(accept.attr("Filter-Id"), Some("admins"));
    // `(`, `*` and `)` in eve's DN, put into the filter as they are, would
    // make it no filter (or another one): escaped, she gets her own group.
    let eve = login(&server, "eve(*)");
    assert_eq!(
        (eve.code.as_str(), eve.attr("Filter-Id")),
        ("Access-Accept", Some("odd"))
    );
    let hank = login(&server, "hank");
    assert_eq!((hank.code.as_str(), hank.attr("Filter-Id")), ("Access-Challenge", None));

    let dir = without_users_file(&setup);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailotp"))
        .args(["check", "-c"])
        .arg(dir.path().join("mailotp.toml"))
        .args(["--explain", "ivan"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("cn=vpn-admins,{GROUPS}")) && stdout.contains("policy: admins"),
        "{stdout}"
    );
}
