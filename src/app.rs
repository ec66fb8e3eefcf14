//! app: builds a running server from a [`Config`] — sockets, stores, mail
//! queue, the decision — and runs it until SIGTERM or SIGINT, then drains.
//! Everything that is wired together lives here, so `cli` stays about the
//! command line and each module stays about its own concern.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthSettings, Authenticator};
use crate::challenge::{ChallengeSettings, MemoryStore};
use crate::cli::CliError;
use crate::config::{Config, Source};
use crate::server::{Clients, Context};
use crate::users::HashPool;

/// Binds `count` UDP sockets to `addr` with SO_REUSEPORT, so that the kernel
/// spreads requests over them and each gets a receive loop of its own (one
/// per core: cheap requests are answered on the loop that received them).
/// `[::]` is IPv6-only so `0.0.0.0` can share the port.
fn bind(addr: SocketAddr, receive_buffer: Option<usize>, count: usize) -> std::io::Result<Vec<UdpSocket>> {
    // SO_REUSEPORT would also let a second server started on the same port
    // share it silently; a plain socket is refused by one that holds it, so
    // probe with one first (this also resolves port 0 once for the group).
    let probe = udp_socket(addr, None, false)?;
    let addr = probe.local_addr()?.as_socket().unwrap_or(addr);
    drop(probe);
    (0..count.max(1))
        .map(|_| {
            let socket = udp_socket(addr, receive_buffer, true)?;
            UdpSocket::from_std(socket.into())
        })
        .collect()
}

fn udp_socket(addr: SocketAddr, receive_buffer: Option<usize>, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Runs the server on `config` until a stop signal.
pub async fn run(config: Config) -> Result<(), CliError> {
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    if config.source == Source::Embedded {
        tracing::warn!("running on the embedded default configuration: client 127.0.0.1 (secret testing123) does not need Message-Authenticator, users are the demo users, mail goes to ./outbox/");
    }
    let pool = HashPool::new(config.server.hash_workers);
    let users = crate::users::open(&config.users, pool)?;
    let email = &config.email;
    let challenges = MemoryStore::start(
        ChallengeSettings {
            validity: email.challenge_validity,
            blocking: email.blocking_timeout,
            max_attempts: email.max_attempts,
        },
        &tasks,
        shutdown.clone(),
    );
    let mail = crate::mail::start(email, config.server.shutdown_grace, &tasks, shutdown.clone())?;
    let auth = Authenticator {
        users: ArcSwap::from_pointee(users),
        challenges,
        mail,
        settings: ArcSwap::from_pointee(AuthSettings::from(email)),
    };
    let ctx = Arc::new(Context::new(
        Clients::new(config.clients.clone()),
        auth,
        config.server.max_in_flight,
    ));
    let per_address = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sockets = Vec::new();
    for addr in &config.server.listen {
        let group = bind(*addr, config.server.receive_buffer, per_address)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = group[0].local_addr()?;
        tracing::info!(address = %local, sockets = group.len(), "listening on {local}");
        sockets.extend(group);
    }
    let server = tokio::spawn(crate::server::serve(sockets, ctx, tasks.clone(), shutdown.clone()));
    wait_for_stop_signal().await?;
    tracing::info!("stopping: answering requests in progress");
    shutdown.cancel();
    server.await?;
    tasks.close();
    if tokio::time::timeout(config.server.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = config.server.shutdown_grace.as_secs(),
            "stopped before all work finished"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
