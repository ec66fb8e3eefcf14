//! redis: the redis-server behind the Redis rows, one per scenario, on a free
//! loopback port under `taskset` on the servers' CPUs (it works for mailotp,
//! so it competes for mailotp's CPU as it would on a one-box pool), without
//! persistence; and the `[state]` section that points mailotp at it.
//! The process is killed by PID when its guard drops.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A started redis-server and its port.
pub struct Redis {
    child: Child,
    /// Its loopback TCP port.
    pub port: u16,
}

impl Redis {
    /// Its process id, for /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts redis-server in `dir` on `cpus` and waits until it answers PING
/// (10 s at most).
pub fn start(dir: &Path, cpus: &str) -> Redis {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind loopback")
        .port();
    let log = std::fs::File::create(dir.join("redis.log")).expect("create the redis log");
    let child = Command::new("taskset")
        .arg("-c")
        .arg(cpus)
        .arg("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let redis = Redis { child, port };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if pong(port) {
            return redis;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(redis);
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    panic!("redis-server on port {port} did not answer PING within 10 s; its log:\n{log}");
}

fn pong(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// `[state]` for mailotp on the Redis at `port`, with a fresh 32-byte pool
/// key written to `dir/pool.key`.
pub fn state_section(dir: &Path, port: u16) -> String {
    let key = dir.join("pool.key");
    std::fs::write(&key, rand::random::<[u8; 32]>()).expect("write the pool key");
    format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/0\"\nsecret_file = \"{}\"\n",
        key.display()
    )
}
