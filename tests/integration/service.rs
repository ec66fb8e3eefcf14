//! Running as a service: SIGHUP reloads without losing open challenges and
//! refuses a broken file; systemd hears READY, RELOADING and STOPPING on its
//! notify socket; SIGTERM stops cleanly.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::harness::*;

fn user_entry(name: &str, pin: &str) -> String {
    let hash = mailotp::users::hash_pin(pin.as_bytes());
    format!("[[users]]\nname = \"{name}\"\nemail = \"{name}@example.test\"\npin = \"{hash}\"\n\n")
}

#[test]
fn sighup_reloads_users_and_open_challenges_survive() {
    let smtp = SmtpSink::start();
    let mut server = Server::start(&Setup::new(smtp.port));
    server.forbid_in_log("pin-dave-3390");
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(
        send_pin(&server, "dave", "pin-dave-3390").unwrap().code,
        "Access-Reject"
    );

    let users = format!("{}{}", users_toml(), user_entry("dave", "pin-dave-3390"));
    std::fs::write(server.dir.path().join("users.toml"), users).unwrap();
    server.process.signal("HUP");
    server.wait_for_log("configuration reloaded");

    assert_eq!(
        send_pin(&server, "dave", "pin-dave-3390").unwrap().code,
        "Access-Challenge"
    );
    let accept = send_otp(&server, "alice", &otp, &challenge.state()).unwrap();
    assert_eq!(accept.code, "Access-Accept", "the challenge opened before the reload");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_configuration_serving() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    std::fs::write(
        server.dir.path().join("users.toml"),
        "[[users]]\nname = \"x\"\nemail = \"nope\"\npin = \"x\"\n",
    )
    .unwrap();
    server.process.signal("HUP");
    let line = server.wait_for_log("reload refused");
    assert!(
        line.contains("users.toml: key `users[0].email`"),
        "file and key in: {line}"
    );
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
}

/// Reads notify messages until one contains `what`.
fn wait_for_notify(socket: &UnixDatagram, what: &str) -> String {
    let mut buf = [0u8; 4096];
    poll(&format!("{what} on the notify socket"), DEADLINE, || {
        let n = socket.recv(&mut buf).ok()?;
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        message.contains(what).then_some(message)
    })
}

#[test]
fn systemd_hears_ready_reloading_and_stopping_and_sigterm_exits_cleanly() {
    let smtp = SmtpSink::start();
    let setup = Setup::new(smtp.port);
    let dir = setup.write();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let env = [("NOTIFY_SOCKET", notify_path.to_str().unwrap())];
    let mut server = Server::start_with_env(dir, &[], 1, &env);

    wait_for_notify(&notify, "READY=1");
    // Ready means answering.
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );

    server.process.signal("HUP");
    let reloading = wait_for_notify(&notify, "RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    wait_for_notify(&notify, "READY=1");

    server.process.signal("TERM");
    wait_for_notify(&notify, "STOPPING=1");
    let status = server.process.wait_exit(DEADLINE).expect("mailotp exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    server.wait_for_log("stopped");
}

/// The shipped unit, pointed at the binary under test (verify checks that
/// ExecStart's file exists).
fn unit_under_test() -> (tempfile::TempDir, std::path::PathBuf) {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/mailotp.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailotp.service");
    std::fs::write(&path, unit.replace("/usr/bin/mailotp", env!("CARGO_BIN_EXE_mailotp"))).unwrap();
    (dir, path)
}

#[test]
fn the_systemd_unit_verifies_and_its_sandbox_rates_ok() {
    let (_dir, unit) = unit_under_test();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("mailotp.service")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );

    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let overall = stdout
        .lines()
        .find_map(|l| l.split("Overall exposure level for mailotp.service: ").nth(1))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}"));
    let score: f32 = overall.split_whitespace().next().unwrap().parse().unwrap();
    // systemd rates up to 2.0 "OK"; README states the current figure.
    assert!(score <= 2.0, "exposure {overall}");
}

#[test]
fn check_summarises_and_connect_tries_the_smtp_server() {
    let smtp = SmtpSink::start_with(SinkOptions {
        auth: Some("relay-user:relay-pass-5512".to_owned()),
        ..SinkOptions::default()
    });
    let mut setup = Setup::new(smtp.port);
    setup
        .provider
        .push_str("smtp_user = \"relay-user\"\nsmtp_password = \"relay-pass-5512\"\n");
    let dir = setup.write();
    let out = run_mailotp("check", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("is valid") && stdout.contains("users: 3"), "{stdout}");
    assert!(!stdout.contains("relay-pass-5512"));

    let (ok, stdout) = check_connect(dir.path());
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains(&format!("SMTP server 127.0.0.1:{}: ok", smtp.port)),
        "{stdout}"
    );

    let dead = free_tcp_port();
    let down = Setup::new(dead).write();
    let (ok, stdout) = check_connect(down.path());
    assert!(!ok, "a failed probe fails the check: {stdout}");
    assert!(
        stdout.contains(&format!("SMTP server 127.0.0.1:{dead}: FAILED")),
        "{stdout}"
    );
}

/// GET `/metrics` over a plain TCP connection; the body.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[test]
fn metrics_count_known_traffic() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.extra = "[metrics]\nlisten = \"127.0.0.1:0\"\n".to_owned();
    let server = Server::start(&setup);
    let line = server.wait_for_log("metrics on http://");
    let addr = line
        .split("metrics on http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/metrics")
        .trim()
        .to_owned();

    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    assert_eq!(
        send_otp(&server, "alice", wrong, &challenge.state()).unwrap().code,
        "Access-Reject"
    );
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Accept"
    );
    let forged = "User-Name = alice, User-Password = x, Message-Authenticator = 0x00";
    assert!(radclient(server.addr(), "not-the-secret", forged).is_none());

    let expected = [
        "mailotp_answers_total{code=\"Access-Challenge\"} 1",
        "mailotp_answers_total{code=\"Access-Accept\"} 1",
        "mailotp_answers_total{code=\"Access-Reject\"} 1",
        "mailotp_drops_total{reason=\"bad-message-authenticator\"} 1",
        "mailotp_drops_total{reason=\"unknown-client\"} 0",
        "mailotp_mails_sent_total 1",
        "mailotp_mails_queued 0",
        "mailotp_open_challenges 0",
        "mailotp_pin_hashes_total 1",
    ];
    // The mail's "sent" is counted when the SMTP server's 250 arrives.
    let body = poll("the counters to settle", DEADLINE, || {
        let body = scrape(&addr);
        expected
            .iter()
            .all(|line| body.lines().any(|l| l == *line))
            .then_some(body)
    });
    assert!(body.contains("# TYPE mailotp_answers counter"), "{body}");
}

#[test]
fn login_on_a_terminal_asks_pin_and_code_without_echo() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.clients = vec![client("local", "127.0.0.1", SECRET, true, "access-challenge")];
    let mut server = Server::start(&setup);
    let relay = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pty_relay.py");
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg(relay)
        .arg(env!("CARGO_BIN_EXE_mailotp"))
        .args(["login", "alice", "--server"]);
    cmd.arg(server.addr().to_string()).args(["--secret", SECRET]);
    let mut terminal = Process::spawn_with_stdin("login on a pty", cmd);

    terminal.wait_for_line("PIN for alice:");
    terminal.type_line(pin("alice"));
    terminal.wait_for_line("Enter the one-time password sent to a***@example.test");
    terminal.wait_for_line("Code (or Enter after confirming a link):");
    let otp = smtp.wait_for_mails(1)[0].otp();
    server.forbid_in_log(&otp);
    terminal.type_line(&otp);
    terminal.wait_for_line("Access-Accept");
    let status = terminal.wait_exit(DEADLINE).expect("login exits");
    assert!(status.success());
    let shown = terminal.output();
    assert!(
        !shown.contains(pin("alice")) && !shown.contains(&otp),
        "nothing typed is echoed:\n{shown}"
    );
}

#[test]
fn json_logs_give_one_object_per_line_with_the_request_fields() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.extra = "[log]\nformat = \"json\"\n".to_owned();
    let mut server = Server::start(&setup);
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    server.forbid_in_log(&otp);
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Accept"
    );
    server.wait_for_log("otp-accepted");
    let mut answered = Vec::new();
    for line in server.log().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["timestamp"].is_string() && value["level"].is_string(), "{line}");
        if value["fields"]["message"] == "request answered" {
            answered.push(value["fields"].clone());
        }
    }
    assert_eq!(answered.len(), 2);
    assert_eq!(answered[0]["user"], "alice");
    assert_eq!(answered[0]["answer"], "Access-Challenge");
    assert_eq!(answered[1]["reason"], "otp-accepted");
    assert_eq!(answered[1]["client"], "local");
}

#[test]
fn sigterm_gives_queued_mails_the_grace_to_go_out() {
    // A relay that takes 3 s per message: mailotp sends eight at a time, so at
    // SIGTERM eight of these twelve mails are in flight and four still queued.
    let smtp = SmtpSink::start_with(SinkOptions {
        delay: Some(3.0),
        ..SinkOptions::default()
    });
    let mut setup = Setup::new(smtp.port);
    let users: Vec<(String, String)> = (0..12)
        .map(|i| (format!("user{i}"), format!("pin-user{i}-7713")))
        .collect();
    setup.users_file = users.iter().map(|(name, pin)| user_entry(name, pin)).collect();
    let dir = setup.write();
    let config = dir.path().join("mailotp.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("shutdown_grace = 2", "shutdown_grace = 12")).unwrap();
    let mut server = Server::start_in(dir, &[], 1);
    for (name, pin) in &users {
        server.forbid_in_log(pin);
        assert_eq!(send_pin(&server, name, pin).unwrap().code, "Access-Challenge");
    }
    server.process.signal("TERM");
    let status = server
        .process
        .wait_exit(Duration::from_secs(20))
        .expect("mailotp exits within its grace");
    assert!(status.success(), "{status:?}");
    assert_eq!(smtp.wait_for_mails(12).len(), 12, "no queued mail was dropped");
    assert_eq!(server.process.count_lines("mails undelivered"), 0);
}
