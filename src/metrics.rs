//! Prometheus metrics (issue 8 §4): counters and a latency histogram recorded where things
//! happen (`metrics` macros), and gauges read from the database at scrape time — queue
//! depths and per-mailbox connection state — so every daemon sharing a database reports the
//! same truth about it. The text format is served at `GET /metrics`.
//!
//! Names: inflow_mail_messages_total{mailbox,class,status}, inflow_mail_duplicates_total{mailbox},
//! inflow_mail_quarantined_total{mailbox}, inflow_pbx_calls_total{provider,disposition,outcome},
//! inflow_cdr_table_rows_total{name}, inflow_cdr_table_errors_total{name} (a polled CDR table
//! that could not be read),
//! inflow_wave_deliveries_total{outcome}, inflow_alerts_total{level,status},
//! inflow_http_requests_total{route,method,status}, inflow_http_auth_failures_total{route},
//! inflow_http_request_duration_seconds{route,method} (histogram), and the gauges
//! inflow_queue_depth{queue}, inflow_mailbox_up{mailbox,folder},
//! inflow_mailbox_last_poll_timestamp_seconds{mailbox,folder}, inflow_mailbox_state{mailbox,
//! folder,state} (1 for the current state: why a mailbox is down, e.g. auth_expired), and
//! inflow_oauth_grant_up{account} (0: the account needs `inflow oauth login`).

use std::sync::OnceLock;

/// The states a mailbox worker reports (`ingest::imap`), for `inflow_mailbox_state`.
const MAILBOX_STATES: &[&str] = &[
    "idle",
    "connected",
    "standby",
    "unreachable",
    "tls_failed",
    "login_rejected",
    "auth_expired",
    "server_error",
    "connection_lost",
    "store_error",
    "owner_unknown",
];
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::http::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("inflow_http_request_duration_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Counts a request and its latency by route template (never by the raw path, which holds ids).
pub async fn track(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let t = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("inflow_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(t.elapsed().as_secs_f64());
    if status == "401" {
        // Refused credentials per route: a scan, a leaked-and-revoked token, a broken client.
        metrics::counter!("inflow_http_auth_failures_total", "route" => route.clone()).increment(1);
    }
    metrics::counter!("inflow_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    resp
}

/// `GET /metrics`: refreshes the database gauges, then renders everything.
pub async fn scrape(State(s): State<AppState>) -> Response {
    let Some(handle) = install() else {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "metrics recorder unavailable\n").into_response();
    };
    match s.store.ops_gauges().await {
        Ok(g) => {
            for (queue, n) in g.queues {
                metrics::gauge!("inflow_queue_depth", "queue" => queue).set(n as f64);
            }
            for m in g.mailboxes {
                let labels = [("mailbox", m.mailbox.clone()), ("folder", m.folder.clone())];
                metrics::gauge!("inflow_mailbox_up", &labels).set(if m.state == "connected" { 1.0 } else { 0.0 });
                // Why it is down, as a state set (one series per state, 1 for the current).
                for state in MAILBOX_STATES {
                    let l =
                        [("mailbox", m.mailbox.clone()), ("folder", m.folder.clone()), ("state", state.to_string())];
                    metrics::gauge!("inflow_mailbox_state", &l).set(if m.state == *state { 1.0 } else { 0.0 });
                }
                if let Some(t) = m.last_poll_at {
                    metrics::gauge!("inflow_mailbox_last_poll_timestamp_seconds", &labels)
                        .set(t.timestamp_millis() as f64 / 1000.0);
                }
            }
            let accounts = s.config.as_deref().map(crate::oauth::accounts).unwrap_or_default();
            if let Ok(trouble) = crate::oauth::trouble(&s.store, &accounts).await {
                for a in accounts {
                    let up = !trouble.iter().any(|(t, _)| *t == a);
                    metrics::gauge!("inflow_oauth_grant_up", "account" => a.name).set(if up { 1.0 } else { 0.0 });
                }
            }
            metrics::gauge!("inflow_database_up").set(1.0);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: database gauges unavailable");
            metrics::gauge!("inflow_database_up").set(0.0);
        }
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}
