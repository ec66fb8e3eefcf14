//! Issue 5: mail that never loses a challenge (outage, TLS, refusals,
//! templates) and the abuse controls (throttling, lockout, attempts).

use std::time::{Duration, Instant};

use crate::certs::make_pki;
use crate::harness::*;

fn pin_from(server: &Server, user: &str, calling_station: &str) -> Reply {
    let attrs = format!(
        "User-Name = \"{user}\", User-Password = \"{}\", Calling-Station-Id = \"{calling_station}\"",
        pin(user)
    );
    radclient(server.addr(), SECRET, &attrs).expect("an answer")
}

#[test]
fn smtp_down_at_challenge_time_then_up_delivers_and_the_code_works() {
    let port = free_tcp_port();
    let server = Server::start(&Setup::new(port));
    let challenge = send_pin(&server, "alice", pin("alice")).expect("answered while SMTP is down");
    assert_eq!(challenge.code, "Access-Challenge");
    server.wait_for_log("mail delivery failed, will retry");

    let smtp = SmtpSink::start_with(SinkOptions {
        port: Some(port),
        ..SinkOptions::default()
    });
    let otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Accept"
    );
    server.wait_for_log("mail sent");
}

#[test]
fn starttls_with_auth_and_a_private_ca() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let smtp = SmtpSink::start_with(SinkOptions {
        mode: Some("starttls"),
        cert: Some((pki.cert.clone(), pki.key.clone())),
        auth: Some("relay-user:relay-pass-7731".to_owned()),
        ..SinkOptions::default()
    });
    let mut setup = Setup::new(smtp.port);
    std::fs::write(pki_dir.path().join("smtp.secret"), "relay-pass-7731\n").unwrap();
    setup.provider = format!(
        "kind = \"smtp\"\nsmtp_server = \"localhost\"\nsmtp_port = {}\nsmtp_tls = \"starttls\"\n\
         smtp_ca_file = {:?}\nsmtp_user = \"relay-user\"\nsmtp_password_file = {:?}\nsmtp_timeout = 5\n",
        smtp.port,
        pki.ca,
        pki_dir.path().join("smtp.secret")
    );
    let mut server = Server::start(&setup);
    server.forbid_in_log("relay-pass-7731");
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let mail = &smtp.wait_for_mails(1)[0];
    assert_eq!(mail.header("X-TLS"), "yes");
    assert_eq!(mail.header("X-Authenticated"), "yes");
    assert_eq!(
        send_otp(&server, "alice", &mail.otp(), &challenge.state())
            .unwrap()
            .code,
        "Access-Accept"
    );
}

#[test]
fn implicit_tls() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let smtp = SmtpSink::start_with(SinkOptions {
        mode: Some("tls"),
        cert: Some((pki.cert.clone(), pki.key.clone())),
        ..SinkOptions::default()
    });
    let mut setup = Setup::new(smtp.port);
    setup.provider = format!(
        "kind = \"smtp\"\nsmtp_server = \"localhost\"\nsmtp_port = {}\nsmtp_tls = \"tls\"\nsmtp_ca_file = {:?}\n",
        smtp.port, pki.ca
    );
    let server = Server::start(&setup);
    send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(smtp.wait_for_mails(1)[0].header("X-TLS"), "yes");
}

#[test]
fn a_refused_recipient_stops_the_retries_and_is_logged() {
    let smtp = SmtpSink::start_with(SinkOptions {
        reject: vec!["alice@example.test".to_owned()],
        ..SinkOptions::default()
    });
    let server = Server::start(&Setup::new(smtp.port));
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    let line = server.wait_for_log("mail dropped");
    assert!(line.contains("550"), "{line}");
    // A later mail goes through, so the 550 was not retried in between.
    send_pin(&server, "bob", pin("bob")).unwrap();
    smtp.wait_for_mails(1);
    assert_eq!(server.process.count_lines("will retry"), 0);
    assert_eq!(server.process.count_lines("mail dropped"), 1);
}

#[test]
fn a_mail_still_undelivered_when_its_challenge_expires_is_dropped_and_logged() {
    let port = free_tcp_port();
    let mut setup = Setup::new(port);
    setup.email = "challenge_validity = 2\n".to_owned();
    let server = Server::start(&setup);
    send_pin(&server, "alice", pin("alice")).unwrap();
    server.wait_for_log("mail dropped: its challenge expires before the next try");
}

#[test]
fn a_full_queue_rejects_with_a_reply_message() {
    let port = free_tcp_port();
    let mut setup = Setup::new(port);
    setup.email = "queue_limit = 1\n".to_owned();
    let server = Server::start(&setup);
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    let busy = send_pin(&server, "bob", pin("bob")).unwrap();
    assert_eq!(busy.code, "Access-Reject");
    assert_eq!(
        busy.attr("Reply-Message"),
        Some("The e-mail service is busy, please try again later")
    );
}

#[test]
fn throttle_per_user_in_five_minutes_holds_exactly_its_number() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "blocking_timeout = 0\n\n[email.throttling]\nmax_emails_in_five_minutes = 2\n".to_owned();
    let server = Server::start(&setup);
    for _ in 0..2 {
        assert_eq!(
            send_pin(&server, "alice", pin("alice")).unwrap().code,
            "Access-Challenge"
        );
    }
    let third = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(third.code, "Access-Reject");
    assert_eq!(
        third.attr("Reply-Message"),
        Some("Too many e-mails were sent to you, please try again later")
    );
    assert_eq!(
        send_pin(&server, "bob", pin("bob")).unwrap().code,
        "Access-Challenge",
        "other users are not held"
    );
    smtp.wait_for_mails(3);
    assert_eq!(smtp.mails_to("alice@").len(), 2);
    server.wait_for_log("max_emails_in_five_minutes");
}

#[test]
fn throttle_per_user_per_hour_holds_exactly_its_number() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "blocking_timeout = 0\n\n[email.throttling]\nmax_emails_per_hour = 3\n".to_owned();
    let server = Server::start(&setup);
    for _ in 0..3 {
        assert_eq!(
            send_pin(&server, "alice", pin("alice")).unwrap().code,
            "Access-Challenge"
        );
    }
    assert_eq!(send_pin(&server, "alice", pin("alice")).unwrap().code, "Access-Reject");
    assert_eq!(smtp.wait_for_mails(3).len(), 3);
}

#[test]
fn throttle_per_client_address_counts_calling_station_id() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "blocking_timeout = 0\n\n[email.throttling]\nmax_emails_per_client_ip_per_hour = 2\n".to_owned();
    let server = Server::start(&setup);
    assert_eq!(pin_from(&server, "alice", "192.0.2.7").code, "Access-Challenge");
    assert_eq!(pin_from(&server, "bob", "192.0.2.7").code, "Access-Challenge");
    let third = pin_from(&server, "alice", "192.0.2.7");
    assert_eq!(third.code, "Access-Reject");
    assert!(third.attr("Reply-Message").unwrap().contains("try again later"));
    assert_eq!(
        pin_from(&server, "alice", "198.51.100.9").code,
        "Access-Challenge",
        "another address"
    );
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge",
        "no address: not counted"
    );
}

#[test]
fn lockout_answers_like_a_wrong_pin_until_it_expires_and_a_success_resets() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.users = "lockout_after = 3\nlockout_time = 2\n".to_owned();
    let server = Server::start(&setup);

    // Two failures, a full login, two failures: not locked (the login reset).
    for _ in 0..2 {
        assert_eq!(send_pin(&server, "alice", "wrong").unwrap().code, "Access-Reject");
    }
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Accept"
    );
    for _ in 0..2 {
        assert_eq!(send_pin(&server, "alice", "wrong").unwrap().code, "Access-Reject");
    }
    // The third failure in a row locks.
    assert_eq!(send_pin(&server, "alice", "wrong").unwrap().code, "Access-Reject");
    let locked_at = Instant::now();
    let wrong = send_pin(&server, "alice", "wrong").unwrap();
    let locked = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(locked.code, "Access-Reject");
    assert_eq!(
        locked.attributes.len(),
        wrong.attributes.len(),
        "the same answer as a wrong PIN"
    );
    assert_eq!(locked.attributes[0].0, "Message-Authenticator");
    server.wait_for_log("user locked after too many failures in a row");
    server.wait_for_log("reason=\"locked\"");

    // The lock is a matter of the clock: two seconds.
    std::thread::sleep((locked_at + Duration::from_millis(2200)).saturating_duration_since(Instant::now()));
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    assert_eq!(smtp.wait_for_mails(2).len(), 2, "no mail while locked");
}

#[test]
fn codes_of_both_open_challenges_are_valid_and_a_success_closes_both() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "blocking_timeout = 0\n".to_owned();
    let server = Server::start(&setup);
    let first = send_pin(&server, "alice", pin("alice")).unwrap();
    let code1 = smtp.wait_for_mails(1)[0].otp();
    let second = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_ne!(first.state(), second.state());
    smtp.wait_for_mails(2);
    // The older mail's code answers the newer State (slow mail arrives last).
    assert_eq!(
        send_otp(&server, "alice", &code1, &second.state()).unwrap().code,
        "Access-Accept"
    );
    assert_eq!(
        send_otp(&server, "alice", &code1, &first.state()).unwrap().code,
        "Access-Reject",
        "all closed"
    );
}

#[test]
fn max_attempts_wrong_codes_void_the_challenge() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "max_attempts = 2\n".to_owned();
    let server = Server::start(&setup);
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    let wrong = if otp == "999999" { "888888" } else { "999999" };
    for _ in 0..2 {
        assert_eq!(
            send_otp(&server, "alice", wrong, &challenge.state()).unwrap().code,
            "Access-Reject"
        );
    }
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Reject"
    );
    server.wait_for_log("challenge-void");
}

#[test]
fn templates_give_a_multipart_mail_with_text_and_html() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "body_file = \"mail.txt\"\nhtml_body_file = \"mail.html\"\n".to_owned();
    setup
        .provider
        .push_str("email_from = \"VPN <otp@corp.test>\"\nemail_subject = \"Your VPN code\"\n");
    let dir = setup.write();
    std::fs::write(dir.path().join("mail.txt"), "Hi {user}, code {otp}, {minutes} min.\n").unwrap();
    std::fs::write(
        dir.path().join("mail.html"),
        "<p style=\"x { y }\">Hi {user}: <b>{otp}</b></p>\n",
    )
    .unwrap();
    let server = Server::start_in(dir, &[], 1);
    send_pin(&server, "alice", pin("alice")).unwrap();
    let mail = &smtp.wait_for_mails(1)[0];
    assert_eq!(mail.header("Subject"), "Your VPN code");
    assert!(mail.header("From").contains("otp@corp.test"));
    assert!(
        mail.header("Content-Type").starts_with("multipart/alternative"),
        "{}",
        mail.raw
    );
    let otp = mail.otp();
    assert!(
        mail.body().contains(&format!("Hi alice, code {otp}, 10 min.")),
        "{}",
        mail.raw
    );
    assert!(
        mail.body()
            .contains(&format!("<p style=\"x {{ y }}\">Hi alice: <b>{otp}</b></p>")),
        "{}",
        mail.raw
    );
}

#[test]
fn a_template_with_an_unknown_placeholder_is_refused_at_start() {
    let mut setup = Setup::new(25);
    setup.email = "body_file = \"mail.txt\"\n".to_owned();
    let dir = setup.write();
    std::fs::write(dir.path().join("mail.txt"), "Your code: {code}\n").unwrap();
    let out = run_mailotp("check", dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mail.txt: key `email.body_file`: unknown placeholder {code} on line 1"),
        "{stderr}"
    );
}

#[test]
fn a_fixed_test_code_needs_test_mode_and_each_use_is_logged() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "fixed_otp_for_testing = \"424242\"\n".to_owned();
    setup.args = vec!["--test-mode".to_owned()];
    let server = Server::start(&setup);
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(smtp.wait_for_mails(1)[0].otp(), "424242");
    server.wait_for_log("fixed_otp_for_testing used");
    assert_eq!(
        send_otp(&server, "alice", "424242", &challenge.state()).unwrap().code,
        "Access-Accept"
    );

    let dir = setup.write();
    let out = run_mailotp("serve", dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("start with `serve --test-mode`"));
}

/// The mail a PIN request from `calling_station` through the client named
/// `vpn1` gets, with `[email]` lines `email`, the given template files and
/// the subject template `subject`.
fn asked_mail(email: &str, templates: &[(&str, &str)], calling_station: &str, subject: &str) -> Mail {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.provider.push_str(&format!("email_subject = \"{subject}\"\n"));
    setup.clients = vec![client("vpn1", "127.0.0.1", SECRET, false, "access-challenge")];
    setup.email = email.to_owned();
    let dir = setup.write();
    for (name, text) in templates {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let server = Server::start_in(dir, &[], 1);
    assert_eq!(pin_from(&server, "alice", calling_station).code, "Access-Challenge");
    smtp.wait_for_mails(1).remove(0)
}

/// `YYYY-MM-DDTHH:MM:SS+HH:MM` at the start of `s`.
fn starts_with_rfc3339(s: &str, offset: &str) -> bool {
    let b = s.as_bytes();
    s.len() >= 25
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && s[19..25] == *offset
        && s[..19].bytes().filter(u8::is_ascii_digit).count() == 14
}

#[test]
fn the_built_in_mail_says_where_when_and_until_when() {
    let mail = asked_mail("", &[], "198.51.100.23", "Your OTP");
    let body = mail.body();
    let line = |label: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{body}"))
            .trim()
            .to_owned()
    };
    assert_eq!(line("from:"), "198.51.100.23");
    assert_eq!(line("through:"), "vpn1");
    assert!(starts_with_rfc3339(&line("at:"), "+00:00"), "{body}");
    let until = body.split("until ").nth(1).expect("an expiry");
    assert!(starts_with_rfc3339(until, "+00:00"), "{body}");
    assert!(
        until[..19] > *line("at:")[..19].to_owned(),
        "expires after it was asked"
    );
}

#[test]
fn templates_show_who_asked_in_text_html_and_subject_in_the_configured_zone() {
    let mail = asked_mail(
        "body_file = \"mail.txt\"\nhtml_body_file = \"mail.html\"\ntimezone = \"Asia/Kolkata\"\n",
        &[
            ("mail.txt", "T {client_ip} via {nas}\nT-at {time}\nT-until {expires}\n"),
            (
                "mail.html",
                "<p>H {client_ip} via {nas}\n<p>H-at {time}\n<p>H-until {expires}\n",
            ),
        ],
        "2001:db8::7",
        "Login from {client_ip} via {nas}",
    );
    assert_eq!(mail.header("Subject"), "Login from 2001:db8::7 via vpn1");
    let body = mail.body();
    let line = |label: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{}", mail.raw))
            .to_owned()
    };
    for part in ["T", "<p>H"] {
        assert_eq!(line(&format!("{part} ")), "2001:db8::7 via vpn1", "{}", mail.raw);
        assert!(
            starts_with_rfc3339(&line(&format!("{part}-at ")), "+05:30"),
            "{}",
            mail.raw
        );
        assert!(
            starts_with_rfc3339(&line(&format!("{part}-until ")), "+05:30"),
            "{}",
            mail.raw
        );
    }
}

#[test]
fn a_calling_station_id_cannot_add_a_header_a_recipient_or_html() {
    let mail = asked_mail(
        "html_body_file = \"mail.html\"\n",
        &[("mail.html", "<p>from {client_ip}</p>\n")],
        "10.9.8.7\\r\\nBcc: eve@evil.test\\r\\n<script>alert(1)</script>",
        "Login from {client_ip}",
    );
    assert_eq!(
        mail.header("Subject"),
        "Login from 10.9.8.7Bcc: eve@evil.test<script>alert(1)</script>"
    );
    // The value stays inside the one Subject line: no header line of its own.
    let head = mail.raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    let lines_with_it: Vec<&str> = head.lines().filter(|l| l.contains("evil.test")).collect();
    assert_eq!(lines_with_it.len(), 1, "{}", mail.raw);
    assert!(lines_with_it[0].starts_with("subject: "), "{}", mail.raw);
    assert_eq!(mail.header("X-Envelope-To"), "alice@example.test");
    assert!(
        mail.body()
            .contains("<p>from 10.9.8.7Bcc: eve@evil.test&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        "{}",
        mail.raw
    );
}
