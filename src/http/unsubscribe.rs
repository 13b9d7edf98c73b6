//! The unsubscribe link of wave mail (R-OPT-3, RFC 8058). `POST /u/{token}` with the body
//! `List-Unsubscribe=One-Click` unsubscribes at once and answers 200 (mail providers call
//! it without a browser: no cookies, no redirects, no page to click through). `GET` shows a
//! minimal confirmation page whose button posts the same body, so a link scanner that
//! follows GETs never unsubscribes anyone. The token is the delivery id signed with HMAC
//! (`waves::LinkSigner`); a bad token is a 404 that writes nothing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::store::waves::UnsubscribeOutcome;

pub fn routes() -> Router<AppState> {
    Router::new().route("/u/{token}", get(page).post(one_click)).layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
}

fn page_html(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
            content=\"width=device-width\"><meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\"><h1>{title}</h1>{body}</body></html>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `a***@example.com`: enough for the reader to recognise the address, no more.
fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

fn invalid() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page_html(
            "Link not valid",
            "<p>This unsubscribe link is not valid. If you copied it, check that it is complete.</p>",
        )),
    )
        .into_response()
}

async fn page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(id) = s.unsubscribe.as_ref().and_then(|u| u.verify(&token)) else { return invalid() };
    match s.store.delivery_address(id).await {
        Ok(Some((address, _))) => Html(page_html(
            "Unsubscribe",
            &format!(
                "<p>Stop marketing e-mail to <b>{}</b>?</p><form method=\"post\"><input type=\"hidden\" \
                    name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>",
                escape(&masked(&address))
            ),
        ))
        .into_response(),
        Ok(None) => invalid(),
        Err(e) => super::ApiError::from(e).into_response(),
    }
}

/// RFC 8058 §3.1: the POST body is `List-Unsubscribe=One-Click`, form-urlencoded or as
/// multipart/form-data.
fn is_one_click(headers: &HeaderMap, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        return text.contains("name=\"List-Unsubscribe\"") && text.contains("One-Click");
    }
    text.trim().split('&').any(|kv| kv == "List-Unsubscribe=One-Click")
}

async fn one_click(State(s): State<AppState>, Path(token): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(id) = s.unsubscribe.as_ref().and_then(|u| u.verify(&token)) else { return invalid() };
    if !is_one_click(&headers, &body) {
        return (
            StatusCode::BAD_REQUEST,
            Html(page_html(
                "Unsubscribe",
                "<p>The request must carry <code>List-Unsubscribe=One-Click</code> (RFC 8058).</p>",
            )),
        )
            .into_response();
    }
    match s.store.unsubscribe_delivery(id, "one-click", chrono::Utc::now()).await {
        Ok(Some(UnsubscribeOutcome::Done { address } | UnsubscribeOutcome::AlreadyDone { address })) => {
            tracing::info!(delivery = %id, "unsubscribed through the one-click link");
            Html(page_html(
                "Unsubscribed",
                &format!("<p><b>{}</b> will get no more marketing e-mail from us.</p>", escape(&masked(&address))),
            ))
            .into_response()
        }
        Ok(None) => invalid(),
        Err(e) => super::ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies_of_rfc_8058() {
        let form = HeaderMap::from_iter([(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap())]);
        assert!(is_one_click(&form, b"List-Unsubscribe=One-Click"));
        assert!(!is_one_click(&form, b"List-Unsubscribe=Nope"));
        assert!(!is_one_click(&form, b""));
        let multi = HeaderMap::from_iter([(header::CONTENT_TYPE, "multipart/form-data; boundary=x".parse().unwrap())]);
        assert!(is_one_click(
            &multi,
            b"--x\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--x--\r\n"
        ));
        assert_eq!(masked("anna@acme.ru"), "a***@acme.ru");
    }
}
