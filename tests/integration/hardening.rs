//! Issue 4, RADIUS hardening, with hand-built packets over real UDP:
//! Message-Authenticator wherever it stands (BlastRADIUS), Proxy-State,
//! retransmissions during a slow PIN hash, every malformed shape, IPv6.

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use mailotp::wire::attr;

use crate::harness::*;
use crate::packets::*;

const STRICT: &str = "127.0.0.1";
const LENIENT: &str = "127.0.0.2";

/// 127.0.0.1 must sign its requests; 127.0.0.2 need not.
fn two_clients(smtp_port: u16) -> Setup {
    let mut setup = Setup::new(smtp_port);
    setup.clients = vec![
        client("strict", STRICT, SECRET, true, "access-challenge"),
        client("lenient", LENIENT, SECRET, false, "access-challenge"),
    ];
    setup
}

fn code(response: &[u8]) -> u8 {
    response[0]
}

/// A Status-Server with a valid Message-Authenticator: the "next good request".
fn status(id: u8) -> Request {
    Request::new(STATUS_SERVER, id).ma()
}

/// Sends a good request and checks that it (and nothing queued before it) is answered.
fn still_answers(socket: &std::net::UdpSocket, id: u8) {
    let good = status(id);
    let reply = send_recv(socket, &good.signed(SECRET)).expect("the next good request is answered");
    let packet = assert_signed(&reply, &good, SECRET);
    assert_eq!(code(packet.bytes()), 2, "Status-Server gets Access-Accept");
}

#[test]
fn message_authenticator_is_verified_wherever_it_stands_and_required_where_configured() {
    let smtp = SmtpSink::start();
    let server = start_with_drop_log(&two_clients(smtp.port));
    let strict = udp_from(STRICT, server.addr());
    let login = |id| Request::login(id, "alice", "wrong-pin", SECRET);

    strict.send(&login(1).bytes()).unwrap();
    strict.send(&login(2).bytes()).unwrap();
    strict.send(&login(3).ma().signed("not-the-secret")).unwrap();
    strict.send(&login(4).ma().bytes()).unwrap();
    strict.send(&login(5).ma().ma().signed(SECRET)).unwrap();
    strict
        .send(
            &Request::login(6, "alice", "wrong-pin", SECRET)
                .attr(attr::MESSAGE_AUTHENTICATOR, &[0; 8])
                .bytes(),
        )
        .unwrap();
    // As a FreeRADIUS proxy sends it: MA last, after the client's attributes.
    let last = login(7).ma();
    let reply = send_recv(&strict, &last.signed(SECRET)).expect("a valid MA at the end is answered");
    assert_eq!(
        code(assert_signed(&reply, &last, SECRET).bytes()),
        3,
        "wrong PIN: Access-Reject"
    );
    let first = login(8).ma_first();
    let reply = send_recv(&strict, &first.signed(SECRET)).expect("a valid MA first is answered");
    assert_eq!(code(assert_signed(&reply, &first, SECRET).bytes()), 3);

    wait_dropped(&server, "missing-message-authenticator", 2);
    wait_dropped(&server, "bad-message-authenticator", 3);
    // Two Message-Authenticators (login 5): malformed (issue 16).
    wait_dropped(&server, "malformed", 1);
    assert_eq!(
        server
            .process
            .count_lines("dropping requests without Message-Authenticator"),
        1,
        "the missing MA is logged once a minute, naming the client:\n{}",
        server.log()
    );
    assert!(server.wait_for_log("without Message-Authenticator").contains("strict"));

    let lenient = udp_from(LENIENT, server.addr());
    let unsigned = login(9);
    let reply = send_recv(&lenient, &unsigned.bytes()).expect("a client that need not sign is answered");
    assert_eq!(code(assert_signed(&reply, &unsigned, SECRET).bytes()), 3);
    lenient.send(&Request::new(STATUS_SERVER, 10).bytes()).unwrap();
    wait_dropped(&server, "missing-message-authenticator", 3);
    still_answers(&lenient, 11);
    // Three logins; Status-Server answers are not logged at info.
    assert_answered(&server, 3);
}

#[test]
fn proxy_states_are_copied_unchanged_and_in_order() {
    let smtp = SmtpSink::start();
    let server = Server::start(&two_clients(smtp.port));
    let socket = udp_from(STRICT, server.addr());
    let states: [&[u8]; 3] = [b"first", b"\x00\xffsecond", b"3"];
    let mut req = Request::new(ACCESS_REQUEST, 21).attr(attr::PROXY_STATE, states[0]);
    let hidden = mailotp::wire::hide_password(b"wrong-pin", SECRET.as_bytes(), &req.authenticator).unwrap();
    req = req
        .attr(attr::USER_NAME, b"alice")
        .attr(attr::PROXY_STATE, states[1])
        .attr(attr::USER_PASSWORD, &hidden)
        .attr(attr::PROXY_STATE, states[2])
        .ma();
    let reply = send_recv(&socket, &req.signed(SECRET)).expect("an answer");
    let packet = assert_signed(&reply, &req, SECRET);
    let copied: Vec<&[u8]> = packet
        .attributes()
        .filter(|a| a.attr_type == attr::PROXY_STATE)
        .map(|a| a.value)
        .collect();
    assert_eq!(copied, states);

    let probe = status(22).attr(attr::PROXY_STATE, b"probe");
    let reply = send_recv(&socket, &probe.signed(SECRET)).expect("an answer");
    let packet = assert_signed(&reply, &probe, SECRET);
    assert_eq!(packet.first(attr::PROXY_STATE), Some(&b"probe"[..]));
}

#[test]
fn every_answer_starts_with_a_valid_message_authenticator() {
    let smtp = SmtpSink::start();
    let mut server = Server::start(&two_clients(smtp.port));
    let socket = udp_from(STRICT, server.addr());

    let pin_req = Request::login(31, "alice", pin("alice"), SECRET).ma();
    let reply = send_recv(&socket, &pin_req.signed(SECRET)).expect("an answer to the PIN");
    let challenge = assert_signed(&reply, &pin_req, SECRET);
    assert_eq!(code(challenge.bytes()), 11, "Access-Challenge");
    let state = challenge.first(attr::STATE).expect("a State").to_vec();
    assert!(challenge.first(attr::REPLY_MESSAGE).is_some());

    let otp = smtp.wait_for_mails(1)[0].otp();
    server.forbid_in_log(&otp);
    let foreign = Request::login(32, "alice", &otp, SECRET)
        .attr(attr::STATE, b"0123456789abcdef0123456789abcdef")
        .ma();
    let reply = send_recv(&socket, &foreign.signed(SECRET)).expect("an answer to a foreign State");
    assert_eq!(
        code(assert_signed(&reply, &foreign, SECRET).bytes()),
        3,
        "a State not ours: Access-Reject"
    );
    let garbage = Request::login(33, "alice", &otp, SECRET)
        .attr(attr::STATE, b"\x00\x01")
        .ma();
    let reply = send_recv(&socket, &garbage.signed(SECRET)).expect("an answer to a garbled State");
    assert_eq!(code(assert_signed(&reply, &garbage, SECRET).bytes()), 3);

    let answer = Request::login(34, "alice", &otp, SECRET).attr(attr::STATE, &state).ma();
    let reply = send_recv(&socket, &answer.signed(SECRET)).expect("an answer to the code");
    assert_eq!(code(assert_signed(&reply, &answer, SECRET).bytes()), 2, "Access-Accept");

    let wrong = Request::login(35, "bob", "wrong-pin", SECRET).ma();
    let reply = send_recv(&socket, &wrong.signed(SECRET)).expect("an answer to a wrong PIN");
    assert_eq!(code(assert_signed(&reply, &wrong, SECRET).bytes()), 3);
    still_answers(&socket, 36);
    server.wait_for_log("unknown-state");
}

/// Each bad shape is dropped, logged with its reason, and the server answers
/// the next good request.
#[test]
fn malformed_datagrams_are_dropped_counted_and_the_next_request_is_answered() {
    let smtp = SmtpSink::start();
    let server = start_with_drop_log(&two_clients(smtp.port));
    let socket = udp_from(STRICT, server.addr());
    let good = || Request::login(40, "alice", "wrong-pin", SECRET).ma().signed(SECRET);
    let with_length = |length: u16| {
        let mut d = good();
        d[2..4].copy_from_slice(&length.to_be_bytes());
        d
    };
    let with_attr = |raw: &[u8]| {
        let mut d = good();
        d.extend_from_slice(raw);
        set_length(&mut d);
        d
    };
    let signed_password = |len: usize| {
        Request::new(ACCESS_REQUEST, 41)
            .attr(attr::USER_NAME, b"alice")
            .attr(attr::USER_PASSWORD, &vec![0x41; len])
            .ma()
            .signed(SECRET)
    };
    let mut huge = good();
    huge.resize(4100, 0);
    set_length(&mut huge);
    let good_len = good().len() as u16;
    let shapes: Vec<(&str, Vec<u8>, &str)> = vec![
        ("shorter than a header", good()[..12].to_vec(), "malformed"),
        (
            "length field past the datagram",
            with_length(good_len + 10),
            "malformed",
        ),
        ("length field below the header", with_length(19), "malformed"),
        (
            "length field cutting an attribute",
            with_length(good_len - 5),
            "malformed",
        ),
        ("attribute length 0", with_attr(&[attr::CLASS, 0]), "malformed"),
        ("attribute length 1", with_attr(&[attr::CLASS, 1]), "malformed"),
        (
            "attribute past the end",
            with_attr(&[attr::CLASS, 50, b'x']),
            "malformed",
        ),
        ("datagram over 4096 bytes", huge, "malformed"),
        (
            "unknown code",
            Request::new(99, 42).ma().signed(SECRET),
            "unsupported-code",
        ),
        (
            "a response code",
            Request::new(2, 42).ma().signed(SECRET),
            "unsupported-code",
        ),
        (
            "Accounting-Request",
            Request::new(ACCOUNTING_REQUEST, 43).ma().signed(SECRET),
            "unsupported-code",
        ),
        ("User-Password of 15 bytes", signed_password(15), "bad-user-password"),
        ("User-Password of 144 bytes", signed_password(144), "bad-user-password"),
        ("empty User-Password", signed_password(0), "bad-user-password"),
    ];
    let mut expected = std::collections::HashMap::new();
    for (i, (what, datagram, reason)) in shapes.iter().enumerate() {
        socket.send(datagram).unwrap();
        let total = expected.entry(*reason).and_modify(|n| *n += 1).or_insert(1u64);
        still_answers(&socket, 100 + i as u8);
        wait_dropped(&server, reason, *total);
        assert_eq!(dropped(&server, reason), *total, "{what} is dropped once as {reason}");
    }
    assert_eq!(dropped(&server, "malformed"), 8);
    assert_eq!(dropped(&server, "unsupported-code"), 3);
    assert_eq!(dropped(&server, "bad-user-password"), 3);
    assert_eq!(server.process.count_lines("panicked"), 0);
}

/// alice's PIN hash costs 32 argon2 passes (16 times the usual, about half a
/// second), so a copy sent right after the first arrives while the first is
/// still being decided.
pub(crate) fn slow_users_file() -> String {
    let params = argon2::Params::new(19456, 32, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon.hash_password(pin("alice").as_bytes(), &salt).unwrap();
    let rest = users_toml()
        .split("\n\n")
        .filter(|u| !u.contains("\"alice\""))
        .collect::<Vec<_>>();
    format!(
        "[[users]]\nname = \"alice\"\nemail = \"alice@example.test\"\npin = \"{hash}\"\n\n{}",
        rest.join("\n\n")
    )
}

#[test]
fn a_retransmission_during_a_slow_pin_hash_is_answered_once_with_one_mail() {
    let smtp = SmtpSink::start();
    let mut setup = two_clients(smtp.port);
    setup.users_file = slow_users_file();
    let server = start_with_drop_log(&setup);
    let socket = udp_from(STRICT, server.addr());

    let req = Request::login(50, "alice", pin("alice"), SECRET).ma();
    let datagram = req.signed(SECRET);
    socket.send(&datagram).unwrap();
    socket.send(&datagram).unwrap();
    let first = recv(&socket).expect("the first copy is answered");
    assert_eq!(code(assert_signed(&first, &req, SECRET).bytes()), 11);
    wait_dropped(&server, "duplicate-in-progress", 1);

    // After the answer, a retransmission gets the very same bytes from the cache.
    let again = send_recv(&socket, &datagram).expect("the retransmission is answered");
    assert_eq!(again, first, "the cached answer, byte for byte");
    assert_answered(&server, 1);

    let mails = smtp.wait_for_mails(1);
    server.wait_for_log("mail sent");
    // bob's PIN is hashed at the normal cost: his mail is a barrier after
    // which a second mail for alice would have been sent as well.
    let bob = Request::login(51, "bob", pin("bob"), SECRET).ma();
    assert_eq!(code(&send_recv(&socket, &bob.signed(SECRET)).unwrap()), 11);
    poll("bob's mail", DEADLINE, || {
        (!smtp.mails_to("bob@").is_empty()).then_some(())
    });
    assert_eq!(smtp.mails_to("alice@").len(), 1, "exactly one mail for alice");
    assert_eq!(mails[0].header("To"), "alice@example.test");
    assert_eq!(dropped(&server, "duplicate-in-progress"), 1);
}

#[test]
fn listens_on_ipv4_and_ipv6_at_once() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.listen = vec!["127.0.0.1:0".to_owned(), "[::1]:0".to_owned()];
    setup.clients = vec![
        client("v4", STRICT, SECRET, true, "access-challenge"),
        client("v6", "::1", SECRET, true, "access-challenge"),
    ];
    let server = Server::start(&setup);
    assert_eq!(server.addrs.len(), 2, "{:?}", server.addrs);
    let v6 = server.addrs.iter().find(|a| a.is_ipv6()).expect("an IPv6 socket");
    let v4 = server.addrs.iter().find(|a| a.is_ipv4()).expect("an IPv4 socket");
    for (local, addr) in [("::1", v6), (STRICT, v4)] {
        let socket = udp_from(local, *addr);
        let req = Request::login(60, "alice", "wrong-pin", SECRET).ma();
        let reply = send_recv(&socket, &req.signed(SECRET)).unwrap_or_else(|| panic!("an answer on {addr}"));
        assert_eq!(code(assert_signed(&reply, &req, SECRET).bytes()), 3);
    }
    assert_answered(&server, 2);
    let log = server.log();
    assert!(log.contains("client=v6") && log.contains("client=v4"), "{log}");
}
