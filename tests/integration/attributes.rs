//! Attributes by dictionary name: per-user `reply` attributes on
//! Access-Accept, and the e-mail address a trusted front proxy sends in
//! `Mailotp-Email` (honoured from that client only).

use mailotp::dictionary::Dictionary;
use mailotp::wire::{attr, Packet};

use crate::harness::*;
use crate::packets::{assert_signed, udp_from, Request};

#[test]
fn reply_attributes_of_the_users_file_reach_the_nas_on_accept() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    let reply = "reply = { Class = \"vpn-staff\", Filter-Id = \"staff\", Session-Timeout = 3600 }\n";
    setup.users_file = users_toml().replace("name = \"alice\"\n", &format!("name = \"alice\"\n{reply}"));
    let server = Server::start(&setup);
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(challenge.attr("Filter-Id"), None, "reply attributes only on Accept");
    let otp = smtp.wait_for_mails(1)[0].otp();
    let accept = send_otp(&server, "alice", &otp, &challenge.state()).unwrap();
    assert_eq!(accept.code, "Access-Accept");
    assert_eq!(accept.attributes[0].0, "Message-Authenticator");
    assert_eq!(
        accept.attr("Class"),
        Some(format!("0x{}", hex::encode("vpn-staff")).as_str())
    );
    assert_eq!(accept.attr("Filter-Id"), Some("staff"));
    assert_eq!(accept.attr("Session-Timeout"), Some("3600"));
}

/// An Access-Request for `user` carrying `Mailotp-Email = address`, signed.
fn login_with_email(id: u8, user: &str, address: &str) -> Request {
    let vsa = Dictionary::builtin().encode("Mailotp-Email", address).unwrap();
    Request::login(id, user, pin(user), SECRET)
        .attr(vsa.attr_type, &vsa.value)
        .ma()
}

#[test]
fn the_trusted_email_attribute_is_honoured_from_its_client_only() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    let proxy = client("front-proxy", "127.0.0.2", SECRET, true, "access-challenge");
    setup.clients = vec![
        format!("{proxy}trusted_email_attribute = \"Mailotp-Email\"\n"),
        client("vpn", "127.0.0.1", SECRET, true, "access-challenge"),
    ];
    let server = Server::start(&setup);

    let request = login_with_email(7, "alice", "alice.private@elsewhere.test");
    let socket = udp_from("127.0.0.2", server.addr());
    socket.send(&request.signed(SECRET)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("an answer from the trusted proxy's client");
    let packet: Packet<'_> = assert_signed(&buf[..n], &request, SECRET);
    assert_eq!(packet.code().name(), "Access-Challenge");
    assert!(packet.first(attr::STATE).is_some());
    let mail = &smtp.wait_for_mails(1)[0];
    assert_eq!(mail.header("To"), "alice.private@elsewhere.test");

    let forged = login_with_email(8, "bob", "attacker@evil.test");
    let socket = udp_from("127.0.0.1", server.addr());
    socket.send(&forged.signed(SECRET)).unwrap();
    let n = socket.recv(&mut buf).expect("an answer from the plain client");
    assert_eq!(
        assert_signed(&buf[..n], &forged, SECRET).code().name(),
        "Access-Challenge"
    );
    let mails = smtp.wait_for_mails(2);
    assert_eq!(
        mails[1].header("To"),
        "bob@example.test",
        "the directory's address, not the forged one"
    );
    assert!(smtp.mails_to("attacker@").is_empty());
    server.wait_for_log("Mailotp-Email ignored: this client has no trusted_email_attribute");
}

#[test]
fn a_trusted_email_attribute_the_dictionary_does_not_know_is_refused_at_start() {
    let mut setup = Setup::new(25);
    setup.clients[0].push_str("trusted_email_attribute = \"Mailotp-Mail\"\n");
    let out = run_mailotp("check", setup.write().path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("key `clients[0].trusted_email_attribute`: `Mailotp-Mail` is not an attribute of the dictionary"),
        "{stderr}"
    );
}
