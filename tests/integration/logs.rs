//! Issue 17: the log cannot be forged and calls out clear text. A User-Name
//! holding a newline, a fake log line and an ESC byte gives one escaped line
//! in the text format and one valid JSON object in the JSON format; `check`
//! and `serve` warn about passwords that would cross the network in clear.

use crate::harness::*;
use crate::packets::Request;

/// A User-Name that would write a line of its own if logged raw.
const FORGED: &str = "mallory\n2026-01-01T00:00:00.000000Z  INFO mailotp::server: request answered \
                      client=local user=alice answer=\"Access-Accept\" reason=\"otp-accepted\"\u{1b}[2J";

/// Sends an Access-Request for [`FORGED`] and waits for its log line.
fn send_forged(server: &Server) -> String {
    let socket = udp_client(server.addr());
    let request = Request::login(7, FORGED, "wrong-pin", SECRET).ma();
    let reply = exchange(&socket, &request.signed(SECRET)).expect("an answer");
    assert_eq!(reply[0], 3, "Access-Reject");
    server.wait_for_log("mallory")
}

#[test]
fn a_user_name_with_a_newline_and_esc_gives_one_escaped_text_line() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    let line = send_forged(&server);
    let log = server.log();
    assert!(!log.contains('\u{1b}'), "no raw ESC in the log:\n{log}");
    assert_eq!(server.process.count_lines("mallory"), 1, "{log}");
    assert!(
        line.contains(r#"user="mallory\n2026-01-01T00:00:00.000000Z  INFO mailotp::server: request answered"#)
            && line.contains(r#"answer=\"Access-Accept\" reason=\"otp-accepted\"\x1b[2J""#),
        "{line}"
    );
    assert!(line.contains(r#"answer="Access-Reject""#), "{line}");
    // Every line is the server's own: it starts with its timestamp.
    for l in log.lines() {
        assert!(!l.starts_with("2026-01-01T00:00:00.000000Z"), "forged line: {l}");
    }
    assert!(!log.lines().any(|l| l.contains("answer=\"Access-Accept\"")), "{log}");
}

#[test]
fn the_same_in_the_json_format_is_one_valid_object() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.extra = "[log]\nformat = \"json\"\n".to_owned();
    let server = Server::start(&setup);
    send_forged(&server);
    let log = server.log();
    assert!(!log.contains('\u{1b}'), "no raw ESC in the log:\n{log}");
    let mut answered = Vec::new();
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if value["fields"]["message"] == "request answered" {
            answered.push(value["fields"].clone());
        }
    }
    assert_eq!(answered.len(), 1, "{log}");
    assert_eq!(answered[0]["user"], FORGED);
    assert_eq!(answered[0]["answer"], "Access-Reject");
}

/// `[email.provider]` lines for SMTP AUTH to a remote relay without TLS.
const REMOTE_CLEAR_SMTP: &str = "kind = \"smtp\"\nsmtp_server = \"192.0.2.25\"\nsmtp_tls = \"none\"\n\
                                 smtp_user = \"relay\"\nsmtp_password = \"relay-pass-3381\"\n";

#[test]
fn check_and_serve_call_out_clear_text_credentials() {
    let mut setup = Setup::new(1);
    setup.provider = REMOTE_CLEAR_SMTP.to_owned();
    setup.users = "backend = \"ldap\"\nldap_url = \"ldap://192.0.2.89\"\nbind_dn = \"cn=svc\"\n\
                   bind_password = \"bind-pass-1177\"\nbase_dn = \"dc=example\"\nuser_filter = \"(uid={user})\"\n"
        .to_owned();
    // [users] file is written by Setup; the LDAP backend refuses it.
    let dir = setup.write();
    let text = std::fs::read_to_string(dir.path().join("mailotp.toml"))
        .unwrap()
        .replace("file = \"users.toml\"\n", "");
    std::fs::write(dir.path().join("mailotp.toml"), text).unwrap();
    let out = run_mailotp("check", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("warning: the LDAP bind password") && stdout.contains("[users] ldap_starttls"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: SMTP AUTH sends smtp_password to 192.0.2.25:25 in clear text")
            && stdout.contains("[email.provider] smtp_tls"),
        "{stdout}"
    );
    assert!(!stdout.contains("relay-pass-3381") && !stdout.contains("bind-pass-1177"));

    // The honest set-up (the tests' relay on 127.0.0.1) is not called out.
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup
        .provider
        .push_str("smtp_user = \"relay\"\nsmtp_password = \"relay-pass-3381\"\n");
    let quiet = run_mailotp("check", setup.write().path());
    assert!(!String::from_utf8_lossy(&quiet.stdout).contains("warning:"));

    let mut setup = Setup::new(smtp.port);
    setup.provider = REMOTE_CLEAR_SMTP.to_owned();
    let mut server = Server::start(&setup);
    server.forbid_in_log("relay-pass-3381");
    let line = server.wait_for_log("SMTP AUTH sends smtp_password");
    assert!(line.contains("WARN"), "{line}");
}
