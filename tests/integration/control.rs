//! Issue 20: operator commands on the control socket (`mailotp ctl`) —
//! status with what became of the mail, unlock, revoke, stats, reload, the
//! peer check, and a pool of two instances acting on one Redis.

use std::os::unix::fs::PermissionsExt;

use crate::control_support::*;
use crate::harness::*;
use crate::pool_support::{metric, metrics_address, start_pool_with, PoolKey, RedisServer};

fn with_control(smtp_port: u16) -> Setup {
    let mut setup = Setup::new(smtp_port);
    setup.extra = CONTROL.to_owned();
    setup
}

#[test]
fn status_shows_the_challenge_under_its_state_then_the_relays_reply() {
    let smtp = SmtpSink::start();
    let server = Server::start(&with_control(smtp.port));
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(challenge.code, "Access-Challenge");

    let open = challenges(&server, "alice");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["transaction"], transaction(&challenge.state()));
    assert_eq!(open[0]["attempts_left"], 3);

    smtp.wait_for_mails(1);
    let delivery = wait_for_delivery(&server, "alice", "relayed");
    assert!(delivery["reply"].as_str().unwrap().starts_with("250"), "{delivery}");

    let text = ctl(&server, &["status", "alice"]);
    assert!(text.ok, "{text:?}");
    assert!(
        text.stdout.contains(&transaction(&challenge.state())),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("handed to the relay"), "{}", text.stdout);
    let expires = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("expires"))
        .unwrap();
    assert!(
        expires.contains("Z (in ") && expires.ends_with(" min)"),
        "RFC 3339 and in words: {expires}"
    );
    assert!(text.stdout.contains("not locked"), "{}", text.stdout);

    let stats = ctl_json(&server, &["stats"]);
    assert_eq!(stats["open_challenges"], 1, "{stats}");
    assert_eq!(stats["answers"]["challenge"], 1, "{stats}");
    server.wait_for_log("control command");
}

#[test]
fn status_while_smtp_is_down_shows_retrying_with_the_error() {
    let port = free_tcp_port();
    let server = Server::start(&with_control(port));
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    let delivery = wait_for_delivery(&server, "alice", "retrying");
    assert!(!delivery["error"].as_str().unwrap().is_empty(), "{delivery}");
    let text = ctl(&server, &["status", "alice"]).stdout;
    assert!(text.contains("retrying after"), "{text}");

    let stats = ctl_json(&server, &["stats"]);
    assert_eq!(stats["mails_queued"], 1, "{stats}");
    assert!(stats["oldest_queued_s"].is_u64(), "{stats}");
}

#[test]
fn unlock_after_a_lockout_lets_the_next_right_pin_get_a_challenge() {
    let smtp = SmtpSink::start();
    let mut setup = with_control(smtp.port);
    setup.users = "lockout_after = 2\nlockout_time = 600\n".to_owned();
    setup.extra.push_str("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let server = Server::start(&setup);
    for _ in 0..2 {
        assert_eq!(send_pin(&server, "alice", "wrong").unwrap().code, "Access-Reject");
    }
    assert_eq!(send_pin(&server, "alice", pin("alice")).unwrap().code, "Access-Reject");
    let status = ctl_json(&server, &["status", "alice"]);
    assert!(status["locked_until_unix"].is_i64(), "{status}");
    assert_eq!(status["last"]["answer"], "Access-Reject", "{status}");
    assert_eq!(status["last"]["reason"], "locked", "{status}");
    assert_eq!(status["last"]["client"], "local", "{status}");
    let text = ctl(&server, &["status", "alice"]).stdout;
    assert!(text.contains("Access-Reject (locked) via local"), "{text}");

    let out = ctl(&server, &["unlock", "alice"]);
    assert!(out.ok && out.stdout.contains("was locked"), "{out:?}");
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    assert!(ctl_json(&server, &["status", "alice"])["locked_until_unix"].is_null());

    let line = server.wait_for_log("command=\"unlock\"");
    assert!(line.contains("uid=0") && line.contains("pid="), "{line}");
    let metrics = metrics_address(&server);
    assert_eq!(
        metric(
            &metrics,
            "mailotp_control_commands_total{command=\"unlock\",result=\"ok\"}"
        ),
        "1"
    );
}

#[test]
fn revoke_rejects_the_state_and_the_next_right_pin_mails_at_once() {
    let smtp = SmtpSink::start();
    let server = Server::start(&with_control(smtp.port));
    let first = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();

    let out = ctl(&server, &["revoke", "alice"]);
    assert!(out.ok && out.stdout.contains("1 open challenge(s) closed"), "{out:?}");
    assert!(challenges(&server, "alice").is_empty());
    assert_eq!(
        send_otp(&server, "alice", &otp, &first.state()).unwrap().code,
        "Access-Reject"
    );

    // The blocking timeout ended with the challenge: a new one, a new mail.
    let second = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(second.code, "Access-Challenge");
    assert_ne!(second.state(), first.state());
    let otp = smtp.wait_for_mails(2)[1].otp();
    assert_eq!(
        send_otp(&server, "alice", &otp, &second.state()).unwrap().code,
        "Access-Accept"
    );
}

#[test]
fn reload_good_then_broken_keeps_serving_and_says_why() {
    let smtp = SmtpSink::start();
    let setup = with_control(smtp.port);
    let server = Server::start(&setup);
    let out = ctl(&server, &["reload"]);
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout, "reloaded\n");

    let config = server.dir.path().join("mailotp.toml");
    let broken = setup
        .config_text()
        .replace("[email]\n", "[email]\nmax_attempts = \"many\"\n");
    std::fs::write(&config, broken).unwrap();
    let out = ctl(&server, &["reload"]);
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr.contains("mailotp.toml") && out.stderr.contains("max_attempts"),
        "file and key named: {out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
    let json = ctl(&server, &["--json", "reload"]);
    let answer: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
}

#[test]
fn a_peer_not_admitted_is_refused_by_the_kernel_and_by_the_server() {
    let smtp = SmtpSink::start();
    let server = Server::start(&with_control(smtp.port));
    let sock = socket(&server);
    // The directory as /run/mailotp would be: others may pass through.
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let out = ctl_as_nobody(&server, &["stats"]);
    assert!(!out.ok && out.stderr.contains("Permission denied"), "{out:?}");

    // A careless admin opens the socket to everyone: the server still refuses.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ctl_as_nobody(&server, &["unlock", "alice"]);
    assert!(!out.ok, "{out:?}");
    assert!(out.stderr.contains("refused: uid 65534"), "{out:?}");
    let line = server.wait_for_log("control connection refused");
    assert!(line.contains("uid=65534") && line.contains("pid="), "{line}");
    assert!(ctl(&server, &["stats"]).ok, "root still gets in");
}

#[test]
fn in_a_pool_unlock_on_b_frees_a_user_locked_via_a_and_b_shows_as_challenges() {
    let smtp = SmtpSink::start();
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let mut setup = with_control(smtp.port);
    setup.users = "lockout_after = 2\nlockout_time = 600\n".to_owned();
    let pool = start_pool_with(2, setup, &redis, &key);
    let (a, b) = (&pool[0], &pool[1]);

    for _ in 0..2 {
        assert_eq!(send_pin(a, "alice", "wrong").unwrap().code, "Access-Reject");
    }
    assert!(ctl_json(b, &["status", "alice"])["locked_until_unix"].is_i64());
    assert!(ctl(b, &["unlock", "alice"]).ok);
    let challenge = send_pin(a, "alice", pin("alice")).unwrap();
    assert_eq!(challenge.code, "Access-Challenge");

    let last = poll("A's answer to show on B", DEADLINE, || {
        let last = ctl_json(b, &["status", "alice"])["last"].clone();
        (last["reason"] == "challenge-sent").then_some(last)
    });
    assert_eq!(last["answer"], "Access-Challenge", "{last}");
    let open = challenges(b, "alice");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["transaction"], transaction(&challenge.state()));
    smtp.wait_for_mails(1);
    let delivery = wait_for_delivery(b, "alice", "relayed");
    assert!(delivery["reply"].as_str().unwrap().starts_with("250"), "{delivery}");

    assert!(ctl(b, &["revoke", "alice"]).ok);
    let otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(
        send_otp(a, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Reject"
    );
}

#[test]
fn a_configured_socket_that_cannot_be_made_stops_the_start() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.extra = "[control]\nsocket = \"no-such-dir/ctl.sock\"\n".to_owned();
    let dir = setup.write();
    let out = run_mailotp("serve", dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("control socket") && stderr.contains("no-such-dir"),
        "{stderr}"
    );

    // A live server holds the path: a second one with the same path refuses.
    let first = Server::start(&with_control(smtp.port));
    let mut second = Setup::new(smtp.port);
    second.extra = format!("[control]\nsocket = {:?}\n", socket(&first));
    let dir = second.write();
    let out = run_mailotp("serve", dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("already listens"), "{stderr}");
    assert!(ctl(&first, &["stats"]).ok, "the first keeps its socket");
}

#[test]
fn oversized_garbage_and_idle_connections_are_dropped_and_commands_still_work() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let smtp = SmtpSink::start();
    let server = Server::start(&with_control(smtp.port));
    let answer = |bytes: &[u8]| {
        let mut stream = UnixStream::connect(socket(&server)).unwrap();
        let _ = stream.write_all(bytes);
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    };
    let big = answer(&vec![b'x'; 5000]);
    assert!(big.contains("\"ok\":false") && big.contains("4096 bytes"), "{big}");
    let garbage = answer(b"{\"command\":\"shutdown\"}\n");
    assert!(
        garbage.contains("\"ok\":false") && garbage.contains("not a command"),
        "{garbage}"
    );

    // Clients that connect and say nothing hold every slot until they time out.
    let idle: Vec<UnixStream> = (0..10).map(|_| UnixStream::connect(socket(&server)).unwrap()).collect();
    let out = ctl(&server, &["stats"]);
    assert!(out.ok, "served once the idle ones timed out: {out:?}");
    drop(idle);
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
}

#[test]
fn forged_operator_records_in_redis_are_ignored() {
    let smtp = SmtpSink::start();
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let pool = start_pool_with(1, with_control(smtp.port), &redis, &key);
    let forged = r#"{"answer":"Access-Accept","reason":"otp-accepted","client":"local","at_unix":1}"#;
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "HSET",
            "mailotp:lr:alice",
            "j",
            forged,
            "m",
        ])
        .arg("0123456789abcdef")
        .output()
        .unwrap();
    assert!(out.status.success());
    let status = ctl_json(&pool[0], &["status", "alice"]);
    assert!(status["last"].is_null(), "a forged last result is not shown: {status}");
    pool[0].wait_for_log("ignoring a redis record that fails its pool-key check");

    // The honest path still works: a real answer is shown.
    assert_eq!(send_pin(&pool[0], "alice", "wrong").unwrap().code, "Access-Reject");
    poll("the real last result", DEADLINE, || {
        (ctl_json(&pool[0], &["status", "alice"])["last"]["reason"] == "wrong-pin").then_some(())
    });
}
