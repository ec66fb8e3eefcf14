//! server: the UDP sockets, the cheap checks every datagram passes, the
//! duplicate cache, and the wrapper that turns a [`Decision`] into signed bytes
//! and one log line.
//!
//! Checks run in a fixed order, cheapest first, and each drop is counted:
//! unknown client, malformed packet, unsupported code, Message-Authenticator,
//! User-Password framing, duplicate, capacity. Nothing that fails them is ever
//! answered. Capacity is two separate things: PIN requests (no State) take a
//! place in their client's share ([`PinShares`]) and wait for the hash
//! threads under their client's [`PIN_LANE`]; Status-Server and State
//! answers take one of `max_in_flight`, so they never wait behind PIN checks.
//! The decision itself lives behind `auth`'s [`RequestHandler`]: a request
//! is decoded once and handed over, Status-Server included, and the handler
//! says which requests it answers at once (those are answered on the
//! receive loop). This module never looks at users, codes or mail.

mod batch;
mod check;
mod dedup;
mod shares;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use batch::{Inbox, Outbox};
pub(crate) use check::{check_request, SINGLE_VALUED};
pub(crate) use dedup::{DuplicateCache, RequestKey, Seen};
pub(crate) use shares::PinShares;

use crate::auth::{Decision, Handler, Incoming, Kind, Request, RequestHandler};
use crate::config::Client;
use crate::dictionary::Dictionary;
use crate::lifecycle::Lifecycle;
use crate::metrics::{DropReason, Metrics};
use crate::users::PIN_LANE;
use crate::wire::{self, attr, Code, Packet, ResponseBuilder};

/// Largest datagram read; longer ones are cut, and RFC 2865 §3 says octets past
/// the length field are padding anyway.
const RECEIVE_BUFFER: usize = wire::MAX_PACKET_LEN + 1;
/// Requests remembered by the duplicate cache at most.
const DUPLICATE_CACHE_CAPACITY: usize = 100_000;
/// How often a client missing Message-Authenticator, or one whose PIN
/// share is full, is logged.
const MISSING_MA_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// `drop_log_interval` when the caller sets none.
const DEFAULT_DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The configured clients, most specific network first.
#[derive(Debug, Default)]
pub(crate) struct Clients(Vec<Arc<Client>>);

impl Clients {
    /// Orders clients so that a host entry wins over the network around it.
    pub(crate) fn new(clients: Vec<Client>) -> Clients {
        let mut clients: Vec<Arc<Client>> = clients.into_iter().map(Arc::new).collect();
        clients.sort_by_key(|c| std::cmp::Reverse(c.network.prefix_len()));
        Clients(clients)
    }

    /// The UDP client a source address belongs to (RadSec clients never
    /// match here: a UDP and a RadSec client may share an address).
    pub(crate) fn find(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = unmapped(ip);
        self.0.iter().find(|c| c.tls_name.is_none() && c.network.contains(&ip))
    }

    /// The RadSec client at `ip` whose `tls_name` is one of a certificate's
    /// `names` (DNS names, so without regard to ASCII case).
    pub(crate) fn find_radsec(&self, ip: IpAddr, names: &[String]) -> Option<&Arc<Client>> {
        let ip = unmapped(ip);
        self.0.iter().find(|c| {
            c.network.contains(&ip)
                && c.tls_name
                    .as_ref()
                    .is_some_and(|n| names.iter().any(|m| m.eq_ignore_ascii_case(n)))
        })
    }
}

/// An IPv4 address as itself, also when it came as `::ffff:a.b.c.d`.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Shared state of the running server.
pub(crate) struct Context<H = Handler> {
    /// Who may send requests (swapped whole on reload).
    pub clients: ArcSwap<Clients>,
    /// What decides the requests.
    pub handler: H,
    /// Counters.
    pub metrics: Metrics,
    /// Recent requests and answers.
    pub duplicates: DuplicateCache,
    /// Bounds the Status-Server and State answers worked on at once
    /// (`max_in_flight`); PIN requests have `pin_shares` instead.
    pub in_flight: Arc<Semaphore>,
    /// Each client's share of the PIN-check queue (`pin_queue_per_client`).
    pub pin_shares: PinShares,
    /// How often drops are summed up in the log (`drop_log_interval`).
    pub drop_log_interval: Duration,
    /// Where each existing user's last answer is kept (`mailotp ctl status`).
    pub results: Option<Arc<dyn crate::challenge::OperatorState>>,
    missing_ma_logged: DashMap<String, Instant>,
    share_full_logged: DashMap<String, Instant>,
}

impl<H: RequestHandler> Context<H> {
    /// A context around a request handler.
    pub(crate) fn new(clients: Clients, handler: H, max_in_flight: usize) -> Context<H> {
        Context {
            clients: ArcSwap::from_pointee(clients),
            handler,
            metrics: Metrics::default(),
            duplicates: DuplicateCache::new(DUPLICATE_CACHE_CAPACITY),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            pin_shares: PinShares::default(),
            drop_log_interval: DEFAULT_DROP_LOG_INTERVAL,
            results: None,
            missing_ma_logged: DashMap::new(),
            share_full_logged: DashMap::new(),
        }
    }
}

/// Keeps the answer as the user's last result, under the canonical name.
fn record_result(results: &dyn crate::challenge::OperatorState, decision: &Decision, user: &str, client: &str) {
    let at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let result = crate::challenge::LastResult {
        answer: decision.code.name().into(),
        reason: decision.reason.as_str().into(),
        client: client.to_owned(),
        at_unix,
    };
    results.record_result(decision.canonical.as_deref().unwrap_or(user), result);
}

/// Serves RADIUS on already-bound sockets until shutdown; request tasks run
/// on `life`, so the caller can wait for them to finish.
pub(crate) async fn serve<H: RequestHandler>(sockets: Vec<UdpSocket>, ctx: Arc<Context<H>>, life: Lifecycle) {
    let mut loops = tokio::task::JoinSet::new();
    for socket in sockets {
        loops.spawn(receive_loop(Arc::new(socket), Arc::clone(&ctx), life.clone()));
    }
    loops.spawn(sweep_duplicates(Arc::clone(&ctx), life.clone()));
    loops.spawn(log_drops(Arc::clone(&ctx), life));
    while loops.join_next().await.is_some() {}
}

async fn sweep_duplicates<H: RequestHandler>(ctx: Arc<Context<H>>, life: Lifecycle) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = life.cancelled() => return,
            _ = tick.tick() => ctx.duplicates.sweep(Instant::now()),
        }
    }
}

/// Drops are logged as a sum per reason and period rather than one line per
/// datagram: a configured client's address is easy to spoof, and a flood of
/// junk must not become a flood of log lines. The per-datagram line (with the
/// source) stays at debug level.
async fn log_drops<H: RequestHandler>(ctx: Arc<Context<H>>, life: Lifecycle) {
    let mut reported = [0u64; DropReason::ALL.len()];
    let mut tick = tokio::time::interval(ctx.drop_log_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = life.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (reason, seen) in DropReason::ALL.iter().zip(reported.iter_mut()) {
            let total = ctx.metrics.drops(*reason);
            if total > *seen {
                tracing::info!(
                    reason = reason.as_str(),
                    dropped = total - *seen,
                    total,
                    period_s = ctx.drop_log_interval.as_secs(),
                    "datagrams dropped"
                );
                *seen = total;
            }
        }
    }
}

async fn receive_loop<H: RequestHandler>(socket: Arc<UdpSocket>, ctx: Arc<Context<H>>, life: Lifecycle) {
    let mut inbox = Inbox::new(RECEIVE_BUFFER);
    let mut outbox = Outbox::default();
    loop {
        tokio::select! {
            _ = life.cancelled() => return,
            received = inbox.receive(&socket) => if let Err(e) = received {
                // ICMP errors from earlier sends surface here on some systems.
                tracing::debug!(error = %e, "receive failed");
                continue;
            },
        }
        for (datagram, source) in inbox.datagrams() {
            handle(&ctx, &socket, &life, datagram, source, &mut outbox).await;
        }
        outbox.send_all(&socket).await;
    }
}

/// One datagram of a batch: dropped, answered into `outbox` when that needs
/// no waiting, or handed to a task that answers on its own.
async fn handle<H: RequestHandler>(
    ctx: &Arc<Context<H>>,
    socket: &Arc<UdpSocket>,
    life: &Lifecycle,
    datagram: &[u8],
    source: SocketAddr,
    outbox: &mut Outbox,
) {
    match screen(ctx, datagram, source) {
        Screened::Drop(reason) => {
            ctx.metrics.drop(reason);
            tracing::debug!(%source, reason = reason.as_str(), "dropped");
        }
        Screened::Resend(bytes) => {
            ctx.metrics
                .duplicates_answered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            outbox.push(bytes, source);
        }
        Screened::Work {
            client,
            packet,
            key,
            permit,
            at_once: true,
        } => {
            // Nothing here waits, so a task would only add a copy of the
            // datagram, an allocation and a wake-up per request.
            if let Some(bytes) = respond(ctx, &ctx.duplicates, &client, key, packet).await {
                outbox.push(bytes, source);
            }
            drop(permit);
        }
        Screened::Work {
            client,
            packet,
            key,
            permit,
            ..
        } => {
            let packet = packet.to_buf();
            let (socket, ctx) = (Arc::clone(socket), Arc::clone(ctx));
            let lane: Arc<str> = Arc::from(client.name.as_str());
            life.spawn(PIN_LANE.scope(lane, async move {
                let _permit = permit;
                if let Some(bytes) = respond(&ctx, &ctx.duplicates, &client, key, packet.packet()).await {
                    send(&socket, &bytes, source).await;
                }
            }));
        }
    }
}

/// The outcome of the cheap checks.
pub(crate) enum Screened<'a> {
    Drop(DropReason),
    Resend(Arc<[u8]>),
    Work {
        client: Arc<Client>,
        /// Decoded once, here; the handler gets it without a second decode.
        packet: Packet<'a>,
        key: RequestKey,
        permit: tokio::sync::OwnedSemaphorePermit,
        /// Decided without waiting (no PIN hash, no remote store).
        at_once: bool,
    },
}

fn screen<'a, H: RequestHandler>(ctx: &Context<H>, datagram: &'a [u8], source: SocketAddr) -> Screened<'a> {
    let clients = ctx.clients.load();
    let Some(client) = clients.find(source.ip()) else {
        return Screened::Drop(DropReason::UnknownClient);
    };
    screen_from(ctx, &ctx.duplicates, client, datagram, source)
}

/// The checks after the client is known, shared by UDP and RadSec (whose
/// `duplicates` is the connection's own): packet, duplicate, capacity.
pub(crate) fn screen_from<'a, H: RequestHandler>(
    ctx: &Context<H>,
    duplicates: &DuplicateCache,
    client: &Arc<Client>,
    datagram: &'a [u8],
    source: SocketAddr,
) -> Screened<'a> {
    let packet = match check_request(datagram, client.secret.expose(), client.require_message_authenticator) {
        Ok(packet) => packet,
        Err(reason) => {
            if reason == DropReason::MissingMessageAuthenticator {
                log_missing_ma(ctx, client);
            }
            return Screened::Drop(reason);
        }
    };
    let key = RequestKey {
        source,
        identifier: packet.identifier(),
        authenticator: *packet.authenticator(),
    };
    match duplicates.check(key) {
        Seen::New => {}
        Seen::InProgress => return Screened::Drop(DropReason::DuplicateInProgress),
        Seen::Answered(bytes) => return Screened::Resend(bytes),
        Seen::Full => return Screened::Drop(DropReason::Overloaded),
    }
    // Without State an Access-Request needs the PIN checked (a hash or an
    // LDAP bind): it waits in its client's share, never in `in_flight`.
    let kind = Kind::of(packet.code(), packet.first(attr::STATE).is_some());
    let pin_check = kind == Kind::Pin;
    let permit = if pin_check {
        ctx.pin_shares.try_acquire(&client.name)
    } else {
        Arc::clone(&ctx.in_flight).try_acquire_owned().ok()
    };
    let Some(permit) = permit else {
        duplicates.forget(&key);
        if pin_check {
            log_share_full(ctx, client);
            return Screened::Drop(DropReason::PinQueueFull);
        }
        return Screened::Drop(DropReason::Overloaded);
    };
    Screened::Work {
        client: Arc::clone(client),
        packet,
        key,
        permit,
        at_once: ctx.handler.answers_at_once(kind),
    }
}

/// Admins see why a NAS gets no answers, without a line per packet.
fn log_missing_ma<H>(ctx: &Context<H>, client: &Client) {
    if due(&ctx.missing_ma_logged, client) {
        tracing::warn!(client = %client.name, "dropping requests without Message-Authenticator (require_message_authenticator = true, or Status-Server); logged once a minute");
    }
}

/// Names the flooding client, which the per-reason drop sums do not.
fn log_share_full<H>(ctx: &Context<H>, client: &Client) {
    if due(&ctx.share_full_logged, client) {
        tracing::warn!(
            client = %client.name,
            pin_queue_per_client = ctx.pin_shares.per_client(),
            "dropping PIN requests beyond this client's share of the PIN-check queue (pin-queue-full); logged once a minute"
        );
    }
}

/// Whether a once-a-minute line about `client` is due in `logged`, and
/// marks it logged when it is.
fn due(logged: &DashMap<String, Instant>, client: &Client) -> bool {
    let now = Instant::now();
    let mut last = logged
        .entry(client.name.clone())
        .or_insert(now - MISSING_MA_LOG_INTERVAL);
    let due = now.duration_since(*last) >= MISSING_MA_LOG_INTERVAL;
    if due {
        *last = now;
    }
    due
}

/// Hands a screened request to the handler and writes its log line; the
/// signed answer, or `None` when a backend is down and the request gets none.
/// `duplicates` is where the answer is remembered (the connection's own
/// cache for RadSec).
pub(crate) async fn respond<H: RequestHandler>(
    ctx: &Context<H>,
    duplicates: &DuplicateCache,
    client: &Client,
    key: RequestKey,
    packet: Packet<'_>,
) -> Option<Arc<[u8]>> {
    let secret = client.secret.expose();
    let user = packet
        .first(attr::USER_NAME)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let decision = if packet.code() == Code::StatusServer {
        ctx.handler.handle(&Incoming::StatusServer).await
    } else {
        let password = packet
            .first(attr::USER_PASSWORD)
            .and_then(|hidden| wire::unhide_password(hidden, secret, packet.authenticator()))
            .unwrap_or_default();
        let client_ip = packet.first(attr::CALLING_STATION_ID).map(String::from_utf8_lossy);
        let trusted_email = trusted_email(&packet, client);
        let request = Request {
            user: &user,
            password: &password,
            state: packet.first(attr::STATE),
            challenge_mode: client.challenge_mode,
            client_ip: client_ip.as_deref(),
            trusted_email: trusted_email.as_deref(),
            client: &client.name,
        };
        ctx.handler.handle(&Incoming::Access(request)).await
    };
    let decision = match decision {
        Ok(d) => d,
        Err(e) => {
            duplicates.forget(&key);
            ctx.metrics.drop(DropReason::BackendUnavailable);
            tracing::error!(client = %client.name, id = key.identifier, %user, error = %e, "no answer: backend unavailable");
            return None;
        }
    };
    let bytes: Arc<[u8]> = Arc::from(encode_response(&packet, &decision, secret));
    duplicates.answered(key, Arc::clone(&bytes));
    count(&ctx.metrics, decision.code);
    if let Some(policy) = &decision.policy {
        ctx.metrics.policy(policy);
    }
    if let Some(results) = ctx.results.as_ref().filter(|_| decision.reason.names_a_user()) {
        record_result(results.as_ref(), &decision, &user, &client.name);
    }
    if packet.code() == Code::StatusServer {
        // A proxy asks every few seconds: the metrics count these, and a line
        // each would bury the logins (FreeRADIUS does not log them either).
        tracing::debug!(client = %client.name, source = %key.source, id = key.identifier, "Status-Server answered");
    } else {
        tracing::info!(
            client = %client.name,
            source = %key.source,
            id = key.identifier,
            user = %user,
            canonical = decision.canonical.as_deref().map(tracing::field::display),
            policy = decision.policy.as_deref().map(tracing::field::display),
            answer = decision.code.name(),
            reason = decision.reason.as_str(),
            "request answered"
        );
    }
    Some(bytes)
}

/// The signed answer to `request`: Message-Authenticator first, then State,
/// the request's Proxy-State attributes in their order, Reply-Message, and
/// the decision's reply attributes.
pub(crate) fn encode_response(request: &Packet<'_>, decision: &Decision, secret: &[u8]) -> Vec<u8> {
    let mut response = ResponseBuilder::new(decision.code, request.identifier());
    // What the NAS and a proxy cannot do without comes first: the builder
    // stops at 4096 bytes, and then only reply attributes are cut.
    if let Some(tx) = decision.state {
        response.push(attr::STATE, &tx.to_state());
    }
    for a in request.attributes().filter(|a| a.attr_type == attr::PROXY_STATE) {
        response.push(attr::PROXY_STATE, a.value);
    }
    if let Some(message) = &decision.reply_message {
        response.push(attr::REPLY_MESSAGE, message.as_bytes());
    }
    for a in &decision.attributes {
        response.push(a.attr_type, &a.value);
    }
    response.finish(request.authenticator(), secret)
}

/// The e-mail address in the client's `trusted_email_attribute`. The same
/// attribute from a client not configured with it is ignored, and logged so
/// an admin sees a proxy that is not trusted yet (or a forgery).
fn trusted_email(packet: &Packet<'_>, client: &Client) -> Option<String> {
    let dictionary = Dictionary::builtin();
    if let Some(def) = &client.trusted_email {
        return dictionary
            .find(packet, def)
            .map(|v| String::from_utf8_lossy(v).into_owned());
    }
    let def = dictionary.attribute("Mailotp-Email")?;
    if dictionary.find(packet, def).is_some() {
        tracing::warn!(client = %client.name, "Mailotp-Email ignored: this client has no trusted_email_attribute");
    }
    None
}

fn count(metrics: &Metrics, code: Code) {
    let counter = match code {
        Code::AccessAccept => &metrics.accepts,
        Code::AccessChallenge => &metrics.challenges,
        _ => &metrics.rejects,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to).await {
        tracing::warn!(%to, error = %e, "cannot send answer");
    }
}

#[cfg(test)]
mod tests;
