//! RADIUS over TLS (RFC 6614) against the real binary: the login through
//! FreeRADIUS 3.2 and through radsecproxy as RadSec proxies in front, and,
//! with a small rustls client of the test's own, what a connection may and
//! may not do — certificates refused before any RADIUS, garbage closing
//! only its own connection, a slow PIN check not holding up Status-Server.

use mailotp::wire::{attr, Packet};

use crate::harness::*;
use crate::packets::*;
use crate::pool_support::{metric, metrics_address};
use crate::radsec_support::*;

/// `mailotp_{name}_total{reason="…"}` once it reaches `at_least`.
fn wait_metric(server: &Server, name: &str, reason: &str, at_least: u64) {
    let metrics = metrics_address(server);
    let series = format!("mailotp_{name}_total{{reason=\"{reason}\"}}");
    poll(&format!("{series} >= {at_least}"), DEADLINE, || {
        let value: u64 = metric(&metrics, &series).parse().unwrap();
        (value >= at_least).then_some(value)
    });
}

fn status(id: u8) -> Request {
    Request::new(STATUS_SERVER, id).ma()
}

/// Status-Server on `client` is answered with Access-Accept, signed with the RadSec secret.
fn assert_alive(client: &mut TlsClient, id: u8) {
    let req = status(id);
    client.send(&req.signed(RADSEC_SECRET)).unwrap();
    let answer = client.recv().expect("an answer to Status-Server");
    assert_eq!(assert_signed(&answer, &req, RADSEC_SECRET).code().to_u8(), 2);
}

fn code(answer: &[u8]) -> u8 {
    answer[0]
}

#[test]
fn a_two_round_login_over_radsec_is_signed_with_the_fixed_secret() {
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let server = Server::start(&radsec_setup(&pki, smtp.port));
    let addr = radsec_addr(&server);
    let mut client = TlsClient::connect(addr, &pki.ca.ca, &pki.client).expect("the handshake");

    // No Message-Authenticator: not required over TLS (RFC 6614 §2.3).
    let pin = Request::login(1, "alice", pin("alice"), RADSEC_SECRET).attr(attr::PROXY_STATE, b"p1");
    client.send(&pin.bytes()).unwrap();
    let answer = client.recv().expect("an answer to the PIN");
    let challenge = assert_signed(&answer, &pin, RADSEC_SECRET);
    assert_eq!(challenge.code().to_u8(), 11, "Access-Challenge");
    assert_eq!(challenge.first(attr::PROXY_STATE), Some(&b"p1"[..]));
    let state = challenge.first(attr::STATE).expect("a State").to_vec();
    let otp = smtp.wait_for_mails(1)[0].otp();

    let answer_req = Request::login(2, "alice", &otp, RADSEC_SECRET)
        .attr(attr::STATE, &state)
        .ma();
    client.send(&answer_req.signed(RADSEC_SECRET)).unwrap();
    let accept = client.recv().expect("an answer to the code");
    assert_eq!(assert_signed(&accept, &answer_req, RADSEC_SECRET).code().to_u8(), 2);
    assert_alive(&mut client, 3);

    assert_answered(&server, 2);
    let log = server.log();
    assert!(
        log.contains("radsec connection open") && log.contains("client=nas"),
        "{log}"
    );
}

#[test]
fn certificates_from_another_ca_expired_without_client_auth_or_for_another_name_are_refused() {
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let mut setup = radsec_setup(&pki, smtp.port);
    // A RadSec client that may only connect from elsewhere.
    setup
        .clients
        .push(radsec_client("far", "192.0.2.0/24", "far.radsec.test"));
    let server = Server::start(&setup);
    let addr = radsec_addr(&server);

    let other_ca = TestCa::new("another CA");
    let stranger = other_ca.issue("stranger", Leaf::client(CLIENT_NAME));
    let expired = pki.ca.issue(
        "expired",
        Leaf {
            expired: true,
            ..Leaf::client(CLIENT_NAME)
        },
    );
    let server_only = pki.ca.issue(
        "server-only",
        Leaf {
            eku: Some("serverAuth"),
            ..Leaf::client(CLIENT_NAME)
        },
    );
    let no_eku = pki.ca.issue(
        "no-eku",
        Leaf {
            eku: None,
            ..Leaf::client(CLIENT_NAME)
        },
    );
    for (what, identity) in [
        ("another CA", &stranger),
        ("expired", &expired),
        ("serverAuth only", &server_only),
        ("no extended key usage", &no_eku),
    ] {
        assert!(refused(addr, &pki.ca.ca, identity), "{what}: refused");
    }
    wait_metric(&server, "radsec_refused_connections", "bad-certificate", 4);

    let other_name = pki.ca.issue("other", Leaf::client("other.radsec.test"));
    let wrong_address = pki.ca.issue("far", Leaf::client("far.radsec.test"));
    // The CN counts only without a DNS SAN: a SAN of another name hides it.
    let cn_behind_san = pki.ca.issue(
        "cn",
        Leaf {
            cn: CLIENT_NAME,
            dns: Some("other.radsec.test"),
            ..Leaf::client(CLIENT_NAME)
        },
    );
    for identity in [&other_name, &wrong_address, &cn_behind_san] {
        assert!(refused(addr, &pki.ca.ca, identity), "{identity:?}: refused");
    }
    wait_metric(&server, "radsec_refused_connections", "unknown-client", 3);
    let log = server.log();
    assert!(
        log.contains("radsec connection refused") && log.contains("reason=\"unknown-client\""),
        "{log}"
    );
    assert_eq!(server.process.count_lines("request answered"), 0, "no RADIUS was read");

    // The honest client still gets in; a CN without any DNS SAN counts too.
    let mut good = TlsClient::connect(addr, &pki.ca.ca, &pki.client).unwrap();
    assert_alive(&mut good, 1);
    let cn_only = pki.ca.issue(
        "cn-only",
        Leaf {
            dns: None,
            ..Leaf::client(CLIENT_NAME)
        },
    );
    let mut by_cn = TlsClient::connect(addr, &pki.ca.ca, &cn_only).unwrap();
    assert_alive(&mut by_cn, 2);
}

#[test]
fn garbage_closes_its_own_connection_while_another_keeps_being_served() {
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let server = start_with_drop_log(&radsec_setup(&pki, smtp.port));
    let addr = radsec_addr(&server);
    let mut good = TlsClient::connect(addr, &pki.ca.ca, &pki.client).unwrap();
    let mut bad = TlsClient::connect(addr, &pki.ca.ca, &pki.client).unwrap();
    assert_alive(&mut good, 1);
    assert_alive(&mut bad, 1);

    // Well framed but failing its checks: dropped and counted, the connection stays.
    let mut wrong_ma = status(2).signed(RADSEC_SECRET);
    let end = wrong_ma.len() - 1;
    wrong_ma[end] ^= 0xff;
    bad.send(&wrong_ma).unwrap();
    wait_dropped(&server, "bad-message-authenticator", 1);
    assert_alive(&mut bad, 3);

    // A Length of 5 cannot be a RADIUS packet: the stream is closed at once.
    bad.send(&[1, 4, 0, 5, 0xde, 0xad, 0xbe, 0xef]).unwrap();
    assert_eq!(bad.recv(), None, "the connection is closed");
    server.wait_for_log("framing error");
    wait_dropped(&server, "malformed", 1);

    assert_alive(&mut good, 2);
    let pin = Request::login(4, "bob", pin("bob"), RADSEC_SECRET);
    good.send(&pin.bytes()).unwrap();
    assert_eq!(code(&good.recv().unwrap()), 11);
    smtp.wait_for_mails(1);
}

#[test]
fn a_slow_pin_check_does_not_hold_up_status_server_on_the_same_connection() {
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let mut setup = radsec_setup(&pki, smtp.port);
    setup.users_file = crate::hardening::slow_users_file();
    let server = Server::start(&setup);
    let mut client = TlsClient::connect(radsec_addr(&server), &pki.ca.ca, &pki.client).unwrap();

    let pin = Request::login(7, "alice", pin("alice"), RADSEC_SECRET);
    let watchdog = status(8);
    client.send(&pin.bytes()).unwrap();
    client.send(&watchdog.signed(RADSEC_SECRET)).unwrap();
    // A retransmission on the same connection while the PIN is checked: no second answer.
    client.send(&pin.bytes()).unwrap();
    let first = client.recv().expect("the first answer");
    assert_eq!(
        Packet::decode(&first).unwrap().identifier(),
        8,
        "Status-Server answered first"
    );
    let second = client.recv().expect("the PIN's answer");
    assert_eq!(assert_signed(&second, &pin, RADSEC_SECRET).code().to_u8(), 11);
    assert_eq!(smtp.wait_for_mails(1).len(), 1);
    // The cache answers a later copy with the same bytes.
    client.send(&pin.bytes()).unwrap();
    assert_eq!(client.recv().unwrap(), second);
    assert_answered(&server, 1);
}

#[test]
fn check_refuses_a_radsec_client_without_tls_name_and_a_key_of_another_certificate() {
    let pki = Pki::new();
    let mut setup = radsec_setup(&pki, 25);
    let dir = setup.write();
    let ok = run_mailotp("check", dir.path());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    setup.clients = vec!["name = \"nas\"\naddress = \"127.0.0.1\"\nradsec = true\n".to_owned()];
    let out = run_mailotp("check", setup.write().path());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success() && err.contains("clients[0].tls_name"), "{err}");

    let mut setup = radsec_setup(&pki, 25);
    setup.extra = pki.section().replace(
        &format!("key_file = {:?}", pki.server.key),
        &format!("key_file = {:?}", pki.client.key),
    );
    let out = run_mailotp("check", setup.write().path());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && err.contains("does not belong to the certificate"),
        "{err}"
    );

    setup.extra = pki.section().replace("ca.pem", "missing.pem");
    let out = run_mailotp("check", setup.write().path());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success() && err.contains("missing.pem"), "{err}");
}

/// The two-round login through `proxy`, and its mail.
fn login_through(proxy: &Proxy, server: &mut Server, smtp: &SmtpSink) {
    let first = format!(
        "User-Name = alice, User-Password = \"{}\", Message-Authenticator = 0x00",
        pin("alice")
    );
    let challenge = proxy.radclient(&first);
    assert_eq!(
        challenge.code,
        "Access-Challenge",
        "{challenge:?}\n{}",
        proxy.process.output()
    );
    let state = challenge.state();
    let mail = smtp.wait_for_mails(1);
    assert_eq!(mail[0].header("To"), "alice@example.test");
    let otp = mail[0].otp();
    server.forbid_in_log(&otp);
    let accept = proxy.radclient(&format!(
        "User-Name = alice, User-Password = \"{otp}\", State = {state}, Message-Authenticator = 0x00"
    ));
    assert_eq!(accept.code, "Access-Accept", "{accept:?}");
    assert_answered(server, 2);
}

#[test]
fn a_challenge_login_through_freeradius_as_a_radsec_proxy() {
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let mut setup = radsec_setup(&pki, smtp.port);
    setup.clients = vec![radsec_client("freeradius", "127.0.0.1", CLIENT_NAME)];
    let mut server = Server::start(&setup);
    let proxy = Proxy::freeradius(radsec_addr(&server), &pki.ca.ca, &pki.client);
    login_through(&proxy, &mut server, &smtp);
    let log = server.log();
    assert!(log.contains("tls=\"TLSv1_2\"") || log.contains("tls=TLSv1_2"), "{log}");
    assert_eq!(log.matches("client=freeradius").count(), 3, "open + 2 answers: {log}");
}

#[test]
fn a_challenge_login_through_radsecproxy() {
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let mut setup = radsec_setup(&pki, smtp.port);
    setup.clients = vec![radsec_client("radsecproxy", "127.0.0.1", CLIENT_NAME)];
    let mut server = Server::start(&setup);
    let proxy = Proxy::radsecproxy(radsec_addr(&server), &pki.ca.ca, &pki.client);
    login_through(&proxy, &mut server, &smtp);
    assert!(server.log().contains("client=radsecproxy"));
}

#[test]
fn sighup_reads_certificates_again_and_open_connections_keep_theirs() {
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let server = Server::start(&radsec_setup(&pki, smtp.port));
    let addr = radsec_addr(&server);
    let mut open = TlsClient::connect(addr, &pki.ca.ca, &pki.client).unwrap();
    assert_alive(&mut open, 1);

    // A new CA takes over: its server certificate and CA go where the old ones were.
    let next = Pki::new();
    for (from, to) in [
        (&next.server.cert, &pki.server.cert),
        (&next.server.key, &pki.server.key),
        (&next.ca.ca, &pki.ca.ca),
    ] {
        std::fs::copy(from, to).unwrap();
    }
    server.process.signal("HUP");
    server.wait_for_log("configuration reloaded");

    assert_alive(&mut open, 2);
    let mut renewed = TlsClient::connect(addr, &next.ca.ca, &next.client).expect("the new CA's client");
    assert_alive(&mut renewed, 3);
    assert!(refused(addr, &next.ca.ca, &pki.client), "the old CA's client");
    wait_metric(&server, "radsec_refused_connections", "bad-certificate", 1);
}

#[test]
fn connections_beyond_max_connections_and_silent_handshakes_are_closed_and_udp_goes_on() {
    use std::io::Read;
    let smtp = SmtpSink::start();
    let pki = Pki::new();
    let mut setup = radsec_setup(&pki, smtp.port);
    setup
        .clients
        .push(client("local", "127.0.0.1", SECRET, false, "access-challenge"));
    setup.extra = pki
        .section()
        .replace("[radsec]\n", "[radsec]\nmax_connections = 2\nhandshake_timeout = 2\n");
    let server = Server::start(&setup);
    let addr = radsec_addr(&server);

    // Two connections that never start TLS hold both places.
    let mut silent: Vec<std::net::TcpStream> = (0..2).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    poll("a third connection to be refused", DEADLINE, || {
        refused(addr, &pki.ca.ca, &pki.client).then_some(())
    });
    wait_metric(&server, "radsec_refused_connections", "too-many-connections", 1);
    // UDP does not wait for any of it.
    let reply = radclient_code(server.addr(), SECRET, "status", "Message-Authenticator = 0x00").unwrap();
    assert_eq!(reply.code, "Access-Accept");

    // handshake_timeout frees the places.
    for stream in &mut silent {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)), "closed by the server");
    }
    wait_metric(&server, "radsec_refused_connections", "handshake-timeout", 2);
    let mut client = poll("a place to be free again", DEADLINE, || {
        TlsClient::connect(addr, &pki.ca.ca, &pki.client).ok()
    });
    assert_alive(&mut client, 1);
}
