//! `mailotp ctl`: sends one command to a running server's control socket
//! and prints its answer — aligned text for a person, or with `--json` the
//! answer object as it came. Exit 0 when the command did what it was asked,
//! 1 with a one-line reason otherwise. It knows the protocol, not the state.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::CliError;
use crate::control::{Answer, ChallengeStatus, Delivery, Outcome, Request, Stats, UserStatus};

/// How long the client waits for the server (it answers within 5 s).
const WAIT: Duration = Duration::from_secs(10);

/// The commands of `mailotp ctl`.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// A user's open challenges and their mails, the lock, the throttle counts.
    Status {
        /// The user (canonical name).
        user: String,
    },
    /// Lift a user's lock and clear the failures in a row.
    Unlock {
        /// The user (canonical name).
        user: String,
        /// Also clear the user's e-mail counts (throttling).
        #[arg(long)]
        throttles: bool,
    },
    /// Close every open challenge of a user (their States get Access-Reject).
    Revoke {
        /// The user (canonical name).
        user: String,
    },
    /// Open challenges, queued mails and the oldest one's age, answers by code.
    Stats,
    /// Re-read the configuration, as SIGHUP does.
    Reload,
}

impl From<CtlCommand> for Request {
    fn from(command: CtlCommand) -> Request {
        match command {
            CtlCommand::Status { user } => Request::Status { user },
            CtlCommand::Unlock { user, throttles } => Request::Unlock { user, throttles },
            CtlCommand::Revoke { user } => Request::Revoke { user },
            CtlCommand::Stats => Request::Stats,
            CtlCommand::Reload => Request::Reload,
        }
    }
}

/// Runs `mailotp ctl`.
pub(super) fn run(socket: &Path, json: bool, command: CtlCommand) -> Result<ExitCode, CliError> {
    let request = Request::from(command);
    let text = match ask(socket, &request) {
        Ok(text) => text,
        Err(reason) => {
            if json {
                println!("{}", serde_json::to_string(&Answer::error(reason.clone()))?);
            }
            return Err(reason.into());
        }
    };
    let answer: Answer =
        serde_json::from_str(&text).map_err(|e| format!("the server's answer is not understood: {e}"))?;
    if json {
        println!("{}", text.trim_end());
    }
    if let Some(error) = answer.error.filter(|_| !answer.ok) {
        if !json {
            eprintln!("Error: {error}");
        }
        return Ok(ExitCode::FAILURE);
    }
    if !json {
        if let Some(result) = &answer.result {
            print!("{}", show(result));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One request line out, one answer line back.
fn ask(socket: &Path, request: &Request) -> Result<String, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is mailotp running, and is this user root or in its group?)",
            socket.display()
        )
    })?;
    let io = |e: std::io::Error| format!("{}: {e}", socket.display());
    stream.set_read_timeout(Some(WAIT)).map_err(io)?;
    stream.set_write_timeout(Some(WAIT)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    // A peer the server refuses gets its one line before the server reads
    // anything, and the connection closed: the write may then fail, and the
    // line waiting to be read is the answer to show.
    let written = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(stream).read_line(&mut answer);
    if answer.is_empty() {
        written.map_err(io)?;
        read.map_err(io)?;
        return Err(format!(
            "{}: the server closed the connection without an answer",
            socket.display()
        ));
    }
    Ok(answer)
}

/// The answer for a person.
fn show(result: &Outcome) -> String {
    match result {
        Outcome::Status(status) => show_status(status),
        Outcome::Unlocked(u) => {
            let what = if u.throttles_cleared {
                "lock, failures and e-mail counts cleared"
            } else {
                "lock and failures cleared"
            };
            let was = if u.was_locked { "was locked" } else { "was not locked" };
            format!("{}: {what} ({was})\n", u.user)
        }
        Outcome::Revoked(r) => format!("{}: {} open challenge(s) closed\n", r.user, r.closed),
        Outcome::Stats(s) => show_stats(s),
        Outcome::Reloaded(_) => "reloaded\n".to_owned(),
    }
}

fn show_status(s: &UserStatus) -> String {
    let now = s.now_unix;
    let mut rows = vec![("user", s.user.clone())];
    rows.push((
        "lock",
        match s.locked_until_unix {
            Some(until) => format!("locked until {}", when(until, now)),
            None => "not locked".to_owned(),
        },
    ));
    rows.push(("failures", format!("{} in a row", s.failures)));
    rows.push((
        "e-mails",
        format!(
            "{} in the last 5 min, {} in the last hour",
            s.mails_last_5_min, s.mails_last_hour
        ),
    ));
    if let Some(last) = &s.last {
        rows.push((
            "last result",
            format!(
                "{} ({}) via {}, {}",
                last.answer,
                last.reason,
                last.client,
                when(last.at_unix, now)
            ),
        ));
    }
    rows.push(("challenges", format!("{} open", s.challenges.len())));
    let mut out = table(&rows);
    for c in &s.challenges {
        out.push_str(&show_challenge(c, now));
    }
    out
}

fn show_challenge(c: &ChallengeStatus, now: i64) -> String {
    let mut rows = vec![("transaction", c.transaction.clone())];
    if let Some(opened) = c.opened_unix {
        rows.push(("opened", when(opened, now)));
    }
    rows.push(("expires", when(c.expires_unix, now)));
    rows.push(("attempts left", c.attempts_left.to_string()));
    let delivery = match &c.delivery {
        Delivery::Queued => "queued".to_owned(),
        Delivery::Retrying { error, tries, at_unix } => {
            format!("retrying after {tries} tries, last {}: {error}", when(*at_unix, now))
        }
        Delivery::Relayed { reply, at_unix } => format!("handed to the relay {}: {reply}", when(*at_unix, now)),
        Delivery::Failed { error, at_unix } => format!("given up {}: {error}", when(*at_unix, now)),
    };
    rows.push(("delivery", delivery));
    if let Some(link) = &c.link {
        rows.push((
            "link",
            if link == "confirmed" {
                "link confirmed"
            } else {
                "link not confirmed yet"
            }
            .to_owned(),
        ));
    }
    let mut out = String::from("\n");
    for line in table(&rows).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn show_stats(s: &Stats) -> String {
    let oldest = s
        .oldest_queued_s
        .map_or(String::new(), |age| format!(", the oldest {} old", span(age)));
    let a = &s.answers;
    table(&[
        ("open challenges", s.open_challenges.to_string()),
        ("queued mails", format!("{}{oldest}", s.mails_queued)),
        (
            "answers",
            format!(
                "{} accept, {} reject, {} challenge (this instance)",
                a.accept, a.reject, a.challenge
            ),
        ),
    ])
}

/// Rows as `name   value`, the values in one column.
fn table(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(name, value)| format!("{name:<width$}  {value}\n"))
        .collect()
}

/// A moment as RFC 3339 and how far from now: `2026-12-06T13:40:00Z (in 4 min)`.
fn when(unix: i64, now: i64) -> String {
    let stamp = jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string());
    let d = unix - now;
    let relative = match d {
        0 => "now".to_owned(),
        1.. => format!("in {}", span(d.unsigned_abs())),
        _ => format!("{} ago", span(d.unsigned_abs())),
    };
    format!("{stamp} ({relative})")
}

/// Seconds as a person says them: `40 s`, `4 min`, `2 h 5 min`.
fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc_3339_and_how_far() {
        assert_eq!(when(1_800_000_240, 1_800_000_000), "2027-01-15T08:04:00Z (in 4 min)");
        assert_eq!(when(1_800_000_000, 1_800_000_030), "2027-01-15T08:00:00Z (30 s ago)");
        assert_eq!(when(1_800_000_000, 1_800_000_000), "2027-01-15T08:00:00Z (now)");
        assert_eq!(span(7500), "2 h 5 min");
    }

    #[test]
    fn rows_are_aligned() {
        let t = table(&[("a", "1".into()), ("longer", "2".into())]);
        assert_eq!(t, "a       1\nlonger  2\n");
    }
}
