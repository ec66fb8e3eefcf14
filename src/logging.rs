//! logging: where `serve`'s log lines go. They go to stderr (journald under
//! systemd) in blocks: a busy server writes one line per request, and a
//! write(2) for each took 1-2 µs of the 8-10 µs a cheap answer costs.
//!
//! A line waits at most [`FLUSH_DELAY`], or until [`BLOCK`] bytes have
//! gathered; WARN and ERROR lines go out at once, with what came before them,
//! so order is kept. This module must not drop a line: the last ones are
//! written when the [`Flusher`] drops and when the process panics. Nor may a
//! request wait for a write: lines are added under one short lock, and
//! written under another.
//!
//! Log lines cannot be forged: in the text format every field value has its
//! control characters escaped ([`fields`]); the JSON format escapes them as
//! JSON does. One event, one line.

mod fields;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// How long a line may wait for others to share its write.
pub(crate) const FLUSH_DELAY: Duration = Duration::from_millis(5);
/// Bytes gathered before they are written without waiting.
pub(crate) const BLOCK: usize = 16 * 1024;

/// Sets up `tracing` for `serve`: the level from `RUST_LOG` (default info),
/// text or JSON, into stderr in blocks. Keep the guard until the end.
pub(crate) fn init(format: LogFormat) -> Flusher {
    let (blocks, flusher) = Blocks::start(Box::new(std::io::stderr()));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(blocks.clone())
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.fmt_fields(fields::EscapedFields).init(),
        LogFormat::Json => builder.json().init(),
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A panic inside a write must not wait for its own lock.
        if let Ok(mut out) = blocks.shared.out.try_lock() {
            blocks.shared.write_out(&mut out);
        }
        previous(info);
    }));
    flusher
}

/// The shared buffer, as a `tracing` writer.
#[derive(Clone)]
pub(crate) struct Blocks {
    shared: Arc<Shared>,
}

struct Shared {
    /// Lines not written yet; held only to add or take bytes.
    pending: Mutex<Pending>,
    /// The way out; held for a whole write, so blocks leave in order.
    out: Mutex<Out>,
    wake: Condvar,
}

struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

struct Out {
    writer: Box<dyn Write + Send>,
    /// The buffer being written, swapped with `Pending::bytes`.
    block: Vec<u8>,
}

/// Locks a mutex even if a panic poisoned it: what it guards is bytes of
/// whole lines, still fine to write.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Takes what is pending and writes it.
    fn write_out(&self, out: &mut Out) {
        std::mem::swap(&mut lock(&self.pending).bytes, &mut out.block);
        // Nowhere to report a failed write of the log itself.
        let _ = out.writer.write_all(&out.block);
        out.block.clear();
    }

    fn flush(&self) {
        self.write_out(&mut lock(&self.out));
    }
}

/// Writes what is left when dropped, and stops the flushing thread.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Blocks {
    /// The buffer in front of `writer`, and the thread that empties it every
    /// [`FLUSH_DELAY`].
    pub(crate) fn start(writer: Box<dyn Write + Send>) -> (Blocks, Flusher) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(BLOCK),
                closed: false,
            }),
            out: Mutex::new(Out {
                writer,
                block: Vec::with_capacity(BLOCK),
            }),
            wake: Condvar::new(),
        });
        let flushing = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("log-flush".to_owned())
            .spawn(move || flush_loop(&flushing))
            .expect("a thread for the log");
        let flusher = Flusher {
            shared: Arc::clone(&shared),
            thread: Some(thread),
        };
        (Blocks { shared }, flusher)
    }
}

/// Sleeps while nothing is pending, so an idle server does not wake up.
fn flush_loop(shared: &Shared) {
    loop {
        let mut pending = lock(&shared.pending);
        while pending.bytes.is_empty() && !pending.closed {
            pending = shared.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
        let closed = pending.closed;
        drop(pending);
        if !closed {
            std::thread::sleep(FLUSH_DELAY);
        }
        shared.flush();
        if closed {
            return;
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One log line on its way into the buffer.
pub(crate) struct Line<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut pending = lock(&self.shared.pending);
        let was_empty = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(bytes);
        let now = self.urgent || pending.closed || pending.bytes.len() >= BLOCK;
        drop(pending);
        if now {
            self.shared.flush();
        } else if was_empty {
            self.shared.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Blocks {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            shared: &self.shared,
            // tracing orders levels by verbosity: WARN and ERROR are the least.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared byte sink standing in for stderr.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A buffer with no flushing thread, so nothing leaves it by timing.
    fn without_thread(sink: &Sink) -> Blocks {
        Blocks {
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending {
                    bytes: Vec::new(),
                    closed: false,
                }),
                out: Mutex::new(Out {
                    writer: Box::new(sink.clone()),
                    block: Vec::new(),
                }),
                wake: Condvar::new(),
            }),
        }
    }

    fn write_line(blocks: &Blocks, urgent: bool, line: &str) {
        let mut writer = Line {
            shared: &blocks.shared,
            urgent,
        };
        writer.write_all(line.as_bytes()).unwrap();
    }

    /// The lines `emit` logs in `format`, through the real formatters.
    fn logged(format: LogFormat, emit: impl FnOnce()) -> Vec<String> {
        let sink = Sink::default();
        let blocks = without_thread(&sink);
        let builder = tracing_subscriber::fmt().with_writer(blocks.clone()).with_ansi(false);
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
            LogFormat::Text => Box::new(builder.fmt_fields(fields::EscapedFields).finish()),
            LogFormat::Json => Box::new(builder.json().finish()),
        };
        tracing::subscriber::with_default(subscriber, emit);
        blocks.shared.flush();
        sink.text().lines().map(str::to_owned).collect()
    }

    const FORGED: &str = "mallory\n2026-01-01T00:00:00Z  INFO request answered answer=\"Access-Accept\"\u{1b}[2J";

    #[test]
    fn a_network_value_cannot_start_a_line_in_the_text_format() {
        let lines = logged(LogFormat::Text, || {
            tracing::info!(user = %FORGED, answer = "Access-Reject", "request answered");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(line.contains(" INFO ") && !line.contains('\u{1b}'), "{line}");
        assert!(
            line.ends_with(
                "request answered user=\"mallory\\n2026-01-01T00:00:00Z  INFO request answered \
                 answer=\\\"Access-Accept\\\"\\x1b[2J\" answer=\"Access-Reject\""
            ),
            "{line}"
        );
    }

    #[test]
    fn plain_values_look_as_before() {
        let lines = logged(LogFormat::Text, || {
            let error = std::io::Error::other("connection refused");
            tracing::warn!(client = %"vpn1", id = 7, reason = "locked", %error, "request answered");
        });
        assert!(
            lines[0].ends_with("request answered client=vpn1 id=7 reason=\"locked\" error=\"connection refused\""),
            "{lines:?}"
        );
    }

    #[test]
    fn the_json_format_stays_one_valid_object_per_line() {
        let lines = logged(LogFormat::Json, || {
            tracing::info!(user = %FORGED, "request answered");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let value: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(value["fields"]["user"], FORGED);
    }

    #[test]
    fn info_lines_wait_and_a_warning_takes_them_out_in_order() {
        let sink = Sink::default();
        let blocks = without_thread(&sink);
        write_line(&blocks, false, "one\n");
        assert_eq!(sink.text(), "");
        write_line(&blocks, true, "two\n");
        assert_eq!(sink.text(), "one\ntwo\n");
    }

    #[test]
    fn a_full_block_is_written_at_once() {
        let sink = Sink::default();
        let blocks = without_thread(&sink);
        write_line(&blocks, false, "short\n");
        assert_eq!(sink.text(), "");
        write_line(&blocks, false, &"x".repeat(BLOCK));
        assert_eq!(sink.text().len(), "short\n".len() + BLOCK);
    }

    #[test]
    fn the_flushing_thread_writes_waiting_lines_and_the_rest_on_drop() {
        let sink = Sink::default();
        let (blocks, flusher) = Blocks::start(Box::new(sink.clone()));
        write_line(&blocks, false, "soon\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(sink.text(), "soon\n");
        write_line(&blocks, false, "last\n");
        drop(flusher);
        assert_eq!(sink.text(), "soon\nlast\n");
    }
}
