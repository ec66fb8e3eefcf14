//! `[[policies]]` from outside: an exempt user logs in on the PIN alone, a
//! denied one gets the answer of a wrong PIN, policies are scoped by client
//! and by Calling-Station-Id, the first match wins, their reply attributes
//! follow the user's on Accept, SIGHUP changes them, and `check` refuses
//! what cannot work.

use crate::harness::*;

/// `text` with `lines` added to the `[[users]]` entry of `user`.
fn with_user_lines(text: &str, user: &str, lines: &str) -> String {
    let entry = format!("name = \"{user}\"\n");
    text.replace(&entry, &format!("{entry}{lines}"))
}

/// A setup whose users file puts bob in `contractors` and alice in `vpn-admins`.
fn setup_with(smtp: &SmtpSink, policies: &str) -> Setup {
    let mut setup = Setup::new(smtp.port);
    let users = with_user_lines(users_toml(), "bob", "groups = [\"contractors\"]\n");
    setup.users_file = with_user_lines(&users, "alice", "groups = [\"vpn-admins\"]\n");
    setup
        .clients
        .push(client("other", "127.0.0.9", SECRET, false, "access-challenge"));
    setup.extra = policies.to_owned();
    setup
}

/// The login's first round with a Calling-Station-Id.
fn send_pin_from(server: &Server, user: &str, station: &str) -> Reply {
    let attributes = format!(
        "User-Name = \"{user}\", User-Password = \"{}\", Calling-Station-Id = \"{station}\"",
        pin(user)
    );
    radclient(server.addr(), SECRET, &attributes).expect("an answer")
}

/// Waits until a mail to alice arrived (she always gets one), then checks
/// that none went to `user`: the queue is worked in order.
fn assert_no_mail_to(smtp: &SmtpSink, server: &Server, user: &str) {
    let before = smtp.mails().len();
    assert_eq!(
        send_pin(server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    smtp.wait_for_mails(before + 1);
    assert!(smtp.mails_to(&format!("{user}@")).is_empty(), "no mail for {user}");
}

#[test]
fn an_exempt_user_is_accepted_on_the_pin_with_both_replies_and_no_mail() {
    let smtp = SmtpSink::start();
    let policy = "[[policies]]\nname = \"backup-service\"\nusers = [\"bob\"]\nsecond_factor = \"none\"\n\
                  reply = { Filter-Id = \"backup\" }\n";
    let mut setup = setup_with(&smtp, policy);
    setup.users_file = with_user_lines(&setup.users_file, "bob", "reply = { Class = \"svc\" }\n");
    let server = Server::start(&setup);
    let accept = send_pin(&server, "bob", pin("bob")).unwrap();
    assert_eq!(accept.code, "Access-Accept");
    let names: Vec<&str> = accept.attributes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Message-Authenticator", "Class", "Filter-Id"],
        "the user's reply, then the policy's"
    );
    assert_eq!(accept.attr("Filter-Id"), Some("backup"));
    let line = server.wait_for_log("reason=\"exempt\"");
    assert!(line.contains("policy=backup-service"), "{line}");
    // A wrong PIN is still a wrong PIN.
    assert_eq!(send_pin(&server, "bob", "pin-bob-0000").unwrap().code, "Access-Reject");
    assert_no_mail_to(&smtp, &server, "bob");
}

#[test]
fn a_denied_user_gets_a_wrong_pins_answer_no_mail_no_lockout_and_sighup_lifts_it() {
    let smtp = SmtpSink::start();
    let policy = "[[policies]]\nname = \"contractors-off-local\"\ngroups = [\"contractors\"]\n\
                  clients = [\"local\"]\nsecond_factor = \"deny\"\n";
    let mut setup = setup_with(&smtp, policy);
    setup.users = "lockout_after = 2\nlockout_time = 600\n".to_owned();
    let server = Server::start(&setup);
    let shape = |r: Reply| (r.code, r.attributes.into_iter().map(|(n, _)| n).collect::<Vec<_>>());
    let wrong = shape(send_pin(&server, "bob", "pin-bob-0000").unwrap());
    for _ in 0..3 {
        assert_eq!(shape(send_pin(&server, "bob", pin("bob")).unwrap()), wrong);
    }
    let line = server.wait_for_log("reason=\"denied-by-policy\"");
    assert!(line.contains("policy=contractors-off-local"), "{line}");
    assert_no_mail_to(&smtp, &server, "bob");

    // The policy now names another client: bob is asked for his code, and
    // three denials in a row did not lock him.
    let moved = setup
        .config_text()
        .replace("clients = [\"local\"]", "clients = [\"other\"]");
    std::fs::write(server.dir.path().join("mailotp.toml"), moved).unwrap();
    server.process.signal("HUP");
    server.wait_for_log("configuration reloaded");
    assert_eq!(send_pin(&server, "bob", pin("bob")).unwrap().code, "Access-Challenge");
}

#[test]
fn calling_station_scopes_a_policy_the_first_match_wins_and_metrics_name_it() {
    let smtp = SmtpSink::start();
    let policies = "[[policies]]\nname = \"office\"\ncalling_station = [\"10.0.0.0/8\"]\nsecond_factor = \"none\"\n\
                    [[policies]]\nname = \"bob-nowhere\"\nusers = [\"bob\"]\nsecond_factor = \"deny\"\n";
    let mut setup = setup_with(&smtp, policies);
    setup.extra.push_str("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let server = Server::start(&setup);
    let office = send_pin_from(&server, "bob", "10.20.30.40");
    assert_eq!(office.code, "Access-Accept", "the office policy comes first");
    let outside = send_pin_from(&server, "bob", "192.0.2.10");
    assert_eq!((outside.code.as_str(), outside.attr("State")), ("Access-Reject", None));
    server.wait_for_log("policy=bob-nowhere");
    let alice = send_pin_from(&server, "alice", "192.0.2.11");
    assert_eq!(alice.code, "Access-Challenge", "no policy: the [email] settings");
    let metrics = crate::pool_support::metrics_address(&server);
    for policy in ["office", "bob-nowhere"] {
        let name = format!("mailotp_policy_answers_total{{policy=\"{policy}\"}}");
        assert_eq!(crate::pool_support::metric(&metrics, &name), "1", "{name}");
    }
}

#[test]
fn a_policys_reply_follows_the_code_and_a_policy_for_another_client_does_not_apply() {
    let smtp = SmtpSink::start();
    let policies = "[[policies]]\nname = \"admins-elsewhere\"\ngroups = [\"vpn-admins\"]\nclients = [\"other\"]\n\
                    second_factor = \"deny\"\n\
                    [[policies]]\nname = \"admins\"\ngroups = [\"vpn-admins\"]\nclients = [\"local\"]\n\
                    reply = { Filter-Id = \"admins\" }\n";
    let server = Server::start(&setup_with(&smtp, policies));
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(
        (challenge.code.as_str(), challenge.attr("Filter-Id")),
        ("Access-Challenge", None)
    );
    let otp = smtp.wait_for_mails(1)[0].otp();
    let accept = send_otp(&server, "alice", &otp, &challenge.state()).unwrap();
    assert_eq!(accept.code, "Access-Accept");
    assert_eq!(accept.attr("Filter-Id"), Some("admins"));
    let line = server.wait_for_log("reason=\"otp-accepted\"");
    assert!(line.contains("policy=admins"), "{line}");
}

#[test]
fn check_refuses_an_unreachable_policy_an_unknown_client_and_an_unknown_reply_attribute() {
    let smtp = SmtpSink::start();
    let cases = [
        (
            "[[policies]]\nname = \"all\"\n[[policies]]\nname = \"never\"\nusers = [\"bob\"]\n",
            "key `policies[1].name`: policy `never` can never apply",
        ),
        (
            "[[policies]]\nname = \"p\"\nclients = [\"vpn9\"]\n",
            "key `policies[0].clients`: `vpn9` is not the name of a [[clients]] entry",
        ),
        (
            "[[policies]]\nname = \"p\"\nreply = { Filter-Idd = \"x\" }\n",
            "key `policies[0].reply.Filter-Idd`: `Filter-Idd` is not an attribute of the dictionary",
        ),
    ];
    for (policies, want) in cases {
        let dir = setup_with(&smtp, policies).write();
        let out = run_mailotp("check", dir.path());
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("mailotp.toml: ") && stderr.contains(want), "{stderr}");
    }
}

#[test]
fn every_access_challenge_carries_session_timeout_from_the_policy_or_email() {
    let smtp = SmtpSink::start();
    let policies = "[[policies]]\nname = \"short-wait-nas\"\ncalling_station = [\"192.0.2.0/24\"]\n\
                    challenge_validity = 60\n";
    let mut setup = setup_with(&smtp, policies);
    setup.email = "challenge_validity = 500\n".to_owned();
    let server = Server::start(&setup);
    let short = send_pin_from(&server, "bob", "192.0.2.10");
    assert_eq!(
        (short.code.as_str(), short.attr("Session-Timeout")),
        ("Access-Challenge", Some("60"))
    );
    let long = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(long.attr("Session-Timeout"), Some("500"), "no policy: [email]'s");
    // The same State again: at most the rest of its validity.
    let again = send_pin_from(&server, "bob", "192.0.2.10");
    assert_eq!(again.state(), short.state());
    let left: u32 = again.attr("Session-Timeout").unwrap().parse().unwrap();
    assert!((1..=60).contains(&left), "{left}");
    // The code works within the policy's validity.
    let otp = smtp
        .wait_for_mails(2)
        .iter()
        .find(|m| m.header("To") == "bob@example.test")
        .unwrap()
        .otp();
    let accept = radclient(
        server.addr(),
        SECRET,
        &format!(
            "User-Name = \"bob\", User-Password = \"{otp}\", State = {}, Calling-Station-Id = \"192.0.2.10\"",
            short.state()
        ),
    )
    .unwrap();
    assert_eq!(accept.code, "Access-Accept");
}

#[test]
fn with_redis_a_policys_validity_holds_on_every_instance() {
    use crate::pool_support::{start_pool_with, PoolKey, RedisServer};
    let (redis, key, smtp) = (RedisServer::start(), PoolKey::new(), SmtpSink::start());
    let policy = "[[policies]]\nname = \"short\"\nusers = [\"bob\"]\nchallenge_validity = 30\n";
    let pool = start_pool_with(2, setup_with(&smtp, policy), &redis, &key);
    let (a, b) = (&pool[0], &pool[1]);
    let opened = send_pin(a, "bob", pin("bob")).unwrap();
    assert_eq!(opened.attr("Session-Timeout"), Some("30"));
    let again = send_pin(b, "bob", pin("bob")).unwrap();
    assert_eq!(again.state(), opened.state(), "B hands out A's challenge");
    let left: u32 = again.attr("Session-Timeout").unwrap().parse().unwrap();
    assert!(
        (1..=30).contains(&left),
        "B knows the challenge's own validity, not [email]'s: {left}"
    );
    let otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(send_otp(b, "bob", &otp, &opened.state()).unwrap().code, "Access-Accept");
}

#[test]
fn a_policys_otp_length_is_the_mailed_codes_and_works_as_pin_and_code() {
    let smtp = SmtpSink::start();
    let policy = "[[policies]]\nname = \"admins\"\ngroups = [\"vpn-admins\"]\notp_length = 8\n";
    let server = Server::start(&setup_with(&smtp, policy));
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    let alice = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(alice.len(), 8, "the policy's length");
    assert_eq!(send_pin(&server, "bob", pin("bob")).unwrap().code, "Access-Challenge");
    let bob = poll("bob's mail", DEADLINE, || {
        smtp.mails_to("bob@").first().map(|m| m.otp())
    });
    assert_eq!(bob.len(), 6, "[email]'s length");
    // PIN and code in one password: the code is cut at the policy's length.
    let both = format!("{}{alice}", pin("alice"));
    assert_eq!(send_pin(&server, "alice", &both).unwrap().code, "Access-Accept");
}

/// `mailotp check --explain` with `args` on `setup`: its stdout.
fn explain(setup: &Setup, args: &[&str]) -> String {
    let dir = setup.write();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailotp"))
        .args(["check", "-c"])
        .arg(dir.path().join("mailotp.toml"))
        .arg("--explain")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn check_explain_names_the_policy_and_what_a_right_pin_would_do() {
    let smtp = SmtpSink::start();
    let policies =
        "[[policies]]\nname = \"contractors-off-other\"\ngroups = [\"contractors\"]\nclients = [\"other\"]\n\
                    second_factor = \"deny\"\n\
                    [[policies]]\nname = \"admins\"\ngroups = [\"vpn-admins\"]\ncalling_station = [\"10.0.0.0/8\"]\n\
                    otp_length = 8\nchallenge_validity = 90\nreply = { Filter-Id = \"admins\" }\n";
    let setup = setup_with(&smtp, policies);
    let denied = explain(&setup, &["bob", "--client", "other"]);
    assert!(denied.contains("policy: contractors-off-other"), "{denied}");
    assert!(denied.contains("Access-Reject, as for a wrong PIN"), "{denied}");
    let admin = explain(&setup, &["alice", "--calling-station", "10.9.8.7"]);
    assert!(
        admin.contains("groups: vpn-admins") && admin.contains("policy: admins"),
        "{admin}"
    );
    assert!(
        admin.contains("8-digit code") && admin.contains("valid 90 s"),
        "{admin}"
    );
    let plain = explain(&setup, &["alice", "--client", "local"]);
    assert!(
        plain.contains("none matches") && plain.contains("6-digit code"),
        "{plain}"
    );
    assert!(explain(&setup, &["mallory"]).contains("unknown"));
}

/// The answer `code` to `state` from the default origin.
fn answer(server: &Server, user: &str, code: &str, state: &str) -> String {
    send_otp(server, user, code, state).expect("an answer").code
}

#[test]
fn a_policys_max_attempts_voids_the_challenge_at_its_nth_wrong_answer() {
    let smtp = SmtpSink::start();
    let policy = "[[policies]]\nname = \"admins\"\ngroups = [\"vpn-admins\"]\nmax_attempts = 1\n";
    let server = Server::start(&setup_with(&smtp, policy));
    let alice = send_pin(&server, "alice", pin("alice")).unwrap();
    let alice_otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(answer(&server, "alice", "00000000", &alice.state()), "Access-Reject");
    server.wait_for_log("reason=\"challenge-void\"");
    assert_eq!(
        answer(&server, "alice", &alice_otp, &alice.state()),
        "Access-Reject",
        "void after the policy's one attempt"
    );
    // [email]'s max_attempts (3) for bob: two wrong answers leave it open.
    let bob = send_pin(&server, "bob", pin("bob")).unwrap();
    let bob_otp = poll("bob's mail", DEADLINE, || {
        smtp.mails_to("bob@").first().map(|m| m.otp())
    });
    for _ in 0..2 {
        assert_eq!(answer(&server, "bob", "00000000", &bob.state()), "Access-Reject");
    }
    assert_eq!(answer(&server, "bob", &bob_otp, &bob.state()), "Access-Accept");
}

#[test]
fn a_policys_delivery_sends_a_link_where_email_sends_codes() {
    let smtp = SmtpSink::start();
    let policy = "[[policies]]\nname = \"by-link\"\nusers = [\"bob\"]\ndelivery = \"link\"\n";
    let mut setup = setup_with(&smtp, policy);
    setup.extra.push_str(&format!(
        "[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"{}\"\n",
        crate::link::BASE_URL
    ));
    let server = Server::start(&setup);
    let line = server.wait_for_log("link page server on ");
    let pages = line.rsplit("link page server on ").next().unwrap().trim().to_owned();
    let bob = send_pin(&server, "bob", pin("bob")).unwrap();
    assert_eq!(
        bob.attr("Reply-Message"),
        Some("Open the link in the e-mail sent to b***@example.test, then press Enter")
    );
    let mail = smtp.wait_for_mails(1).pop().unwrap();
    let path = crate::link::link_path(&mail);
    assert!(!mail.body().contains("one-time password"), "{}", mail.body());
    assert_eq!(
        answer(&server, "bob", "", &bob.state()),
        "Access-Challenge",
        "not confirmed yet"
    );
    let confirmed = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .args(["-X", "POST", "-H", "Origin: null", "-d", ""])
        .arg(format!("{pages}{path}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&confirmed.stdout), "200");
    assert_eq!(answer(&server, "bob", "", &bob.state()), "Access-Accept");
    // No policy for alice: [email]'s code.
    let alice = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(2).pop().unwrap().otp();
    assert_eq!(answer(&server, "alice", &otp, &alice.state()), "Access-Accept");
}

#[test]
fn with_redis_a_policys_max_attempts_and_reply_hold_on_every_instance() {
    use crate::pool_support::{start_pool_with, PoolKey, RedisServer};
    let (redis, key, smtp) = (RedisServer::start(), PoolKey::new(), SmtpSink::start());
    let policy = "[[policies]]\nname = \"strict\"\nusers = [\"bob\"]\nmax_attempts = 2\n\
                  reply = { Filter-Id = \"strict\" }\n";
    let pool = start_pool_with(2, setup_with(&smtp, policy), &redis, &key);
    let (a, b) = (&pool[0], &pool[1]);
    let first = send_pin(a, "bob", pin("bob")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(answer(b, "bob", "000000", &first.state()), "Access-Reject");
    assert_eq!(answer(a, "bob", "000000", &first.state()), "Access-Reject");
    assert_eq!(
        answer(b, "bob", &otp, &first.state()),
        "Access-Reject",
        "the policy's 2 attempts, counted across instances"
    );
    // A new challenge (the void one blocks no more), answered on the other
    // instance: the policy's reply attribute comes with it.
    let second = send_pin(b, "bob", pin("bob")).unwrap();
    assert_ne!(second.state(), first.state());
    let otp = smtp.wait_for_mails(2).pop().unwrap().otp();
    let accept = send_otp(a, "bob", &otp, &second.state()).unwrap();
    assert_eq!(
        (accept.code.as_str(), accept.attr("Filter-Id")),
        ("Access-Accept", Some("strict"))
    );
}
