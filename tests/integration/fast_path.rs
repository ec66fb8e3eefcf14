//! The fast path's sockets: one per core on each listen address
//! (SO_REUSEPORT), every one of them answering, and no silent sharing of a
//! port with another server.

use std::process::Command;

use crate::harness::*;
use crate::packets::assert_answered;

#[test]
fn status_server_from_many_source_ports_is_always_answered() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    // The kernel spreads source ports over the sockets; each radclient run
    // comes from a new port, so every socket's loop gets some of them.
    for _ in 0..12 {
        let reply = radclient_code(server.addr(), SECRET, "status", "Message-Authenticator = 0x00")
            .expect("an answer to Status-Server");
        assert_eq!(reply.code, "Access-Accept");
    }
    // Only the login that follows is logged at info: Status-Server answers
    // are counted, not logged line by line.
    let reply = send_pin(&server, "alice", pin("alice")).expect("an answer to the PIN");
    assert_eq!(reply.code, "Access-Challenge");
    assert_answered(&server, 1);
    assert_eq!(
        server.process.count_lines("Status-Server answered"),
        0,
        "{}",
        server.log()
    );
    server.assert_log_clean();
}

#[test]
fn a_second_server_on_a_port_in_use_is_refused() {
    let smtp = SmtpSink::start();
    let first = Server::start(&Setup::new(smtp.port));
    let mut setup = Setup::new(smtp.port);
    setup.listen = vec![first.addr().to_string()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mailotp.toml"), setup.config_text()).unwrap();
    std::fs::write(dir.path().join("users.toml"), &setup.users_file).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailotp"));
    cmd.arg("serve").arg("-c").arg(dir.path().join("mailotp.toml"));
    let mut second = Process::spawn("second mailotp", cmd);
    let status = second.wait_exit(DEADLINE).expect("the second server exits");
    assert!(!status.success());
    let out = second.output();
    assert!(
        out.contains(&format!("cannot listen on {}", first.addr())) && out.contains("in use"),
        "{out}"
    );
    // The first one still answers.
    let reply = radclient_code(first.addr(), SECRET, "status", "Message-Authenticator = 0x00").unwrap();
    assert_eq!(reply.code, "Access-Accept");
}

#[test]
fn pin_hash_threads_run_niced_below_the_answering_threads() {
    let smtp = SmtpSink::start();
    let server = Server::start(&Setup::new(smtp.port));
    // What an admin sees with `ps -L`: the hash threads at nice 5, every
    // other thread at 0.
    let threads = || {
        let out = Command::new("ps")
            .args(["-L", "-o", "comm=,nice=", "-p", &server.process.pid().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (comm, nice) = l.trim().rsplit_once(char::is_whitespace)?;
                Some((comm.trim().to_owned(), nice.parse::<i32>().ok()?))
            })
            .collect::<Vec<_>>()
    };
    let settled = poll("the hash threads to renice", DEADLINE, || {
        let t = threads();
        let hashes: Vec<_> = t.iter().filter(|(c, _)| c.starts_with("pin-hash-")).collect();
        (!hashes.is_empty() && hashes.iter().all(|(_, n)| *n == 5)).then_some(t)
    });
    for (comm, nice) in &settled {
        if !comm.starts_with("pin-hash-") {
            assert_eq!(*nice, 0, "{comm} in {settled:?}");
        }
    }
    // And a login still goes through them.
    let reply = send_pin(&server, "alice", pin("alice")).expect("an answer to the PIN");
    assert_eq!(reply.code, "Access-Challenge");
    server.assert_log_clean();
}
