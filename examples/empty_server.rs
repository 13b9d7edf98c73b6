//! Baseline for bench/webhooks.sh: an axum server whose POST handler reads the body and
//! answers 200 without doing anything, on the same runtime settings as inflow.
//! Usage: cargo run --release --example empty_server -- 127.0.0.1:18081

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = Router::new().route("/pbx/generic", post(|_body: Bytes| async { "{\"status\":\"accepted\"}" }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("empty server listening on http://{addr}");
    axum::serve(listener, app).await.expect("serve");
}
