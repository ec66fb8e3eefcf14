//! Issue 9: link delivery, with radclient, the SMTP sink and curl as the
//! browser. The e-mailed link points at `base_url` (a reverse proxy's name);
//! the test sends its path to the page server's real address, as the proxy
//! would.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// What the mails link to (a reverse proxy's name).
pub(crate) const BASE_URL: &str = "https://otp.example.test";

/// An HTTP answer as curl saw it.
struct Page {
    status: u16,
    headers: String,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }
}

fn curl(args: &[&str], url: &str) -> Page {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-D"])
        .arg(&headers)
        .args(["-w", "\n%{http_code}", "--max-time", "5"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    Page {
        status: status.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(headers).unwrap_or_default(),
        body: body.to_owned(),
    }
}

/// The path of the link in `mail`, checked to start with [`BASE_URL`].
pub(crate) fn link_path(mail: &Mail) -> String {
    let body = mail.body();
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with(BASE_URL))
        .unwrap_or_else(|| panic!("no link in mail:\n{}", mail.raw));
    let path = link.trim_start_matches(BASE_URL).to_owned();
    assert!(path.starts_with("/l/") && path.len() == 3 + 32, "{link}");
    path
}

pub(crate) struct LinkSetup {
    pub(crate) server: Server,
    pub(crate) smtp: SmtpSink,
    /// `http://ADDR` of the page server.
    pub(crate) pages: String,
}

fn start(email: &str) -> LinkSetup {
    start_with(email, "")
}

/// Link delivery with `email` lines in `[email]` and `link` lines in `[link]`.
pub(crate) fn start_with(email: &str, link: &str) -> LinkSetup {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = format!("delivery = \"link\"\n{email}");
    setup.extra = format!("[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"{BASE_URL}/\"\n{link}");
    let server = Server::start(&setup);
    let line = server.wait_for_log("link page server on ");
    let pages = line.rsplit("link page server on ").next().unwrap().trim().to_owned();
    LinkSetup { server, smtp, pages }
}

impl LinkSetup {
    /// The path of the link in the newest mail, checked to start with base_url.
    pub(crate) fn link_path(&self, mails: usize) -> String {
        link_path(&self.smtp.wait_for_mails(mails).pop().unwrap())
    }

    fn get(&self, path: &str) -> Page {
        curl(&[], &format!("{}{path}", self.pages))
    }

    fn post(&self, path: &str) -> Page {
        curl(
            &["-X", "POST", "-H", "Origin: null", "-d", ""],
            &format!("{}{path}", self.pages),
        )
    }
}

#[test]
fn get_never_confirms_post_confirms_once_and_the_state_then_logs_in_once() {
    let t = start("");
    let challenge = send_pin(&t.server, "alice", pin("alice")).unwrap();
    assert_eq!(challenge.code, "Access-Challenge");
    let prompt = challenge.attr("Reply-Message").unwrap();
    assert_eq!(
        prompt,
        "Open the link in the e-mail sent to a***@example.test, then press Enter"
    );
    let state = challenge.state();
    let path = t.link_path(1);

    let page = t.get(&path);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("alice") && page.body.contains("<form method=\"post\">"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script"), "no scripts");
    for (name, value) in [
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        (
            "Content-Security-Policy",
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        assert_eq!(page.header(name).as_deref(), Some(value), "{name} in {}", page.headers);
    }

    // A GET (a mail scanner) did not confirm: Enter gets the challenge again.
    for _ in 0..5 {
        let again = send_otp(&t.server, "alice", "", &state).unwrap();
        assert_eq!(again.code, "Access-Challenge", "pressing Enter never uses up attempts");
        assert_eq!(again.state(), state);
        let left: u32 = again.attr("Session-Timeout").unwrap().parse().unwrap();
        assert!(
            (1..=600).contains(&left),
            "the rest of the challenge's validity: {left}"
        );
    }

    let confirmed = t.post(&path);
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert!(confirmed.body.contains("go back to your VPN client"));
    assert_eq!(t.post(&path).status, 410, "a second POST");

    assert_eq!(
        send_otp(&t.server, "alice", "anything", &state).unwrap().code,
        "Access-Accept"
    );
    assert_eq!(
        send_otp(&t.server, "alice", "anything", &state).unwrap().code,
        "Access-Reject"
    );
    assert_eq!(t.get(&path).status, 410, "used up");
    t.server.wait_for_log("login confirmed by link");
}

#[test]
fn forged_tokens_get_404_and_oversized_requests_413() {
    let t = start("");
    send_pin(&t.server, "alice", pin("alice")).unwrap();
    let real = t.link_path(1);
    let forged = format!("/l/{}", "0".repeat(32));
    assert_ne!(real, forged);
    assert_eq!(t.get(&forged).status, 404);
    assert_eq!(t.post(&forged).status, 404);
    assert_eq!(t.get("/l/not-a-token").status, 404);
    let not_found = t.get("/other");
    assert_eq!(not_found.status, 404);
    assert_eq!(
        not_found.header("X-Frame-Options").as_deref(),
        Some("DENY"),
        "headers on errors too"
    );
    let big = "x".repeat(17 * 1024);
    let url = format!("{}{real}", t.pages);
    let too_large = curl(&["-X", "POST", "--data-binary", &big], &url);
    assert_eq!(too_large.status, 413);
    // The oversized POST did not confirm.
    assert_eq!(t.get(&real).status, 200);
}

#[test]
fn an_expired_challenges_link_gets_410() {
    let t = start("challenge_validity = 2\n");
    let challenge = send_pin(&t.server, "alice", pin("alice")).unwrap();
    let opened = Instant::now();
    let path = t.link_path(1);
    // Expiry is a matter of the clock: wait past the two-second validity.
    std::thread::sleep((opened + Duration::from_millis(2500)).saturating_duration_since(Instant::now()));
    assert_eq!(t.get(&path).status, 410);
    assert_eq!(t.post(&path).status, 410);
    assert_eq!(
        send_otp(&t.server, "alice", "", &challenge.state()).unwrap().code,
        "Access-Reject"
    );
}

#[test]
fn link_delivery_with_a_reject_mode_client_is_refused_at_start() {
    let mut setup = Setup::new(25);
    setup.clients = vec![client("classic", "127.0.0.1", SECRET, false, "reject")];
    setup.email = "delivery = \"link\"\n".to_owned();
    setup.extra = format!("[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"{BASE_URL}\"\n");
    let out = run_mailotp("check", setup.write().path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `clients[0].challenge_mode`: link delivery needs Access-Challenge"),
        "{stderr}"
    );
}

/// A person with a real browser: open the link, press Confirm, see the
/// success page (this also proves the CSP lets our own form post).
#[test]
fn a_real_browser_confirms_by_pressing_the_button() {
    let t = start("");
    let challenge = send_pin(&t.server, "alice", pin("alice")).unwrap();
    let url = format!("{}{}", t.pages, t.link_path(1));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/browser_confirm.py");
    let out = Command::new("/usr/bin/python3").arg(script).arg(&url).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("BEFORE: Confirm your login A login as alice"),
        "{stdout}"
    );
    assert!(
        stdout.contains("AFTER: Confirmed You can go back to your VPN client"),
        "{stdout}"
    );
    assert_eq!(
        send_otp(&t.server, "alice", "", &challenge.state()).unwrap().code,
        "Access-Accept"
    );
}
