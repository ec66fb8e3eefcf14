//! The wire table of SPEC.md, row by row, with radclient and a real SMTP server.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Decodes radclient's `0x…` State into the text we sent (our State is ASCII hex).
fn state_text(state: &str) -> String {
    let bytes = hex::decode(state.trim_start_matches("0x")).unwrap();
    String::from_utf8(bytes).unwrap()
}

/// Sends bob's PIN and waits for bob's mail: after it, a mail for alice that
/// had been queued before would have had its chance to arrive too.
fn barrier(server: &Server, smtp: &SmtpSink) {
    let before = smtp.mails_to("bob@").len();
    let reply = send_pin(server, "bob", pin("bob")).unwrap();
    assert_eq!(reply.code, "Access-Challenge");
    poll("bob's mail", DEADLINE, || {
        (smtp.mails_to("bob@").len() > before).then_some(())
    });
    poll("queue to drain", DEADLINE, || {
        (server.process.count_lines("mail sent") >= server.process.count_lines("challenge-sent")).then_some(())
    });
}

#[test]
fn pin_then_otp_from_the_mail_is_accepted_once() {
    let smtp = SmtpSink::start();
    let mut server = Server::start(&Setup::new(smtp.port));

    let challenge = send_pin(&server, "alice", pin("alice")).expect("an answer to the PIN");
    assert_eq!(challenge.code, "Access-Challenge");
    assert_eq!(challenge.attributes[0].0, "Message-Authenticator", "{challenge:?}");
    assert_eq!(
        challenge.attr("Reply-Message"),
        Some("Enter the one-time password sent to a***@example.test")
    );
    let state = challenge.state();
    assert_eq!(state_text(&state).len(), 32);

    let mails = smtp.wait_for_mails(1);
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.header("To"), "alice@example.test");
    assert_eq!(mail.header("From"), "linotp@example.com");
    assert_eq!(mail.header("Subject"), "Your OTP");
    assert!(
        !mail.header("Date").is_empty() && !mail.header("Message-ID").is_empty(),
        "{}",
        mail.raw
    );
    let otp = mail.otp();
    assert_eq!(otp.len(), 6);
    server.forbid_in_log(&otp);

    let accept = send_otp(&server, "alice", &otp, &state).unwrap();
    assert_eq!(accept.code, "Access-Accept");
    assert_eq!(accept.attributes[0].0, "Message-Authenticator");

    let again = send_otp(&server, "alice", &otp, &state).unwrap();
    assert_eq!(again.code, "Access-Reject", "a code is single use");
}

#[test]
fn pin_again_within_blocking_timeout_sends_no_second_mail() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));

    let first = send_pin(&server, "alice", pin("alice")).unwrap();
    smtp.wait_for_mails(1);
    let second = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(second.code, "Access-Challenge");
    assert_eq!(second.state(), first.state(), "the same challenge");
    let message = second.attr("Reply-Message").unwrap();
    assert!(message.starts_with("e-mail with otp already submitted"), "{message}");
    assert!(
        message.contains(&state_text(&first.state())),
        "the transaction id: {message}"
    );

    barrier(&server, &smtp);
    assert_eq!(smtp.mails_to("alice@").len(), 1, "no second mail");
    // The code of the one mail answers either State (they are the same).
    let otp = smtp.mails_to("alice@")[0].otp();
    assert_eq!(
        send_otp(&server, "alice", &otp, &second.state()).unwrap().code,
        "Access-Accept"
    );
}

#[test]
fn pin_followed_by_code_in_one_request_is_accepted() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    let reply = send_pin(&server, "alice", &format!("{}{otp}", pin("alice"))).unwrap();
    assert_eq!(reply.code, "Access-Accept");
    let again = send_pin(&server, "alice", &format!("{}{otp}", pin("alice"))).unwrap();
    assert_eq!(again.code, "Access-Reject", "the code was used");
}

#[test]
fn reject_mode_answers_the_pin_with_reject_and_prompt_then_accepts_pin_and_code() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.clients = vec![client("classic", "127.0.0.1", SECRET, false, "reject")];
    let server = Server::start(&setup);

    let first = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(first.code, "Access-Reject");
    assert_eq!(
        first.attr("Reply-Message"),
        Some("Enter the one-time password sent to a***@example.test")
    );
    assert_eq!(first.attr("State"), None);
    let otp = smtp.wait_for_mails(1)[0].otp();
    let reply = send_pin(&server, "alice", &format!("{}{otp}", pin("alice"))).unwrap();
    assert_eq!(reply.code, "Access-Accept");
}

#[test]
fn strangers_cannot_tell_unknown_inactive_and_wrong_pin_apart() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    let answers: Vec<Reply> = [
        ("alice", "wrong-pin"),
        ("nobody", "pin-alice-5521"),
        ("carol", pin("carol")),
        ("alice", ""),
    ]
    .iter()
    .map(|(user, password)| send_pin(&server, user, password).expect("an answer"))
    .collect();
    for a in &answers {
        assert_eq!(a.code, "Access-Reject", "{a:?}");
        let names: Vec<&str> = a.attributes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Message-Authenticator"], "nothing but the MA: {a:?}");
    }
    barrier(&server, &smtp);
    assert_eq!(smtp.mails().len(), 1, "only bob's barrier mail");
    for reason in ["wrong-pin", "unknown-user", "inactive-user"] {
        server.wait_for_log(reason);
    }
}

#[test]
fn wrong_code_and_foreign_state_are_rejected() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    assert_eq!(
        send_otp(&server, "alice", wrong, &challenge.state()).unwrap().code,
        "Access-Reject"
    );
    let foreign = "0x".to_owned() + &hex::encode("not-a-state-of-ours");
    assert_eq!(
        send_otp(&server, "alice", &otp, &foreign).unwrap().code,
        "Access-Reject"
    );
    assert_eq!(
        send_otp(&server, "bob", &otp, &challenge.state()).unwrap().code,
        "Access-Reject",
        "another user's State"
    );
    // One wrong try left the challenge open: the right code still works.
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Accept"
    );
}

#[test]
fn an_expired_code_is_rejected() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "challenge_validity = 2\nblocking_timeout = 2\n".to_owned();
    let server = Server::start(&setup);
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let opened = Instant::now();
    let otp = smtp.wait_for_mails(1)[0].otp();
    // Expiry is a matter of the clock: wait past the two-second validity.
    std::thread::sleep((opened + Duration::from_millis(2500)).saturating_duration_since(Instant::now()));
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Reject"
    );
    server.wait_for_log("unknown-state");
}

#[test]
fn status_server_is_accepted() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    let reply = radclient_code(server.addr(), SECRET, "status", "Message-Authenticator = 0x00").unwrap();
    assert_eq!(reply.code, "Access-Accept");
    assert_eq!(reply.attributes[0].0, "Message-Authenticator");
}

#[test]
fn unknown_sources_and_wrong_secrets_get_no_answer() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.clients = vec![
        client("elsewhere", "127.0.0.2", SECRET, false, "access-challenge"),
        client("strict", "127.0.0.1", SECRET, true, "access-challenge"),
    ];
    let mut setup_other = setup.clone();
    setup_other.clients.pop();
    let other = Server::start(&setup_other);
    assert!(
        radclient(other.addr(), SECRET, "User-Name = alice, User-Password = x").is_none(),
        "unknown source"
    );

    let server = Server::start(&setup);
    let wrong_secret = "User-Name = alice, User-Password = x, Message-Authenticator = 0x00";
    assert!(
        radclient(server.addr(), "not-the-secret", wrong_secret).is_none(),
        "bad Message-Authenticator"
    );
    let right = radclient(server.addr(), SECRET, wrong_secret).expect("the right secret is answered");
    assert_eq!(right.code, "Access-Reject");
}

#[test]
fn a_bad_configuration_is_refused_at_start_with_file_key_and_reason() {
    let mut setup = Setup::new(25);
    setup.clients[0] = setup.clients[0].replace("address = \"127.0.0.1\"", "address = \"127.0.0.300\"");
    let dir = setup.write();
    let path = dir.path().join("mailotp.toml");
    let out = run_mailotp("serve", dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "Error: {}: key `clients[0].address`: `127.0.0.300` is not an IP address or CIDR network",
        path.display()
    );
    assert_eq!(stderr.trim(), want);
}

#[test]
fn hash_pin_reads_stdin_and_prints_an_argon2id_hash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailotp"))
        .arg("hash-pin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"my-new-pin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains("my-new-pin"));
}

/// README's first command: `mailotp serve` on the embedded default (fixed port
/// 1812, as SPEC.md says), tried with radclient and the demo user alice.
#[test]
fn the_embedded_default_serves_the_demo_users_into_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailotp"));
    cmd.arg("serve").current_dir(dir.path());
    let process = Process::spawn("mailotp (embedded)", cmd);
    process.wait_for_line("listening on 127.0.0.1:1812");
    assert!(
        !process.output().contains("testing123"),
        "the demo secret is not logged either"
    );
    assert!(
        process.output().contains("does not need Message-Authenticator"),
        "the start warns about MA"
    );
    let addr = "127.0.0.1:1812".parse().unwrap();
    let challenge = radclient(addr, "testing123", "User-Name = alice, User-Password = 1234").unwrap();
    assert_eq!(challenge.code, "Access-Challenge");
    let outbox = dir.path().join("outbox");
    let mail = poll("a .eml in ./outbox", DEADLINE, || {
        let entry = std::fs::read_dir(&outbox)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "eml"))?;
        std::fs::read_to_string(entry.path()).ok()
    });
    let otp = Mail { raw: mail }.otp();
    let attrs = format!(
        "User-Name = alice, User-Password = {otp}, State = {}",
        challenge.state()
    );
    assert_eq!(radclient(addr, "testing123", &attrs).unwrap().code, "Access-Accept");
}
