//! The black-box harness: the real `mailotp` binary on free ports with a temp
//! configuration, a real SMTP server (aiosmtpd), and FreeRADIUS's `radclient`
//! as the client. Every process is killed by PID when its guard drops; a
//! failing test prints the server's log. Waiting is always polling with a
//! deadline, never a bare sleep.

#![allow(dead_code)] // each test module uses its own part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The shared secret of the default test client.
pub const SECRET: &str = "s3cret-for-tests-9f2";
/// Test users: (name, PIN, e-mail, active). PINs are distinctive so the log
/// check cannot confuse them with timestamps.
pub const USERS: [(&str, &str, &str, bool); 3] = [
    ("alice", "pin-alice-5521", "alice@example.test", true),
    ("bob", "pin-bob-8834", "bob@example.test", true),
    ("carol", "pin-carol-1177", "carol@example.test", false),
];
/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `f` until it returns `Some`, failing the test with `what` after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago (for a peer that must start later).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process whose output lines are collected; killed on drop.
pub struct Process {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Starts `cmd`, collecting stdout and stderr.
    pub fn spawn(name: &str, mut cmd: Command) -> Process {
        cmd.stdin(Stdio::null());
        Process::spawn_collecting(name, cmd)
    }

    /// Starts `cmd` with a pipe to its stdin, for [`Process::type_line`].
    pub fn spawn_with_stdin(name: &str, mut cmd: Command) -> Process {
        cmd.stdin(Stdio::piped());
        Process::spawn_collecting(name, cmd)
    }

    /// Writes one line to its stdin.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("started with spawn_with_stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn spawn_collecting(name: &str, mut cmd: Command) -> Process {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        let readers = [out, err]
            .into_iter()
            .map(|stream| {
                let lines = Arc::clone(&lines);
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        lines.lock().unwrap().push(line);
                    }
                })
            })
            .collect();
        Process {
            name: name.to_owned(),
            child,
            lines,
            readers,
        }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a line containing `needle`, returning it.
    pub fn wait_for_line(&self, needle: &str) -> String {
        poll(&format!("{} to print {needle:?}", self.name), DEADLINE, || {
            self.lines.lock().unwrap().iter().find(|l| l.contains(needle)).cloned()
        })
    }

    /// Lines containing `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Stops it with SIGTERM (SIGKILL after the deadline) and waits until
    /// everything it printed has been read.
    pub fn stop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            self.signal("TERM");
            if self.wait_exit(DEADLINE).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Waits for the process to exit; `None` if it did not within the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} (pid {}) -----\n{}\n-----",
                self.name,
                self.child.id(),
                self.output()
            );
        }
    }
}

/// The users file for [`USERS`], hashed once per test binary.
pub fn users_toml() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        USERS
            .iter()
            .map(|(name, pin, email, active)| {
                let hash = mailotp::users::hash_pin(pin.as_bytes());
                format!("[[users]]\nname = \"{name}\"\nemail = \"{email}\"\npin = \"{hash}\"\nactive = {active}\n\n")
            })
            .collect()
    })
}

/// The PIN of a test user.
pub fn pin(user: &str) -> &'static str {
    USERS.iter().find(|u| u.0 == user).map(|u| u.1).unwrap()
}

/// The pieces of a test configuration; each is raw TOML for its section.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `[server]` listen addresses.
    pub listen: Vec<String>,
    /// `[[clients]]` blocks, each without the header line.
    pub clients: Vec<String>,
    /// Lines of `[email]`.
    pub email: String,
    /// Lines of `[email.provider]`.
    pub provider: String,
    /// Lines of `[users]` besides `file`.
    pub users: String,
    /// The users file.
    pub users_file: String,
    /// Sections appended as they are.
    pub extra: String,
    /// Extra arguments to `serve`.
    pub args: Vec<String>,
}

impl Setup {
    /// One client (127.0.0.1, [`SECRET`], no Message-Authenticator needed, so
    /// plain radclient works), mail to `smtp_port` without TLS.
    pub fn new(smtp_port: u16) -> Setup {
        Setup {
            listen: vec!["127.0.0.1:0".to_owned()],
            clients: vec![client("local", "127.0.0.1", SECRET, false, "access-challenge")],
            email: String::new(),
            provider: smtp_plain(smtp_port),
            users: String::new(),
            users_file: users_toml().to_owned(),
            extra: String::new(),
            args: Vec::new(),
        }
    }

    /// Writes `mailotp.toml` and `users.toml` into a new temporary directory.
    pub fn write(&self) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mailotp.toml"), self.config_text()).unwrap();
        std::fs::write(dir.path().join("users.toml"), &self.users_file).unwrap();
        dir
    }

    /// The configuration file's text.
    pub fn config_text(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(|a| format!("{a:?}")).collect();
        let mut text = format!("[server]\nlisten = [{}]\nshutdown_grace = 2\n\n", listen.join(", "));
        for c in &self.clients {
            text.push_str(&format!("[[clients]]\n{c}\n"));
        }
        text.push_str(&format!("[users]\nfile = \"users.toml\"\n{}\n\n", self.users));
        text.push_str(&format!(
            "[email]\n{}\n\n[email.provider]\n{}\n\n{}",
            self.email, self.provider, self.extra
        ));
        text
    }
}

/// A `[[clients]]` block.
pub fn client(name: &str, address: &str, secret: &str, require_ma: bool, mode: &str) -> String {
    format!(
        "name = \"{name}\"\naddress = \"{address}\"\nsecret = \"{secret}\"\n\
         require_message_authenticator = {require_ma}\nchallenge_mode = \"{mode}\"\n"
    )
}

/// `[email.provider]` lines for a plain SMTP server on localhost.
pub fn smtp_plain(port: u16) -> String {
    format!("kind = \"smtp\"\nsmtp_server = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"none\"\nsmtp_timeout = 5\n")
}

/// Runs `mailotp COMMAND -c DIR/mailotp.toml` to completion (check, or a
/// serve that is expected to refuse its configuration).
pub fn run_mailotp(command: &str, dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailotp"))
        .arg(command)
        .arg("-c")
        .arg(dir.join("mailotp.toml"))
        .output()
        .unwrap()
}

/// Runs `mailotp check --connect -c DIR/mailotp.toml`: whether it passed, and
/// what it printed.
pub fn check_connect(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailotp"))
        .args(["check", "--connect", "-c"])
        .arg(dir.join("mailotp.toml"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running mailotp.
pub struct Server {
    /// The process.
    pub process: Process,
    /// The addresses it listens on, as it logged them.
    pub addrs: Vec<SocketAddr>,
    /// Its configuration directory (config, users file).
    pub dir: TempDir,
    /// Strings that must never appear in its log (checked on drop).
    forbidden: Vec<String>,
}

impl Server {
    /// Writes the configuration and starts `mailotp serve` on it.
    pub fn start(setup: &Setup) -> Server {
        Server::start_in(setup.write(), &setup.args, setup.listen.len())
    }

    /// Starts `mailotp serve -c DIR/mailotp.toml` and waits for its sockets.
    pub fn start_in(dir: TempDir, args: &[String], sockets: usize) -> Server {
        Server::start_with_env(dir, args, sockets, &[])
    }

    /// As [`Server::start_in`], with more environment variables.
    pub fn start_with_env(dir: TempDir, args: &[String], sockets: usize, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailotp"));
        cmd.arg("serve")
            .arg("-c")
            .arg(dir.path().join("mailotp.toml"))
            .args(args);
        cmd.current_dir(dir.path()).env("RUST_LOG", "info");
        cmd.envs(env.iter().copied());
        let process = Process::spawn("mailotp", cmd);
        let addrs = poll("mailotp to listen", DEADLINE, || {
            let out = process.output();
            let addrs: Vec<SocketAddr> = out
                .lines()
                .filter_map(|l| l.split("listening on ").nth(1))
                .filter_map(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next()?.parse().ok())
                .collect();
            (addrs.len() >= sockets).then_some(addrs)
        });
        let mut forbidden = vec![SECRET.to_owned()];
        forbidden.extend(USERS.iter().map(|u| u.1.to_owned()));
        Server {
            process,
            addrs,
            dir,
            forbidden,
        }
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.output()
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.process.wait_for_line(needle)
    }

    /// Adds a string (an OTP, a password) that its log must never contain.
    pub fn forbid_in_log(&mut self, secret: &str) {
        self.forbidden.push(secret.to_owned());
    }

    /// Fails if the log contains any forbidden string as a whole word.
    pub fn assert_log_clean(&self) {
        let log = self.log();
        for secret in &self.forbidden {
            assert!(
                !contains_word(&log, secret),
                "the server log contains the secret {secret:?}:\n{log}"
            );
        }
    }
}

impl Drop for Server {
    /// A clean stop first, so that the check sees every line it wrote.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.process.stop();
            self.assert_log_clean();
        }
    }
}

/// Whether `needle` stands in `haystack` not glued to letters or digits (so an
/// OTP is not found inside a timestamp's fraction).
pub fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// How the SMTP sink talks.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Listen on this port (default: any free one).
    pub port: Option<u16>,
    /// "plain", "starttls" or "tls".
    pub mode: Option<&'static str>,
    /// Certificate and key (PEM files) for TLS.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// `user:password` required.
    pub auth: Option<String>,
    /// Recipients refused with 550.
    pub reject: Vec<String>,
    /// Seconds to wait before accepting each message (a slow relay).
    pub delay: Option<f32>,
}

/// A real SMTP server that keeps what it receives.
pub struct SmtpSink {
    /// The process.
    pub process: Process,
    /// Its port.
    pub port: u16,
    dir: TempDir,
}

impl SmtpSink {
    /// A plain SMTP server on a free port.
    pub fn start() -> SmtpSink {
        SmtpSink::start_with(SinkOptions::default())
    }

    /// An SMTP server as `options` say.
    pub fn start_with(options: SinkOptions) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).arg("--dir").arg(dir.path());
        cmd.arg("--port").arg(options.port.unwrap_or(0).to_string());
        cmd.arg("--mode").arg(options.mode.unwrap_or("plain"));
        if let Some((cert, key)) = &options.cert {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(auth) = &options.auth {
            cmd.arg("--auth").arg(auth);
        }
        for r in &options.reject {
            cmd.arg("--reject").arg(r);
        }
        if let Some(delay) = options.delay {
            cmd.arg("--delay").arg(delay.to_string());
        }
        let process = Process::spawn("smtp sink", cmd);
        let line = process.wait_for_line("listening on");
        let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        SmtpSink { process, port, dir }
    }

    /// Mails received so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| (p.metadata().unwrap().modified().unwrap(), p))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| Mail {
                raw: std::fs::read_to_string(p).unwrap(),
            })
            .collect()
    }

    /// Waits until at least `n` mails arrived; returns them all.
    pub fn wait_for_mails(&self, n: usize) -> Vec<Mail> {
        poll(&format!("{n} mail(s)"), DEADLINE, || {
            let mails = self.mails();
            (mails.len() >= n).then_some(mails)
        })
    }

    /// Mails to one recipient.
    pub fn mails_to(&self, address: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.header("To").contains(address))
            .collect()
    }
}

/// One received e-mail.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The message as received, with the sink's X- headers first.
    pub raw: String,
}

impl Mail {
    /// The first header of that name (empty if absent).
    pub fn header(&self, name: &str) -> String {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        let prefix = format!("{}:", name.to_ascii_lowercase());
        head.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
            .unwrap_or_default()
    }

    /// Everything after the headers.
    pub fn body(&self) -> String {
        self.raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    /// The code in the body: the first word of 6 to 8 digits (MIME
    /// boundary lines, random letters and digits, are skipped).
    pub fn otp(&self) -> String {
        let body = self.body();
        let lines: Vec<&str> = body.lines().filter(|l| !l.starts_with("--")).collect();
        lines
            .join("\n")
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| (6..=8).contains(&w.len()))
            .unwrap_or_else(|| panic!("no code in mail:\n{}", self.raw))
            .to_owned()
    }
}

/// What radclient received.
#[derive(Debug, Clone)]
pub struct Reply {
    /// "Access-Accept", "Access-Reject" or "Access-Challenge".
    pub code: String,
    /// Attributes as radclient prints them (values with quotes removed).
    pub attributes: Vec<(String, String)>,
}

impl Reply {
    /// The first attribute of that name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The State as radclient prints it (0x…), to send back.
    pub fn state(&self) -> String {
        self.attr("State")
            .unwrap_or_else(|| panic!("no State in {self:?}"))
            .to_owned()
    }
}

/// Sends one Access-Request with radclient; `None` when nothing came back.
/// `attributes` is radclient input, e.g. `User-Name = alice, User-Password = x`.
pub fn radclient(server: SocketAddr, secret: &str, attributes: &str) -> Option<Reply> {
    radclient_code(server, secret, "auth", attributes)
}

/// radclient with another command (`status`, `auth`).
pub fn radclient_code(server: SocketAddr, secret: &str, command: &str, attributes: &str) -> Option<Reply> {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "2"])
        .arg(server.to_string())
        .arg(command)
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient is installed (apt freeradius-utils)");
    child.stdin.take().unwrap().write_all(attributes.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    parse_radclient(&String::from_utf8_lossy(&out.stdout))
}

fn parse_radclient(stdout: &str) -> Option<Reply> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("Received "));
    let code = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let attributes = lines
        .take_while(|l| l.starts_with('\t') || l.starts_with(' '))
        .filter_map(|l| l.trim().split_once(" = "))
        .map(|(n, v)| (n.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    Some(Reply { code, attributes })
}

/// The login's first round: user and PIN.
pub fn send_pin(server: &Server, user: &str, password: &str) -> Option<Reply> {
    radclient(
        server.addr(),
        SECRET,
        &format!("User-Name = \"{user}\", User-Password = \"{password}\""),
    )
}

/// The login's second round: the code with the State of the challenge.
pub fn send_otp(server: &Server, user: &str, otp: &str, state: &str) -> Option<Reply> {
    radclient(
        server.addr(),
        SECRET,
        &format!("User-Name = \"{user}\", User-Password = \"{otp}\", State = {state}"),
    )
}

/// A UDP socket for hand-built packets, with a receive timeout.
pub fn udp_client(server: SocketAddr) -> UdpSocket {
    let bind = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
    let socket = UdpSocket::bind(bind).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    socket.connect(server).unwrap();
    socket
}

/// Sends bytes and returns the answer, or `None` after the socket's timeout.
pub fn exchange(socket: &UdpSocket, packet: &[u8]) -> Option<Vec<u8>> {
    socket.send(packet).unwrap();
    let mut buf = [0u8; 4096];
    socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}
