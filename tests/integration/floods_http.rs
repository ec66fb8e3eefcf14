//! Issue 17: the HTTP listeners hold. Slow bodies to the link page hold a
//! slot only until `request_timeout`; half-open connections to `/metrics`
//! under a low open-files limit (set with prlimit once the server runs)
//! neither flood the log nor stop RADIUS, and `/metrics` answers again once
//! they are gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use crate::harness::*;
use crate::link::start_with;
use crate::packets::{assert_signed, Request, STATUS_SERVER};

/// `ADDR` out of a `… on http://ADDR[/path]` log line.
fn address_in(line: &str, after: &str) -> SocketAddr {
    let rest = line.split(after).nth(1).unwrap();
    rest.split(['/', '"', ' ']).next().unwrap().parse().unwrap()
}

/// Sends `request` on a new connection and reads until the server closes
/// it (or the deadline passes); the status line, or "" when closed unanswered.
fn exchange_http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or("").to_owned()
}

/// Whether the server closed `stream` without an answer within the deadline.
fn closed_unanswered(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn slow_bodies_hold_a_link_page_slot_only_until_the_request_timeout() {
    let t = start_with("", "max_connections = 2\nrequest_timeout = 2\n");
    let pages = address_in(&t.pages, "http://");
    assert_eq!(
        send_pin(&t.server, "alice", pin("alice")).unwrap().code,
        "Access-Challenge"
    );
    let path = t.link_path(1);

    // Both slots: complete headers, then one byte of a 100-byte body.
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(pages).unwrap();
            write!(s, "POST {path} HTTP/1.1\r\nHost: otp\r\nContent-Length: 100\r\n\r\nx").unwrap();
            s
        })
        .collect();

    // A fresh GET waits in the backlog until the time limit frees a slot.
    let status = exchange_http(pages, &format!("GET {path} HTTP/1.1\r\nHost: otp\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    for stream in &mut slow {
        assert!(closed_unanswered(stream), "a slow body is cut off, not answered");
    }
    // The slow POSTs confirmed nothing: the link still waits for its POST.
    let page = exchange_http(
        pages,
        &format!("POST {path} HTTP/1.1\r\nHost: otp\r\nContent-Length: 0\r\n\r\n"),
    );
    assert_eq!(page, "HTTP/1.1 200 OK", "the first complete POST confirms");
}

/// `/metrics` over a plain connection; the status line.
fn scrape(addr: SocketAddr) -> String {
    exchange_http(addr, "GET /metrics HTTP/1.0\r\n\r\n")
}

fn status_server_answered(server: &Server, id: u8) -> bool {
    let socket = udp_client(server.addr());
    let request = Request::new(STATUS_SERVER, id).ma();
    match exchange(&socket, &request.signed(SECRET)) {
        Some(reply) => assert_signed(&reply, &request, SECRET).bytes()[0] == 2,
        None => false,
    }
}

/// The open-files limits of `pid`, as (soft, hard).
fn open_files_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[test]
fn half_open_metrics_connections_under_a_low_file_limit_flood_nothing() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    // A cap above what the descriptors allow, so that accept itself fails
    // (EMFILE) and the backoff is what keeps the log small.
    setup.extra = "[metrics]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1000\nrequest_timeout = 60\n".to_owned();
    let server = Server::start(&setup);
    let metrics = address_in(&server.wait_for_log("metrics on http://"), "http://");
    let (soft, hard) = open_files_limit(server.process.pid());
    assert_eq!(
        soft, hard,
        "the soft open-files limit is raised to the hard limit at start"
    );
    assert_eq!(scrape(metrics), "HTTP/1.0 200 OK");

    let limited = Command::new("prlimit")
        .args(["--nofile=64:64", "--pid"])
        .arg(server.process.pid().to_string())
        .status()
        .unwrap();
    assert!(limited.success());
    let before = server.log().lines().count();
    // Three times what the descriptors allow; the rest of the 150 wait in the
    // listen backlog (128), so every connect completes.
    let mut half_open: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(metrics).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    server.wait_for_log("accept failed");
    for id in 0..20u8 {
        assert!(
            status_server_answered(&server, id),
            "RADIUS answers while descriptors run out"
        );
    }
    let log = server.log();
    let during: Vec<&str> = log.lines().skip(before).collect();
    assert_eq!(log.matches("accept failed").count(), 1, "one line per burst:\n{log}");
    assert!(during.len() <= 5, "the log stays small:\n{}", during.join("\n"));

    half_open.clear();
    poll("/metrics to answer again", DEADLINE, || {
        (scrape(metrics) == "HTTP/1.0 200 OK").then_some(())
    });
    server.wait_for_log("accepting connections again");
    assert!(status_server_answered(&server, 99));
}
