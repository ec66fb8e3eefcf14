//! exporter: `GET /metrics` in Prometheus text format on `[metrics] listen`.
//!
//! The counters stay plain atomics where they are counted (`metrics`, the
//! mail queue, the hash threads); this module reads them at scrape time through
//! a `prometheus-client` collector, so the request path pays nothing for
//! the exporter. The decision's side comes as one snapshot
//! ([`crate::auth::Stats`]), not by reaching into its stores and queue. It
//! serves nothing but `/metrics` and logs no request; its connections are
//! bounded in number and time like the link pages' (`http`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::config::HttpLimits;
use crate::lifecycle::Lifecycle;
use crate::metrics::DropReason;
use crate::server::Context;
use crate::users::HashThreads;
use crate::wire::Code;

/// Reads the server's counters at each scrape.
#[derive(Clone)]
struct Counters {
    ctx: Arc<Context>,
    hash_threads: HashThreads,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A counter family with one label.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*count).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Counters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.ctx.metrics;
        let answers = [
            (Code::AccessAccept.name(), m.accepts.load(Ordering::Relaxed)),
            (Code::AccessReject.name(), m.rejects.load(Ordering::Relaxed)),
            (Code::AccessChallenge.name(), m.challenges.load(Ordering::Relaxed)),
        ];
        family(
            &mut encoder,
            "mailotp_answers",
            "RADIUS answers sent, by code",
            "code",
            &answers,
        )?;
        let drops: Vec<(&str, u64)> = DropReason::ALL.iter().map(|r| (r.as_str(), m.drops(*r))).collect();
        family(
            &mut encoder,
            "mailotp_drops",
            "Datagrams dropped without an answer, by reason",
            "reason",
            &drops,
        )?;
        let policies = m.policies();
        let policies: Vec<(&str, u64)> = policies.iter().map(|(name, n)| (name.as_str(), *n)).collect();
        family(
            &mut encoder,
            "mailotp_policy_answers",
            "Access-Requests answered under a [[policies]] entry, by its name",
            "policy",
            &policies,
        )?;
        let duplicates = m.duplicates_answered.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "mailotp_duplicates_answered",
            "Retransmissions answered from the duplicate cache",
            duplicates,
        )?;
        control_commands(&mut encoder)?;
        let refused = m.radsec.refused();
        family(
            &mut encoder,
            "mailotp_radsec_refused_connections",
            "RadSec connections closed before any RADIUS was read, by reason",
            "reason",
            &refused,
        )?;
        let open = m.radsec.open.load(Ordering::Relaxed);
        gauge(
            &mut encoder,
            "mailotp_radsec_connections",
            "RadSec connections open now",
            open,
        )?;
        let bad = crate::metrics::REDIS_BAD_RECORDS.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "mailotp_redis_bad_records",
            "Records read from Redis that failed their pool-key check and were ignored",
            bad,
        )?;
        let stats = self.ctx.handler.stats();
        let open = i64::try_from(stats.open_challenges).unwrap_or(i64::MAX);
        gauge(&mut encoder, "mailotp_open_challenges", "Challenges open now", open)?;
        counter(
            &mut encoder,
            "mailotp_mails_sent",
            "Mails the provider accepted",
            stats.mails_sent,
        )?;
        counter(
            &mut encoder,
            "mailotp_mail_failed_attempts",
            "Delivery attempts that failed (each retry counts)",
            stats.mail_failed_attempts,
        )?;
        counter(
            &mut encoder,
            "mailotp_mails_dropped",
            "Mails given up: refused for good or expired",
            stats.mails_dropped,
        )?;
        counter(
            &mut encoder,
            "mailotp_denied_by_user",
            "Logins their user stopped with \"This wasn't me\"",
            stats.denied_by_user,
        )?;
        let queued = i64::try_from(stats.mails_queued).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "mailotp_mails_queued",
            "Mails waiting, being sent or waiting for a retry",
            queued,
        )?;
        let hashes = self.hash_threads.stats();
        counter(
            &mut encoder,
            "mailotp_pin_hashes",
            "PIN hashes computed",
            hashes.hashes.load(Ordering::Relaxed),
        )?;
        let wait = hashes.wait_micros.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "mailotp_pin_hash_wait_microseconds",
            "Time PIN checks waited for a hash worker, summed",
            wait,
        )
    }
}

/// `mailotp ctl` commands (and refusals) on the control socket, by command and result.
fn control_commands(encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let name = "mailotp_control_commands";
    let help = "Commands on the control socket (mailotp ctl), by command and result";
    let mut metric = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
    for (command, result, count) in crate::control::counts() {
        let labels = [("command", command), ("result", result)];
        ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Serves `/metrics` on `listener` until shutdown, within `limits`
/// (connections, time per request; see [`crate::http`]).
pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    hash_threads: HashThreads,
    limits: HttpLimits,
    life: Lifecycle,
) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Counters { ctx, hash_threads }));
    let registry = Arc::new(registry);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    );
    crate::http::serve("metrics", listener, app, limits, life).await;
}

/// Binds `[metrics] listen` and logs where the metrics are.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    Ok(listener)
}
