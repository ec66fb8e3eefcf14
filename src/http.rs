//! http: the accept loop and connection handling that the HTTP listeners
//! (link pages, `/metrics`) share, so that both keep the same limits.
//!
//! Each listener serves at most `max_connections` connections at once (more
//! wait in the kernel's backlog and cost no descriptor), one request per
//! connection, and gives that request `request_timeout` to arrive whole —
//! headers and body — and be answered; then the connection is closed and
//! its slot is free (slowloris). When `accept` fails (EMFILE: no descriptors
//! left) the loop backs off from 10 ms up to 1 s and logs one line per burst
//! of failures, never one per failure (RadSec's accept loop uses the same
//! [`Backoff`]). It knows no routes: each listener
//! brings its own [`Router`].

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::HttpLimits;
use crate::lifecycle::Lifecycle;

/// Request head bytes buffered at most (hyper's minimum is 8 KiB); a larger
/// head ends the connection.
const MAX_HEAD: usize = 16 * 1024;
/// The first pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until shutdown, within `limits`; connections
/// run on `life`. `name` tells the listener apart in the log.
pub(crate) async fn serve(name: &'static str, listener: TcpListener, app: Router, limits: HttpLimits, life: Lifecycle) {
    let shutdown = life.token();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Backoff::default();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore never closed"),
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.succeeded(name);
                stream
            }
            // The peer gave up before we took the connection: nothing to wait for.
            Err(e) if is_peer_error(&e) => continue,
            Err(e) => {
                let pause = backoff.failed(name, &e);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        life.spawn(async move {
            let _permit = permit;
            connection(name, stream, app, limits.request_timeout, shutdown).await;
        });
    }
}

pub(crate) fn is_peer_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    )
}

/// One connection, one request: it must arrive whole and be answered by
/// `timeout` after the connection was taken, or the connection is dropped.
async fn connection(
    name: &'static str,
    stream: TcpStream,
    app: Router,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let deadline = Instant::now() + timeout;
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(served);
    let result = tokio::select! {
        r = tokio::time::timeout_at(deadline, served.as_mut()) => r,
        _ = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            tokio::time::timeout_at(deadline, served).await
        }
    };
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(listener = name, error = %e, "connection ended with an error"),
        Err(_) => tracing::debug!(
            listener = name,
            timeout_s = timeout.as_secs(),
            "request not complete within request_timeout: connection closed"
        ),
    }
}

/// Failed accepts in a row: how long to pause, and whether the burst was
/// logged yet.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// The next pause; `None` while accepts succeed.
    pause: Option<Duration>,
    /// Failures in this burst.
    failures: u64,
}

impl Backoff {
    /// Counts a failure; the first of a burst is logged. Returns the pause.
    pub(crate) fn failed(&mut self, name: &str, error: &std::io::Error) -> Duration {
        self.failures += 1;
        let pause = match self.pause {
            None => {
                tracing::warn!(listener = name, %error, "accept failed: pausing new connections (up to 1 s between tries) until it works again; logged once per burst");
                FIRST_BACKOFF
            }
            Some(pause) => (pause * 2).min(MAX_BACKOFF),
        };
        self.pause = Some(pause);
        pause
    }

    /// Ends a burst, saying how long it was.
    pub(crate) fn succeeded(&mut self, name: &str) {
        if self.pause.take().is_some() {
            tracing::info!(listener = name, failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut backoff = Backoff::default();
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let pauses: Vec<u128> = (0..10).map(|_| backoff.failed("t", &error).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.succeeded("t");
        assert_eq!((backoff.pause, backoff.failures), (None, 0));
        assert_eq!(backoff.failed("t", &error), FIRST_BACKOFF);
    }
}
