//! Issue 16: the second factor holds when the PIN is known. Each test is the
//! attack as someone with alice's PIN would run it from another place
//! (another Calling-Station-Id), against memory and Redis state alike, and
//! then the honest login that must still work.

use crate::harness::*;
use crate::link::{link_path, BASE_URL};
use crate::packets::*;
use crate::pool_support::{http_status, PoolKey, RedisServer};
use mailotp::wire::attr;

/// Where alice logs in from.
const ALICE_AT: &str = "198.51.100.7";
/// Where the one with her PIN tries from.
const ATTACKER_AT: &str = "203.0.113.66";

/// One mailotp with its mail sink, on memory state or on a redis-server of
/// its own.
struct Site {
    server: Server,
    smtp: SmtpSink,
    _redis: Option<(RedisServer, PoolKey)>,
}

/// Starts a site; `email` and `users` are lines for their sections, `args`
/// extra arguments to `serve`.
fn start(redis: bool, email: &str, users: &str, args: &[&str]) -> Site {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = email.to_owned();
    setup.users = users.to_owned();
    setup.args = args.iter().map(|a| (*a).to_owned()).collect();
    if email.contains("delivery = \"link\"") {
        setup.extra = format!("[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"{BASE_URL}/\"\n");
    }
    let redis = redis.then(|| {
        let (server, key) = (RedisServer::start(), PoolKey::new());
        setup.extra = format!("{}\n{}", server.state_section(&key), setup.extra);
        (server, key)
    });
    Site {
        server: Server::start(&setup),
        smtp,
        _redis: redis,
    }
}

impl Site {
    /// One Access-Request from `station` (Calling-Station-Id), with `state` if given.
    fn login(&self, user: &str, password: &str, station: &str, state: Option<&str>) -> Reply {
        let state = state.map(|s| format!(", State = {s}")).unwrap_or_default();
        let attributes = format!(
            "User-Name = \"{user}\", User-Password = \"{password}\", Calling-Station-Id = \"{station}\"{state}"
        );
        radclient(self.server.addr(), SECRET, &attributes).expect("an answer")
    }

    /// Confirms the link of the newest of `mails` mails as alice's browser would.
    fn confirm_link(&self, mails: usize) {
        let line = self.server.wait_for_log("link page server on ");
        let pages = line.rsplit("link page server on ").next().unwrap().trim().to_owned();
        let path = link_path(&self.smtp.wait_for_mails(mails).pop().unwrap());
        assert_eq!(http_status("POST", &format!("{pages}{path}")), 200, "the link confirms");
    }
}

/// A six-digit code that is not `code`.
fn not(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

fn a_pin_holder_elsewhere_gets_no_state_and_cannot_use_or_void_alices(redis: bool) {
    let site = start(redis, "", "", &[]);
    let challenge = site.login("alice", pin("alice"), ALICE_AT, None);
    assert_eq!(challenge.code, "Access-Challenge");
    let state = challenge.state();
    let code = site.smtp.wait_for_mails(1)[0].otp();

    let elsewhere = site.login("alice", pin("alice"), ATTACKER_AT, None);
    assert_eq!(elsewhere.code, "Access-Reject");
    assert_eq!(
        elsewhere.attr("Reply-Message"),
        Some("e-mail with otp already submitted")
    );
    assert_eq!(elsewhere.attr("State"), None, "no State is handed out");
    site.server.wait_for_log("reason=\"already-sent-elsewhere\"");
    for _ in 0..3 {
        let guess = site.login("alice", &not(&code), ATTACKER_AT, Some(&state));
        assert_eq!(guess.code, "Access-Reject");
    }
    assert_eq!(
        site.login("alice", &code, ATTACKER_AT, Some(&state)).code,
        "Access-Reject",
        "not even the right code finishes her login from elsewhere"
    );

    // Her VPN retries: the same State, no second mail; her code still works.
    let again = site.login("alice", pin("alice"), ALICE_AT, None);
    assert_eq!(again.code, "Access-Challenge");
    assert_eq!(again.state(), state);
    let accept = site.login("alice", &code, ALICE_AT, Some(&state));
    assert_eq!(accept.code, "Access-Accept", "{}", site.server.log());
    assert_eq!(site.smtp.mails().len(), 1, "one mail in all");
}

#[test]
fn a_pin_holder_elsewhere_gets_no_state_and_cannot_use_or_void_alices_code() {
    a_pin_holder_elsewhere_gets_no_state_and_cannot_use_or_void_alices(false);
}

#[test]
fn a_pin_holder_elsewhere_gets_no_state_and_cannot_use_or_void_alices_code_in_redis() {
    a_pin_holder_elsewhere_gets_no_state_and_cannot_use_or_void_alices(true);
}

fn a_link_confirmation_completes_only_the_login_where_the_mail_was_asked_for(redis: bool) {
    let site = start(redis, "delivery = \"link\"\n", "", &[]);
    let challenge = site.login("alice", pin("alice"), ALICE_AT, None);
    assert_eq!(challenge.code, "Access-Challenge");
    let state = challenge.state();

    let elsewhere = site.login("alice", pin("alice"), ATTACKER_AT, None);
    assert_eq!(elsewhere.code, "Access-Reject");
    assert_eq!(elsewhere.attr("State"), None);
    assert_eq!(
        site.login("alice", "x", ATTACKER_AT, Some(&state)).code,
        "Access-Reject",
        "polling her State from elsewhere"
    );
    site.confirm_link(1);
    for _ in 0..3 {
        assert_eq!(
            site.login("alice", "x", ATTACKER_AT, Some(&state)).code,
            "Access-Reject",
            "her confirmation is not his"
        );
    }
    let accept = site.login("alice", "", ALICE_AT, Some(&state));
    assert_eq!(accept.code, "Access-Accept", "{}", site.server.log());
}

#[test]
fn a_link_confirmation_completes_only_the_login_of_its_origin() {
    a_link_confirmation_completes_only_the_login_where_the_mail_was_asked_for(false);
}

#[test]
fn a_link_confirmation_completes_only_the_login_of_its_origin_in_redis() {
    a_link_confirmation_completes_only_the_login_where_the_mail_was_asked_for(true);
}

fn pin_and_wrong_codes_void_the_challenge(redis: bool) {
    let site = start(redis, "max_attempts = 3\n", "lockout_after = 10\n", &[]);
    let pin = pin("alice");
    assert_eq!(site.login("alice", pin, ALICE_AT, None).code, "Access-Challenge");
    let code = site.smtp.wait_for_mails(1)[0].otp();
    for _ in 0..3 {
        let wrong = site.login("alice", &format!("{pin}{}", not(&code)), ALICE_AT, None);
        assert_eq!(wrong.code, "Access-Reject");
    }
    let late = site.login("alice", &format!("{pin}{code}"), ALICE_AT, None);
    assert_eq!(
        late.code, "Access-Reject",
        "the challenge is void after three wrong codes"
    );

    // The honest way on: the PIN opens a new challenge, PIN+its code logs in.
    assert_eq!(site.login("alice", pin, ALICE_AT, None).code, "Access-Challenge");
    let code = site.smtp.wait_for_mails(2)[1].otp();
    let accept = site.login("alice", &format!("{pin}{code}"), ALICE_AT, None);
    assert_eq!(accept.code, "Access-Accept", "{}", site.server.log());
}

#[test]
fn pin_and_wrong_codes_count_as_wrong_answers_until_the_challenge_is_void() {
    pin_and_wrong_codes_void_the_challenge(false);
}

#[test]
fn pin_and_wrong_codes_count_as_wrong_answers_until_the_challenge_is_void_in_redis() {
    pin_and_wrong_codes_void_the_challenge(true);
}

#[test]
fn pin_and_the_code_of_a_link_challenge_never_log_in() {
    // The fixed code is the link challenge's code all the same: never mailed,
    // so a PIN holder may know it here, and it must not be enough.
    let email = "delivery = \"link\"\nfixed_otp_for_testing = \"424242\"\n";
    let site = start(false, email, "", &["--test-mode"]);
    let challenge = site.login("alice", pin("alice"), ALICE_AT, None);
    assert_eq!(challenge.code, "Access-Challenge");
    for from in [ALICE_AT, ATTACKER_AT] {
        let reply = site.login("alice", &format!("{}424242", pin("alice")), from, None);
        assert_ne!(reply.code, "Access-Accept", "PIN+code from {from}");
    }
    site.confirm_link(1);
    let accept = site.login("alice", "", ALICE_AT, Some(&challenge.state()));
    assert_eq!(accept.code, "Access-Accept", "{}", site.server.log());
}

/// A hand-built Access-Request: alice's right PIN, then `more` attributes.
fn request_with(id: u8, more: &[(u8, Vec<u8>)]) -> Request {
    let mut req = Request::login(id, "alice", pin("alice"), SECRET).attr(attr::CALLING_STATION_ID, ALICE_AT.as_bytes());
    for (t, v) in more {
        req = req.attr(*t, v);
    }
    req
}

#[test]
fn a_second_user_password_state_or_calling_station_id_is_dropped_and_counted() {
    let smtp = SmtpSink::start();
    let server = start_with_drop_log(&Setup::new(smtp.port));
    let socket = udp_client(server.addr());
    let hidden = |req: &Request, password: &str| {
        mailotp::wire::hide_password(password.as_bytes(), SECRET.as_bytes(), &req.authenticator).unwrap()
    };
    let mut sent = 0;
    for (id, kind) in ["User-Password", "State", "Calling-Station-Id"].into_iter().enumerate() {
        let req = request_with(u8::try_from(id).unwrap() + 1, &[]);
        let extra = match kind {
            "User-Password" => (attr::USER_PASSWORD, hidden(&req, "not-the-pin")),
            "State" => (attr::STATE, vec![b'0'; 32]),
            _ => (attr::CALLING_STATION_ID, ATTACKER_AT.as_bytes().to_vec()),
        };
        let mut req = req.attr(extra.0, &extra.1);
        if kind == "State" {
            req = req.attr(attr::STATE, &[b'1'; 32]);
        }
        assert_eq!(send_recv(&socket, &req.bytes()), None, "two {kind}s: no answer");
        sent += 1;
        wait_dropped(&server, "malformed", sent);
    }
    // The same request with each attribute once is answered.
    let once = request_with(9, &[]);
    let answer = send_recv(&socket, &once.bytes()).expect("an answer");
    assert_eq!(answer[0], 11, "Access-Challenge");
    assert_eq!(smtp.wait_for_mails(1).len(), 1);
    assert_eq!(dropped(&server, "malformed"), 3);
}
