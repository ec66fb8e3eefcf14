//! The deny page ("this wasn't me"): `GET /d/{token}` shows who asked for a
//! login (user, `client_ip`, NAS, time) and a button; only its `POST` acts,
//! once: it closes every open challenge of the user (their States then get
//! Access-Reject), locks the user for the lockout time unless `[users]
//! deny_locks = false`, counts it and logs a warning with reason
//! `denied-by-user` (`after_login = true` when the login had already
//! finished, so the admin can end that session). Never logs the token.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{escape, page, unavailable, Store, GONE, NOT_FOUND};
use crate::challenge::{DenyRecord, DenyStatus, LinkToken};
use crate::config::template::{rfc3339, without_controls, Values};

pub(super) async fn show(State(pages): State<Store>, Path(token): Path<String>) -> Response {
    let Some(token) = LinkToken::from_path(&token) else {
        return page(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    match pages.store.deny(&token, false).await {
        Ok(DenyStatus::Open(record)) => {
            let body = format!(
                "<h1>Was this you?</h1>\n{}\n\
                 <p>If you did not ask for this login, stop it:</p>\n\
                 <form method=\"post\"><button type=\"submit\">This wasn't me</button></form>\n\
                 <p>If it was you, close this page.</p>",
                facts(&pages, &record)
            );
            page(StatusCode::OK, &body)
        }
        other => status_page(other),
    }
}

pub(super) async fn deny(State(pages): State<Store>, Path(token): Path<String>, _body: Bytes) -> Response {
    let Some(token) = LinkToken::from_path(&token) else {
        return page(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let record = match pages.store.deny(&token, true).await {
        Ok(DenyStatus::Open(record)) => record,
        other => return status_page(other),
    };
    let after_login = match pages.store.close_user(&record.user, &record.tx).await {
        Ok(was_open) => !was_open,
        Err(e) => return unavailable(&e),
    };
    if pages.deny_locks {
        if let Err(e) = pages.limits.lock(&record.user).await {
            return unavailable(&e);
        }
    }
    pages.denied.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        user = %record.user,
        reason = "denied-by-user",
        after_login,
        locked = pages.deny_locks,
        client_ip = record.client_ip.as_deref().unwrap_or("unknown"),
        nas = %record.nas,
        "the user said a login was not theirs: their open challenges are closed"
    );
    let time = when(&pages, &record);
    let values = Values {
        user: &record.user,
        client_ip: record.client_ip.as_deref().unwrap_or("unknown"),
        nas: &record.nas,
        time: &time,
        ..Values::default()
    };
    page(StatusCode::OK, &pages.deny_page.load().render_html(&values))
}

fn when(pages: &Store, record: &DenyRecord) -> String {
    rfc3339(i64::try_from(record.asked_unix).unwrap_or(i64::MAX), &pages.timezone)
}

/// User, address, NAS and time of the login, as an HTML list.
fn facts(pages: &Store, record: &DenyRecord) -> String {
    let time = when(pages, record);
    let text = |s: &str| escape(&without_controls(s));
    format!(
        "<ul>\n<li>User: <strong>{}</strong></li>\n<li>From: {}</li>\n<li>Through: {}</li>\n<li>At: {}</li>\n</ul>",
        text(&record.user),
        text(record.client_ip.as_deref().unwrap_or("unknown")),
        text(&record.nas),
        text(&time)
    )
}

fn status_page(status: Result<DenyStatus, crate::backend::BackendUnavailable>) -> Response {
    match status {
        Ok(DenyStatus::Gone) => page(StatusCode::GONE, GONE),
        Ok(DenyStatus::Unknown | DenyStatus::Open(_)) => page(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(e) => unavailable(&e),
    }
}
