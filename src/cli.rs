//! The command line: `run`, `migrate`, `check-config`, `--version`. Configuration problems
//! exit with status 2 and every problem listed; runtime failures exit with 1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, Source};

#[derive(Debug, Parser)]
#[command(name = "inflow", version, about = "Keeps a sales-and-marketing CRM fed: mail, calls, waves, alerts")]
pub struct Cli {
    /// Configuration file (TOML). Without it, embedded defaults: SQLite ./inflow.db, HTTP on 127.0.0.1:8080.
    #[arg(long, short, global = true, env = "INFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (creates and migrates the database itself).
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Check a configuration file and report every problem (exit 2 if any).
    CheckConfig {
        /// File to check; defaults to --config, or the embedded defaults.
        path: Option<PathBuf>,
    },
    /// Inbound mail: list quarantined messages, replay them after a fix.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// Campaign e-mail waves: schedule, watch, pause, resume, cancel, test-send.
    Wave {
        #[command(subcommand)]
        command: WaveCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum WaveCommand {
    /// Schedule an e-mail campaign activity (its target lists are set on the activity).
    Schedule {
        /// The campaign activity (channel e-mail) to send.
        activity: uuid::Uuid,
        /// Local start time, e.g. "2026-12-01 10:00" (default: now).
        #[arg(long)]
        start: Option<String>,
        /// Time zone of --start (default: org.timezone).
        #[arg(long)]
        tz: Option<String>,
        /// Subject template (minijinja), e.g. '{{ first_name | default("колега") }}, ...'.
        #[arg(long)]
        subject: String,
        /// Plain-text body template file.
        #[arg(long)]
        text_file: PathBuf,
        /// Optional HTML body template file (auto-escaped).
        #[arg(long)]
        html_file: Option<PathBuf>,
        /// Sender address (default: smtp.from).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        from_name: Option<String>,
        #[arg(long)]
        reply_to: Option<String>,
        /// Messages per minute for this wave (the relay's limit applies too).
        #[arg(long)]
        rate: Option<u32>,
        /// Skip members who responded to this earlier wave ("did not respond to wave 1").
        #[arg(long)]
        skip_responders_of: Option<uuid::Uuid>,
    },
    /// List waves with their state and figures.
    List,
    /// One wave's figures; --follow refreshes until it ends.
    Status {
        wave: uuid::Uuid,
        #[arg(long)]
        follow: bool,
    },
    Pause { wave: uuid::Uuid },
    Resume { wave: uuid::Uuid },
    Cancel { wave: uuid::Uuid },
    /// Send the wave's message to one address, marked [TEST]; touches no counts.
    TestSend {
        wave: uuid::Uuid,
        #[arg(long)]
        to: String,
        /// Personalisation values as JSON, e.g. '{"first_name": "Анна"}'.
        #[arg(long)]
        vars: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// List quarantined and failed messages with their reasons.
    Quarantine,
    /// Process quarantined or failed messages again (by inbound event id, or all).
    Replay {
        /// Inbound event ids (from `inflow mail quarantine`).
        ids: Vec<uuid::Uuid>,
        /// Replay every quarantined and failed message.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    match path {
        Some(p) => Config::load(Source::File(p), &env),
        None => Config::load(Source::Defaults, &env),
    }
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = match &cli.command {
        Command::CheckConfig { path: Some(p) } => Some(p.clone()),
        _ => cli.config.clone(),
    };
    let cfg = match load(config_path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig { .. } = cli.command {
        let shown = config_path.map(|p| p.display().to_string()).unwrap_or_else(|| "embedded defaults".into());
        println!("{shown}: OK");
        return ExitCode::SUCCESS;
    }
    crate::telemetry::init(&cfg.log);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run => crate::app::run(cfg).await,
            Command::Migrate => {
                let store = crate::app::open_store(&cfg).await?;
                store.migrate().await?;
                store.close().await;
                println!("migrations applied");
                Ok(())
            }
            Command::CheckConfig { .. } => Ok(()),
            Command::Mail { command } => mail_command(&cfg, command).await,
            Command::Wave { command } => wave_command(&cfg, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `inflow mail …`: straight to the database, the same core as the daemon.
async fn mail_command(cfg: &Config, cmd: MailCommand) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    store.migrate().await?;
    let events = store.quarantined_mail().await?;
    match cmd {
        MailCommand::Quarantine => {
            if events.is_empty() {
                println!("no quarantined mail");
            }
            for e in &events {
                println!("{}\t{}\t{}\t{}\t{}", e.id, e.status, e.received_at.to_rfc3339(), e.raw_location.as_deref().unwrap_or("-"), e.reason.as_deref().unwrap_or("-"));
            }
        }
        MailCommand::Replay { ids, all } => {
            let chosen: Vec<_> = events.iter().filter(|e| all || ids.contains(&e.id)).collect();
            for id in &ids {
                if !events.iter().any(|e| e.id == *id) {
                    anyhow::bail!("{id} is not a quarantined or failed mail event (see `inflow mail quarantine`)");
                }
            }
            let holder = format!("cli-{}", std::process::id());
            for e in chosen {
                // The mailbox the message came from names the rules to apply.
                let mailbox = e.raw_location.as_deref().and_then(|l| l.strip_prefix("imap://")).and_then(|l| l.split('/').next()).unwrap_or("");
                let Some(mb) = cfg.mailboxes.iter().find(|m| m.name == mailbox) else {
                    println!("{}\tskipped: mailbox '{mailbox}' is not configured", e.id);
                    continue;
                };
                let rt = crate::ingest::imap::MailboxRuntime::new(cfg, mb, store.clone(), &holder)?;
                match rt.replay(e).await {
                    Ok(out) => println!("{}\t{}\t{}\t{}", e.id, out.status, out.class.as_deref().unwrap_or("-"), out.reason.as_deref().unwrap_or("-")),
                    Err(err) => println!("{}\tnot replayed: {err:#}", e.id),
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

fn print_status(st: &crate::store::waves::WaveStatus) {
    let w = &st.wave;
    println!("wave {} ({}), campaign {}", w.activity_id, w.subject_line, st.campaign_name);
    println!("  state {}  start {} ({})", w.state.as_str(), w.schedule.start_at.with_timezone(&w.schedule.timezone.parse().unwrap_or(chrono_tz::UTC)).format("%Y-%m-%d %H:%M %Z"), w.schedule.timezone);
    if let Some(t) = w.targeted {
        let excluded: Vec<String> = w.excluded.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  targeted {t}  excluded: {}", if excluded.is_empty() { "none".into() } else { excluded.join(", ") });
    }
    let failed: Vec<String> = st.failed_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  pending {}  sending {}  sent {}  failed {}{}  canceled {}", st.pending, st.in_flight, st.sent, st.failed, if failed.is_empty() { String::new() } else { format!(" ({})", failed.join(", ")) }, st.canceled);
    println!(
        "  bounced {}  responded {}  response rate {}  expected {}",
        st.bounced,
        st.responded,
        st.response_rate.map(|r| format!("{r:.1}%")).unwrap_or_else(|| "-".into()),
        st.expected_response.map(|r| format!("{r}%")).unwrap_or_else(|| "-".into())
    );
    if let Some(e) = &w.error {
        println!("  error: {e}");
    }
}

/// `inflow wave …`: straight to the database; the running daemon picks changes up within
/// `waves.poll_interval_ms`.
async fn wave_command(cfg: &Config, cmd: WaveCommand) -> anyhow::Result<()> {
    use crate::crm::waves::WaveAction;
    let store = crate::app::open_store(cfg).await?;
    store.migrate().await?;
    let now = chrono::Utc::now();
    match cmd {
        WaveCommand::Schedule { activity, start, tz, subject, text_file, html_file, from, from_name, reply_to, rate, skip_responders_of } => {
            let zone: chrono_tz::Tz = match &tz {
                Some(t) => t.parse().map_err(|_| anyhow::anyhow!("unknown time zone '{t}'"))?,
                None => cfg.tz(),
            };
            let start_at = match &start {
                None => now,
                Some(s) => {
                    let local = ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
                        .iter()
                        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
                        .ok_or_else(|| anyhow::anyhow!("--start '{s}': expected YYYY-MM-DD HH:MM"))?;
                    crate::crm::waves::local_start(local, zone)?
                }
            };
            let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
            let sched = crate::store::waves::WaveSchedule {
                activity_id: activity,
                start_at,
                timezone: zone.name().to_string(),
                subject,
                text: read(&text_file)?,
                html: html_file.as_ref().map(read).transpose()?,
                from_address: from.or(cfg.smtp.from.clone()).ok_or_else(|| anyhow::anyhow!("--from is required when smtp.from is not set"))?,
                from_name,
                reply_to,
                rate_per_minute: rate,
                skip_responders_of,
            };
            let w = crate::waves::schedule(&store, &sched, now).await?;
            println!("scheduled wave {} for {} ({})", w.activity_id, w.schedule.start_at.to_rfc3339(), w.schedule.timezone);
        }
        WaveCommand::List => {
            for w in store.waves().await? {
                let st = store.wave_status(w.activity_id).await?;
                println!("{}\t{}\t{}\t{}\tsent {}\tfailed {}\tpending {}", w.activity_id, w.state.as_str(), w.schedule.start_at.to_rfc3339(), w.subject_line, st.sent, st.failed, st.pending + st.in_flight);
            }
        }
        WaveCommand::Status { wave, follow } => loop {
            let st = store.wave_status(wave).await?;
            print_status(&st);
            if !follow || st.wave.state.is_final() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await; // refresh period of --follow
            println!();
        },
        WaveCommand::Pause { wave } => println!("wave {wave}: {}", store.control_wave(wave, WaveAction::Pause, now).await?.state.as_str()),
        WaveCommand::Resume { wave } => println!("wave {wave}: {}", store.control_wave(wave, WaveAction::Resume, now).await?.state.as_str()),
        WaveCommand::Cancel { wave } => println!("wave {wave}: {}", store.control_wave(wave, WaveAction::Cancel, now).await?.state.as_str()),
        WaveCommand::TestSend { wave, to, vars } => {
            let relay = crate::waves::Relay::from_config(&cfg.smtp)?.ok_or_else(|| anyhow::anyhow!("[smtp] has no host: nothing can be sent"))?;
            let signer = crate::waves::link_signer(cfg, &store).await?;
            let rt = crate::waves::WaveRuntime::new(store.clone(), relay, crate::waves::WaveSettings::from_config(cfg)?, "cli", signer);
            let vars = match vars {
                Some(v) => match serde_json::from_str(&v)? {
                    serde_json::Value::Object(m) => m,
                    _ => anyhow::bail!("--vars must be a JSON object"),
                },
                None => serde_json::Map::new(),
            };
            rt.test_send(wave, &to, vars).await?;
            println!("test message sent to {to}");
        }
    }
    store.close().await;
    Ok(())
}
