//! Configuration: a TOML file with one section per concern, `deny_unknown_fields`,
//! environment overrides `INFLOW__SECTION__KEY`, and secrets read from `*_file` paths.
//!
//! Loading never stops at the first problem: syntax errors, unknown keys, wrong types and
//! semantic problems (bad time zone, missing secret file, plain IMAP to a remote host…) are
//! all collected with their key path and, where the TOML parser knows it, the line.
//! The `///` docs on each field are the reference `config/inflow.example.toml` mirrors.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod check;
mod load;
mod pbx;
pub use pbx::*;

use load::*;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub org: OrgConfig,
    pub log: LogConfig,
    pub daemon: DaemonConfig,
    /// One entry per polled mailbox (`[[mailboxes]]`).
    pub mailboxes: Vec<MailboxConfig>,
    pub pbx: PbxConfig,
    pub smtp: SmtpConfig,
    pub waves: WavesConfig,
    pub alerts: AlertsConfig,
    pub api: ApiConfig,
    pub console: ConsoleConfig,
    pub oauth: OAuthSettings,
}

/// `[oauth]`: how OAuth tokens are kept (issue 17).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthSettings {
    /// File holding the key that seals refresh and access tokens at rest (relative paths are
    /// looked up in $CREDENTIALS_DIRECTORY: a systemd credential). Unset: a key generated
    /// once and kept in the database, like the unsubscribe key. Changing it makes every
    /// stored grant unreadable: sign in again.
    pub key_file: Option<PathBuf>,
    /// Read from `key_file`; never set in TOML.
    #[serde(skip)]
    pub key: Option<String>,
}

/// `[console]`: the web console for people (issue 19) at `/`, on the HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console's pages (sign-in with a password set by `inflow user password`, or
    /// with an API token).
    pub enabled: bool,
    /// A signed-in session ends this many hours after sign-in.
    pub session_hours: u32,
    /// Failed sign-ins allowed per client address per minute; more are refused (429).
    pub sign_in_attempts_per_minute: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { enabled: true, session_hours: 12, sign_in_attempts_per_minute: 10 }
    }
}

/// `[api]`: the admin HTTP API under `/api/v1` (issue 7).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve `/api/v1` (every route needs a bearer token).
    pub enabled: bool,
    /// R-LD-5 / view `stale`: an open lead with no activity for this many days.
    pub stale_lead_days: u32,
    /// Tokens given in the config (more are made with `inflow token create`, kept in the
    /// database). Only the SHA-256 of a token is written here, never the token.
    pub tokens: Vec<ApiTokenConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true, stale_lead_days: 30, tokens: Vec::new() }
    }
}

/// `[[api.tokens]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// A label for logs.
    pub name: String,
    /// Lowercase hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    /// The systemuser the token acts as (the `@me` of the views).
    pub user: uuid::Uuid,
    /// admin | marketer | viewer
    pub role: String,
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (the default: `./inflow.db`, or `$STATE_DIRECTORY/inflow.db` under
    /// systemd) or `postgres://user@host:port/db` for several daemons on one database.
    pub url: String,
    /// File holding the PostgreSQL password (kept out of the URL and the config).
    pub password_file: Option<PathBuf>,
    /// Read from `password_file`; never set in TOML.
    #[serde(skip)]
    pub password: Option<String>,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for the database at start-up and for a pooled connection.
    pub connect_timeout_secs: u64,
    /// SQLite durability: `full` (default; a commit survives power loss) or `normal` (WAL +
    /// NORMAL: survives a crash of inflow, may lose the last commits on power loss; one
    /// fsync per checkpoint instead of per commit).
    pub sqlite_synchronous: SqliteSync,
}

/// `database.sqlite_synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    Full,
    Normal,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: default_sqlite_url(),
            password_file: None,
            password: None,
            max_connections: 8,
            connect_timeout_secs: 10,
            sqlite_synchronous: SqliteSync::Full,
        }
    }
}

/// `sqlite://$STATE_DIRECTORY/inflow.db` under systemd, else `sqlite://./inflow.db`.
pub fn default_sqlite_url() -> String {
    match std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several directories separated by ':'; the first is ours.
        Some(dir) => {
            let dir = dir.to_string_lossy().split(':').next().unwrap_or(".").to_string();
            format!("sqlite://{}", Path::new(&dir).join("inflow.db").display())
        }
        None => "sqlite://./inflow.db".to_string(),
    }
}

/// `[http]`: the admin API, webhooks, health and metrics listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Port 0 picks a free port (logged at start-up).
    pub listen: String,
    /// Largest request body accepted; larger gets 413.
    pub body_limit_bytes: usize,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client:
    /// behind one, every request comes from the proxy's address, and the console's sign-in
    /// limit would otherwise count every person as one. Empty: the peer address is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:8080".into(), body_limit_bytes: 1024 * 1024, trusted_proxies: Vec::new() }
    }
}

/// `[org]`: organisation settings (DOMAIN `org_settings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrgConfig {
    /// IANA time zone for "today", week boundaries (weeks start Monday) and DateOnly due dates.
    pub timezone: String,
    /// ISO 3166 region used to read national phone numbers (R-DUP-2), e.g. RU, UA.
    pub default_phone_region: String,
    /// Currency of new opportunities and campaigns (ISO 4217).
    pub currency: String,
    /// [DESIGN] R-DUP-1: domains whose local parts fold dots and `+tags` (e.g. gmail.com).
    pub email_fold_domains: Vec<String>,
    /// R-LD-4: accepted custom `leadsourcecode` values (≥ 100000000).
    pub custom_lead_sources: Vec<i32>,
    /// Base URL of this daemon as the outside world reaches it (links in mail).
    pub public_base_url: Option<String>,
    /// Language of the web console: `ru` or `en` (a page's `?lang=` overrides it).
    pub locale: String,
}

impl Default for OrgConfig {
    fn default() -> Self {
        OrgConfig {
            timezone: "Europe/Moscow".into(),
            default_phone_region: "RU".into(),
            currency: "RUB".into(),
            email_fold_domains: Vec::new(),
            custom_lead_sources: vec![100_000_000, 100_000_001],
            public_base_url: None,
            locale: "ru".into(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `inflow=debug,sqlx=warn`. `RUST_LOG` wins if set.
    pub level: String,
    /// `auto` (journald style under systemd, human on a terminal), `human`, or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Auto }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

/// `[daemon]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Hard limit for a clean stop after SIGTERM; keep it below systemd's TimeoutStopSec.
    pub shutdown_timeout_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig { shutdown_timeout_secs: 20 }
    }
}

/// How inflow signs in to a mailbox (or the relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailAuth {
    /// LOGIN with `password` / `password_file`.
    #[default]
    Password,
    /// SASL XOAUTH2 with a token from the grant `inflow oauth login` stored (`[mailboxes.oauth]`).
    Oauth2,
}

/// Which authorization server issues the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthProvider {
    /// Microsoft Entra ID (Microsoft 365, Exchange Online); `tenant` picks the directory.
    #[default]
    Microsoft,
    /// Google Workspace and Gmail.
    Google,
    /// Any other server: give `token_url` (and `device_url` for `inflow oauth login`).
    Generic,
}

/// How inflow gets its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrantType {
    /// A person signs in once (`inflow oauth login`); refresh tokens keep it going.
    #[default]
    Delegated,
    /// App-only (Microsoft's client-credentials grant for a service principal with mailbox
    /// access): the client secret gets a token, nobody signs in.
    ClientCredentials,
}

/// The SASL mechanism that carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaslMechanism {
    /// Google's and Microsoft's XOAUTH2 (Microsoft offers only this one).
    #[default]
    Xoauth2,
    /// RFC 7628 OAUTHBEARER (Gmail, Dovecot, and other standard servers).
    Oauthbearer,
}

/// `[mailboxes.oauth]`: the OAuth 2.0 client inflow signs in as.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    pub provider: OAuthProvider,
    /// Microsoft only: the directory (tenant id or domain); `organizations` by default.
    pub tenant: Option<String>,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// Confidential clients only (public clients need none).
    pub client_secret_file: Option<PathBuf>,
    /// Read from `client_secret_file`; never set in TOML.
    #[serde(skip)]
    pub client_secret: Option<String>,
    /// Override or, for `generic`, set the endpoints.
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub device_url: Option<String>,
    /// Empty: the provider's defaults for IMAP and SMTP (see `oauth::endpoints`).
    pub scopes: Vec<String>,
    /// `delegated` (default: a person signs in once) or `client_credentials` (app-only).
    pub grant: OAuthGrantType,
    /// `xoauth2` (default) or `oauthbearer`.
    pub mechanism: SaslMechanism,
}

/// How to reach an IMAP or SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connect, then STARTTLS (IMAP 143, submission 587).
    Starttls,
    /// No TLS: allowed only to a loopback address.
    Plain,
}

/// R-EM-6 (a): what to create for unknown senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoCreate {
    None,
    Leads,
    Contacts,
}

/// `[[mailboxes]]`: one polled IMAP folder (DOMAIN §2.13 `mailbox`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxConfig {
    /// Unique name; used in logs, metrics and the checkpoint key.
    pub name: String,
    /// A disabled mailbox is checked for shape only: no secret is read, nothing is polled.
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: String,
    /// `password` (default) or `oauth2` (then `[mailboxes.oauth]` and `inflow oauth login`).
    pub auth: MailAuth,
    pub oauth: Option<OAuthConfig>,
    /// Prefer `password_file`.
    pub password: Option<String>,
    /// File holding the password (relative paths are looked up in $CREDENTIALS_DIRECTORY).
    pub password_file: Option<PathBuf>,
    pub folder: String,
    /// The owning user (systemuser id or internal e-mail): owner of created records.
    pub owner: String,
    /// R-EM-2: 0 all, 1 replies to CRM mail only, 2 known parties only, 3 any e-mail-enabled record.
    pub filter: u8,
    /// R-EM-6 (a).
    pub auto_create: AutoCreate,
    /// Folder processed mail is moved to; unset = leave in place and set `processed_flag`.
    pub processed_folder: Option<String>,
    /// IMAP keyword set on processed mail when not moving it.
    pub processed_flag: String,
    /// Poll interval when the server has no IDLE (and the IDLE safety net).
    pub poll_interval_secs: u64,
    /// R-RS-1 (Dynamics default: yes).
    pub create_responses_for_incoming_email: bool,
    /// R-OPT-3.
    pub auto_unsubscribe: bool,
    /// R-EM-6 lead source for leads from this mailbox (10 Other; 100000000 = E-mail).
    pub default_leadsourcecode: i32,
    /// Larger messages are quarantined, not parsed.
    pub max_message_bytes: usize,
    /// R-RS-3: convert interested responses from unknown senders (a) and open leads (b).
    pub auto_convert: bool,
    /// Records one sender may cause within an hour (by the messages' own dates); more mail from
    /// it is held back for replay (mail loops).
    pub sender_hourly_limit: u32,
    /// Soft bounces of an address (any reason but a dead address, `crm::bounce`) before it is
    /// suppressed.
    pub soft_bounce_limit: u32,
    /// Messages fetched and committed per batch.
    pub batch_size: u32,
    /// Use IMAP IDLE when the server offers it (poll_interval_secs stays the safety net).
    pub idle: bool,
    /// With several daemons, one works the mailbox under a lease of this length; another
    /// takes over when the holder stops renewing it.
    pub lease_secs: u64,
    /// Longest wait between reconnect attempts (the wait doubles from 1 s up to this).
    pub max_backoff_secs: u64,
    /// PEM file of extra CA certificates to trust for this server (private CAs).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            name: String::new(),
            enabled: true,
            host: String::new(),
            port: 993,
            tls: TlsMode::Implicit,
            user: String::new(),
            auth: MailAuth::Password,
            oauth: None,
            password: None,
            password_file: None,
            folder: "INBOX".into(),
            owner: String::new(),
            filter: 1,
            auto_create: AutoCreate::None,
            processed_folder: None,
            processed_flag: "$InflowProcessed".into(),
            poll_interval_secs: 60,
            create_responses_for_incoming_email: true,
            auto_unsubscribe: false,
            default_leadsourcecode: 10,
            max_message_bytes: 25 * 1024 * 1024,
            auto_convert: true,
            sender_hourly_limit: 20,
            soft_bounce_limit: 3,
            batch_size: 50,
            idle: true,
            lease_secs: 60,
            max_backoff_secs: 300,
            tls_ca_file: None,
        }
    }
}

/// `[smtp]`: the relay for waves and alerts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Unset = no outbound mail (waves and alerts stay queued).
    pub host: Option<String>,
    pub port: u16,
    pub tls: TlsMode,
    pub user: Option<String>,
    /// `password` (default: PLAIN/LOGIN with `password_file` when `user` is set) or `oauth2`
    /// (SASL XOAUTH2 as `user`, with `[smtp.oauth]` and `inflow oauth login smtp`).
    pub auth: MailAuth,
    pub oauth: Option<OAuthConfig>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Envelope and header sender of system mail.
    pub from: Option<String>,
    pub pool_size: u32,
    pub timeout_secs: u64,
    /// Extra CA certificates (PEM) trusted for implicit TLS, e.g. a private relay's CA.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: None,
            port: 587,
            tls: TlsMode::Starttls,
            user: None,
            auth: MailAuth::Password,
            oauth: None,
            password: None,
            password_file: None,
            from: None,
            pool_size: 4,
            timeout_secs: 30,
            tls_ca_file: None,
        }
    }
}

/// `[waves]`: campaign e-mail waves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WavesConfig {
    /// Global messages per minute per relay (unset = unlimited).
    pub rate_per_minute: Option<u32>,
    /// Delivery attempts before a recipient fails for good.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt.
    pub retry_base_secs: u64,
    /// Domain of our Message-IDs (default: the smtp.from domain).
    pub message_id_domain: Option<String>,
    /// File holding the key that signs unsubscribe tokens.
    pub unsubscribe_secret_file: Option<PathBuf>,
    #[serde(skip)]
    pub unsubscribe_secret: Option<String>,
    /// R-OPT-3 keywords (subject or first line of a reply).
    pub unsubscribe_keywords: Vec<String>,
    /// Our List-Unsubscribe mailto address; mail to it (or to local+token@) opts the sender out.
    pub unsubscribe_mailto: Option<String>,
    /// Run the wave sender in this daemon (needs `[smtp]`); scheduling works either way.
    pub enabled: bool,
    /// Deliveries claimed per round trip to the database. At most twice this many are claimed
    /// and not yet recorded at a time: after a crash, only those can be sent twice.
    pub batch_size: usize,
    /// A claim is a lease: if the daemon dies mid-send, another may take the delivery after this.
    pub claim_lease_secs: u64,
    /// How often an idle sender looks for due waves and deliveries.
    pub poll_interval_ms: u64,
    /// Recipients written per expansion transaction (sending starts after the first).
    pub expansion_chunk: usize,
    /// Longest wait between retries of one recipient.
    pub max_retry_delay_secs: u64,
    /// First back-off of the whole relay after a throttling reply (doubles while they repeat).
    pub throttle_backoff_secs: u64,
    /// Envelope sender (Return-Path) of wave mail, where bounces go (default: the wave's From).
    pub bounce_address: Option<String>,
    /// R-OPT-1 [DESIGN]: honour a wave's `donotsendonoptout = false` (send to opted-out members).
    pub allow_optout_override: bool,
    /// DKIM signing (RFC 6376) of wave mail: the signing domain (`d=`), unset = no signing.
    pub dkim_domain: Option<String>,
    /// The selector (`s=`): the key is published at `<selector>._domainkey.<domain>`.
    pub dkim_selector: Option<String>,
    /// `rsa` (a PKCS#1 PEM key: `openssl genrsa -traditional 2048`) or `ed25519` (the 32-byte
    /// seed, base64).
    pub dkim_algorithm: String,
    /// File holding the private key.
    pub dkim_private_key_file: Option<PathBuf>,
    #[serde(skip)]
    pub dkim_private_key: Option<String>,
}

impl Default for WavesConfig {
    fn default() -> Self {
        WavesConfig {
            rate_per_minute: None,
            max_attempts: 5,
            retry_base_secs: 60,
            message_id_domain: None,
            unsubscribe_secret_file: None,
            unsubscribe_secret: None,
            unsubscribe_keywords: ["unsubscribe", "stop", "отписаться", "отписать", "відписатися", "відписати"]
                .map(String::from)
                .to_vec(),
            unsubscribe_mailto: None,
            enabled: true,
            batch_size: 100,
            claim_lease_secs: 120,
            poll_interval_ms: 1000,
            expansion_chunk: 1000,
            max_retry_delay_secs: 3600,
            throttle_backoff_secs: 60,
            bounce_address: None,
            allow_optout_override: false,
            dkim_domain: None,
            dkim_selector: None,
            dkim_algorithm: "rsa".into(),
            dkim_private_key_file: None,
            dkim_private_key: None,
        }
    }
}

/// `[alerts]`: overdue-activity notifications (R-TASK-*).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    pub scan_interval_secs: u64,
    /// R-TASK-3: level 1 fires this long after the due date.
    pub escalation_delay_secs: u64,
    /// R-TASK-4: highest level (1 = owner then manager).
    pub max_level: u32,
    /// R-TASK-3: who is told when no manager is found.
    pub fallback_address: Option<String>,
    /// Working hours in the org time zone, `HH:MM-HH:MM`.
    pub working_hours: String,
    /// Working days: mon, tue, wed, thu, fri, sat, sun.
    pub working_days: Vec<String>,
    /// R-TASK-1: activity types that can be overdue.
    pub kinds: Vec<String>,
    /// minijinja template of the digest subject (default: English; see
    /// config/alerts-ru.example.toml for Russian). Variables: recipient, count, escalation,
    /// groups, notices.
    pub subject_template: Option<String>,
    /// minijinja template of the digest body; `groups` is a list of {owner, lines}, each line
    /// {subject, kind, due, overdue_hours, level, regarding, link}; `notices` a list of
    /// {kind, text, link} (what is new for the recipient: R-LD-6, R-ACT-2, R-WV-6b).
    pub body_template: Option<String>,
    /// R-LD-6: the owner of a lead the daemon created (from mail, a call, an import, a
    /// response) hears of it in their next digest.
    pub new_lead_notice: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            scan_interval_secs: 300,
            escalation_delay_secs: 24 * 3600,
            max_level: 1,
            fallback_address: None,
            working_hours: "09:00-18:00".into(),
            working_days: ["mon", "tue", "wed", "thu", "fri"].map(String::from).to_vec(),
            kinds: ["task", "phonecall", "campaignactivity"].map(String::from).to_vec(),
            subject_template: None,
            body_template: None,
            new_lead_notice: true,
        }
    }
}

/// One configuration problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path, e.g. `mailboxes[0].tls`; empty for the file as a whole.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "<file>" } else { &self.path };
        match self.line {
            Some(l) => write!(f, "{path} (line {l}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} problem(s):", self.source_name, self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where a config comes from: a file, or the embedded defaults.
pub enum Source<'a> {
    File(&'a Path),
    Defaults,
    Text { name: &'a str, text: &'a str },
}

impl Config {
    /// Loads, applies `INFLOW__…` overrides from `env`, reads secret files, validates.
    pub fn load(source: Source<'_>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let (name, text) = match source {
            Source::File(p) => match std::fs::read_to_string(p) {
                Ok(t) => (p.display().to_string(), t),
                Err(e) => {
                    return Err(ConfigError {
                        source_name: p.display().to_string(),
                        problems: vec![ConfigProblem {
                            path: String::new(),
                            line: None,
                            message: format!("cannot read the file: {e}"),
                        }],
                    });
                }
            },
            Source::Defaults => ("embedded defaults".to_string(), String::new()),
            Source::Text { name, text } => (name.to_string(), text.to_string()),
        };
        let mut problems = Vec::new();
        let cfg = parse_text(&text, env, &mut problems);
        if let Some(mut cfg) = cfg {
            let before = problems.len();
            cfg.validate(&mut problems);
            if problems.is_empty() {
                cfg.read_secrets(env, &mut problems);
            }
            if problems.is_empty() {
                return Ok(cfg);
            }
            // Semantic problems carry a key path; find their line in the file.
            if let Ok(root) = toml::de::DeTable::parse(&text) {
                for p in &mut problems[before..] {
                    if p.line.is_none() {
                        p.line = span_line(&text, root.get_ref(), &split_path(&p.path));
                    }
                }
            }
        }
        Err(ConfigError { source_name: name, problems })
    }

    /// The org time zone (validated at load).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.org.timezone.parse().unwrap_or(chrono_tz::Europe::Moscow)
    }
}

/// `HH:MM-HH:MM` → minutes since midnight (start, end).
pub fn parse_working_hours(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-')?;
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let (a, b) = (hm(a)?, hm(b)?);
    (a < b).then_some((a, b))
}

/// `waves.dkim_algorithm` → lettre's algorithm.
pub fn dkim_algorithm(s: &str) -> Option<lettre::message::dkim::DkimSigningAlgorithm> {
    match s {
        "rsa" => Some(lettre::message::dkim::DkimSigningAlgorithm::Rsa),
        "ed25519" => Some(lettre::message::dkim::DkimSigningAlgorithm::Ed25519),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::load(Source::Text { name: "test.toml", text }, &BTreeMap::new())
    }

    #[test]
    fn empty_config_is_the_embedded_defaults() {
        let c = load("").unwrap();
        assert!(c.database.url.starts_with("sqlite://"));
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        assert_eq!(c.org.timezone, "Europe/Moscow");
    }

    #[test]
    fn every_problem_is_reported_with_path_and_line() {
        let text = "[database]\nurl = \"mysql://x\"\nbogus = 1\n\n[http]\nlisten = 5\n\n[org]\n\
            timezone = \"Mars/Base\"\n\n[[mailboxes]]\nname = \"sales\"\nhost = \"imap.example.com\"\n\
            tls = \"plain\"\nuser = \"u\"\npassword = \"p\"\nowner = \"o\"\nfilter = 9\n";
        let err = load(text).unwrap_err();
        let shown = err.to_string();
        // Structural and semantic problems are all reported in one pass, with lines.
        let found: Vec<(&str, Option<usize>)> = err.problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            found,
            [
                ("database.bogus", Some(3)),
                ("http.listen", Some(6)),
                ("database.url", Some(2)),
                ("org.timezone", Some(9)),
                ("mailboxes[0].tls", Some(14)),
                ("mailboxes[0].filter", Some(18)),
            ],
            "{shown}"
        );
    }

    #[test]
    fn an_oauth_relay_needs_its_user_and_no_password() {
        let relay = "[smtp]\nhost = \"smtp.office365.com\"\nfrom = \"crm@acme.ru\"\nauth = \"oauth2\"\n";
        let err = load(&format!("{relay}password = \"p\"\n")).unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["smtp.password", "smtp.user", "smtp.oauth"], "{err}");
        let ok = load(&format!("{relay}user = \"crm@acme.ru\"\n\n[smtp.oauth]\nclient_id = \"c\"\n")).unwrap();
        assert_eq!(crate::oauth::accounts(&ok), [crate::oauth::Account { name: "smtp".into(), app_only: false }]);
        let oauth_without_auth = load("[smtp]\nhost = \"h\"\nfrom = \"a@b.ru\"\n\n[smtp.oauth]\nclient_id = \"c\"\n");
        assert_eq!(oauth_without_auth.unwrap_err().problems[0].path, "smtp.oauth");
    }

    #[test]
    fn broken_toml_is_reported_with_its_line() {
        let err = load("[database]\nurl = \"sqlite://x.db\"\n[http\nlisten = 1\n").unwrap_err();
        assert!(err.problems.iter().all(|p| p.line.is_some()), "{err}");
        assert_eq!(err.problems[0].line, Some(3), "{err}");
    }

    #[test]
    fn env_overrides_win_and_are_typed() {
        let mut env = BTreeMap::new();
        env.insert("INFLOW__HTTP__LISTEN".to_string(), "127.0.0.1:9999".to_string());
        env.insert("INFLOW__DATABASE__MAX_CONNECTIONS".to_string(), "3".to_string());
        env.insert("INFLOW__ORG__DEFAULT_PHONE_REGION".to_string(), "UA".to_string());
        let c = Config::load(Source::Text { name: "t", text: "[http]\nlisten = \"127.0.0.1:1\"\n" }, &env).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:9999");
        assert_eq!(c.database.max_connections, 3);
        assert_eq!(c.org.default_phone_region, "UA");
        env.insert("INFLOW__DATABASE__NOPE".to_string(), "1".to_string());
        let err = Config::load(Source::Defaults, &env).unwrap_err();
        assert_eq!(err.problems[0].path, "database.nope", "{err}");
        assert!(err.problems[0].message.contains("INFLOW__DATABASE__NOPE"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_and_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("imap.pass"), "s3cret\n").unwrap();
        let text = |f: &str| {
            format!(
                "[[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\ntls = \"plain\"\nuser = \"u\"\n\
                    owner = \"o\"\npassword_file = \"{f}\"\n"
            )
        };
        let mut env = BTreeMap::new();
        env.insert("CREDENTIALS_DIRECTORY".to_string(), dir.path().display().to_string());
        let c = Config::load(Source::Text { name: "t", text: &text("imap.pass") }, &env).unwrap();
        assert_eq!(c.mailboxes[0].password.as_deref(), Some("s3cret"));
        let err = Config::load(Source::Text { name: "t", text: &text("/nonexistent/imap.pass") }, &env).unwrap_err();
        assert_eq!(err.problems[0].path, "mailboxes[0].password_file");
        assert!(err.problems[0].message.contains("/nonexistent/imap.pass"), "{err}");
    }

    #[test]
    fn working_hours_parse() {
        assert_eq!(parse_working_hours("09:00-18:30"), Some((540, 1110)));
        assert_eq!(parse_working_hours("18:00-09:00"), None);
        assert_eq!(parse_working_hours("9-18"), None);
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/inflow.example.toml");

    #[test]
    fn example_config_loads() {
        let c =
            Config::load(Source::Text { name: "config/inflow.example.toml", text: EXAMPLE }, &BTreeMap::new()).unwrap();
        assert_eq!(c.mailboxes.len(), 2, "DOMAIN: the example shows an inquiries and a reply-to mailbox");
        assert_eq!((c.mailboxes[0].filter, c.mailboxes[0].auto_create), (0, AutoCreate::Leads));
        assert_eq!(c.mailboxes[1].filter, 1);
        assert_eq!(c.pbx.lines.len(), 2);
    }

    /// Every key of every section (including list entries) appears in the example, set or
    /// commented out.
    #[test]
    fn example_config_documents_every_key() {
        let full = Config {
            mailboxes: vec![MailboxConfig::default()],
            pbx: PbxConfig {
                lines: vec![PbxLineConfig::default()],
                zadarma: vec![Default::default()],
                novofon: vec![Default::default()],
                extensions: BTreeMap::from([(
                    "sipgate".into(),
                    BTreeMap::from([("w0".into(), "u@example.com".into())]),
                )]),
                mango: vec![Default::default()],
                twilio: vec![Default::default()],
                generic: vec![Default::default()],
                placetel: vec![Default::default()],
                sipgate: vec![Default::default()],
                cti: vec![Default::default()],
                sipuni: vec![Default::default()],
                itoolabs: vec![Default::default()],
                uis: vec![Default::default()],
                asterisk: vec![AsteriskConfig::default()],
                cdr_table: vec![CdrTableConfig::default()],
                threecx: vec![Default::default()],
                yeastar: vec![Default::default()],
                ..Default::default()
            },
            api: ApiConfig {
                tokens: vec![ApiTokenConfig {
                    name: "t".into(),
                    sha256: String::new(),
                    user: uuid::Uuid::nil(),
                    role: "viewer".into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let json = serde_json::to_value(&full).unwrap();
        let mut missing = Vec::new();
        fn walk(v: &serde_json::Value, path: String, missing: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(o) => {
                    for (k, v) in o {
                        let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                        let is_section = v.is_object()
                            || (v.is_array() && v.as_array().unwrap().first().is_some_and(|x| x.is_object()));
                        if !is_section {
                            let re = regex::Regex::new(&format!(r"(?m)^\s*#?\s*{}\s*=", regex::escape(k))).unwrap();
                            if !re.is_match(EXAMPLE) {
                                missing.push(p.clone());
                            }
                        }
                        walk(v, p, missing);
                    }
                }
                serde_json::Value::Array(a) => {
                    for x in a {
                        walk(x, path.clone(), missing);
                    }
                }
                _ => {}
            }
        }
        walk(&json, String::new(), &mut missing);
        assert!(missing.is_empty(), "keys not documented in config/inflow.example.toml: {missing:?}");
    }
}
