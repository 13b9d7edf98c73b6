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
