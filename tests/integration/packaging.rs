//! The Debian package: `cargo deb` builds it, `dpkg -i` installs it on this
//! machine, and what an admin would check holds (user, permissions, `check`
//! as the service user, the unit, a login against the installed binary);
//! then `dpkg --purge` removes it. Needs root (CI runs as root on a
//! throwaway machine); otherwise it uses `sudo -n`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::harness::*;

/// Runs `args`; fails the test unless it succeeds; its stdout.
fn ok(args: &[&str]) -> String {
    finished(args, Command::new(args[0]).args(&args[1..]).output().unwrap())
}

/// As [`ok`], as root: directly when we are root, else with `sudo -n` (which
/// fails rather than asking for a password).
fn root_ok(args: &[&str]) -> String {
    finished(args, as_root(args))
}

fn as_root(args: &[&str]) -> Output {
    if ok(&["id", "-u"]).trim() == "0" {
        Command::new(args[0]).args(&args[1..]).output().unwrap()
    } else {
        Command::new("sudo").arg("-n").args(args).output().unwrap()
    }
}

fn finished(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Purges the package when the test ends, also when it fails half-way, so the
/// next run installs afresh.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = as_root(&["dpkg", "--purge", "mailotp"]);
    }
}

/// `cargo deb` into a temporary directory; the path of the .deb. The build
/// uses the test's own target directory: cargo no longer holds its lock while
/// tests run. Niced, because the other tests run meanwhile on the same cores.
fn build_deb(out: &Path) -> PathBuf {
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19", env!("CARGO"), "deb", "--locked", "--output"])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // Variables cargo sets for this test only. Build scripts (ring's) rerun
    // when they change, so with them every run would rebuild what a release
    // build from a shell had built, and the other way round.
    let per_test = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_EXE_",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
    ];
    for (key, _) in std::env::vars().filter(|(k, _)| per_test.iter().any(|p| k.starts_with(p))) {
        cmd.env_remove(key);
    }
    let start = Instant::now();
    let status = cmd.status().expect("cargo-deb is installed (tests/peers.sh)");
    assert!(status.success(), "cargo deb: {status:?}");
    eprintln!("cargo deb took {:?}", start.elapsed());
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in cargo deb's output")
}

/// "uid:gid:mode" of a path (as root: /etc/mailotp is closed to others).
fn owner_and_mode(path: &str) -> String {
    root_ok(&["stat", "-c", "%u:%g:%a", path]).trim().to_owned()
}

/// The installed binary serving a temporary configuration; its address.
fn serve_installed(dir: &Path) -> (Process, SocketAddr) {
    let mut cmd = Command::new("/usr/bin/mailotp");
    cmd.arg("serve")
        .arg("-c")
        .arg(dir.join("mailotp.toml"))
        .current_dir(dir);
    let process = Process::spawn("installed mailotp", cmd);
    let line = process.wait_for_line("listening on ");
    let addr = line.split("listening on ").nth(1).unwrap();
    let addr = addr.split(|c: char| c.is_whitespace() || c == '"').next().unwrap();
    (process, addr.parse().unwrap())
}

/// What `dpkg-deb` shows before installing: control fields, conffiles, files.
fn assert_package_lists_what_it_installs(deb: &str) {
    let control = ok(&["dpkg-deb", "--info", deb, "control"]);
    assert!(
        control.contains("Section: net") && control.contains("libc6"),
        "{control}"
    );
    let conffiles = ok(&["dpkg-deb", "--info", deb, "conffiles"]);
    assert_eq!(conffiles.trim(), "/etc/mailotp/mailotp.toml\n/etc/mailotp/users.toml");
    let contents = ok(&["dpkg-deb", "--contents", deb]);
    for path in [
        "./usr/bin/mailotp",
        "./usr/lib/systemd/system/mailotp.service",
        "./usr/lib/sysusers.d/mailotp.conf",
        "./usr/share/mailotp/dictionary/dictionary.mailotp",
        "./usr/share/doc/mailotp/examples/users.toml",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(path)), "{path} in:\n{contents}");
    }
}

/// After `dpkg -i`: the user, who may read /etc/mailotp, and `check` as the
/// unit's ExecStartPre runs it.
fn assert_installed_safe_and_checkable() {
    let passwd = ok(&["getent", "passwd", "mailotp"]);
    assert!(passwd.trim_end().ends_with(":/usr/sbin/nologin"), "{passwd}");
    let gid = ok(&["getent", "group", "mailotp"])
        .split(':')
        .nth(2)
        .unwrap()
        .to_owned();
    assert_eq!(owner_and_mode("/etc/mailotp"), format!("0:{gid}:750"));
    for file in ["mailotp.toml", "users.toml", "localhost.secret"] {
        assert_eq!(owner_and_mode(&format!("/etc/mailotp/{file}")), format!("0:{gid}:640"));
    }
    let secret = root_ok(&["cat", "/etc/mailotp/localhost.secret"]);
    assert_eq!(secret.trim_end().len(), 32, "postinst made a random secret");

    // No users and no published secret: nothing can log in until the admin
    // configures it.
    let check = root_ok(&[
        "setpriv",
        "--reuid",
        "mailotp",
        "--regid",
        "mailotp",
        "--clear-groups",
        "/usr/bin/mailotp",
        "check",
        "-c",
        "/etc/mailotp/mailotp.toml",
    ]);
    assert!(
        check.contains("users: 0") && check.contains("Message-Authenticator required"),
        "{check}"
    );
    assert!(!check.contains(secret.trim_end()), "check prints no secret");

    let unit = std::fs::read_to_string("/usr/lib/systemd/system/mailotp.service").unwrap();
    assert_eq!(
        unit,
        include_str!("../../systemd/mailotp.service"),
        "the unit as in the repo"
    );
    // Installed but not enabled, so not started at boot either.
    let enabled = as_root(&["systemctl", "is-enabled", "mailotp.service"]);
    assert_eq!(text(&enabled.stdout).trim(), "disabled");
    let verify = as_root(&["systemd-analyze", "verify", "/usr/lib/systemd/system/mailotp.service"]);
    let stderr = text(&verify.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("mailotp")).collect();
    assert!(
        verify.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

/// The installed binary logs a user in: PIN, Access-Challenge, code from the
/// mail, Access-Accept; neither PIN nor code in its log.
fn assert_installed_binary_logs_in() {
    let smtp = SmtpSink::start();
    let dir = Setup::new(smtp.port).write();
    let (mut server, addr) = serve_installed(dir.path());
    let send = |password: &str, state: &str| {
        let attributes = format!("User-Name = alice, User-Password = \"{password}\"{state}");
        radclient(addr, SECRET, &attributes).expect("an answer")
    };
    let challenge = send(pin("alice"), "");
    assert_eq!(challenge.code, "Access-Challenge");
    let otp = smtp.wait_for_mails(1)[0].otp();
    assert_eq!(
        send(&otp, &format!(", State = {}", challenge.state())).code,
        "Access-Accept"
    );
    // Stopped first: its log is written in blocks, the last one at exit.
    server.stop();
    let log = server.output();
    assert!(
        !contains_word(&log, pin("alice")) && !contains_word(&log, &otp),
        "{log}"
    );
}

#[test]
fn the_deb_installs_a_disabled_service_nobody_can_log_in_to_and_purges_cleanly() {
    let packages = ok(&["dpkg-query", "-W", "-f=${Package} ${Status}\n"]);
    assert!(
        !packages
            .lines()
            .any(|l| l.starts_with("mailotp ") && l.ends_with(" installed")),
        "mailotp is installed on this machine; this test installs and purges it"
    );
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path());
    let deb = deb.to_str().unwrap();
    assert_package_lists_what_it_installs(deb);

    let _purge_at_the_end = Installed;
    root_ok(&["dpkg", "-i", deb]);
    assert_installed_safe_and_checkable();
    assert_installed_binary_logs_in();

    root_ok(&["dpkg", "--purge", "mailotp"]);
    assert!(!Path::new("/usr/bin/mailotp").exists() && !Path::new("/etc/mailotp").exists());
    // Debian policy: the system user stays (README, "Debian package").
    ok(&["getent", "passwd", "mailotp"]);
}
