//! Floods stay contained (SPEC "Security invariants"): a flood of PIN
//! requests from one client fills only that client's share of the PIN-check
//! queue, while another client's user logs in and Status-Server is answered;
//! and memory under PIN load stays near the hash threads' working memory.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailotp::wire::{attr, Code};

use crate::harness::*;
use crate::packets::{self, assert_signed, send_recv, wait_dropped, Request, STATUS_SERVER};

/// The flooding client's secret (its own [[clients]] entry on 127.0.0.2).
const FLOOD_SECRET: &str = "flood-secret-77c1";
/// Hash threads of the servers here, so the memory bound does not depend on
/// the machine's core count.
const HASH_WORKERS: u64 = 2;

/// A server with `[server]` lines added, summing drops up every second.
fn start(setup: &Setup, server_lines: &str) -> Server {
    let dir = setup.write();
    let text = setup.config_text().replacen(
        "[server]\n",
        &format!("[server]\ndrop_log_interval = 1\nhash_workers = {HASH_WORKERS}\n{server_lines}\n"),
        1,
    );
    std::fs::write(dir.path().join("mailotp.toml"), text).unwrap();
    Server::start_in(dir, &setup.args, setup.listen.len())
}

/// Unknown-user PIN requests from 127.0.0.2 in bursts until `stop`; the
/// answers are read and thrown away. Returns how many were sent.
fn flood(server: SocketAddr, stop: &AtomicBool) -> u64 {
    let socket = packets::udp_from("127.0.0.2", server);
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..20 {
            let req = Request::login(sent as u8, &format!("nobody-{sent}"), "not-a-pin", FLOOD_SECRET);
            // A full socket buffer only loses flood packets.
            let _ = socket.send(&req.bytes());
            sent += 1;
        }
        while socket.recv(&mut buf).is_ok() {}
        // Pacing, not waiting for anything: ~1,000 requests/s, several times
        // what two hash threads can check.
        std::thread::sleep(Duration::from_millis(20));
    }
    sent
}

/// Status-Server from `socket` is answered with Access-Accept.
fn assert_alive(socket: &UdpSocket, id: u8) {
    let req = Request::new(STATUS_SERVER, id).ma();
    let answer = send_recv(socket, &req.signed(SECRET)).expect("Status-Server answered during the flood");
    assert_eq!(assert_signed(&answer, &req, SECRET).code(), Code::AccessAccept);
}

#[test]
fn a_pin_flood_from_one_client_leaves_other_clients_served() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup
        .clients
        .push(client("flood", "127.0.0.2", FLOOD_SECRET, false, "access-challenge"));
    let server = start(&setup, "pin_queue_per_client = 16");
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let flooder = scope.spawn(|| flood(server.addr(), &stop));
        // The flood has filled its share before the honest login starts.
        wait_dropped(&server, "pin-queue-full", 1);
        let local = packets::udp_from("127.0.0.1", server.addr());
        assert_alive(&local, 1);

        // Each request is sent once: a drop would show as no answer.
        let first = Request::login(2, "alice", pin("alice"), SECRET);
        let answer = send_recv(&local, &first.bytes()).expect("the honest PIN answered during the flood");
        let packet = assert_signed(&answer, &first, SECRET);
        assert_eq!(packet.code(), Code::AccessChallenge);
        let state = packet.first(attr::STATE).expect("a State").to_vec();
        let mail = poll("alice's mail", DEADLINE, || {
            smtp.mails_to("alice@example.test").into_iter().next()
        });
        assert_alive(&local, 3);
        let code = Request::login(4, "alice", &mail.otp(), SECRET).attr(attr::STATE, &state);
        let answer = send_recv(&local, &code.bytes()).expect("the code answered during the flood");
        assert_eq!(assert_signed(&answer, &code, SECRET).code(), Code::AccessAccept);
        assert_alive(&local, 5);

        stop.store(true, Ordering::Relaxed);
        assert!(flooder.join().unwrap() > 16);
    });
    // The admin sees which client was cut off, and that it was only that one.
    let warning = server.wait_for_log("share of the PIN-check queue");
    assert!(warning.contains("client=flood"), "{warning}");
    let log = server.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("share of the PIN-check queue") && l.contains("client=local")),
        "{log}"
    );
    server.assert_log_clean();
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn memory_stays_flat_under_wrong_pins_and_unknown_users() {
    let smtp = SmtpSink::start();
    let server = start(&Setup::new(smtp.port), "");
    let socket = packets::udp_from("127.0.0.1", server.addr());
    assert_alive(&socket, 0);
    let base = rss_kib(server.process.pid());
    // Each hash thread keeps one 19 MiB argon2 block (m=19456 KiB); half as
    // much again for the allocator's rounding and per-thread arenas, and
    // 64 MiB for everything else a burst of requests allocates (tasks, log
    // buffers, the duplicate cache). Before the blocks were reused, 40
    // requests took the resident set from 8 to 378 MB.
    let bound = base + HASH_WORKERS * 19 * 1024 * 3 / 2 + 64 * 1024;
    for round in 0..2u8 {
        // 40 at once, so both threads hash and more wait: half unknown
        // users, half a known user's wrong PIN.
        let requests: Vec<Request> = (0..40u8)
            .map(|i| {
                let user = if i % 2 == 0 {
                    format!("nobody-{i}")
                } else {
                    "bob".to_owned()
                };
                Request::login(round * 40 + i, &user, "wrong-pin-0000", SECRET)
            })
            .collect();
        for req in &requests {
            socket.send(&req.bytes()).unwrap();
        }
        for _ in &requests {
            let answer = packets::recv(&socket).expect("every PIN request answered");
            let req = requests
                .iter()
                .find(|r| r.id == answer[1])
                .expect("an answer to one of ours");
            assert_eq!(assert_signed(&answer, req, SECRET).code(), Code::AccessReject);
        }
        let rss = rss_kib(server.process.pid());
        assert!(
            rss <= bound,
            "after {} PIN requests: VmRSS {rss} KiB, base {base} KiB, bound {bound} KiB",
            40 * (u32::from(round) + 1)
        );
    }
    server.assert_log_clean();
}
