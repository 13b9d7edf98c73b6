//! The command line: `run`, `migrate`, `check-config`, `--version`. Configuration problems
//! exit with status 2 and every problem listed; runtime failures exit with 1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, ConfigError, Source};

mod audit;
mod lines;
mod work;
use work::{CampaignCommand, ListCommand, OpportunityCommand, TaskCommand};

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
    /// Write a consistent copy of the SQLite database to PATH while the daemon runs (checked
    /// with PRAGMA integrity_check). On PostgreSQL: use pg_dump (README, "Storage").
    Backup {
        /// The copy's file; it must not exist yet.
        path: PathBuf,
    },
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
    /// Leads: qualify and disqualify (DOMAIN §3.1, §3.2).
    Lead {
        #[command(subcommand)]
        command: LeadCommand,
    },
    /// Campaigns: create, change status, link lists, add campaign activities and set their target lists.
    Campaign {
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Phone lines: main lines and campaign tracking numbers (in effect for the next call).
    Line {
        #[command(subcommand)]
        command: lines::LineCommand,
    },
    /// Marketing lists: create (static or dynamic), members, copy to static.
    List {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Finish the work: complete, cancel, reopen or reassign a task, phone call or other activity.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Deals: create an opportunity, win, lose, reopen, sign the Act.
    Opportunity {
        #[command(subcommand)]
        command: OpportunityCommand,
    },
    /// CRM users: add, set a manager (the escalation chain of overdue alerts).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Admin API bearer tokens: create (printed once, only its hash is kept), list, revoke.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// OAuth 2.0 sign-in of mailboxes with `auth = "oauth2"`: login once, see the grants, revoke one.
    Oauth {
        #[command(subcommand)]
        command: OauthCommand,
    },
    /// Bulk imports.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum OauthCommand {
    /// Sign a mailbox in once: prints what to open (and the code to type), waits, stores the grant.
    /// Device sign-in (RFC 8628) where the provider offers it (Microsoft), else the browser
    /// sign-in with PKCE (Google).
    Login {
        /// The mailbox's `name` in the configuration, or `smtp` for the `[smtp]` relay.
        mailbox: String,
        /// The browser sign-in (authorization code with PKCE on a loopback redirect, or the
        /// redirected address pasted back), e.g. where a tenant blocks device sign-in.
        #[arg(long, conflicts_with = "device")]
        browser: bool,
        /// The device sign-in.
        #[arg(long)]
        device: bool,
        /// The browser sign-in's loopback port (0: any free one; fix it for `ssh -L PORT:127.0.0.1:PORT`).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Every stored grant: account, provider, scopes, access-token expiry, last refresh, last error.
    Status,
    /// Forget a mailbox's grant (it stops fetching until the next login).
    Revoke { mailbox: String },
}

#[derive(Debug, Subcommand)]
pub enum LeadCommand {
    /// QualifyLead: create (or link, when the duplicate rules find one) account, contact and opportunity.
    Qualify {
        lead: uuid::Uuid,
        #[arg(long)]
        account: bool,
        #[arg(long)]
        contact: bool,
        #[arg(long)]
        opportunity: bool,
        /// Source campaign of the opportunity (default: the lead's).
        #[arg(long)]
        campaign: Option<uuid::Uuid>,
    },
    /// Disqualify an open lead: status 4 Lost, 5 Cannot Contact, 6 No Longer Interested, 7 Canceled.
    Disqualify {
        lead: uuid::Uuid,
        #[arg(long, default_value_t = 4)]
        status: i32,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reactivate a qualified or disqualified lead.
    Reactivate { lead: uuid::Uuid },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; prints its id.
    Add {
        #[arg(long)]
        first: Option<String>,
        #[arg(long)]
        last: String,
        /// Internal e-mail address (alerts go there).
        #[arg(long)]
        email: String,
        /// Manager: a user id or internal e-mail.
        #[arg(long)]
        manager: Option<String>,
        /// PBX extension (missed calls to it make callback tasks for this user).
        #[arg(long)]
        extension: Option<String>,
    },
    /// Set (or with --none, clear) a user's manager.
    SetManager {
        /// The user: id or internal e-mail.
        user: String,
        /// The manager: id or internal e-mail.
        manager: Option<String>,
        #[arg(long, conflicts_with = "manager")]
        none: bool,
    },
    /// List users with their managers.
    List,
    /// Let a user sign in to the web console with a password (read from standard input, one
    /// line; only its Argon2 hash is kept) and a role.
    Password {
        /// The user: id or internal e-mail.
        user: String,
        /// admin, marketer or viewer.
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token acting as a user with a role; prints the token once.
    Create {
        /// The user the token acts as: id or internal e-mail.
        #[arg(long)]
        user: String,
        /// admin, marketer or viewer.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// The token stops working this many days from now (default: it does not expire).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Live tokens: id, name, role, user, created, expires, last used.
    List,
    Revoke {
        id: uuid::Uuid,
    },
    /// Replace a token in one step: prints the new one (same name, user, role and term); the
    /// old one stops working at once.
    Rotate {
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import leads from a CSV file (UTF-8 or Windows-1251; comma or semicolon). All rows
    /// or none, unless --skip-bad-rows.
    Leads {
        file: PathBuf,
        /// auto, utf-8 or windows-1251.
        #[arg(long, default_value = "auto")]
        encoding: String,
        /// Column mapping overrides, e.g. --map "Контактное лицо=lastname" (repeatable).
        #[arg(long = "map")]
        map: Vec<String>,
        /// Owner of the new leads: a user id or internal e-mail.
        #[arg(long)]
        owner: String,
        /// Topic of rows without one (default: the file name).
        #[arg(long)]
        subject: Option<String>,
        /// Lead source (leadsourcecode) of every row without one, e.g. 3 Trade Show.
        #[arg(long)]
        source: Option<i32>,
        /// What to do with rows the duplicate rules match: skip or link.
        #[arg(long, default_value = "skip")]
        duplicates: String,
        /// Import the good rows even when some rows are bad.
        #[arg(long)]
        skip_bad_rows: bool,
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
    Pause {
        wave: uuid::Uuid,
    },
    Resume {
        wave: uuid::Uuid,
    },
    Cancel {
        wave: uuid::Uuid,
    },
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
    let matches = Cli::command().get_matches();
    let audited = audit::write_verb(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Run = cli.command {
        crate::app::hold_stop_signals();
    }
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
    let cfg_for_audit = cfg.clone();
    let result =
        rt.block_on(async move {
            match cli.command {
                Command::Run => crate::app::run(cfg).await,
                Command::Backup { path } => {
                    let store = crate::app::open_store(&cfg).await?;
                    if store.db.engine() != crate::store::Engine::Sqlite {
                        store.close().await;
                        anyhow::bail!(
                            "the database is PostgreSQL: back it up with its own tools, e.g. `pg_dump -Fc -f \
                                inflow.dump DBURL` \
                             (README, \"Storage\")"
                        );
                    }
                    let b = store.backup_into(&path).await;
                    store.close().await;
                    let b = b?;
                    if b.integrity != "ok" {
                        anyhow::bail!("the copy at {} failed its integrity check: {}", path.display(), b.integrity);
                    }
                    println!("backup written: {} ({} bytes, integrity ok)", path.display(), b.bytes);
                    Ok(())
                }
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
                Command::Lead { command } => lead_command(&cfg, command).await,
                Command::User { command } => user_command(&cfg, command).await,
                Command::Campaign { command } => work::campaign_command(&cfg, command).await,
                Command::List { command } => work::list_command(&cfg, command).await,
                Command::Line { command } => lines::line_command(&cfg, command).await,
                Command::Task { command } => work::task_command(&cfg, command).await,
                Command::Opportunity { command } => work::opportunity_command(&cfg, command).await,
                Command::Token { command } => token_command(&cfg, command).await,
                Command::Oauth { command } => oauth_command(&cfg, command).await,
                Command::Import {
                    command:
                        ImportCommand::Leads { file, encoding, map, owner, subject, source, duplicates, skip_bad_rows },
                } => {
                    import_leads(
                        &cfg,
                        ImportArgs { file, encoding, map, owner, subject, source, duplicates, skip_bad_rows },
                    )
                    .await
                }
            }
        });
    let result = match (result, audited) {
        (Ok(()), Some(verb)) => rt
            .block_on(audit::record(&cfg_for_audit, &verb))
            .map_err(|e| anyhow::anyhow!("the command took effect, but it could not be written to the audit: {e:#}")),
        (result, _) => result,
    };
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
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.id,
                    e.status,
                    e.received_at.to_rfc3339(),
                    e.raw_location.as_deref().unwrap_or("-"),
                    e.reason.as_deref().unwrap_or("-")
                );
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
                let mailbox = e.mailbox().unwrap_or("");
                let Some(mb) = cfg.mailboxes.iter().find(|m| m.name == mailbox) else {
                    println!("{}\tskipped: mailbox '{mailbox}' is not configured", e.id);
                    continue;
                };
                let rt = crate::ingest::imap::MailboxRuntime::new(cfg, mb, store.clone(), &holder)?;
                match rt.replay(e).await {
                    Ok(out) => println!(
                        "{}\t{}\t{}\t{}",
                        e.id,
                        out.status,
                        out.class.as_deref().unwrap_or("-"),
                        out.reason.as_deref().unwrap_or("-")
                    ),
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
    println!(
        "  state {}  start {} ({})",
        w.state.as_str(),
        w.schedule
            .start_at
            .with_timezone(&w.schedule.timezone.parse().unwrap_or(chrono_tz::UTC))
            .format("%Y-%m-%d %H:%M %Z"),
        w.schedule.timezone
    );
    if let Some(t) = w.targeted {
        let excluded: Vec<String> = w.excluded.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  targeted {t}  excluded: {}", if excluded.is_empty() { "none".into() } else { excluded.join(", ") });
    }
    let failed: Vec<String> = st.failed_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "  pending {}  sending {}  sent {}  failed {}{}  canceled {}",
        st.pending,
        st.in_flight,
        st.sent,
        st.failed,
        if failed.is_empty() { String::new() } else { format!(" ({})", failed.join(", ")) },
        st.canceled
    );
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
        WaveCommand::Schedule {
            activity,
            start,
            tz,
            subject,
            text_file,
            html_file,
            from,
            from_name,
            reply_to,
            rate,
            skip_responders_of,
        } => {
            let zone: chrono_tz::Tz = match &tz {
                Some(t) => t.parse().map_err(|_| anyhow::anyhow!("unknown time zone '{t}'"))?,
                None => cfg.tz(),
            };
            let start_at = match &start {
                None => now,
                Some(s) => {
                    let local = crate::crm::waves::parse_local(s)
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
                from_address: from
                    .or(cfg.smtp.from.clone())
                    .ok_or_else(|| anyhow::anyhow!("--from is required when smtp.from is not set"))?,
                from_name,
                reply_to,
                rate_per_minute: rate,
                skip_responders_of,
            };
            let w = crate::waves::schedule(&store, &sched, now).await?;
            println!(
                "scheduled wave {} for {} ({})",
                w.activity_id,
                w.schedule.start_at.to_rfc3339(),
                w.schedule.timezone
            );
        }
        WaveCommand::List => {
            for w in store.waves().await? {
                let st = store.wave_status(w.activity_id).await?;
                println!(
                    "{}\t{}\t{}\t{}\tsent {}\tfailed {}\tpending {}",
                    w.activity_id,
                    w.state.as_str(),
                    w.schedule.start_at.to_rfc3339(),
                    w.subject_line,
                    st.sent,
                    st.failed,
                    st.pending + st.in_flight
                );
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
        WaveCommand::Pause { wave } => {
            println!("wave {wave}: {}", store.control_wave(wave, WaveAction::Pause, now).await?.state.as_str())
        }
        WaveCommand::Resume { wave } => {
            println!("wave {wave}: {}", store.control_wave(wave, WaveAction::Resume, now).await?.state.as_str())
        }
        WaveCommand::Cancel { wave } => {
            println!("wave {wave}: {}", store.control_wave(wave, WaveAction::Cancel, now).await?.state.as_str())
        }
        WaveCommand::TestSend { wave, to, vars } => {
            let relay = crate::waves::Relay::from_config(cfg, &store)?
                .ok_or_else(|| anyhow::anyhow!("[smtp] has no host: nothing can be sent"))?;
            let signer = crate::waves::link_signer(cfg, &store).await?;
            let rt = crate::waves::WaveRuntime::new(
                store.clone(),
                relay,
                crate::waves::WaveSettings::from_config(cfg)?,
                "cli",
                signer,
            );
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

async fn open(cfg: &Config) -> anyhow::Result<crate::store::Store> {
    let store = crate::app::open_store(cfg).await?;
    store.migrate().await?;
    Ok(store)
}

/// A user named by id or internal e-mail.
async fn find_user(store: &crate::store::Store, who: &str) -> anyhow::Result<uuid::Uuid> {
    use crate::store::RecordExt;
    if let Ok(id) = who.parse::<uuid::Uuid>() {
        store.get::<crate::crm::entities::SystemUser>(id).await?.ok_or_else(|| anyhow::anyhow!("no user {id}"))?;
        return Ok(id);
    }
    let email = crate::crm::EmailAddress::parse(who)
        .map_err(|e| anyhow::anyhow!("'{who}' is neither a user id nor an e-mail address: {e}"))?;
    match store.users_by_email(&email).await?.as_slice() {
        [one] => Ok(one.id),
        [] => anyhow::bail!("no user with the e-mail {who}"),
        _ => anyhow::bail!("several users have the e-mail {who}; use the id"),
    }
}

async fn lead_command(cfg: &Config, cmd: LeadCommand) -> anyhow::Result<()> {
    let store = open(cfg).await?;
    let now = chrono::Utc::now();
    match cmd {
        LeadCommand::Qualify { lead, account, contact, opportunity, campaign } => {
            let p = crate::crm::lead::QualifyParams {
                create_account: account,
                create_contact: contact,
                create_opportunity: opportunity,
                source_campaign_id: campaign,
                status: Some(3),
                ..Default::default()
            };
            let (l, created) = store.qualify_lead(lead, &p, None, now).await?;
            println!("lead {} qualified (status {})", l.leadid, l.statuscode);
            for r in created {
                println!("  {} {}", r.kind.as_str(), r.id);
            }
        }
        LeadCommand::Disqualify { lead, status, reason } => {
            let l = store.disqualify_lead(lead, Some(status), reason.as_deref(), None, now).await?;
            println!("lead {} disqualified (status {})", l.leadid, l.statuscode);
        }
        LeadCommand::Reactivate { lead } => {
            let l = store.reactivate_lead(lead, None, now).await?;
            println!("lead {} reactivated", l.leadid);
        }
    }
    store.close().await;
    Ok(())
}

async fn user_command(cfg: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    use crate::store::RecordExt;
    let store = open(cfg).await?;
    let now = chrono::Utc::now();
    match cmd {
        UserCommand::Add { first, last, email, manager, extension } => {
            let email = crate::crm::EmailAddress::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let manager = match manager {
                Some(m) => Some(find_user(&store, &m).await?),
                None => None,
            };
            let u = crate::crm::entities::SystemUser {
                systemuserid: uuid::Uuid::now_v7(),
                fullname: Some(match &first {
                    Some(f) => format!("{f} {last}"),
                    None => last.clone(),
                }),
                firstname: first,
                lastname: last,
                internalemailaddress: Some(email.as_str().to_string()),
                parentsystemuserid: manager,
                pbx_extension: extension,
                createdon: now,
                modifiedon: now,
                versionnumber: 1,
                ..Default::default()
            };
            store.insert(&u).await?;
            println!("{}", u.systemuserid);
        }
        UserCommand::SetManager { user, manager, none } => {
            let id = find_user(&store, &user).await?;
            let manager = match (manager, none) {
                (Some(m), _) => Some(find_user(&store, &m).await?),
                (None, true) => None,
                (None, false) => anyhow::bail!("name a manager, or pass --none"),
            };
            if manager == Some(id) {
                anyhow::bail!("a user cannot be their own manager");
            }
            let mut u: crate::crm::entities::SystemUser = store.load(id).await?;
            u.parentsystemuserid = manager;
            u.modifiedon = now;
            store.update(&u).await?;
            println!("{} → manager {}", id, manager.map(|m| m.to_string()).unwrap_or_else(|| "none".into()));
        }
        UserCommand::Password { user, role } => {
            if crate::http::api::Role::parse(&role).is_none() {
                anyhow::bail!("--role: '{role}' is not admin, marketer or viewer");
            }
            let id = find_user(&store, &user).await?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            crate::http::console::password::check_new(password).map_err(|e| anyhow::anyhow!(e))?;
            let hash = crate::http::console::password::hash(password).map_err(|e| anyhow::anyhow!(e))?;
            store.set_console_login(id, &hash, &role, now).await?;
            println!("{id} may sign in to the console as {role}");
        }
        UserCommand::List => {
            let page = store
                .query_records::<crate::crm::entities::SystemUser>(&[], None, 1, crate::store::api::MAX_LIMIT)
                .await?;
            for u in page.items {
                println!(
                    "{}\t{}\t{}\tmanager {}",
                    u.systemuserid,
                    u.fullname.unwrap_or_default(),
                    u.internalemailaddress.unwrap_or_default(),
                    u.parentsystemuserid.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn token_command(cfg: &Config, cmd: TokenCommand) -> anyhow::Result<()> {
    let store = open(cfg).await?;
    let now = chrono::Utc::now();
    match cmd {
        TokenCommand::Create { user, role, name, expires_in_days } => {
            if crate::http::api::Role::parse(&role).is_none() {
                anyhow::bail!("--role: '{role}' is not admin, marketer or viewer");
            }
            let user = find_user(&store, &user).await?;
            let token = crate::http::api::new_token();
            let expires = expires_in_days.map(|d| now + chrono::Duration::days(i64::from(d)));
            let hash = crate::http::api::token_hash(&token);
            let t = store.add_api_token_expiring(&name, &hash, user, &role, expires, now).await?;
            let until = expires.map(|e| format!(", expires {}", e.to_rfc3339())).unwrap_or_default();
            eprintln!(
                "token {} ({role}, user {user}{until}) created; it is shown once and only its hash is kept:",
                t.id
            );
            println!("{token}");
        }
        TokenCommand::List => {
            println!("id\tname\trole\tuser\tcreated\texpires\tlast_used");
            let t =
                |d: Option<chrono::DateTime<chrono::Utc>>, none: &str| d.map_or(none.to_string(), |d| d.to_rfc3339());
            for k in store.api_tokens().await? {
                let expires = match k.expires_on {
                    Some(e) if e <= now => format!("expired {}", e.to_rfc3339()),
                    e => t(e, "never"),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{expires}\t{}",
                    k.id,
                    k.name,
                    k.role,
                    k.systemuserid,
                    k.created_on.to_rfc3339(),
                    t(k.last_used_on, "never")
                );
            }
        }
        TokenCommand::Rotate { id } => {
            let token = crate::http::api::new_token();
            let Some(t) = store.rotate_api_token(id, &crate::http::api::token_hash(&token), now).await? else {
                anyhow::bail!("no live token {id}");
            };
            eprintln!("token {id} revoked; its replacement {} is shown once:", t.id);
            println!("{token}");
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_api_token(id, now).await? {
                anyhow::bail!("no live token {id}");
            }
            println!("token {id} revoked");
        }
    }
    store.close().await;
    Ok(())
}

/// The OAuth client of an account: a mailbox's, or the relay's for `smtp`.
fn oauth_client<'a>(cfg: &'a Config, account: &str) -> anyhow::Result<&'a crate::config::OAuthConfig> {
    use crate::config::MailAuth;
    if account == crate::oauth::RELAY_ACCOUNT {
        return match (cfg.smtp.auth, &cfg.smtp.oauth) {
            (MailAuth::Oauth2, Some(o)) => Ok(o),
            _ => anyhow::bail!("[smtp] does not use auth = \"oauth2\""),
        };
    }
    let m = cfg.mailboxes.iter().find(|m| m.name == account).ok_or_else(|| {
        anyhow::anyhow!("no mailbox named '{account}' in the configuration (or 'smtp' for the relay)")
    })?;
    match (m.auth, &m.oauth) {
        (MailAuth::Oauth2, Some(o)) => Ok(o),
        _ => anyhow::bail!("mailbox '{account}' does not use auth = \"oauth2\""),
    }
}

async fn oauth_command(cfg: &Config, cmd: OauthCommand) -> anyhow::Result<()> {
    let store = open(cfg).await?;
    let tokens = crate::oauth::Tokens::new(store.clone(), cfg.oauth.key.as_deref()).await?;
    match cmd {
        OauthCommand::Login { mailbox, browser, device, port } => {
            let o = oauth_client(cfg, &mailbox)?;
            let say = |msg: &str| {
                println!("{msg}");
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            };
            let offers_device = crate::oauth::endpoints(o).map_err(|e| anyhow::anyhow!(e))?.device_url.is_some();
            if o.grant == crate::config::OAuthGrantType::ClientCredentials {
                // Nobody signs in: ask for a token now, to show the secret and permissions work.
                tokens.access_token(&mailbox, o, true).await?;
                println!("'{mailbox}' is app-only (client credentials): a token was issued; nobody needs to sign in");
                return Ok(());
            } else if device || (offers_device && !browser) {
                tokens.device_login(&mailbox, o, say).await?;
            } else {
                tokens.browser_login(&mailbox, o, port, crate::oauth::paste_lines(), say).await?;
            }
            if mailbox == crate::oauth::RELAY_ACCOUNT {
                store.clear_relay_backoff(chrono::Utc::now()).await?;
            }
            println!(
                "signed in: the grant for '{mailbox}' is stored (sealed); the daemon uses it from its next connection"
            );
        }
        OauthCommand::Status => {
            println!("account\tprovider\tscopes\taccess_expires\tlast_refresh\tlast_error");
            let grants = store.oauth_grants().await?;
            for g in &grants {
                let t = |d: Option<chrono::DateTime<chrono::Utc>>| d.map_or("-".to_string(), |d| d.to_rfc3339());
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    g.account,
                    g.provider,
                    g.scopes,
                    t(g.access_expires_at),
                    t(g.last_refresh_at),
                    g.last_error.as_deref().unwrap_or("-")
                );
            }
            // Configured accounts without a grant: what still needs a sign-in.
            let signed_in = |name: &str| grants.iter().any(|g| g.account == name);
            for a in crate::oauth::accounts(cfg).into_iter().filter(|a| !a.app_only && !signed_in(&a.name)) {
                println!("{}	-	-	-	-	never signed in: {}", a.name, a.fix());
            }
        }
        OauthCommand::Revoke { mailbox } => {
            if !store.delete_oauth_grant(&mailbox).await? {
                anyhow::bail!("no grant for '{mailbox}'");
            }
            println!("the grant for '{mailbox}' is forgotten");
        }
    }
    store.close().await;
    Ok(())
}

struct ImportArgs {
    file: PathBuf,
    encoding: String,
    map: Vec<String>,
    owner: String,
    subject: Option<String>,
    source: Option<i32>,
    duplicates: String,
    skip_bad_rows: bool,
}

/// `inflow import leads`: parse, then one transaction; a bar on a terminal, a summary always.
async fn import_leads(cfg: &Config, a: ImportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let enc: crate::import::Encoding = a.encoding.parse().map_err(|e: String| anyhow::anyhow!("--encoding {e}"))?;
    let dups = match a.duplicates.as_str() {
        "skip" => crate::store::ImportDuplicates::Skip,
        "link" => crate::store::ImportDuplicates::Link,
        other => anyhow::bail!("--duplicates: '{other}' is not skip or link"),
    };
    let mut overrides = BTreeMap::new();
    for m in &a.map {
        let (h, f) = m.split_once('=').ok_or_else(|| anyhow::anyhow!("--map '{m}': expected \"Header=field\""))?;
        overrides.insert(h.trim().to_string(), f.trim().to_string());
    }
    let bytes = std::fs::read(&a.file).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let subject = a.subject.clone().unwrap_or_else(|| {
        format!("Import {}", a.file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
    });
    let parsed = crate::import::parse(&bytes, enc, &overrides, &subject)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let store = open(cfg).await?;
    let owner = find_user(&store, &a.owner).await?;
    let now = chrono::Utc::now();
    println!("{}: {} rows, {}, delimiter '{}'", a.file.display(), parsed.rows.len(), parsed.encoding, parsed.delimiter);
    if !parsed.mapping.ignored.is_empty() {
        println!("columns not imported: {}", parsed.mapping.ignored.join(", "));
    }
    let mut errors: Vec<(u64, String)> = Vec::new();
    let mut rows = Vec::new();
    for r in parsed.rows {
        match r {
            Ok(mut row) => {
                row.lead.leadid = uuid::Uuid::now_v7();
                if row.lead.leadsourcecode.is_none() {
                    row.lead.leadsourcecode = a.source;
                }
                let quality = row.lead.leadqualitycode;
                row.lead = row.lead.stamped(owner, crate::crm::EntityKind::Systemuser, now, None);
                row.lead.leadqualitycode = quality;
                rows.push(row);
            }
            Err(e) => errors.push((e.line, e.message)),
        }
    }
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(rows.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {elapsed}") {
            b.set_style(style);
        }
        Some(b)
    } else {
        None
    };
    let parse_failed = !errors.is_empty() && !a.skip_bad_rows;
    let mut rep = if parse_failed {
        crate::store::ImportReport::default()
    } else {
        store
            .import_leads(&rows, dups, a.skip_bad_rows, |n| {
                if let Some(b) = &bar {
                    b.set_position(n)
                }
            })
            .await?
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    rep.errors.extend(errors);
    rep.errors.sort();
    for (line, msg) in &rep.errors {
        println!("line {line}: error: {msg}");
    }
    for (line, hits) in &rep.duplicates {
        let list: Vec<String> = hits.iter().map(|h| format!("{} {}", h.kind.as_str(), h.id)).collect();
        println!("line {line}: duplicate of {}, skipped", list.join(", "));
    }
    for (line, lead, contact) in &rep.linked {
        println!("line {line}: lead {lead} linked to existing contact {contact}");
    }
    store.close().await;
    if !rep.committed {
        println!("nothing imported: {} bad rows (fix them, or pass --skip-bad-rows)", rep.errors.len());
        anyhow::bail!("import rolled back");
    }
    println!(
        "imported {} leads ({} linked to existing contacts), {} duplicates skipped, {} bad rows skipped",
        rep.created.len() + rep.linked.len(),
        rep.linked.len(),
        rep.duplicates.len(),
        rep.errors.len()
    );
    Ok(())
}
