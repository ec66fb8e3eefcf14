//! link: the confirmation page server for link delivery (`[email] delivery =
//! "link"`).
//!
//! `GET /l/{token}` shows who is logging in and a Confirm button; only the
//! `POST` that button sends confirms, once, so mail scanners that follow links
//! confirm nothing. A used or expired link gets 410, an unknown one 404. Every
//! answer carries `Cache-Control: no-store`, `Referrer-Policy: no-referrer`,
//! `X-Frame-Options: DENY` and a Content-Security-Policy that allows nothing
//! but the form posting to itself. Requests over 16 KiB get 413; the number
//! of connections and the time a request may take are bounded (`http`).
//! The token is the protection: no Origin check (browsers send
//! `Origin: null` under no-referrer). It shares the challenge store with
//! `auth`, never blocks the RADIUS side, and never logs a token.
//!
//! With `[link]` configured every mail also carries a deny link,
//! `GET`/`POST /d/{token}` ("this wasn't me", `link/deny.rs`), under the same
//! headers and limits.

mod deny;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::challenge::{ChallengeStore, LinkStatus, LinkToken};
use crate::config::HttpLimits;
use crate::lifecycle::Lifecycle;
use crate::limits::Limiter;

/// Largest request accepted (SPEC: 16 KiB, then 413).
const MAX_REQUEST: usize = 16 * 1024;
const CSP: &str = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the pages act on.
pub(crate) struct Pages {
    /// The challenge store, shared with `auth`.
    pub store: Arc<dyn ChallengeStore>,
    /// Where "this wasn't me" locks the user.
    pub limits: Arc<dyn Limiter>,
    /// `[users] deny_locks`.
    pub deny_locks: bool,
    /// Where times are told (`[email] timezone`).
    pub timezone: jiff::tz::TimeZone,
    /// Counts logins denied by their user (`mailotp_denied_by_user_total`).
    pub denied: Arc<std::sync::atomic::AtomicU64>,
    /// What the page says once a login was stopped (`[link] deny_page_file`;
    /// swapped on reload).
    pub deny_page: Arc<arc_swap::ArcSwap<crate::config::template::Template>>,
}

type Store = Arc<Pages>;

/// Serves the pages on `listener` until shutdown, within `limits`
/// (connections, time per request; see [`crate::http`]); connections run
/// on `life`.
pub(crate) async fn serve(listener: TcpListener, pages: Pages, limits: HttpLimits, life: Lifecycle) {
    crate::http::serve("link", listener, router(Arc::new(pages)), limits, life).await;
}

fn router(pages: Store) -> Router {
    Router::new()
        .route("/l/{token}", get(show).post(confirm))
        .route("/d/{token}", get(deny::show).post(deny::deny))
        .fallback(|| async { page(StatusCode::NOT_FOUND, NOT_FOUND) })
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .layer(middleware::from_fn(guard))
        .with_state(pages)
}

/// Refuses oversized requests before routing and sets the security headers
/// on every answer, errors included.
async fn guard(request: Request, next: Next) -> Response {
    let too_big = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len > MAX_REQUEST);
    let mut response = if too_big {
        page(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn show(State(store): State<Store>, Path(token): Path<String>) -> Response {
    let Some(token) = LinkToken::from_path(&token) else {
        return page(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    match store.store.link_status(&token).await {
        Ok(LinkStatus::Pending { user, opened_unix }) => {
            let when = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(opened_unix));
            let body = format!(
                "<h1>Confirm your login</h1>\n<p>A login as <strong>{}</strong> was started at {when}.</p>\n\
                 <form method=\"post\"><button type=\"submit\">Confirm</button></form>\n\
                 <p>If you did not just try to log in, close this page and tell your IT team.</p>",
                escape(&user)
            );
            page(StatusCode::OK, &body)
        }
        other => status_page(other),
    }
}

async fn confirm(State(store): State<Store>, Path(token): Path<String>, _body: Bytes) -> Response {
    let Some(token) = LinkToken::from_path(&token) else {
        return page(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    match store.store.confirm_link(&token).await {
        Ok(LinkStatus::Pending { user, .. }) => {
            tracing::info!(%user, "login confirmed by link");
            let body = "<h1>Confirmed</h1>\n<p>You can go back to your VPN client and press Enter.</p>";
            page(StatusCode::OK, body)
        }
        other => status_page(other),
    }
}

fn status_page(status: Result<LinkStatus, crate::backend::BackendUnavailable>) -> Response {
    match status {
        Ok(LinkStatus::Gone) => page(StatusCode::GONE, GONE),
        Ok(LinkStatus::Unknown | LinkStatus::Pending { .. }) => page(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &crate::backend::BackendUnavailable) -> Response {
    tracing::error!(error = %e, "link page: challenge store unavailable");
    page(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
}

const NOT_FOUND: &str = "<h1>Link not found</h1>\n<p>This link is not valid. Use the link from your newest e-mail.</p>";
const GONE: &str = "<h1>Link already used or expired</h1>\n\
    <p>This link works once and for a limited time. Log in again to get a new one.</p>";
const TOO_LARGE: &str = "<h1>Request too large</h1>";
const UNAVAILABLE: &str = "<h1>Try again in a moment</h1>\n<p>The service is briefly unavailable.</p>";

/// A complete page: plain HTML, no scripts, no styles, nothing third-party.
fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Login confirmation</title></head>\n\
         <body>\n{body}\n</body></html>\n"
    );
    (status, Html(html)).into_response()
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
