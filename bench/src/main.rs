//! mailotp-bench: mailotp (on the memory and the Redis backend) next to
//! FreeRADIUS 3.2 PAP and a floor responder on this machine, driven by the
//! same closed-loop load generator, one table of medians at the end.
//! See BENCHMARKS.md for the scenarios, the command and the figures.

mod floor;
mod load;
mod memory;
mod packet;
mod procs;
mod radsec;
mod redis;
mod report;
mod scenarios;
mod workloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clap::Parser;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "mailotp-bench", about = "Benchmark mailotp against FreeRADIUS 3.2 PAP")]
struct Args {
    /// Fewer runs, shorter and smaller: a smoke test of the benchmark itself.
    #[arg(long)]
    quick: bool,
    /// Runs of every scenario (medians are reported); default 5, 3 with --quick.
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds per time-bound scenario; default 5, 2 with --quick.
    #[arg(long)]
    seconds: Option<u64>,
    /// Challenges pre-opened for the answer runs; default 50000, 10000 with --quick.
    #[arg(long)]
    challenges: Option<usize>,
    /// Requests in flight on the cheap paths.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Load threads (one UDP socket each).
    #[arg(long, default_value_t = 2)]
    load_threads: usize,
    /// CPUs the servers run on (taskset -c list).
    #[arg(long, default_value = "1")]
    server_cpus: String,
    /// CPUs the load threads run on (comma-separated).
    #[arg(long, default_value = "0")]
    load_cpus: String,
    /// Open challenges for the memory figure.
    #[arg(long, default_value_t = 1_000_000)]
    memory_challenges: usize,
    /// Run only these scenarios, comma-separated: 0 (the floor), 1-5, 7, and
    /// 1r, 2r, 3r (1-3 on the Redis backend); the memory figure (6) is skipped
    /// unless 6 is listed. Default: all.
    #[arg(long, value_delimiter = ',', value_parser = scenario_name)]
    only: Vec<String>,
    /// Use this mailotp binary instead of building the workspace's in release.
    #[arg(long)]
    mailotp: Option<PathBuf>,
    /// A line added to mailotp's `[server]` section (e.g. `receive_buffer = 4194304`).
    #[arg(long)]
    server_extra: Vec<String>,
    /// Be the floor responder on this address (the bench starts itself so).
    #[arg(long, hide = true)]
    serve_floor: Option<SocketAddr>,
}

fn scenario_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if scenarios::SCENARIOS.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!("one of {}", scenarios::SCENARIOS.join(", ")))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(addr) = args.serve_floor {
        let Err(err) = floor::serve(addr, procs::SECRET.as_bytes());
        eprintln!("Error: floor on {addr}: {err}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let binary = match &args.mailotp {
        Some(path) => path.clone(),
        None => build_release()?,
    };
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 5 });
    let seconds = args.seconds.unwrap_or(if args.quick { 2 } else { 5 });
    let load_cpus = args
        .load_cpus
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|_| format!("--load-cpus: `{c}` is not a CPU number"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    eprintln!("hashing the bench users' PIN (production cost and cheap)…");
    let plan = scenarios::Plan {
        binary,
        server_cpus: args.server_cpus.clone(),
        drive: load::Drive {
            target: ([127, 0, 0, 1], 0).into(),
            source: [127, 0, 0, 1].into(),
            secret: procs::SECRET.as_bytes().to_vec(),
            in_flight: args.in_flight,
            threads: args.load_threads,
            duration: Duration::from_secs(seconds),
            timeout: Duration::from_secs(1),
            cpus: load_cpus,
        },
        challenges: args.challenges.unwrap_or(if args.quick { 10_000 } else { 50_000 }),
        users: procs::Users {
            cheap: 0,
            cheap_hash: cheap_hash(),
            storm: 0,
            storm_hash: mailotp::users::hash_pin(procs::PIN.as_bytes()),
        },
        server_extra: args.server_extra.join("\n"),
        only: args.only.clone(),
    };
    let mut table = report::Table::default();
    for run in 1..=runs {
        eprintln!("run {run} of {runs}…");
        scenarios::run_all(&plan, &mut table);
    }
    let memory = plan.wants("6").then(|| {
        eprintln!(
            "opening {} challenges in-process for the memory figure…",
            args.memory_challenges
        );
        memory::bytes_per_challenge(args.memory_challenges)
    });
    println!("{}", machine());
    println!(
        "servers on CPU {}, load on CPU {}, {} in flight over {} sockets, {runs} runs of {seconds} s, {} pre-opened challenges",
        args.server_cpus, args.load_cpus, args.in_flight, args.load_threads, plan.challenges
    );
    println!();
    print!("{}", table.render());
    if plan.wants("0") {
        println!();
        println!("CPU × floor: a row's server CPU per request divided by the floor's (row 0).");
    }
    if ["1r", "2r", "3r"].iter().any(|r| plan.wants(r)) {
        println!();
        println!("Redis rows (1r-3r): server CPU and peak RSS are mailotp's and its redis-server's together.");
    }
    if let Some((bytes, open)) = memory {
        println!();
        println!("6. memory per open challenge: {bytes:.0} bytes ({open} open challenges, in-process MemoryStore, RSS delta)");
    }
    Ok(())
}

/// argon2id at its smallest cost, so that thousands of challenges open fast.
fn cheap_hash() -> String {
    let params = Params::new(8, 1, 1, None).expect("valid argon2 parameters");
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(procs::PIN.as_bytes(), &salt)
        .expect("argon2 hashes a short PIN")
        .to_string()
}

/// Builds mailotp in release and returns the binary's path.
fn build_release() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    eprintln!("building mailotp in release…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["build", "--release", "--quiet", "-p", "mailotp", "--bin", "mailotp"])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p mailotp failed".to_owned());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release").join("mailotp"))
}

/// CPU model, core count and kernel, for the record.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("machine: {model}, {cores} CPUs, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_takes_the_floor_and_the_redis_rows_and_refuses_unknown_names() {
        let args = Args::try_parse_from(["mailotp-bench", "--only", "0,1r,2r,3r"]).unwrap();
        assert_eq!(args.only, ["0", "1r", "2r", "3r"]);
        let err = Args::try_parse_from(["mailotp-bench", "--only", "1,8"]).unwrap_err();
        assert!(err.to_string().contains("one of 0, 1, 1r"), "{err}");
    }
}
