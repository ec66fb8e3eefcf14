//! Helpers for the pool tests: a real `redis-server` on a free port, mailotp
//! instances sharing it, and hand-built Access-Requests for sending the same
//! answer to two instances at the same instant.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::freeradius::{shipped, FreeRadius};
use crate::harness::*;

/// A redis-server started by the test, without persistence; stopped by PID.
pub struct RedisServer {
    /// Its port (kept across restarts).
    pub port: u16,
    process: Option<Process>,
}

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            port: free_tcp_port(),
            process: None,
        };
        redis.restart();
        redis
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        let process = Process::spawn("redis-server", cmd);
        process.wait_for_line("Ready to accept connections");
        self.process = Some(process);
    }

    /// Stops it (SIGTERM) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal("TERM");
            process.wait_exit(DEADLINE).expect("redis-server stops on SIGTERM");
        }
    }

    /// `[state]` for an instance of the pool, with the key in `key`.
    pub fn state_section(&self, key: &PoolKey) -> String {
        format!(
            "[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"\nsecret_file = \"{}\"\n",
            self.port,
            key.path().display()
        )
    }
}

/// The pool's shared key in a file of its own.
pub struct PoolKey(TempDir);

impl PoolKey {
    /// 32 random bytes.
    pub fn new() -> PoolKey {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pool.key"), rand::random::<[u8; 32]>()).unwrap();
        PoolKey(dir)
    }

    /// The file.
    pub fn path(&self) -> PathBuf {
        self.0.path().join("pool.key")
    }
}

/// `n` instances sharing `redis`, mail to `smtp_port`; `email` and `users`
/// are lines for their sections.
pub fn start_pool(
    n: usize,
    smtp_port: u16,
    redis: &RedisServer,
    key: &PoolKey,
    email: &str,
    users: &str,
) -> Vec<Server> {
    let mut setup = Setup::new(smtp_port);
    setup.email = email.to_owned();
    setup.users = users.to_owned();
    start_pool_with(n, setup, redis, key)
}

/// `n` instances of `setup` sharing `redis` (its `[state]` goes before `extra`).
pub fn start_pool_with(n: usize, mut setup: Setup, redis: &RedisServer, key: &PoolKey) -> Vec<Server> {
    setup.extra = format!("{}\n{}", redis.state_section(key), setup.extra);
    (0..n).map(|_| Server::start(&setup)).collect()
}

/// The `/metrics` address `server` logged (`[metrics] listen` on port 0).
pub fn metrics_address(server: &Server) -> String {
    let line = server.wait_for_log("metrics on http://");
    let metrics = line.split("metrics on http://").nth(1).unwrap();
    let metrics = metrics.split(|c: char| c.is_whitespace() || c == '/').next().unwrap();
    metrics.to_owned()
}

/// The value of the metric `name` (a line without labels) at `metrics`.
pub fn metric(metrics: &str, name: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {metrics}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let prefix = format!("{name} ");
    response
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {response}"))
        .trim()
        .to_owned()
}

/// The HTTP status curl gets for `method` (GET or POST, as a browser's form) on `url`.
pub fn http_status(method: &str, url: &str) -> u16 {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]);
    if method == "POST" {
        cmd.args(["-X", "POST", "-H", "Origin: null", "-d", ""]);
    }
    let out = cmd.arg(url).output().expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Decodes radclient's `0x…` State into the bytes we sent (ASCII hex).
pub fn state_bytes(state: &str) -> Vec<u8> {
    hex::decode(state.trim_start_matches("0x")).unwrap()
}

/// An Access-Request from the test client, as [`SECRET`] hides the password.
pub fn access_request(id: u8, user: &str, password: &str, state: &[u8]) -> Vec<u8> {
    let authenticator: [u8; 16] = rand::random();
    let hidden = mailotp::wire::hide_password(password.as_bytes(), SECRET.as_bytes(), &authenticator).unwrap();
    let mut packet = vec![1, id, 0, 0];
    packet.extend_from_slice(&authenticator);
    for (kind, value) in [(1u8, user.as_bytes()), (2, &hidden[..]), (24, state)] {
        packet.push(kind);
        packet.push(u8::try_from(value.len() + 2).unwrap());
        packet.extend_from_slice(value);
    }
    let len = u16::try_from(packet.len()).unwrap().to_be_bytes();
    packet[2..4].copy_from_slice(&len);
    packet
}

/// Sends `packets[i]` to `servers[i]` back to back, then reads every answer:
/// the RADIUS code of each, or `None` when one did not answer.
pub fn send_at_once(servers: &[SocketAddr], packets: &[Vec<u8>]) -> Vec<Option<u8>> {
    let sockets: Vec<UdpSocket> = servers.iter().map(|s| udp_client(*s)).collect();
    for (socket, packet) in sockets.iter().zip(packets) {
        socket.send(packet).unwrap();
    }
    sockets
        .iter()
        .map(|socket| {
            let mut buf = [0u8; 4096];
            socket.recv(&mut buf).ok().map(|_| buf[0])
        })
        .collect()
}

/// RADIUS codes.
pub const ACCESS_ACCEPT: u8 = 2;
/// Access-Reject.
pub const ACCESS_REJECT: u8 = 3;

/// FreeRADIUS 3.2 proxying to a fail-over pool of `a`, then `b`, configured
/// with the shipped `conf/freeradius/proxy-pool.conf` (only addresses, ports
/// and secrets replaced).
pub fn start_fail_over_proxy(a: SocketAddr, b: SocketAddr) -> FreeRadius {
    let proxy = shipped("proxy-pool.conf")
        .replace(
            "ipaddr = 10.0.0.11\n\tport = 1812",
            &format!("ipaddr = {}\n\tport = {}", a.ip(), a.port()),
        )
        .replace(
            "ipaddr = 10.0.0.12\n\tport = 1812",
            &format!("ipaddr = {}\n\tport = {}", b.ip(), b.port()),
        )
        .replace("change-me-to-the-secret-of-the-proxy-client", SECRET);
    assert!(!proxy.contains("10.0.0.1"), "every address replaced:\n{proxy}");
    FreeRadius::start_with(&proxy)
}
