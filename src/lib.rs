//! mailotp: a RADIUS server that adds a second factor by e-mail.
//!
//! A NAS sends the user's PIN; mailotp e-mails a one-time password and answers
//! Access-Challenge; the user types the code and mailotp answers Access-Accept.
//!
//! # Layout
//! Imports go one way; README's "Layout" lists the modules in that order.
//! Only what the binary, the benchmark and the fuzz targets use is `pub`;
//! the rest is `pub(crate)`, so `unreachable_pub` and dead-code lints bite.
//! - [`wire`] — RADIUS bytes ↔ packets; knows nothing of users or mail.
//! - `server` — sockets, the cheap checks, the duplicate cache, answering.
//! - `radsec` — RADIUS over TLS (RFC 6614): the second transport, beside `server`.
//! - `tls` — the RadSec listener's rustls settings and a client certificate's names.
//! - `policy` — `[[policies]]`, and which one applies to a request.
//! - `auth` — the request handler seam and the Access-Request decision.
//! - `ids` — transaction ids, origins and link tokens: plain values.
//! - [`challenge`] — open challenges (the in-memory store) behind a trait.
//! - `backend` — the error of a shared backend that cannot answer now.
//! - [`otp`] — HOTP codes and the digest the store keeps instead of them.
//! - `redis` — several instances as one through Redis (`[state] backend = "redis"`).
//! - [`limits`] — e-mail throttling and user lockout, behind a trait.
//! - [`users`] — the users file and PIN hashes, behind a trait.
//! - `mail` — the delivery queue, templates and providers (SMTP, file).
//! - [`dictionary`] — attribute names ↔ wire types (FreeRADIUS format files).
//! - `config` — the configuration file, strictly parsed and checked.
//! - `health` — whether backends are up (Status-Server goes silent when not).
//! - `link` — the confirmation page server for link delivery.
//! - `exporter` — `/metrics` in Prometheus text format.
//! - `http` — the accept loop and limits both HTTP listeners share.
//! - `metrics` — counters.
//! - `logging` — `serve`'s log lines, written to stderr in blocks.
//! - [`lifecycle`] — shutdown token, task tracker and grace, as one value.
//! - `expiry` — deadline queues for challenges and the duplicate cache.
//! - [`invariants`] — properties of any input, for fuzzing and property tests.
//! - `control` — the operator socket (`mailotp ctl`): status, unlock, revoke, stats, reload.
//! - `app` — wires a configuration into a running server; signals.
//! - [`cli`] — the `mailotp` commands; `main.rs` only calls into it.

#![warn(missing_docs, unreachable_pub)]

pub(crate) mod app;
pub(crate) mod auth;
pub(crate) mod backend;
pub mod challenge;
pub mod cli;
pub(crate) mod config;
pub(crate) mod control;
pub mod dictionary;
pub(crate) mod expiry;
pub(crate) mod exporter;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod ids;
pub mod invariants;
pub mod lifecycle;
pub mod limits;
pub(crate) mod link;
pub(crate) mod logging;
pub(crate) mod mail;
pub(crate) mod metrics;
pub mod otp;
pub(crate) mod policy;
pub(crate) mod radsec;
pub(crate) mod redis;
pub(crate) mod server;
pub(crate) mod tls;
pub mod users;
pub mod wire;
