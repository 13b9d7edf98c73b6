//! The request readers every PBX adapter shares: form bodies, multipart bodies and the
//! field picker over a request (query and body, by content type).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use inflow::ingest::pbx::{form_fields, multipart_fields, request_fields, WebhookRequest};
    // The first line is the content type, the rest the body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (ct, body) = (String::from_utf8_lossy(&data[..split]).into_owned(), data.get(split + 1..).unwrap_or(&[]));
    let _ = form_fields(body);
    let _ = multipart_fields(&ct, body);
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_str(&ct) {
        headers.insert(axum::http::header::CONTENT_TYPE, v);
    }
    let query = std::str::from_utf8(body).ok().and_then(|b| b.split_once('?')).map(|(_, q)| q);
    let req = WebhookRequest {
        method: "POST",
        subpath: "/",
        query,
        headers: &headers,
        body,
        received_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    };
    let _ = request_fields(&req);
});
