//! load: the closed-loop generator. Each load thread owns one UDP socket and
//! keeps its share of the requests in flight: an answer (or a timeout) frees
//! the identifier it used, and the next request goes out at once. Every
//! request gets a fresh random Request Authenticator, so no server can answer
//! from its duplicate cache; every answer is checked (`packet::check_answer`).
//! A run stops at its time limit, or when the workload has nothing left.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::packet::{check_answer, Outgoing};
use mailotp::wire::Packet;

/// What to send; shared by the load threads.
pub trait Workload: Sync {
    /// The next request under identifier `id` and `authenticator`; `None`
    /// when the workload is used up.
    fn next(&self, id: u8, authenticator: &[u8; 16]) -> Option<Outgoing>;

    /// Sees each checked answer (e.g. to keep a State); an error counts the
    /// answer as wrong.
    fn answered(&self, _sent: &Outgoing, _answer: &Packet<'_>) -> Result<(), &'static str> {
        Ok(())
    }
}

/// How hard and how long to drive a server.
#[derive(Debug, Clone)]
pub struct Drive {
    /// The server.
    pub target: SocketAddr,
    /// The loopback address the load sockets send from (the server tells
    /// its clients apart by it).
    pub source: IpAddr,
    /// The client's shared secret.
    pub secret: Vec<u8>,
    /// Requests in flight in total (spread over the threads).
    pub in_flight: usize,
    /// Load threads, one socket each.
    pub threads: usize,
    /// Stop after this long.
    pub duration: Duration,
    /// A request unanswered this long is counted lost and replaced.
    pub timeout: Duration,
    /// CPUs the load threads run on.
    pub cpus: Vec<usize>,
}

/// What one run saw.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Answers that passed every check.
    pub ok: u64,
    /// Answers that failed a check, with the first reason seen.
    pub wrong: u64,
    /// The first reason an answer was wrong.
    pub first_wrong: Option<&'static str>,
    /// Requests that got no answer within the timeout.
    pub lost: u64,
    /// Latency of every good answer, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// Good answers per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies, in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    pub fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.wrong += other.wrong;
        self.first_wrong = self.first_wrong.or(other.first_wrong);
        self.lost += other.lost;
        self.latencies_us.extend(other.latencies_us);
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// Runs `workload` against the target as `drive` says.
pub fn run(drive: &Drive, workload: &dyn Workload) -> Outcome {
    let threads = drive.threads.clamp(1, drive.in_flight.max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = drive.in_flight / threads + usize::from(t < drive.in_flight % threads);
                scope.spawn(move || {
                    pin_to(&drive.cpus);
                    one_socket(drive, share.min(256), workload)
                })
            })
            .collect();
        let mut total = Outcome::default();
        for h in handles {
            total.merge(h.join().expect("load thread panicked"));
        }
        total
    })
}

struct Slot {
    sent: Outgoing,
    authenticator: [u8; 16],
    at: Instant,
}

fn one_socket(drive: &Drive, in_flight: usize, workload: &dyn Workload) -> Outcome {
    let socket = UdpSocket::bind((drive.source, 0)).expect("bind a load socket on loopback");
    socket.connect(drive.target).expect("connect the load socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("set a read timeout");
    let mut slots: Vec<Option<Slot>> = (0..in_flight).map(|_| None).collect();
    let mut out = Outcome::default();
    let start = Instant::now();
    let mut exhausted = false;
    for id in 0..in_flight {
        exhausted = exhausted || !send_next(&socket, drive, workload, &mut slots, id);
    }
    let mut buf = [0u8; 4096];
    while start.elapsed() < drive.duration && slots.iter().any(Option::is_some) {
        match socket.recv(&mut buf) {
            Ok(len) => {
                let id = usize::from(buf[1]);
                let Some(slot) = slots.get_mut(id).and_then(Option::take) else {
                    continue; // a late answer to a request already counted lost
                };
                let checked = check_answer(&buf[..len], &slot.authenticator, &drive.secret, slot.sent.expect)
                    .and_then(|answer| workload.answered(&slot.sent, &answer));
                match checked {
                    Ok(()) => {
                        out.ok += 1;
                        let us = slot.at.elapsed().as_micros();
                        out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Err(why) => {
                        out.wrong += 1;
                        out.first_wrong.get_or_insert(why);
                    }
                }
                if !exhausted {
                    exhausted = !send_next(&socket, drive, workload, &mut slots, id);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => panic!("load socket failed: {e}"),
        }
        for id in 0..slots.len() {
            if slots[id].as_ref().is_some_and(|s| s.at.elapsed() > drive.timeout) {
                slots[id] = None;
                out.lost += 1;
                if !exhausted {
                    exhausted = !send_next(&socket, drive, workload, &mut slots, id);
                }
            }
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// Sends the workload's next request under `id`; `false` when it has none.
fn send_next(
    socket: &UdpSocket,
    drive: &Drive,
    workload: &dyn Workload,
    slots: &mut [Option<Slot>],
    id: usize,
) -> bool {
    let mut authenticator = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut authenticator);
    let Some(sent) = workload.next(id as u8, &authenticator) else {
        return false;
    };
    let at = Instant::now();
    if let Err(e) = socket.send(&sent.bytes) {
        // A full socket buffer loses the request; the timeout counts it.
        if e.kind() != ErrorKind::WouldBlock {
            panic!("cannot send to {}: {e}", drive.target);
        }
    }
    slots[id] = Some(Slot {
        sent,
        authenticator,
        at,
    });
    true
}

/// Pins the calling thread to `cpus` (no-op when empty).
pub fn pin_to(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET stays within it for ids below
    // CPU_SETSIZE, and sched_setaffinity(0, ..) only affects this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
