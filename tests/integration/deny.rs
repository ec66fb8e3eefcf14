//! Issue 21: "This wasn't me". Every mail of a server with `[link]` carries
//! a deny link; its GET changes nothing, its POST stops the login, locks the
//! user for `lockout_time` and says so in the log and the metrics. With
//! curl as the browser and radclient as the NAS.

use crate::harness::*;
use crate::link::BASE_URL;
use crate::pool_support::*;

/// The path of the deny link in `mail`.
fn deny_path(mail: &Mail) -> String {
    let body = mail.body();
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{BASE_URL}/d/")))
        .unwrap_or_else(|| panic!("no deny link in mail:\n{}", mail.raw));
    let path = link.trim_start_matches(BASE_URL).to_owned();
    assert_eq!(path.len(), 3 + 32, "a 128-bit token: {link}");
    path
}

/// `[link]` and `[metrics]` on free ports, `users` lines in `[users]`.
fn setup(smtp: &SmtpSink, users: &str) -> Setup {
    let mut setup = Setup::new(smtp.port);
    setup.users = users.to_owned();
    setup.extra = format!(
        "[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"{BASE_URL}/\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
    );
    setup
}

/// A server as [`setup`] makes it, with `[link] deny_page_file` saying `wording`.
fn start_with_deny_page(smtp: &SmtpSink, users: &str, wording: &str) -> Server {
    let mut setup = setup(smtp, users);
    setup.extra = setup
        .extra
        .replacen("\n[metrics]", "deny_page_file = \"deny.html\"\n\n[metrics]", 1);
    let dir = setup.write();
    std::fs::write(dir.path().join("deny.html"), wording).unwrap();
    Server::start_in(dir, &[], 1)
}

fn pages(server: &Server) -> String {
    let line = server.wait_for_log("link page server on ");
    line.rsplit("link page server on ").next().unwrap().trim().to_owned()
}

/// A PIN request for alice from 198.51.100.23 through the client `local`.
fn pin_from_far(server: &Server) -> Reply {
    let attrs = format!(
        "User-Name = \"alice\", User-Password = \"{}\", Calling-Station-Id = \"198.51.100.23\"",
        pin("alice")
    );
    radclient(server.addr(), SECRET, &attrs).expect("an answer")
}

/// The code for `state`, from the same place as [`pin_from_far`].
fn otp_from_far(server: &Server, otp: &str, state: &str) -> String {
    let attrs = format!(
        "User-Name = \"alice\", User-Password = \"{otp}\", State = {state}, Calling-Station-Id = \"198.51.100.23\""
    );
    radclient(server.addr(), SECRET, &attrs).expect("an answer").code
}

fn page(url: &str, post: bool) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "--max-time", "5"]);
    if post {
        cmd.args(["-X", "POST", "-H", "Origin: null", "-d", ""]);
    }
    let out = cmd.arg(url).output().expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn get_changes_nothing_post_stops_the_login_and_locks_for_lockout_time() {
    let smtp = SmtpSink::start();
    let mut server = Server::start(&setup(&smtp, "lockout_time = 2\n"));
    let (pages, metrics) = (pages(&server), metrics_address(&server));
    let challenge = pin_from_far(&server);
    assert_eq!(challenge.code, "Access-Challenge");
    let mail = smtp.wait_for_mails(1).remove(0);
    let url = format!("{pages}{}", deny_path(&mail));
    // Checked when the server stops: neither the code nor the deny token is logged.
    server.forbid_in_log(&mail.otp());
    server.forbid_in_log(url.rsplit('/').next().unwrap());

    let (status, body) = page(&url, false);
    assert_eq!(status, 200, "{body}");
    for shown in [
        "alice",
        "198.51.100.23",
        "local",
        "This wasn&#39;t me",
        "<form method=\"post\">",
    ] {
        assert!(
            body.contains(shown) || body.contains(&shown.replace("&#39;", "'")),
            "{shown} in {body}"
        );
    }
    // The GET acted on nothing: the same login is still open, the user not locked.
    let again = pin_from_far(&server);
    assert_eq!(
        (again.code.as_str(), again.state()),
        ("Access-Challenge", challenge.state())
    );

    let (status, body) = page(&url, true);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Change it now"), "{body}");
    let warning = server.wait_for_log("reason=\"denied-by-user\"");
    assert!(
        warning.contains("after_login=false") && warning.contains("WARN"),
        "{warning}"
    );
    assert_eq!(metric(&metrics, "mailotp_denied_by_user_total"), "1");
    assert_eq!(page(&url, true).0, 410, "a second POST");
    assert_eq!(page(&url, false).0, 410, "used up");

    assert_eq!(
        otp_from_far(&server, &mail.otp(), &challenge.state()),
        "Access-Reject",
        "the denied login's State, even with the right code"
    );
    assert_eq!(pin_from_far(&server).code, "Access-Reject", "locked");
    assert_eq!(smtp.mails().len(), 1, "no mail while locked");
    // After lockout_time the user logs in again.
    poll("the lock to end", DEADLINE, || {
        (pin_from_far(&server).code == "Access-Challenge").then_some(())
    });
}

#[test]
fn after_the_login_the_link_still_warns_and_deny_locks_false_does_not_lock() {
    let smtp = SmtpSink::start();
    let wording = "<p>Stopped: {user} from {client_ip} via {nas} at {time}. Call 555-0100.</p>";
    let server = start_with_deny_page(&smtp, "deny_locks = false\n", wording);
    let pages = pages(&server);
    let challenge = pin_from_far(&server);
    let mail = smtp.wait_for_mails(1).remove(0);
    assert_eq!(otp_from_far(&server, &mail.otp(), &challenge.state()), "Access-Accept");
    let (status, body) = page(&format!("{pages}{}", deny_path(&mail)), true);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<p>Stopped: alice from 198.51.100.23 via local at ") && body.contains("Call 555-0100."),
        "the configured wording: {body}"
    );
    let warning = server.wait_for_log("reason=\"denied-by-user\"");
    assert!(warning.contains("after_login=true"), "{warning}");
    assert_eq!(pin_from_far(&server).code, "Access-Challenge", "not locked");
    assert_eq!(
        page(&format!("{pages}/d/{}", "0".repeat(32)), true).0,
        404,
        "an unknown token"
    );
}

#[test]
fn a_deny_on_instance_b_stops_a_login_opened_on_a() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let smtp = SmtpSink::start();
    let pool = start_pool_with(2, setup(&smtp, ""), &redis, &key);
    let challenge = pin_from_far(&pool[0]);
    assert_eq!(challenge.code, "Access-Challenge");
    let mail = smtp.wait_for_mails(1).remove(0);
    let path = deny_path(&mail);
    let (status, body) = page(&format!("{}{path}", pages(&pool[1])), false);
    assert!(
        status == 200 && body.contains("198.51.100.23"),
        "B shows A's login: {body}"
    );
    assert_eq!(page(&format!("{}{path}", pages(&pool[1])), true).0, 200, "denied on B");
    assert_eq!(
        page(&format!("{}{path}", pages(&pool[0])), true).0,
        410,
        "used, on A too"
    );
    assert_eq!(
        otp_from_far(&pool[0], &mail.otp(), &challenge.state()),
        "Access-Reject",
        "A rejects the denied login"
    );
    assert_eq!(pin_from_far(&pool[0]).code, "Access-Reject", "locked across the pool");
    pool[1].wait_for_log("reason=\"denied-by-user\"");
}

#[test]
fn an_altered_deny_record_in_redis_is_an_unknown_link() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let smtp = SmtpSink::start();
    let server = start_pool_with(1, setup(&smtp, ""), &redis, &key).pop().unwrap();
    let (pages, metrics) = (pages(&server), metrics_address(&server));
    assert_eq!(pin_from_far(&server).code, "Access-Challenge");
    let url = format!("{pages}{}", deny_path(&smtp.wait_for_mails(1)[0]));
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("mailotp:d:*").query(&mut conn).unwrap();
    assert_eq!(keys.len(), 1, "one deny record, named by a digest: {keys:?}");
    let token = url.rsplit('/').next().unwrap();
    assert!(!keys[0].contains(token), "the token is not in Redis");

    // The attacker's edit: the record now names bob (to lock him out).
    let _: () = redis::cmd("HSET")
        .arg(&keys[0])
        .arg("u")
        .arg("bob")
        .query(&mut conn)
        .unwrap();
    assert_eq!(page(&url, true).0, 404, "a record failing its MAC is unknown");
    assert!(
        metric(&metrics, "mailotp_redis_bad_records_total")
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        send_pin(&server, "bob", pin("bob")).unwrap().code,
        "Access-Challenge",
        "bob not locked"
    );

    // The honest record again: the link works.
    let _: () = redis::cmd("HSET")
        .arg(&keys[0])
        .arg("u")
        .arg("alice")
        .query(&mut conn)
        .unwrap();
    assert_eq!(page(&url, true).0, 200);
}

#[test]
fn the_deny_pages_wording_is_read_again_on_sighup() {
    let smtp = SmtpSink::start();
    let server = start_with_deny_page(&smtp, "", "<p>Old words for {user}.</p>");
    let pages = pages(&server);
    std::fs::write(server.dir.path().join("deny.html"), "<p>New words for {user}.</p>").unwrap();
    server.process.signal("HUP");
    server.wait_for_log("configuration reloaded");
    assert_eq!(pin_from_far(&server).code, "Access-Challenge");
    let mail = smtp.wait_for_mails(1).remove(0);
    let (status, body) = page(&format!("{pages}{}", deny_path(&mail)), true);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<p>New words for alice.</p>"), "{body}");
}

#[test]
fn with_redis_and_no_lockout_after_failures_a_deny_still_locks_for_lockout_time() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let smtp = SmtpSink::start();
    let setup = setup(&smtp, "lockout_after = 0\nlockout_time = 2\n");
    let server = start_pool_with(1, setup, &redis, &key).pop().unwrap();
    let challenge = pin_from_far(&server);
    assert_eq!(challenge.code, "Access-Challenge");
    let mail = smtp.wait_for_mails(1).remove(0);
    assert_eq!(page(&format!("{}{}", pages(&server), deny_path(&mail)), true).0, 200);
    assert_eq!(
        otp_from_far(&server, &mail.otp(), &challenge.state()),
        "Access-Reject",
        "the denied login's State"
    );
    assert_eq!(pin_from_far(&server).code, "Access-Reject", "locked by the deny");
    assert_eq!(smtp.mails().len(), 1, "no mail while locked");
    poll("the lock to end", DEADLINE, || {
        (pin_from_far(&server).code == "Access-Challenge").then_some(())
    });
}
