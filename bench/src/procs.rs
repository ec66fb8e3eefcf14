//! procs: the servers under test (mailotp, on either backend, FreeRADIUS and
//! the floor) as child processes in a temp dir, each started under `taskset`
//! on the same CPUs, and what /proc says about them (CPU time, peak RSS; with
//! the Redis backend, mailotp's and redis-server's together). Children are
//! killed by PID when their guard drops.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailotp::wire::{attr, Code};

use crate::{packet, redis};

/// The shared secret of the bench client on both servers.
pub const SECRET: &str = "bench-secret-4b1d";
/// The PIN of every bench user.
pub const PIN: &str = "bench-pin-7731";
/// The fixed code mailotp mails in `--test-mode`.
pub const FIXED_OTP: &str = "246810";
/// FreeRADIUS's one PAP user.
pub const PAP_USER: &str = "pap-user";
/// Where mailotp's second client (`flood`) sends from.
pub const FLOOD_SOURCE: [u8; 4] = [127, 0, 0, 2];

/// A running server.
pub struct Server {
    child: Child,
    /// Where it answers.
    pub addr: SocketAddr,
    /// mailotp's `/metrics` listener.
    metrics: Option<SocketAddr>,
    /// The redis-server of a mailotp on the Redis backend (it stops after
    /// mailotp: fields drop after `drop` has run).
    companion: Option<redis::Redis>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where mailotp keeps its shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In the process (`[state] backend = "memory"`, the default).
    Memory,
    /// In a redis-server of its own, started beside it.
    Redis,
}

/// CPU time and peak memory of a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Peak resident set (VmHWM), in KiB.
    pub hwm_kib: u64,
}

impl Server {
    /// CPU used so far and peak RSS, from /proc/PID/stat and status; with a
    /// redis-server beside it, the sums of both.
    pub fn usage(&self) -> Usage {
        let mut usage = usage_of(self.child.id());
        if let Some(redis) = &self.companion {
            let more = usage_of(redis.pid());
            usage.cpu += more.cpu;
            usage.hwm_kib += more.hwm_kib;
        }
        usage
    }

    /// mailotp's `mailotp_drops_total{reason}` now, read from `/metrics`.
    pub fn drops(&self, reason: &str) -> Option<u64> {
        self.metric(&format!("mailotp_drops_total{{reason=\"{reason}\"}}"))
    }

    /// One series of mailotp's `/metrics` now (name and labels as printed).
    pub fn metric(&self, series: &str) -> Option<u64> {
        let mut stream = TcpStream::connect(self.metrics?).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let series = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits (up to `limit`) until mailotp has sent `mails` e-mails, so that
    /// a measured phase does not pay for the mails of its set-up.
    pub fn wait_for_mails(&self, mails: u64, limit: Duration) {
        let start = std::time::Instant::now();
        while self.metric("mailotp_mails_sent_total").unwrap_or(0) < mails {
            if start.elapsed() > limit {
                eprintln!("  warning: {mails} set-up mails not all sent after {limit:?}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "  {mails} set-up mails sent {:.1} s after the last challenge opened",
            start.elapsed().as_secs_f64()
        );
    }
}

/// CPU used so far and peak RSS of process `pid`, from /proc/PID/stat and status.
fn usage_of(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server is running");
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them (fields 14 and 15 of proc(5)).
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server is running");
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Usage {
        cpu: Duration::from_nanos(ticks * 1_000_000_000 / hz),
        hwm_kib,
    }
}

/// A loopback UDP port that was free a moment ago.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind loopback")
        .port()
}

/// Starts `program` under `taskset` and waits until it answers; `companion`
/// (a redis-server already started) is killed with it.
fn spawn(
    dir: tempfile::TempDir,
    (addr, metrics): (SocketAddr, Option<SocketAddr>),
    companion: Option<redis::Redis>,
    cpus: &str,
    program: &Path,
    args: &[&str],
) -> Server {
    let log = std::fs::File::create(dir.path().join("server.log")).expect("create the server log");
    let child = Command::new("taskset")
        .arg("-c")
        .arg(cpus)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let server = Server {
        child,
        addr,
        metrics,
        companion,
        _dir: dir,
    };
    wait_ready(&server);
    server
}

/// Polls with Status-Server until the server answers (10 s at most).
fn wait_ready(server: &Server) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    socket.connect(server.addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(10) {
        let auth = [1u8; 16];
        let req = packet::request(Code::StatusServer, 1, &auth, SECRET.as_bytes(), &[], None);
        let _ = socket.send(&req);
        if let Ok(len) = socket.recv(&mut buf) {
            if packet::check_answer(&buf[..len], &auth, SECRET.as_bytes(), Code::AccessAccept).is_ok() {
                return;
            }
        }
    }
    let log = std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default();
    panic!(
        "server on {} did not answer Status-Server within 10 s; its log:\n{log}",
        server.addr
    );
}

/// FreeRADIUS 3.2 with PAP and one cleartext user, in a temp dir.
pub fn freeradius(cpus: &str) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let port = free_port();
    let conf = format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}
name = freeradius
confdir = {d}
run_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
log {{
  destination = stderr
  auth = no
}}
security {{
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}}
thread pool {{
  start_servers = 5
  max_servers = 32
  min_spare_servers = 3
  max_spare_servers = 10
  max_requests_per_server = 0
}}
modules {{
  pap {{
  }}
  files {{
    filename = {d}/users
  }}
}}
server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {port}
  }}
  authorize {{
    files
    pap
  }}
  authenticate {{
    Auth-Type PAP {{
      pap
    }}
  }}
}}
client bench {{
  ipaddr = 127.0.0.1
  secret = {SECRET}
  require_message_authenticator = yes
}}
"#
    );
    std::fs::write(dir.path().join("radiusd.conf"), conf).expect("write radiusd.conf");
    let users = format!("{PAP_USER} Cleartext-Password := \"{PIN}\"\n");
    std::fs::write(dir.path().join("users"), users).expect("write users");
    // FreeRADIUS refuses a configuration directory others can write to.
    make_private(dir.path());
    let dir_arg = dir.path().display().to_string();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    spawn(
        dir,
        (addr, None),
        None,
        cpus,
        Path::new("freeradius"),
        &["-f", "-d", &dir_arg],
    )
}

fn make_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod temp dir");
}

/// The users of a mailotp bench: `cheap-N` with a cheap argon2 hash (for
/// opening many challenges fast) and `storm-N` with the production cost.
pub struct Users {
    /// How many `cheap-N` users.
    pub cheap: usize,
    /// PHC string of the cheap hash.
    pub cheap_hash: String,
    /// How many `storm-N` users.
    pub storm: usize,
    /// PHC string of the production-cost hash.
    pub storm_hash: String,
}

/// mailotp in `--test-mode` with the fixed code, the file mail provider and
/// no blocking timeout, in a temp dir; `server_extra` is added to `[server]`.
/// Besides the bench client it has `flood` on [`FLOOD_SOURCE`] (same secret),
/// and `/metrics` on a free port. On [`Backend::Redis`] a redis-server of its
/// own is started first, on the same CPUs.
pub fn mailotp(binary: &Path, cpus: &str, users: &Users, server_extra: &str, backend: Backend) -> Server {
    let dir = in_memory_dir();
    let redis = (backend == Backend::Redis).then(|| redis::start(dir.path(), cpus));
    let state = redis
        .as_ref()
        .map(|r| redis::state_section(dir.path(), r.port))
        .unwrap_or_default();
    let port = free_port();
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind loopback")
        .port();
    let mut text = String::with_capacity((users.cheap + users.storm) * 160);
    for (prefix, n, hash) in [
        ("cheap", users.cheap, &users.cheap_hash),
        ("storm", users.storm, &users.storm_hash),
    ] {
        for i in 0..n {
            let _ = writeln!(
                text,
                "[[users]]\nname = \"{prefix}-{i}\"\nemail = \"{prefix}-{i}@bench.test\"\npin = \"{hash}\"\n"
            );
        }
    }
    std::fs::write(dir.path().join("users.toml"), text).expect("write users.toml");
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:{port}"]
{server_extra}

[[clients]]
name = "bench"
address = "127.0.0.1"
secret = "{SECRET}"

[[clients]]
name = "flood"
address = "127.0.0.2"
secret = "{SECRET}"

[metrics]
listen = "127.0.0.1:{metrics_port}"

{state}

[users]
file = "users.toml"

[email]
blocking_timeout = 0
fixed_otp_for_testing = "{FIXED_OTP}"
queue_limit = 10000000

[email.provider]
kind = "file"
outbox = "outbox"
"#
    );
    std::fs::create_dir(dir.path().join("outbox")).expect("create outbox");
    let config_path: PathBuf = dir.path().join("mailotp.toml");
    std::fs::write(&config_path, config).expect("write mailotp.toml");
    let config_arg = config_path.display().to_string();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    spawn(
        dir,
        (addr, Some(metrics)),
        redis,
        cpus,
        binary,
        &["serve", "-c", &config_arg, "--test-mode"],
    )
}

/// The floor responder (`floor.rs`): this very binary with `--serve-floor`.
pub fn floor(cpus: &str) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let me = std::env::current_exe().expect("the bench binary's path");
    spawn(
        dir,
        (addr, None),
        None,
        cpus,
        &me,
        &["--serve-floor", &addr.to_string()],
    )
}

/// A temp dir on tmpfs where there is one, for the mail outbox. On ext4 the
/// creation of each `.eml` file slowed as earlier runs' hundreds of thousands
/// of deleted files piled up (inode search in the kernel, not preemptible
/// here), and those calls, on the server's CPU, came to dominate the cheap
/// paths' latency in scenario 5: a cost of the bench's mail sink, not of the
/// server, which would send by SMTP.
fn in_memory_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

/// The User-Name attribute of a bench user.
pub fn user_attr(name: &str) -> (u8, &[u8]) {
    (attr::USER_NAME, name.as_bytes())
}
