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
