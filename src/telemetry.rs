//! Tracing set-up: human lines on a terminal; under systemd (JOURNAL_STREAM set) no
//! timestamps and `<N>` syslog priority prefixes so journald keeps levels; or JSON.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogConfig, LogFormat};

/// Prefixes each line with its syslog priority (sd-daemon(3)) and omits the time.
struct Journald;

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let prio = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(w, "<{prio}>{}: ", meta.target())?;
        ctx.format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Where sqlx logs PostgreSQL's notices.
const NOTICE_TARGET: &str = "sqlx::postgres::notice";

/// Installs the global subscriber. Safe to call once per process.
pub fn init(cfg: &LogConfig) {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // PostgreSQL's NOTICEs (sqlx logs them at INFO) are the idempotent migrations' "already
    // exists, skipping" on every start and CLI command: noise, not news. Its warnings and
    // errors still show; a filter that names the target keeps its own choice.
    let named = |v: &str| v.contains(NOTICE_TARGET);
    if !std::env::var("RUST_LOG").is_ok_and(|v| named(&v)) && !named(&cfg.level) {
        if let Ok(d) = format!("{NOTICE_TARGET}=warn").parse() {
            filter = filter.add_directive(d);
        }
    }
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match (cfg.format, under_journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Auto, true) => builder.event_format(Journald).try_init(),
        _ => builder.try_init(),
    };
}
