//! Helpers for the control socket tests: a server with `[control] socket`
//! in its own directory, and `mailotp ctl` run against it (as root, or as
//! `nobody` through setpriv).

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::harness::*;

/// The `[control]` section: the socket beside the configuration.
pub const CONTROL: &str = "[control]\nsocket = \"ctl.sock\"\n";

/// What `mailotp ctl` did.
#[derive(Debug)]
pub struct Ctl {
    /// Exit 0.
    pub ok: bool,
    /// What it printed.
    pub stdout: String,
    /// Its error line.
    pub stderr: String,
}

impl From<Output> for Ctl {
    fn from(out: Output) -> Ctl {
        Ctl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The server's control socket.
pub fn socket(server: &Server) -> PathBuf {
    server.dir.path().join("ctl.sock")
}

/// Runs `mailotp ctl -s SOCKET ARGS…` as root.
pub fn ctl(server: &Server, args: &[&str]) -> Ctl {
    run_ctl(Command::new(env!("CARGO_BIN_EXE_mailotp")), server, args)
}

/// Runs `mailotp ctl -s SOCKET ARGS…` as `nobody` (no groups).
pub fn ctl_as_nobody(server: &Server, args: &[&str]) -> Ctl {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mailotp"));
    run_ctl(cmd, server, args)
}

/// `cmd` (which runs mailotp) with `ctl -s SOCKET ARGS…`, to completion.
fn run_ctl(mut cmd: Command, server: &Server, args: &[&str]) -> Ctl {
    cmd.arg("ctl")
        .arg("-s")
        .arg(socket(server))
        .args(args)
        .output()
        .unwrap()
        .into()
}

/// `mailotp ctl --json ARGS…`, which must succeed: its answer's `result`.
pub fn ctl_json(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(server, &all);
    assert!(out.ok, "mailotp ctl {args:?} failed: {out:?}\n{}", server.log());
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    answer["result"].clone()
}

/// The open challenges `status USER` shows.
pub fn challenges(server: &Server, user: &str) -> Vec<serde_json::Value> {
    ctl_json(server, &["status", user])["challenges"]
        .as_array()
        .unwrap()
        .clone()
}

/// The transaction id a State carries (radclient prints the State as 0x…).
pub fn transaction(state: &str) -> String {
    String::from_utf8(crate::pool_support::state_bytes(state)).unwrap()
}

/// Polls `status USER` until its first challenge's delivery is in `state`.
pub fn wait_for_delivery(server: &Server, user: &str, state: &str) -> serde_json::Value {
    poll(&format!("the mail to be {state}"), DEADLINE, || {
        let open = challenges(server, user);
        let delivery = open.first()?["delivery"].clone();
        (delivery["state"] == state).then_some(delivery)
    })
}
