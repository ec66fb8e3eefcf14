//! scenarios: one run of each measured situation, each on a fresh server so
//! that its peak RSS is its own. CPU is the server's /proc time during the
//! measured phase only (not start-up, not pre-opening challenges).

use std::path::PathBuf;
use std::time::Duration;

use crate::load::{self, Drive, Outcome, Workload};
use crate::procs::{self, Backend, Server, Users};
use crate::radsec;
use crate::report::{Figures, Table};
use crate::workloads::{Answers, Pap, Pins, StatusServer, Strangers};

/// Requests in flight on the PIN path: enough to keep every hash worker busy.
const PIN_IN_FLIGHT: usize = 16;
/// Requests in flight on each cheap path while the PIN path is saturated.
const PROBE_IN_FLIGHT: usize = 4;
/// How many `storm-N` users (production-cost hashes) the PIN path cycles over.
const STORM_USERS: usize = 64;
/// Requests in flight from the flooding client (over two sockets): far more
/// than its share of the PIN-check queue (64 by default).
const FLOOD_IN_FLIGHT: usize = 512;
/// Honest PIN requests in flight from the other client during the flood.
const HONEST_IN_FLIGHT: usize = 2;

/// Everything a run needs.
pub struct Plan {
    /// The release mailotp binary.
    pub binary: PathBuf,
    /// CPUs both servers are pinned to (`taskset -c`).
    pub server_cpus: String,
    /// The load shape for the cheap paths.
    pub drive: Drive,
    /// Challenges opened before the answer runs.
    pub challenges: usize,
    /// The hashes of the bench users.
    pub users: Users,
    /// Lines added to mailotp's `[server]` section.
    pub server_extra: String,
    /// Scenarios to run ([`SCENARIOS`]); empty: all.
    pub only: Vec<String>,
}

/// Every scenario's name for `--only`: the floor (0), mailotp's rows (1-3,
/// 5, 7), the same rows on the Redis backend (`1r`-`3r`), Status-Server
/// over RadSec (`1t`), FreeRADIUS (4) and the memory figure (6).
pub const SCENARIOS: [&str; 12] = ["0", "1", "1r", "1t", "2", "2r", "3", "3r", "4", "5", "6", "7"];

/// The row of the floor responder, which the report divides by.
pub const FLOOR_ROW: &str = "0. floor: batch in, check Message-Authenticator, signed Accept, batch out";

impl Plan {
    /// Whether scenario `name` (one of [`SCENARIOS`]) is to run.
    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }

    fn mailotp(&self, cheap: usize, storm: usize, backend: Backend) -> Server {
        let users = Users {
            cheap,
            storm,
            cheap_hash: self.users.cheap_hash.clone(),
            storm_hash: self.users.storm_hash.clone(),
        };
        procs::mailotp(&self.binary, &self.server_cpus, &users, &self.server_extra, backend)
    }

    fn drive_with(&self, server: &Server, in_flight: usize, timeout: Duration) -> Drive {
        Drive {
            target: server.addr,
            in_flight,
            timeout,
            ..self.drive.clone()
        }
    }
}

/// Runs `workload` and turns what the load and /proc saw into figures.
fn measure(server: &Server, drive: &Drive, workload: &dyn Workload) -> Figures {
    let before = server.usage();
    let mut out = load::run(drive, workload);
    let after = server.usage();
    figures(&mut out, Some((before, after)))
}

fn figures(out: &mut Outcome, usage: Option<(procs::Usage, procs::Usage)>) -> Figures {
    if let Some(why) = out.first_wrong {
        eprintln!("  warning: {} wrong answers, first: {why}", out.wrong);
    }
    let (cpu_us, rss_mib) = match usage {
        Some((before, after)) => (
            after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6 / out.ok.max(1) as f64,
            after.hwm_kib as f64 / 1024.0,
        ),
        None => (f64::NAN, f64::NAN),
    };
    Figures {
        rate: out.rate(),
        p50_ms: out.quantile_ms(0.5),
        p99_ms: out.quantile_ms(0.99),
        cpu_us,
        rss_mib,
        failed: out.lost + out.wrong,
    }
}

/// Opens one challenge for each of `cheap-0 .. cheap-(n-1)` and returns them.
fn preopen(plan: &Plan, server: &Server, n: usize) -> Vec<(usize, Vec<u8>)> {
    let pins = Pins::new("cheap", n, true);
    let drive = Drive {
        duration: Duration::from_secs(600),
        ..plan.drive_with(server, plan.drive.in_flight, Duration::from_secs(5))
    };
    let out = load::run(&drive, &pins);
    if out.lost + out.wrong > 0 {
        eprintln!(
            "  warning: pre-opening lost {} and got {} wrong answers",
            out.lost, out.wrong
        );
    }
    pins.opened.into_inner().expect("not poisoned")
}

/// One run of every scenario, added to `table`. Each Redis row follows its
/// memory row, so the table shows them side by side.
pub fn run_all(plan: &Plan, table: &mut Table) {
    if plan.wants("0") {
        let server = procs::floor(&plan.server_cpus);
        let drive = plan.drive_with(&server, plan.drive.in_flight, Duration::from_secs(1));
        table.add(FLOOR_ROW, measure(&server, &drive, &StatusServer));
        table.floor(FLOOR_ROW);
    }
    let on_either: [(u8, &str, OnEither); 3] = [
        (1, "mailotp Status-Server", status_server),
        (2, "mailotp challenge answer (State + OTP → Accept)", answers),
        (3, "mailotp PIN → Access-Challenge (argon2id m=19456 t=2 p=1)", pins),
    ];
    for (n, label, scenario) in on_either {
        for (backend, suffix, note) in [(Backend::Memory, "", ""), (Backend::Redis, "r", ", Redis backend")] {
            if plan.wants(&format!("{n}{suffix}")) {
                table.add(&format!("{n}{suffix}. {label}{note}"), scenario(plan, backend));
            }
        }
        if n == 1 && plan.wants("1t") {
            let label = format!(
                "1t. mailotp Status-Server over RadSec ({} TLS connections)",
                radsec::CONNECTIONS
            );
            table.add(&label, status_server_over_radsec(plan));
        }
    }
    if plan.wants("4") {
        let server = procs::freeradius(&plan.server_cpus);
        let drive = plan.drive_with(&server, plan.drive.in_flight, Duration::from_secs(1));
        table.add("4. FreeRADIUS 3.2 PAP (cleartext user)", measure(&server, &drive, &Pap));
        table.add(
            "4b. FreeRADIUS 3.2 Status-Server",
            measure(&server, &drive, &StatusServer),
        );
    }
    if plan.wants("5") {
        saturated(plan, table);
    }
    if plan.wants("7") {
        flood(plan, table);
    }
}

/// A scenario run on either backend.
type OnEither = fn(&Plan, Backend) -> Figures;

/// Scenario 1: Status-Server on a fresh mailotp with `backend`.
fn status_server(plan: &Plan, backend: Backend) -> Figures {
    let server = plan.mailotp(1, 0, backend);
    let drive = plan.drive_with(&server, plan.drive.in_flight, Duration::from_secs(1));
    measure(&server, &drive, &StatusServer)
}

/// Scenario 1t: Status-Server over a few long-lived RadSec connections, the
/// same requests in flight as row 1 over UDP.
fn status_server_over_radsec(plan: &Plan) -> Figures {
    let pki = radsec::Pki::new();
    let port = procs::free_port();
    let extra = format!("{}\n{}", plan.server_extra, pki.sections(port));
    let users = Users {
        cheap: 1,
        storm: 0,
        cheap_hash: plan.users.cheap_hash.clone(),
        storm_hash: plan.users.storm_hash.clone(),
    };
    let server = procs::mailotp(&plan.binary, &plan.server_cpus, &users, &extra, Backend::Memory);
    let drive = plan.drive_with(&server, plan.drive.in_flight, Duration::from_secs(1));
    let before = server.usage();
    let mut out = radsec::run(&pki, ([127, 0, 0, 1], port).into(), &drive, &StatusServer);
    let after = server.usage();
    figures(&mut out, Some((before, after)))
}

/// Scenario 2: answers to pre-opened challenges.
fn answers(plan: &Plan, backend: Backend) -> Figures {
    let server = plan.mailotp(plan.challenges, 0, backend);
    let opened = preopen(plan, &server, plan.challenges);
    server.wait_for_mails(opened.len() as u64, Duration::from_secs(120));
    let drive = plan.drive_with(&server, plan.drive.in_flight, Duration::from_secs(1));
    measure(&server, &drive, &Answers::new("cheap", opened))
}

/// Scenario 3: the PIN path at the production hash cost.
fn pins(plan: &Plan, backend: Backend) -> Figures {
    let server = plan.mailotp(0, STORM_USERS, backend);
    let drive = plan.drive_with(&server, PIN_IN_FLIGHT, Duration::from_secs(10));
    measure(&server, &drive, &Pins::new("storm", STORM_USERS, false))
}

/// Scenario 5: the PIN path saturates the hash pool while Status-Server and
/// challenge answers run beside it, each from its own load threads.
fn saturated(plan: &Plan, table: &mut Table) {
    let server = plan.mailotp(plan.challenges, STORM_USERS, Backend::Memory);
    let opened = preopen(plan, &server, plan.challenges);
    let one_thread = |in_flight, timeout| Drive {
        threads: 1,
        ..plan.drive_with(&server, in_flight, timeout)
    };
    let pins = Pins::new("storm", STORM_USERS, false);
    let answers = Answers::new("cheap", opened);
    let (pin_drive, probe) = (
        one_thread(PIN_IN_FLIGHT, Duration::from_secs(10)),
        one_thread(PROBE_IN_FLIGHT, Duration::from_secs(1)),
    );
    let (mut p, mut s, mut a) = std::thread::scope(|scope| {
        let p = scope.spawn(|| load::run(&pin_drive, &pins));
        let s = scope.spawn(|| load::run(&probe, &StatusServer));
        let a = scope.spawn(|| load::run(&probe, &answers));
        (
            p.join().expect("load"),
            s.join().expect("load"),
            a.join().expect("load"),
        )
    });
    let mut pin_figures = figures(&mut p, None);
    pin_figures.rss_mib = server.usage().hwm_kib as f64 / 1024.0;
    table.add("5a. PIN path while saturated (16 in flight)", pin_figures);
    table.add(
        "5b. Status-Server while PIN path saturated (4 in flight)",
        figures(&mut s, None),
    );
    table.add(
        "5c. challenge answers while PIN path saturated (4 in flight)",
        figures(&mut a, None),
    );
}

/// Scenario 7: one client floods unknown-user PINs far beyond its share of
/// the PIN-check queue (a flood request unanswered after 0.5 s is replaced),
/// while another client's users send their right PINs, 2 in flight (lost
/// after 1 s). The
/// honest row's p99 and loss are the point; the flood row's loss is its
/// requests unanswered within 0.5 s, mostly those the server dropped as
/// `pin-queue-full` (its own count is printed under the table).
fn flood(plan: &Plan, table: &mut Table) {
    let server = plan.mailotp(0, STORM_USERS, Backend::Memory);
    let flood_drive = Drive {
        source: procs::FLOOD_SOURCE.into(),
        ..plan.drive_with(&server, FLOOD_IN_FLIGHT, Duration::from_millis(500))
    };
    // 1 s, well inside the run: a request the kernel dropped (a full socket
    // buffer) must count as lost, not stay in flight until the run ends.
    let honest_drive = Drive {
        threads: 1,
        ..plan.drive_with(&server, HONEST_IN_FLIGHT, Duration::from_secs(1))
    };
    let pins = Pins::new("storm", STORM_USERS, false);
    let (mut f, mut h) = std::thread::scope(|scope| {
        let f = scope.spawn(|| load::run(&flood_drive, &Strangers::default()));
        let h = scope.spawn(|| load::run(&honest_drive, &pins));
        (f.join().expect("load"), h.join().expect("load"))
    });
    let peak = server.usage().hwm_kib as f64 / 1024.0;
    let mut flood_figures = figures(&mut f, None);
    flood_figures.rss_mib = peak;
    let mut honest = figures(&mut h, None);
    honest.rss_mib = peak;
    table.add(
        "7a. PIN flood from one client (unknown users, 512 in flight)",
        flood_figures,
    );
    table.add("7b. right PINs from another client during 7a (2 in flight)", honest);
    let dropped = server.drops("pin-queue-full").unwrap_or_else(|| {
        eprintln!("  warning: cannot read pin-queue-full from /metrics");
        0
    });
    table.count("7. flood requests dropped as pin-queue-full (server's count)", dropped);
}
