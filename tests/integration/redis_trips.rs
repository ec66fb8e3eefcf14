//! Issue 18: what the Redis backend costs and tells. The open-challenges
//! gauge counts the whole pool's challenges, and the Redis round trips of a
//! PIN request and of an answer are counted with MONITOR on a real
//! redis-server, so the figures are measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use crate::harness::*;
use crate::pool_support::*;

/// One instance of a pool with metrics; its metrics address.
fn instance(redis: &RedisServer, key: &PoolKey, smtp: &SmtpSink, email: &str, extra: &str) -> (Server, String) {
    let mut setup = Setup::new(smtp.port);
    setup.email = email.to_owned();
    setup.extra = format!("[metrics]\nlisten = \"127.0.0.1:0\"\n{extra}");
    let server = start_pool_with(1, setup, redis, key).pop().unwrap();
    let metrics = metrics_address(&server);
    (server, metrics)
}

fn gauge_reaches(metrics: &str, value: &str) {
    poll(&format!("mailotp_open_challenges {value}"), DEADLINE, || {
        (metric(metrics, "mailotp_open_challenges") == value).then_some(())
    });
}

#[test]
fn the_open_challenges_gauge_counts_the_whole_pool() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let smtp = SmtpSink::start();
    let (a, metrics_a) = instance(&redis, &key, &smtp, "", "");
    let (b, metrics_b) = instance(&redis, &key, &smtp, "", "");
    gauge_reaches(&metrics_a, "0");

    let alice = send_pin(&a, "alice", pin("alice")).unwrap();
    send_pin(&b, "bob", pin("bob")).unwrap();
    gauge_reaches(&metrics_a, "2");
    gauge_reaches(&metrics_b, "2");

    smtp.wait_for_mails(2);
    let otp = smtp.mails_to("alice@")[0].otp();
    assert_eq!(
        send_otp(&b, "alice", &otp, &alice.state()).unwrap().code,
        "Access-Accept"
    );
    gauge_reaches(&metrics_a, "1");
}

#[test]
fn the_open_challenges_gauge_forgets_expired_challenges() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let smtp = SmtpSink::start();
    let (a, metrics) = instance(
        &redis,
        &key,
        &smtp,
        "challenge_validity = 2\nblocking_timeout = 1\n",
        "",
    );
    send_pin(&a, "alice", pin("alice")).unwrap();
    gauge_reaches(&metrics, "1");
    gauge_reaches(&metrics, "0");
}

/// Every command redis-server receives, as MONITOR reports it.
struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    own: TcpStream,
}

impl Monitor {
    fn start(redis: &RedisServer) -> Monitor {
        let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            // Ends when redis-server stops and closes the connection.
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        let own = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        Monitor { lines, own }
    }

    /// Sends `ECHO marker` and waits until MONITOR has reported it.
    fn mark(&mut self, marker: &str) {
        write!(self.own, "ECHO {marker}\r\n").unwrap();
        let mut reply = [0u8; 64];
        let _ = self.own.read(&mut reply).unwrap();
        poll(&format!("MONITOR to report {marker}"), DEADLINE, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(marker))
                .then_some(())
        });
    }

    /// The round trips between the markers: each command a client sent,
    /// a MULTI…EXEC block as one, leaving out the commands scripts ran, the
    /// watcher's count, the delivery worker's stream calls and the writes of
    /// `mailotp ctl`'s records (they belong to no request: see
    /// [`Monitor::operator_writes`]).
    fn trips(&self, from: &str, to: &str) -> Vec<String> {
        const WORKER: [&str; 5] = [
            "\"xreadgroup\"",
            "\"xack\"",
            "\"xclaim\"",
            "\"xautoclaim\"",
            "\"xgroup\"",
        ];
        let lines = self.lines.lock().unwrap();
        let start = lines.iter().position(|l| l.contains(from)).unwrap();
        let end = lines.iter().position(|l| l.contains(to)).unwrap();
        let mut trips: Vec<String> = Vec::new();
        let mut in_block = false;
        for line in lines[start + 1..end].iter().filter(|l| !l.contains(" lua]")) {
            let command = line.to_lowercase();
            if in_block {
                trips.last_mut().unwrap().push_str(&command);
                in_block = !command.contains("\"exec\"");
            } else {
                in_block = command.contains("\"multi\"");
                trips.push(command);
            }
        }
        trips.retain(|t| {
            !t.contains("\"1\" \"mailotp:open\"") && !WORKER.iter().any(|w| t.contains(w)) && !is_operator_write(t)
        });
        trips
    }

    /// The writes of `mailotp ctl`'s records (a user's last answer, what
    /// became of a mail) between the markers: one writer task sends them
    /// off the request path, as many as are waiting in one script call.
    fn operator_writes(&self, from: &str, to: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        let start = lines.iter().position(|l| l.contains(from)).unwrap();
        let end = lines.iter().position(|l| l.contains(to)).unwrap();
        lines[start + 1..end]
            .iter()
            .filter(|l| !l.contains(" lua]") && is_operator_write(&l.to_lowercase()))
            .count()
    }
}

/// Whether a command writes records for `mailotp ctl` (`mailotp:lr:*`,
/// `mailotp:ms:*`).
fn is_operator_write(command: &str) -> bool {
    command.contains("\"mailotp:lr:") || command.contains("\"mailotp:ms:")
}

#[test]
fn round_trips_of_a_pin_request_and_an_answer_are_counted() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let smtp = SmtpSink::start();
    let (server, _) = instance(&redis, &key, &smtp, "", "");
    // Once through first, a wrong code too: scripts loaded, the pool key
    // checked.
    let first = send_pin(&server, "alice", pin("alice")).unwrap();
    let otp = smtp.wait_for_mails(1)[0].otp();
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    assert_eq!(
        send_otp(&server, "alice", wrong, &first.state()).unwrap().code,
        "Access-Reject"
    );
    assert_eq!(
        send_otp(&server, "alice", &otp, &first.state()).unwrap().code,
        "Access-Accept"
    );

    let mut monitor = Monitor::start(&redis);
    monitor.mark("pin-starts");
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(challenge.code, "Access-Challenge");
    monitor.mark("pin-done");
    let again = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(
        again.state(),
        challenge.state(),
        "the PIN again gets the open challenge"
    );
    monitor.mark("again-done");
    let otp = smtp.wait_for_mails(2)[1].otp();
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    monitor.mark("wrong-starts");
    assert_eq!(
        send_otp(&server, "alice", wrong, &challenge.state()).unwrap().code,
        "Access-Reject",
        "a wrong code"
    );
    monitor.mark("answer-starts");
    assert_eq!(
        send_otp(&server, "alice", &otp, &challenge.state()).unwrap().code,
        "Access-Accept"
    );
    monitor.mark("answer-done");

    let pin_trips = monitor.trips("pin-starts", "pin-done");
    let again_trips = monitor.trips("pin-done", "again-done");
    let wrong_trips = monitor.trips("wrong-starts", "answer-starts");
    let answer_trips = monitor.trips("answer-starts", "answer-done");
    eprintln!("PIN request: {} round trips: {pin_trips:#?}", pin_trips.len());
    eprintln!("PIN again: {} round trips: {again_trips:#?}", again_trips.len());
    eprintln!("wrong code: {} round trips: {wrong_trips:#?}", wrong_trips.len());
    eprintln!("answer: {} round trips: {answer_trips:#?}", answer_trips.len());
    // Off the request path: four last answers and the mail's two states
    // (queued, relayed) are written in at most one call each (fewer when
    // they wait together).
    let operator = monitor.operator_writes("pin-starts", "answer-done");
    eprintln!("records for mailotp ctl: {operator} script calls");
    assert!((1..=6).contains(&operator), "{operator} writes of operator records");
    assert_eq!(pin_trips.len(), PIN_TRIPS, "{pin_trips:#?}");
    assert_eq!(again_trips.len(), AGAIN_TRIPS, "{again_trips:#?}");
    assert_eq!(wrong_trips.len(), ANSWER_TRIPS + FAILURE_TRIPS, "{wrong_trips:#?}");
    assert_eq!(answer_trips.len(), ANSWER_TRIPS, "{answer_trips:#?}");
}

#[test]
fn a_link_challenge_costs_no_more_round_trips_than_a_code() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    let smtp = SmtpSink::start();
    let link = "[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"https://otp.example.test/\"\n";
    let (server, _) = instance(&redis, &key, &smtp, "delivery = \"link\"\n", link);
    // Once through first: scripts loaded, the pool key checked.
    send_pin(&server, "bob", pin("bob")).unwrap();
    smtp.wait_for_mails(1);

    let mut monitor = Monitor::start(&redis);
    monitor.mark("pin-starts");
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    monitor.mark("pin-done");
    let body = smtp.wait_for_mails(2)[1].body();
    assert!(body.contains("https://otp.example.test/l/"), "{body}");
    let trips = monitor.trips("pin-starts", "pin-done");
    eprintln!("PIN request, link delivery: {} round trips: {trips:#?}", trips.len());
    // With [link] every mail also carries a deny link; its record and the
    // link's ride on the open.
    assert_eq!(trips.len(), PIN_TRIPS + DENY_TRIPS, "{trips:#?}");
}

#[test]
fn with_the_mail_queue_full_a_pin_request_is_refused_and_opens_nothing() {
    let redis = RedisServer::start();
    let key = PoolKey::new();
    // Nothing listens there: the first mail stays queued, retried.
    let mut setup = Setup::new(free_tcp_port());
    setup.email = "queue_limit = 1\n".to_owned();
    let server = start_pool_with(1, setup, &redis, &key).pop().unwrap();
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    let busy = send_pin(&server, "bob", pin("bob")).unwrap();
    assert_eq!(busy.code, "Access-Reject");
    assert_eq!(
        busy.attr("Reply-Message"),
        Some("The e-mail service is busy, please try again later")
    );
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut bobs: Vec<String> = redis::cmd("KEYS").arg("mailotp:*bob*").query(&mut conn).unwrap();
    // What `mailotp ctl status bob` shows: the refusal, as his last answer.
    bobs.retain(|k| k != "mailotp:lr:bob");
    assert!(bobs.is_empty(), "no challenge, no mail counted for bob: {bobs:?}");
    let queued: usize = redis::cmd("XLEN").arg("mailotp:mail").query(&mut conn).unwrap();
    assert_eq!(queued, 1, "alice's mail only");
}

/// Round trips of a PIN request that opens a challenge and queues its mail:
/// the lockout read with the user's challenges (for a PIN+code password)
/// before the PIN check, then one script that opens the challenge with its
/// throttles, link and deny records and queues the sealed mail.
const PIN_TRIPS: usize = 2;
/// Round trips the deny link's record adds when `[link]` is configured: it
/// rides on the open.
const DENY_TRIPS: usize = 0;
/// Round trips of the PIN again within the blocking timeout: the open
/// challenge's record comes back with the refusal to open, checked at once.
const AGAIN_TRIPS: usize = 2;
/// Round trips of an answer to a State this instance opened, right or
/// wrong: the code is compared in the instance against the digest it wrote,
/// and one script reads the lock, checks that the record is still the one
/// written and consumes (resetting the failures) or counts the attempt.
const ANSWER_TRIPS: usize = 1;
/// What a wrong code adds: the failure counted toward the lockout.
const FAILURE_TRIPS: usize = 1;
