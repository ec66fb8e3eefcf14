//! FreeRADIUS 3.2 as a proxy in front of mailotp, configured with the
//! snippets shipped in `conf/freeradius/` (only address, port and secrets
//! replaced): the two-round challenge login through it with radclient.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::harness::*;
use crate::packets::assert_answered;

/// The secret between radclient (the NAS) and the proxy.
pub(crate) const NAS_SECRET: &str = "nas-secret-for-tests-41c";

/// A UDP port that was free a moment ago.
pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/freeradius").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A running `freeradius -X -f -d DIR` (debug output, foreground).
pub(crate) struct FreeRadius {
    pub(crate) process: Process,
    pub(crate) addr: SocketAddr,
    _dir: TempDir,
}

impl FreeRadius {
    /// Proxies everything to the mailotp at `home` (shared secret [`SECRET`]).
    fn start_proxy_to(home: SocketAddr) -> FreeRadius {
        let proxy = shipped("proxy.conf")
            .replace("ipaddr = 192.0.2.10", &format!("ipaddr = {}", home.ip()))
            .replace("port = 1812", &format!("port = {}", home.port()))
            .replace(
                "secret = change-me-to-a-long-random-secret",
                &format!("secret = {SECRET}"),
            );
        FreeRadius::start_with(&proxy)
    }

    /// Runs with `proxy` as proxy.conf and the shipped client and authorize snippets.
    pub(crate) fn start_with(proxy: &str) -> FreeRadius {
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        // The shipped client requires Message-Authenticator; this NAS may
        // leave it out, so the test also sees the proxy append one.
        let clients = shipped("clients.conf")
            .replace("10.1.2.0/24", "127.0.0.1")
            .replace("the-nas-secret", NAS_SECRET)
            .replace(
                "require_message_authenticator = yes",
                "require_message_authenticator = no",
            );
        std::fs::write(dir.path().join("proxy.conf"), proxy).unwrap();
        std::fs::write(dir.path().join("clients.conf"), clients).unwrap();
        std::fs::write(dir.path().join("authorize.conf"), shipped("authorize.conf")).unwrap();
        std::fs::write(dir.path().join("radiusd.conf"), radiusd_conf(dir.path(), port)).unwrap();
        // FreeRADIUS refuses a configuration that others may write.
        let status = Command::new("chmod")
            .arg("-R")
            .arg("go-w")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let mut cmd = Command::new("freeradius");
        cmd.arg("-X").arg("-f").arg("-d").arg(dir.path());
        let process = Process::spawn("freeradius", cmd);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        poll("freeradius to answer Status-Server", DEADLINE, || {
            radclient_code(addr, NAS_SECRET, "status", "Message-Authenticator = 0x00")
        });
        FreeRadius {
            process,
            addr,
            _dir: dir,
        }
    }
}

/// The smallest radiusd.conf that proxies: one listener, the shipped client,
/// realm and authorize snippets, no modules.
pub(crate) fn radiusd_conf(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
	destination = stdout
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}
proxy_requests = yes
proxy server {{
	default_fallback = no
}}
$INCLUDE proxy.conf
$INCLUDE clients.conf
modules {{
}}
server default {{
	listen {{
		type = auth
		ipaddr = 127.0.0.1
		port = {port}
	}}
	authorize {{
		$INCLUDE authorize.conf
	}}
	authenticate {{
	}}
}}
"#
    )
}

fn radclient_via(proxy: &FreeRadius, attributes: &str) -> Reply {
    radclient(proxy.addr, NAS_SECRET, attributes).expect("an answer through the proxy")
}

#[test]
fn a_challenge_login_through_a_freeradius_proxy() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    // The proxy is mailotp's only client, and must sign what it forwards.
    setup.clients = vec![client("freeradius", "127.0.0.1", SECRET, true, "access-challenge")];
    let mut server = Server::start(&setup);
    let proxy = FreeRadius::start_proxy_to(server.addr());

    // The NAS signs its first request; the proxy checks it, keeps it, adds Proxy-State.
    let first = format!(
        "User-Name = alice, User-Password = \"{}\", Message-Authenticator = 0x00",
        pin("alice")
    );
    let challenge = radclient_via(&proxy, &first);
    assert_eq!(challenge.code, "Access-Challenge", "{challenge:?}");
    assert_eq!(
        challenge.attr("Reply-Message"),
        Some("Enter the one-time password sent to a***@example.test")
    );
    let state = challenge.state();
    let otp = smtp.wait_for_mails(1)[0].otp();
    server.forbid_in_log(&otp);

    // The second request without MA: the proxy appends one after the NAS's attributes.
    let second = format!("User-Name = alice, User-Password = \"{otp}\", State = {state}");
    let accept = radclient_via(&proxy, &second);
    assert_eq!(accept.code, "Access-Accept", "{accept:?}");

    assert_answered(&server, 2);
    let log = server.log();
    assert_eq!(log.matches("client=freeradius").count(), 2, "{log}");
    assert!(
        log.contains("reason=\"challenge-sent\"") && log.contains("reason=\"otp-accepted\""),
        "{log}"
    );
    // FreeRADIUS's debug output shows mailotp's answers as they arrived, with
    // our Message-Authenticator and its own Proxy-State copied back.
    let home = format!("from 127.0.0.1:{}", server.addr().port());
    let debug = poll("FreeRADIUS to log both answers from mailotp", DEADLINE, || {
        let debug = proxy.process.output();
        (debug.matches(&home).count() >= 2).then_some(debug)
    });
    let from_home: Vec<&str> = debug
        .split("Received Access-")
        .skip(1)
        .filter(|block| block.lines().next().is_some_and(|l| l.contains(&home)))
        .collect();
    assert_eq!(from_home.len(), 2, "two answers from mailotp:\n{debug}");
    for block in from_home {
        let attributes: Vec<&str> = block
            .lines()
            .skip(1)
            .take_while(|l| l.split_once(") ").is_some_and(|(_, rest)| rest.starts_with("  ")))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(attributes.first(), Some(&"Message-Authenticator"), "{block}");
        assert!(attributes.contains(&"Proxy-State"), "{block}");
    }
    assert_eq!(
        radclient_via(&proxy, &second).code,
        "Access-Reject",
        "the code was used"
    );
}

#[test]
fn the_origin_survives_the_proxy_so_a_pin_holder_elsewhere_gets_no_state() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.clients = vec![client("freeradius", "127.0.0.1", SECRET, true, "access-challenge")];
    let server = Server::start(&setup);
    let proxy = FreeRadius::start_proxy_to(server.addr());
    let from = |station: &str, password: &str, state: &str| {
        format!(
            "User-Name = alice, User-Password = \"{password}\", Calling-Station-Id = \"{station}\", \
             Message-Authenticator = 0x00{state}"
        )
    };

    let challenge = radclient_via(&proxy, &from("198.51.100.7", pin("alice"), ""));
    assert_eq!(challenge.code, "Access-Challenge", "{challenge:?}");
    let state = challenge.state();
    // Both come through the same proxy (one RADIUS client): only the
    // forwarded Calling-Station-Id tells them apart.
    let elsewhere = radclient_via(&proxy, &from("203.0.113.66", pin("alice"), ""));
    assert_eq!(elsewhere.code, "Access-Reject", "{elsewhere:?}");
    assert_eq!(elsewhere.attr("State"), None);
    let retry = radclient_via(&proxy, &from("198.51.100.7", pin("alice"), ""));
    assert_eq!(retry.state(), state, "her retry gets her State");

    let otp = smtp.wait_for_mails(1)[0].otp();
    let with_state = format!(", State = {state}");
    let stolen = radclient_via(&proxy, &from("203.0.113.66", &otp, &with_state));
    assert_eq!(stolen.code, "Access-Reject", "her State and code from elsewhere");
    let accept = radclient_via(&proxy, &from("198.51.100.7", &otp, &with_state));
    assert_eq!(accept.code, "Access-Accept", "{}", server.log());
}
