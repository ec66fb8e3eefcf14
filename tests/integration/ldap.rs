//! Users from a real OpenLDAP `slapd` (see `slapd`): the directory password
//! as the PIN, the e-mail address from `mail`, the same bare Access-Reject for
//! every kind of wrong, silence while the directory is down, and TLS with a
//! private CA.

use crate::certs::make_pki;
use crate::harness::*;
use crate::slapd::*;

/// The `[users]` lines for a directory at `url`.
pub(crate) fn users_section(url: &str, extra: &str) -> String {
    format!(
        "backend = \"ldap\"\nldap_url = \"{url}\"\nbind_dn = \"{SERVICE_DN}\"\n\
         bind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"{BASE_DN}\"\n\
         user_filter = \"(&(objectClass=inetOrgPerson)(uid={{user}}))\"\n\
         email_attribute = \"mail\"\nactive_filter = \"{ACTIVE_FILTER}\"\ntimeout = 2\n{extra}"
    )
}

/// The harness's set-up with LDAP `[users]` lines, mail to `smtp_port`.
fn ldap_setup(smtp_port: u16, users: &str) -> Setup {
    let mut setup = Setup::new(smtp_port);
    setup.users = users.to_owned();
    setup
}

/// The harness's configuration directory, minus the `file` line that LDAP
/// users do not take.
pub(crate) fn write_without_users_file(setup: &Setup) -> tempfile::TempDir {
    let dir = setup.write();
    let path = dir.path().join("mailotp.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = "file = \"users.toml\"\n";
    assert!(text.contains(line), "the harness writes a users file line");
    std::fs::write(&path, text.replace(line, "")).unwrap();
    dir
}

/// mailotp on the LDAP `[users]` lines, mail to `smtp`.
fn start_mailotp(smtp: &SmtpSink, users: &str) -> Server {
    let setup = ldap_setup(smtp.port, users);
    let mut server = Server::start_in(write_without_users_file(&setup), &setup.args, 1);
    server.forbid_in_log(SERVICE_PASSWORD);
    for (_, password) in LDAP_USERS {
        server.forbid_in_log(password);
    }
    server
}

fn status(server: &Server) -> Option<Reply> {
    radclient_code(server.addr(), SECRET, "status", "Message-Authenticator = 0x00")
}

/// The attribute names of a reply, to compare rejects.
fn shape(reply: &Reply) -> (String, Vec<String>) {
    let names = reply.attributes.iter().map(|(n, _)| n.clone()).collect();
    (reply.code.clone(), names)
}

#[test]
fn directory_password_gets_a_challenge_and_the_code_goes_to_the_mail_attribute() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let mut server = start_mailotp(&smtp, &users_section(&slapd.url(), ""));

    let challenge = send_pin(&server, "alice", ldap_password("alice")).expect("an answer to the PIN");
    assert_eq!(challenge.code, "Access-Challenge", "{challenge:?}");
    assert_eq!(
        challenge.attr("Reply-Message"),
        Some("Enter the one-time password sent to a***@example.test")
    );
    let mails = smtp.wait_for_mails(1);
    assert_eq!(mails[0].header("To"), "alice@example.test");
    let otp = mails[0].otp();
    server.forbid_in_log(&otp);

    let accept = send_otp(&server, "alice", &otp, &challenge.state()).unwrap();
    assert_eq!(accept.code, "Access-Accept");
    server.wait_for_log("reason=\"otp-accepted\"");
}

#[test]
fn wrong_unknown_inactive_mailless_ambiguous_and_empty_get_the_same_bare_reject() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let server = start_mailotp(&smtp, &users_section(&slapd.url(), ""));

    let wrong = send_pin(&server, "alice", "not-alices-password").expect("an answer");
    assert_eq!(wrong.code, "Access-Reject");
    assert_eq!(wrong.attr("Reply-Message"), None, "a bare reject");
    let cases = [
        ("nobody", "whatever-pw-1"),
        ("dave", ldap_password("dave")),
        ("erin", ldap_password("erin")),
        ("twin", ldap_password("twin")),
        ("alice", ""),
    ];
    for (user, password) in cases {
        let reply = send_pin(&server, user, password).unwrap_or_else(|| panic!("no answer for {user}"));
        assert_eq!(
            shape(&reply),
            shape(&wrong),
            "{user} gets the same reject as a wrong password"
        );
    }
    for reason in ["wrong-pin", "unknown-user", "inactive-user"] {
        server.wait_for_log(&format!("reason=\"{reason}\""));
    }
    server.wait_for_log("user has no usable e-mail address in the directory");

    // A mail for any of them would have been queued before this one.
    send_pin(&server, "alice", ldap_password("alice")).unwrap();
    let mails = smtp.wait_for_mails(1);
    assert_eq!(mails.len(), 1, "only alice's right password sends mail");
    assert_eq!(mails[0].header("To"), "alice@example.test");
}

#[test]
fn filter_metacharacters_in_the_user_name_match_nothing() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let server = start_mailotp(&smtp, &users_section(&slapd.url(), ""));

    // Unescaped, "al*" and "alice)(uid=alice" would find alice, and her
    // password would open a challenge.
    for user in ["*", "al*", "alice)(uid=alice", "*)(uid=*", "alice\\2a", "(uid=alice)"] {
        let reply = send_pin(&server, user, ldap_password("alice")).unwrap_or_else(|| panic!("no answer for {user}"));
        assert_eq!(reply.code, "Access-Reject", "{user}");
    }
    // The log is read on a thread: the last line can trail its answer.
    poll("six unknown-user lines", DEADLINE, || {
        (server.process.count_lines("reason=\"unknown-user\"") >= 6).then_some(())
    });
    assert_eq!(server.process.count_lines("reason=\"unknown-user\""), 6);
    send_pin(&server, "alice", ldap_password("alice")).unwrap();
    assert_eq!(
        smtp.wait_for_mails(1).len(),
        1,
        "no mail for any of the metacharacter names"
    );
}

#[test]
fn directory_down_means_no_answer_at_all_and_service_resumes_by_itself() {
    let mut slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let mut server = start_mailotp(&smtp, &users_section(&slapd.url(), ""));
    assert_eq!(
        status(&server).expect("Status-Server is answered").code,
        "Access-Accept"
    );
    let challenge = send_pin(&server, "alice", ldap_password("alice")).unwrap();
    assert_eq!(challenge.code, "Access-Challenge");
    let otp = smtp.wait_for_mails(1)[0].otp();
    server.forbid_in_log(&otp);

    slapd.stop();
    assert!(
        send_pin(&server, "alice", ldap_password("alice")).is_none(),
        "no answer to a PIN"
    );
    server.wait_for_log("no answer: backend unavailable");
    server.wait_for_log("LDAP directory unavailable");
    assert!(status(&server).is_none(), "no answer to Status-Server either");
    let accept = send_otp(&server, "alice", &otp, &challenge.state()).expect("a code needs no directory");
    assert_eq!(accept.code, "Access-Accept");

    slapd.restart();
    let back = poll("Status-Server answers again", DEADLINE, || status(&server));
    assert_eq!(back.code, "Access-Accept");
    server.wait_for_log("LDAP directory reachable again");
    let again = send_pin(&server, "alice", ldap_password("alice")).expect("PINs are answered again");
    assert_eq!(again.code, "Access-Challenge");
    assert_eq!(smtp.wait_for_mails(2).len(), 2);
}

#[test]
fn a_directory_slower_than_the_timeout_means_no_answer_until_it_answers_again() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let server = start_mailotp(
        &smtp,
        &users_section(&slapd.url(), "").replace("timeout = 2", "timeout = 1"),
    );
    let first = send_pin(&server, "alice", ldap_password("alice")).unwrap();
    assert_eq!(first.code, "Access-Challenge");

    slapd.pause();
    assert!(send_pin(&server, "alice", ldap_password("alice")).is_none());
    let line = server.wait_for_log("no answer: backend unavailable");
    assert!(line.contains("no answer within 1 s"), "{line}");
    assert!(status(&server).is_none(), "no answer to Status-Server either");

    slapd.resume();
    let back = poll("Status-Server answers again", DEADLINE, || status(&server));
    assert_eq!(back.code, "Access-Accept");
    let again = send_pin(&server, "alice", ldap_password("alice")).expect("PINs are answered again");
    assert_eq!(again.code, "Access-Challenge");
}

#[test]
fn ldaps_and_starttls_with_a_private_ca() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let slapd = Slapd::start_tls(&pki);
    let smtp = SmtpSink::start();
    let ca = format!("ldap_ca_file = \"{}\"\n", pki.ca.display());

    let ldaps = start_mailotp(&smtp, &users_section(&slapd.ldaps_url(), &ca));
    let reply = send_pin(&ldaps, "alice", ldap_password("alice")).expect("an answer over ldaps://");
    assert_eq!(reply.code, "Access-Challenge");
    smtp.wait_for_mails(1);
    drop(ldaps);

    let starttls = start_mailotp(
        &smtp,
        &users_section(&slapd.url(), &format!("ldap_starttls = true\n{ca}")),
    );
    let reply = send_pin(&starttls, "alice", ldap_password("alice")).expect("an answer over STARTTLS");
    assert_eq!(reply.code, "Access-Challenge");
    smtp.wait_for_mails(2);
    drop(starttls);

    // The same directory without TLS (it requires TLS), and TLS without the
    // private CA: no answer, because the directory cannot be used.
    let plain = start_mailotp(&smtp, &users_section(&slapd.url(), ""));
    assert!(send_pin(&plain, "alice", ldap_password("alice")).is_none());
    plain.wait_for_log("no answer: backend unavailable");
    let untrusted = start_mailotp(&smtp, &users_section(&slapd.ldaps_url(), ""));
    assert!(send_pin(&untrusted, "alice", ldap_password("alice")).is_none());
    untrusted.wait_for_log("no answer: backend unavailable");
}

#[test]
fn check_accepts_ldap_settings_and_names_the_key_of_a_mistake() {
    let good = ldap_setup(25, &users_section("ldap://127.0.0.1:1", ""));
    let out = run_mailotp("check", write_without_users_file(&good).path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = ldap_setup(
        25,
        &users_section("ldap://127.0.0.1:1", "").replace("(uid={user})", "(uid=fixed)"),
    );
    let dir = write_without_users_file(&bad);
    let out = run_mailotp("check", dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}: key `users.user_filter`: must contain {{user}}",
        dir.path().join("mailotp.toml").display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn lockout_counts_every_spelling_of_a_name_as_one_user() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let extra = "lockout_after = 3\nlockout_time = 600\n";
    let server = start_mailotp(&smtp, &users_section(&slapd.url(), extra));
    // The directory matches uid without regard to case, surrounding spaces
    // and Unicode form: these are all alice, and count as one.
    for user in ["ALICE", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"] {
        let wrong = send_pin(&server, user, "not-alices-password").unwrap();
        assert_eq!(wrong.code, "Access-Reject");
    }
    let before = send_pin(&server, "Alice", ldap_password("alice")).unwrap();
    assert_eq!(before.code, "Access-Challenge", "two failures do not lock");
    let wrong = send_pin(&server, "alice ", "not-alices-password").unwrap();
    assert_eq!(wrong.code, "Access-Reject");
    server.wait_for_log("user locked after too many failures in a row");
    let alice_dn = format!("uid=alice,ou=people,{BASE_DN}");
    let binds = slapd.binds_as(&alice_dn);
    // Three wrong passwords, the right one, and the start of the last wrong
    // one: with her code challenge open it might have been PIN+code.
    assert_eq!(binds, 5, "the binds before the lock");
    for user in SPELLINGS.iter().chain(&["alice"]) {
        let locked = send_pin(&server, user, ldap_password("alice")).unwrap();
        assert_eq!(locked.code, "Access-Reject", "{user:?} is locked alice");
        assert_eq!(locked.attr("Reply-Message"), None);
    }
    server.wait_for_log("reason=\"locked\"");
    // erin's bind comes after them all in slapd's log: a locked user's
    // password never reached the directory.
    send_pin(&server, "erin", ldap_password("erin")).unwrap();
    slapd.wait_for_bind_as(&format!("uid=erin,ou=people,{BASE_DN}"));
    assert_eq!(slapd.binds_as(&alice_dn), binds, "no bind as alice once she is locked");
    assert!(!server.log().contains("reason=\"already-sent\""), "{}", server.log());
}

#[test]
fn check_connect_tries_the_service_bind() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let connect = |users: &str| check_connect(write_without_users_file(&ldap_setup(smtp.port, users)).path());
    let (ok, stdout) = connect(&users_section(&slapd.url(), ""));
    assert!(ok, "{stdout}");
    assert!(stdout.contains("users: LDAP directory"), "{stdout}");
    assert!(
        stdout.contains(&format!("LDAP service bind at {}: ok", slapd.url())),
        "{stdout}"
    );
    let wrong = users_section(&slapd.url(), "").replace(SERVICE_PASSWORD, "not-the-service-password");
    let (ok, stdout) = connect(&wrong);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains(&format!("LDAP service bind at {}: FAILED", slapd.url())),
        "{stdout}"
    );
    assert!(!stdout.contains("not-the-service-password"));
}

/// Spellings of alice a directory may take for her: case, surrounding
/// spaces, fullwidth letters (which NFKC folds to ASCII).
const SPELLINGS: [&str; 5] = [
    "ALICE",
    "Alice",
    "  alice",
    "alice ",
    "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
];

#[test]
fn every_spelling_the_directory_accepts_gets_the_same_challenge_and_no_second_mail() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let server = start_mailotp(&smtp, &users_section(&slapd.url(), ""));
    let first = send_pin(&server, "alice", ldap_password("alice")).unwrap();
    assert_eq!(first.code, "Access-Challenge");
    let mut accepted = Vec::new();
    for spelling in SPELLINGS {
        let reply = send_pin(&server, spelling, ldap_password("alice")).unwrap();
        if reply.code == "Access-Challenge" {
            assert_eq!(
                reply.state(),
                first.state(),
                "{spelling:?} is alice: her open challenge"
            );
            accepted.push(spelling);
        } else {
            assert_eq!(shape(&reply).1, Vec::<String>::new(), "{spelling:?}: a bare reject");
        }
    }
    // OpenLDAP prepares uid values per RFC 4518 (NFKC, case folding,
    // insignificant spaces): it takes every one of them for alice.
    assert_eq!(accepted, SPELLINGS, "the spellings slapd takes for alice");
    // The canonical name, not the typed one, keys the challenge: its code
    // answers the State under the name as the directory spells it.
    let otp = smtp.wait_for_mails(1)[0].otp();
    let accept = send_otp(&server, "alice", &otp, &first.state()).unwrap();
    assert_eq!(accept.code, "Access-Accept");
    assert_eq!(smtp.mails().len(), 1, "one mail for all spellings");
    server.wait_for_log("canonical=alice");
}

#[test]
fn the_e_mail_throttle_counts_every_spelling_as_one_user() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let setup = ldap_setup(smtp.port, &users_section(&slapd.url(), ""));
    let mut setup = Setup {
        email: "blocking_timeout = 0\n".to_owned(),
        extra: "[email.throttling]\nmax_emails_in_five_minutes = 1\n".to_owned(),
        ..setup
    };
    setup.args = Vec::new();
    let server = Server::start_in(write_without_users_file(&setup), &setup.args, 1);
    assert_eq!(
        send_pin(&server, "alice", ldap_password("alice")).unwrap().code,
        "Access-Challenge"
    );
    for spelling in ["ALICE", "  alice", "alice "] {
        let reply = send_pin(&server, spelling, ldap_password("alice")).unwrap();
        assert_eq!(reply.code, "Access-Reject", "{spelling:?} is throttled as alice");
        assert!(
            reply.attr("Reply-Message").unwrap().contains("try again later"),
            "{reply:?}"
        );
    }
    assert_eq!(smtp.wait_for_mails(1).len(), 1);
}
