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

/// `[pbx]`: call-record webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PbxConfig {
    /// R-PBX-3: a missed call's callback is due this long after the call.
    pub callback_sla_secs: u64,
    /// Owner of calls whose line and extension name nobody (systemuser id or e-mail).
    pub default_owner: Option<String>,
    /// R-PBX-5: shortest answered call that creates a lead (per line overridable).
    pub min_answered_seconds: u64,
    /// A call with no final event is closed with what is known after this long.
    pub final_event_timeout_secs: u64,
    /// Largest webhook body accepted (413 above).
    pub body_limit_bytes: usize,
    /// How often to look for calls to process or close by timeout.
    pub sweep_interval_secs: u64,
    /// Phone lines (DIDs) and what calls to them mean.
    pub lines: Vec<PbxLineConfig>,
    /// Zadarma: enabled when the section is present.
    #[serde(deserialize_with = "one_or_many")]
    pub zadarma: Vec<ZadarmaConfig>,
    /// Novofon classic (Zadarma's fork, the same format), beside a Zadarma account or alone:
    /// POST /pbx/novofon, its calls stored as `novofon`.
    #[serde(deserialize_with = "one_or_many")]
    pub novofon: Vec<ZadarmaConfig>,
    /// Per provider, its own names for employees (an extension, a login, an employee id) →
    /// a user (id or internal e-mail); a name not listed is looked up as a user's
    /// `pbx_extension`.
    pub extensions: BTreeMap<String, BTreeMap<String, String>>,
    /// Mango Office VPBX.
    #[serde(deserialize_with = "one_or_many")]
    pub mango: Vec<MangoConfig>,
    /// Twilio Programmable Voice.
    #[serde(deserialize_with = "one_or_many")]
    pub twilio: Vec<TwilioConfig>,
    /// inflow's own JSON format for PBXs without an adapter.
    #[serde(deserialize_with = "one_or_many")]
    pub generic: Vec<GenericPbxConfig>,
    /// Placetel Notify.
    #[serde(deserialize_with = "one_or_many")]
    pub placetel: Vec<PlacetelConfig>,
    /// sipgate.io push.
    #[serde(deserialize_with = "one_or_many")]
    pub sipgate: Vec<SipgateConfig>,
    /// The Generic CTI push format (Zammad's; many PBXs and connectors speak it).
    #[serde(deserialize_with = "one_or_many")]
    pub cti: Vec<TokenPbxConfig>,
    /// Sipuni PBX events.
    #[serde(deserialize_with = "one_or_many")]
    pub sipuni: Vec<TokenPbxConfig>,
    /// The ITooLabs virtual-PBX CRM API (MegaFon «Виртуальная АТС», Gravitel, Kcell …).
    #[serde(deserialize_with = "one_or_many")]
    pub itoolabs: Vec<ItooLabsConfig>,
    /// UIS / CoMagic / Novofon 2.0 event notifications (templates from README).
    #[serde(deserialize_with = "one_or_many")]
    pub uis: Vec<TokenZonePbxConfig>,
    /// Asterisk PBXs read through the manager interface (AMI `Cdr` events).
    pub asterisk: Vec<AsteriskConfig>,
    /// FreePBX / Issabel CDR tables polled read-only (MariaDB/MySQL `asteriskcdrdb.cdr`).
    pub cdr_table: Vec<CdrTableConfig>,
    /// 3CX's server-side CRM integration (contrib/3cx/inflow.xml).
    #[serde(rename = "3cx")]
    #[serde(deserialize_with = "one_or_many")]
    pub threecx: Vec<TokenPbxConfig>,
    /// Yeastar call detail reports (S-Series/Cloud API v1, v2, P-Series webhook).
    #[serde(deserialize_with = "one_or_many")]
    pub yeastar: Vec<TokenZonePbxConfig>,
}

impl Default for PbxConfig {
    fn default() -> Self {
        PbxConfig {
            callback_sla_secs: 2 * 3600,
            default_owner: None,
            min_answered_seconds: 10,
            final_event_timeout_secs: 3 * 3600,
            body_limit_bytes: 64 * 1024,
            sweep_interval_secs: 60,
            lines: Vec::new(),
            zadarma: Vec::new(),
            novofon: Vec::new(),
            extensions: BTreeMap::new(),
            mango: Vec::new(),
            twilio: Vec::new(),
            generic: Vec::new(),
            placetel: Vec::new(),
            sipgate: Vec::new(),
            cti: Vec::new(),
            sipuni: Vec::new(),
            itoolabs: Vec::new(),
            uis: Vec::new(),
            asterisk: Vec::new(),
            cdr_table: Vec::new(),
            threecx: Vec::new(),
            yeastar: Vec::new(),
        }
    }
}

/// A provider's section: one table (`[pbx.zadarma]`, one account) or a list of named
/// accounts (`[[pbx.zadarma]]`).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error as _;
    match toml::Value::deserialize(d)? {
        toml::Value::Array(items) => items.into_iter().map(|i| T::deserialize(i).map_err(D::Error::custom)).collect(),
        one => Ok(vec![T::deserialize(one).map_err(D::Error::custom)?]),
    }
}

/// `[pbx.zadarma]`: POST /pbx/zadarma (GET answers the `zd_echo` check).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZadarmaConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// File with the API secret (the HMAC key of the `Signature` header).
    pub secret_file: Option<PathBuf>,
    #[serde(skip)]
    pub secret: Option<String>,
    /// Zone of `call_start` (Zadarma sends local time without an offset); default org.timezone.
    pub timezone: Option<String>,
    /// Refuse notifications whose call_start is further than this from now (replays of
    /// captured requests: Zadarma signs only a few fields). 0 turns the check off.
    pub max_event_age_secs: u64,
}

impl Default for ZadarmaConfig {
    fn default() -> Self {
        ZadarmaConfig {
            name: None,
            extensions: BTreeMap::new(),
            secret_file: None,
            secret: None,
            timezone: None,
            max_event_age_secs: 2 * 86_400,
        }
    }
}

/// `[pbx.mango]`: POST /pbx/mango/events/{call,summary,recording}.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MangoConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// The VPBX API key (`vpbx_api_key`; an identifier, checked against each request).
    pub api_key: String,
    /// File with the API salt (the secret part of `sign`).
    pub api_salt_file: Option<PathBuf>,
    #[serde(skip)]
    pub api_salt: Option<String>,
}

/// `[pbx.twilio]`: POST /pbx/twilio/status (StatusCallback), /pbx/twilio/dial (Dial action),
/// /pbx/twilio/recording (recordingStatusCallback).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// File with the account's Auth Token (the HMAC key of `X-Twilio-Signature`).
    pub auth_token_file: Option<PathBuf>,
    #[serde(skip)]
    pub auth_token: Option<String>,
    /// The public base URL Twilio calls (signatures cover the exact URL Twilio used),
    /// e.g. `https://crm.example.com`; default org.public_base_url.
    pub public_base_url: Option<String>,
    /// The exact URL configured in Twilio for each callback, when it is not
    /// `public_base_url` + `/pbx/twilio/<route>` (a proxy that rewrites paths or hosts):
    /// Twilio signs the URL it called, so this is the URL checked.
    pub status_url: Option<String>,
    pub dial_url: Option<String>,
    pub recording_url: Option<String>,
    /// TwiML answered to the `<Dial action>` request: what the call does next (a voicemail
    /// `<Record>` after an unanswered dial, say). Default an empty `<Response/>`.
    pub dial_action_twiml_file: Option<PathBuf>,
    #[serde(skip)]
    pub dial_action_twiml: Option<String>,
}

/// `[pbx.generic]`: POST /pbx/generic with inflow's JSON call event (see README).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericPbxConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// File with a bearer token (`Authorization: Bearer …`).
    pub token_file: Option<PathBuf>,
    #[serde(skip)]
    pub token: Option<String>,
    /// File with an HMAC-SHA256 key: `X-Inflow-Signature: sha256=<hex of HMAC(raw body)>`.
    pub hmac_secret_file: Option<PathBuf>,
    #[serde(skip)]
    pub hmac_secret: Option<String>,
}

/// `[pbx.placetel]`: POST /pbx/placetel (Placetel "Notify").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacetelConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// File with the shared secret of Placetel's external API settings (the HMAC-SHA256
    /// key of `X-PLACETEL-SIGNATURE`).
    pub secret_file: Option<PathBuf>,
    #[serde(skip)]
    pub secret: Option<String>,
}

/// `[pbx.sipgate]`: POST /pbx/sipgate (sipgate.io push).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipgateConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// The URL sipgate is told to send answer and hangup events to; default
    /// org.public_base_url + `/pbx/sipgate`.
    pub public_url: Option<String>,
    /// A PEM public key that signs the pushes instead of sipgate's published one (tests,
    /// or a key sipgate rotates to before inflow ships it).
    pub public_key_file: Option<PathBuf>,
    #[serde(skip)]
    pub public_key: Option<String>,
}

/// `[pbx.cti]`, `[pbx.sipuni]`: providers that sign nothing; the URL given to them carries
/// the token (`/pbx/<provider>/<token>`, `?token=`, or as the Basic-auth password).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPbxConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// File with the token.
    pub token_file: Option<PathBuf>,
    #[serde(skip)]
    pub token: Option<String>,
}

/// `[pbx.itoolabs]`: POST /pbx/itoolabs (the "CRM API" of ITooLabs-platform PBXs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ItooLabsConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// File with the CRM token set in the PBX's cabinet (sent as `crm_token`).
    pub crm_token_file: Option<PathBuf>,
    #[serde(skip)]
    pub crm_token: Option<String>,
}

/// `[pbx.uis]`: POST /pbx/uis/<token> (UIS / CoMagic / Novofon 2.0 notifications), and
/// `[pbx.yeastar]` (POST /pbx/yeastar/<token>): a token in the URL and the zone the
/// provider writes local times in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenZonePbxConfig {
    /// The account's name, stored on its calls (default: the provider's name). Several
    /// accounts of one provider are a list, `[[pbx.<provider>]]`, each with its own secret;
    /// a request belongs to the account whose secret or token it carries.
    pub name: Option<String>,
    /// This account's own names for employees (an extension, a login, an employee id) → a
    /// user (id or internal e-mail), looked up before `[pbx.extensions.<provider>]`.
    pub extensions: BTreeMap<String, String>,
    /// File with the token the notification URLs carry.
    pub token_file: Option<PathBuf>,
    #[serde(skip)]
    pub token: Option<String>,
    /// Zone of the provider's local times (UIS `notification_time`, Yeastar `timestart`,
    /// written without an offset); default org.timezone.
    pub timezone: Option<String>,
}

/// `[[pbx.asterisk]]`: one Asterisk (FreePBX, Issabel …) manager interface to keep a
/// connection to; its `Cdr` events become calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsteriskConfig {
    /// A name for logs and health (`asterisk:<name>`).
    pub name: String,
    pub host: String,
    /// The manager port (manager.conf `port`).
    pub port: u16,
    /// A manager.conf user with `read = cdr` (nothing to write is needed).
    pub username: String,
    /// File with that user's secret.
    pub secret_file: Option<PathBuf>,
    #[serde(skip)]
    pub secret: Option<String>,
    /// The zone of the PBX's CDR times; default org.timezone.
    pub timezone: Option<String>,
    /// The longest wait between reconnection attempts.
    pub max_backoff_secs: u64,
}

impl Default for AsteriskConfig {
    fn default() -> Self {
        AsteriskConfig {
            name: "asterisk".into(),
            host: "127.0.0.1".into(),
            port: 5038,
            username: String::new(),
            secret_file: None,
            secret: None,
            timezone: None,
            max_backoff_secs: 60,
        }
    }
}

/// `[[pbx.cdr_table]]`: a FreePBX / Issabel (or any Asterisk `cdr_mysql` / `cdr_adaptive_odbc`)
/// CDR table, polled read-only. Its calls are stored as provider `asterisk` with the same event
/// ids as the AMI client, so both may watch one PBX: the poll fills in what AMI missed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdrTableConfig {
    /// A name for logs, health (`cdr_table:<name>`) and the checkpoint.
    pub name: String,
    /// `mysql://USER@HOST:3306/asteriskcdrdb` (MariaDB or MySQL); the password in `password_file`.
    pub url: String,
    /// File with the user's password (a user with `SELECT` on the table only).
    pub password_file: Option<PathBuf>,
    #[serde(skip)]
    pub password: Option<String>,
    /// The table: `cdr` on FreePBX and Issabel.
    pub table: String,
    /// The zone of the PBX's `calldate`; default org.timezone.
    pub timezone: Option<String>,
    /// How often the table is read.
    pub poll_interval_secs: u64,
    /// A row is written when its call ends, with the call's start as `calldate`: the poll looks
    /// this far back in `calldate` for calls that ended since it last read. Longer calls are
    /// not found by the poll.
    pub longest_call_secs: u64,
    /// On the first poll, read calls that ended up to this many hours ago (0: from now on).
    pub backfill_hours: u64,
}

impl Default for CdrTableConfig {
    fn default() -> Self {
        CdrTableConfig {
            name: "freepbx".into(),
            url: String::new(),
            password_file: None,
            password: None,
            table: "cdr".into(),
            timezone: None,
            poll_interval_secs: 30,
            longest_call_secs: 4 * 3600,
            backfill_hours: 0,
        }
    }
}

/// `[[pbx.lines]]`: DOMAIN §2.13 `pbx_line`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PbxLineConfig {
    /// The dialled number (any format; normalised with org.default_phone_region).
    pub did: String,
    /// Owner of calls, callbacks and leads from this line (systemuser id or e-mail).
    pub owner: String,
    /// R-PBX-4: a campaign tracking number maps to this wave (campaign activity id)…
    pub campaignactivity_id: Option<uuid::Uuid>,
    /// …or to this campaign's current phone campaign activity.
    pub campaign_id: Option<uuid::Uuid>,
    /// R-PBX-5.
    pub create_leads: bool,
    pub min_answered_seconds: Option<u64>,
    /// Subject of leads created from this line.
    pub lead_subject: Option<String>,
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

    /// Semantic checks that serde cannot express; every problem is collected.
    fn validate(&self, out: &mut Vec<ConfigProblem>) {
        let mut bad = |path: String, message: String| out.push(ConfigProblem { path, line: None, message });
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bad("database.url".into(), format!("'{url}' must start with sqlite:// or postgres://"));
        }
        if self.database.max_connections == 0 {
            bad("database.max_connections".into(), "must be at least 1".into());
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            bad("http.listen".into(), format!("'{}' is not an address like 127.0.0.1:8080", self.http.listen));
        }
        for (i, p) in self.http.trusted_proxies.iter().enumerate() {
            if crate::http::client::parse_proxy(p).is_none() {
                bad(format!("http.trusted_proxies[{i}]"), format!("'{p}' is not an IP address or CIDR range"));
            }
        }
        if self.http.body_limit_bytes < 1024 {
            bad("http.body_limit_bytes".into(), "must be at least 1024".into());
        }
        if self.org.timezone.parse::<chrono_tz::Tz>().is_err() {
            bad(
                "org.timezone".into(),
                format!("'{}' is not an IANA time zone (e.g. Europe/Moscow)", self.org.timezone),
            );
        }
        if self.org.default_phone_region.to_ascii_uppercase().parse::<phonenumber::country::Id>().is_err() {
            bad(
                "org.default_phone_region".into(),
                format!("'{}' is not a phone region (e.g. RU, UA)", self.org.default_phone_region),
            );
        }
        if !matches!(self.org.locale.as_str(), "ru" | "en") {
            bad("org.locale".into(), format!("'{}': the console speaks ru or en", self.org.locale));
        }
        if self.console.session_hours == 0 || self.console.session_hours > 24 * 30 {
            bad("console.session_hours".into(), "must be 1 to 720".into());
        }
        if self.console.sign_in_attempts_per_minute == 0 {
            bad("console.sign_in_attempts_per_minute".into(), "must be at least 1".into());
        }
        for (i, c) in self.org.custom_lead_sources.iter().enumerate() {
            if *c < 100_000_000 {
                bad(format!("org.custom_lead_sources[{i}]"), format!("{c}: custom values start at 100000000 (R-LD-4)"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.mailboxes.iter().enumerate() {
            let p = |k: &str| format!("mailboxes[{i}].{k}");
            if m.name.trim().is_empty() {
                bad(p("name"), "is required".into());
            } else if !names.insert(m.name.clone()) {
                bad(p("name"), format!("'{}' is used by another mailbox", m.name));
            }
            if m.host.trim().is_empty() {
                bad(p("host"), "is required".into());
            }
            if m.user.trim().is_empty() {
                bad(p("user"), "is required".into());
            }
            if m.owner.trim().is_empty() {
                bad(p("owner"), "is required (a systemuser id or internal e-mail)".into());
            }
            match (m.auth, &m.password, &m.password_file) {
                (MailAuth::Password, None, None) if m.enabled => {
                    bad(p("password_file"), "a password or password_file is required".into())
                }
                (MailAuth::Password, Some(_), Some(_)) => {
                    bad(p("password"), "set password or password_file, not both".into())
                }
                // A password never goes near an OAuth path.
                (MailAuth::Oauth2, Some(_), _) | (MailAuth::Oauth2, _, Some(_)) => bad(
                    p("password"),
                    "auth = \"oauth2\" signs in with a token: remove password and password_file".into(),
                ),
                _ => {}
            }
            check_oauth(m.auth, m.oauth.as_ref(), "[mailboxes.oauth]", &p, &mut bad);
            if m.auth == MailAuth::Oauth2 && m.name == crate::oauth::RELAY_ACCOUNT {
                bad(p("name"), "'smtp' names the relay's OAuth grant: give the mailbox another name".into());
            }
            if m.batch_size == 0 || m.batch_size > 1000 {
                bad(p("batch_size"), "must be between 1 and 1000".into());
            }
            if m.lease_secs < 10 {
                bad(p("lease_secs"), "must be at least 10".into());
            }
            if m.poll_interval_secs == 0 {
                bad(p("poll_interval_secs"), "must be at least 1".into());
            }
            if m.sender_hourly_limit == 0 {
                bad(p("sender_hourly_limit"), "must be at least 1".into());
            }
            if m.tls == TlsMode::Plain && !is_loopback(&m.host) {
                bad(p("tls"), format!("plain IMAP is allowed only to a loopback address, not '{}'", m.host));
            }
            if m.filter > 3 {
                bad(p("filter"), format!("{} is not 0..3 (R-EM-2)", m.filter));
            }
            if m.poll_interval_secs == 0 {
                bad(p("poll_interval_secs"), "must be at least 1".into());
            }
        }
        for (i, l) in self.pbx.lines.iter().enumerate() {
            if crate::crm::Phone::parse(&l.did, &self.org.default_phone_region).e164().is_none() {
                bad(format!("pbx.lines[{i}].did"), format!("'{}' is not a phone number", l.did));
            }
            if l.owner.trim().is_empty() {
                bad(format!("pbx.lines[{i}].owner"), "is required".into());
            }
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                bad(
                    format!("api.tokens[{i}].sha256"),
                    "must be 64 lowercase hex digits (the SHA-256 of the token)".into(),
                );
            }
            if !["admin", "marketer", "viewer"].contains(&t.role.as_str()) {
                bad(format!("api.tokens[{i}].role"), format!("'{}' is not admin, marketer or viewer", t.role));
            }
        }
        if self.api.stale_lead_days == 0 {
            bad("api.stale_lead_days".into(), "must be at least 1".into());
        }
        if self.pbx.sweep_interval_secs == 0 {
            bad("pbx.sweep_interval_secs".into(), "must be at least 1".into());
        }
        if self.pbx.body_limit_bytes < 1024 {
            bad("pbx.body_limit_bytes".into(), "must be at least 1024".into());
        }
        for (name, z) in
            self.pbx.zadarma.iter().map(|z| ("zadarma", z)).chain(self.pbx.novofon.iter().map(|z| ("novofon", z)))
        {
            if z.secret_file.is_none() {
                bad(
                    format!("pbx.{name}.secret_file"),
                    "is required: the notifications are signed with the account's API secret".into(),
                );
            }
            if let Some(tz) = &z.timezone {
                if tz.parse::<chrono_tz::Tz>().is_err() {
                    bad(format!("pbx.{name}.timezone"), format!("'{tz}' is not an IANA time zone"));
                }
            }
        }
        for m in &self.pbx.mango {
            if m.api_key.trim().is_empty() {
                bad("pbx.mango.api_key".into(), "is required".into());
            }
            if m.api_salt_file.is_none() {
                bad("pbx.mango.api_salt_file".into(), "is required: Mango signs events with the API salt".into());
            }
        }
        for t in &self.pbx.twilio {
            if t.auth_token_file.is_none() {
                bad("pbx.twilio.auth_token_file".into(), "is required".into());
            }
            if t.public_base_url.is_none() && self.org.public_base_url.is_none() {
                bad(
                    "pbx.twilio.public_base_url".into(),
                    "is required (or org.public_base_url): Twilio signs the exact URL it calls".into(),
                );
            }
        }
        if self.pbx.placetel.iter().any(|p| p.secret_file.is_none()) {
            bad(
                "pbx.placetel.secret_file".into(),
                "is required: set a shared secret in Placetel's external API settings and put it here".into(),
            );
        }
        for g in &self.pbx.sipgate {
            if g.public_url.is_none() && self.org.public_base_url.is_none() {
                bad(
                    "pbx.sipgate.public_url".into(),
                    "is required (or org.public_base_url): sipgate is told where to send answer and hangup".into(),
                );
            }
            if let Some(k) = g.public_key.as_deref() {
                if crate::ingest::pbx::sipgate::rsa_key_from_pem(k).is_err() {
                    bad("pbx.sipgate.public_key_file".into(), "is not a PEM public key".into());
                }
            }
        }
        if self.pbx.itoolabs.iter().any(|c| c.crm_token_file.is_none()) {
            bad(
                "pbx.itoolabs.crm_token_file".into(),
                "is required: the PBX sends the CRM token set in its cabinet with every request".into(),
            );
        }
        for (i, a) in self.pbx.asterisk.iter().enumerate() {
            if a.username.trim().is_empty() || a.secret_file.is_none() {
                bad(
                    format!("pbx.asterisk[{i}]"),
                    "needs username and secret_file: a manager.conf user with read = cdr".into(),
                );
            }
            if let Some(tz) = a.timezone.as_deref().filter(|t| t.parse::<chrono_tz::Tz>().is_err()) {
                bad(format!("pbx.asterisk[{i}].timezone"), format!("'{tz}' is not an IANA time zone"));
            }
        }
        for (i, c) in self.pbx.cdr_table.iter().enumerate() {
            if !(c.url.starts_with("mysql://") || c.url.starts_with("mariadb://")) {
                bad(format!("pbx.cdr_table[{i}].url"), "must be mysql://USER@HOST:PORT/DATABASE".into());
            }
            if c.table.is_empty() || !c.table.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                bad(format!("pbx.cdr_table[{i}].table"), "must be a plain table name (letters, digits, _)".into());
            }
            if let Some(tz) = c.timezone.as_deref().filter(|t| t.parse::<chrono_tz::Tz>().is_err()) {
                bad(format!("pbx.cdr_table[{i}].timezone"), format!("'{tz}' is not an IANA time zone"));
            }
            if c.poll_interval_secs == 0 || c.longest_call_secs == 0 {
                bad(format!("pbx.cdr_table[{i}]"), "poll_interval_secs and longest_call_secs must be above 0".into());
            }
        }
        for (name, u) in self.pbx.uis.iter().map(|u| ("uis", u)).chain(self.pbx.yeastar.iter().map(|u| ("yeastar", u)))
        {
            if u.token_file.is_none() {
                bad(
                    format!("pbx.{name}.token_file"),
                    "is required: the provider signs nothing, so its URLs carry this token".into(),
                );
            }
            if let Some(tz) = u.timezone.as_deref().filter(|t| t.parse::<chrono_tz::Tz>().is_err()) {
                bad(format!("pbx.{name}.timezone"), format!("'{tz}' is not an IANA time zone"));
            }
        }
        for (name, c) in [("cti", &self.pbx.cti), ("sipuni", &self.pbx.sipuni), ("3cx", &self.pbx.threecx)] {
            if c.iter().any(|c| c.token_file.is_none()) {
                bad(
                    format!("pbx.{name}.token_file"),
                    "is required: the provider signs nothing, so its URL carries this token".into(),
                );
            }
        }
        for g in &self.pbx.generic {
            if g.token_file.is_none() && g.hmac_secret_file.is_none() {
                bad(
                    "pbx.generic.token_file".into(),
                    "set token_file or hmac_secret_file: unauthenticated call events are refused".into(),
                );
            }
        }
        if let Some(host) = &self.smtp.host {
            if self.smtp.tls == TlsMode::Plain && !is_loopback(host) {
                bad("smtp.tls".into(), format!("plain SMTP is allowed only to a loopback address, not '{host}'"));
            }
            match &self.smtp.from {
                None => bad("smtp.from".into(), "is required when smtp.host is set".into()),
                Some(f) if crate::crm::EmailAddress::parse(f).is_err() => {
                    bad("smtp.from".into(), format!("'{f}' is not an e-mail address"))
                }
                _ => {}
            }
            if self.smtp.password.is_some() && self.smtp.password_file.is_some() {
                bad("smtp.password".into(), "set password or password_file, not both".into());
            }
            if self.smtp.auth == MailAuth::Oauth2 {
                if self.smtp.password.is_some() || self.smtp.password_file.is_some() {
                    bad(
                        "smtp.password".into(),
                        "auth = \"oauth2\" signs in with a token: remove password and password_file".into(),
                    );
                }
                if self.smtp.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
                    bad("smtp.user".into(), "auth = \"oauth2\" needs the mailbox address that sends".into());
                }
            }
            check_oauth(self.smtp.auth, self.smtp.oauth.as_ref(), "[smtp.oauth]", &|k| format!("smtp.{k}"), &mut bad);
        }
        if self.waves.max_attempts == 0 {
            bad("waves.max_attempts".into(), "must be at least 1".into());
        }
        let dkim = [
            self.waves.dkim_domain.is_some(),
            self.waves.dkim_selector.is_some(),
            self.waves.dkim_private_key_file.is_some(),
        ];
        if dkim.iter().any(|x| *x) && !dkim.iter().all(|x| *x) {
            bad(
                "waves.dkim_domain".into(),
                "DKIM needs dkim_domain, dkim_selector and dkim_private_key_file together".into(),
            );
        }
        if dkim_algorithm(&self.waves.dkim_algorithm).is_none() {
            bad("waves.dkim_algorithm".into(), format!("'{}' must be rsa or ed25519", self.waves.dkim_algorithm));
        }
        if self.waves.batch_size == 0 || self.waves.batch_size > 10_000 {
            bad("waves.batch_size".into(), "must be between 1 and 10000".into());
        }
        if self.waves.expansion_chunk == 0 {
            bad("waves.expansion_chunk".into(), "must be at least 1".into());
        }
        if self.waves.claim_lease_secs < 1 {
            bad("waves.claim_lease_secs".into(), "must be at least 1".into());
        }
        if self.waves.poll_interval_ms < 10 {
            bad("waves.poll_interval_ms".into(), "must be at least 10".into());
        }
        if self.waves.rate_per_minute == Some(0) {
            bad("waves.rate_per_minute".into(), "must be at least 1 (leave it unset for no limit)".into());
        }
        for (k, v) in [
            ("waves.bounce_address", &self.waves.bounce_address),
            ("waves.unsubscribe_mailto", &self.waves.unsubscribe_mailto),
        ] {
            if let Some(a) = v {
                if crate::crm::EmailAddress::parse(a).is_err() {
                    bad(k.into(), format!("'{a}' is not an e-mail address"));
                }
            }
        }
        let si = self.alerts.scan_interval_secs;
        let divides = |unit: u64| si > 0 && (if si < unit { unit.is_multiple_of(si) } else { si.is_multiple_of(unit) });
        if !(si < 60 && divides(60)
            || (60..3600).contains(&si) && si.is_multiple_of(60) && 3600u64.is_multiple_of(si)
            || si >= 3600 && si.is_multiple_of(3600) && 86_400u64.is_multiple_of(si))
        {
            bad(
                "alerts.scan_interval_secs".into(),
                format!("{si} must divide a minute (e.g. 30), an hour (e.g. 300) or a day (e.g. 7200)"),
            );
        }
        for (k, t) in [
            ("alerts.subject_template", &self.alerts.subject_template),
            ("alerts.body_template", &self.alerts.body_template),
        ] {
            if let Some(t) = t {
                let mut env = minijinja::Environment::new();
                if let Err(e) = env.add_template("t", t) {
                    bad(k.into(), format!("template error: {e}"));
                }
            }
        }
        if parse_working_hours(&self.alerts.working_hours).is_none() {
            bad("alerts.working_hours".into(), format!("'{}' is not HH:MM-HH:MM", self.alerts.working_hours));
        }
        for (i, d) in self.alerts.working_days.iter().enumerate() {
            if !["mon", "tue", "wed", "thu", "fri", "sat", "sun"].contains(&d.as_str()) {
                bad(format!("alerts.working_days[{i}]"), format!("'{d}' is not mon..sun"));
            }
        }
        for (i, k) in self.alerts.kinds.iter().enumerate() {
            if !["task", "phonecall", "campaignactivity", "campaignresponse", "email", "appointment"]
                .contains(&k.as_str())
            {
                bad(format!("alerts.kinds[{i}]"), format!("'{k}' cannot be overdue (R-TASK-1)"));
            }
        }
        if let Some(f) = &self.alerts.fallback_address {
            if crate::crm::EmailAddress::parse(f).is_err() {
                bad("alerts.fallback_address".into(), format!("'{f}' is not an e-mail address"));
            }
        }
    }

    /// Reads every `*_file` secret. Relative paths are looked up in `$CREDENTIALS_DIRECTORY`
    /// (systemd `LoadCredential=`) when it is set.
    fn read_secrets(&mut self, env: &BTreeMap<String, String>, out: &mut Vec<ConfigProblem>) {
        let cred_dir = env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let mut read = |path: String, file: &Option<PathBuf>| -> Option<String> {
            let f = file.as_ref()?;
            let full = match (&cred_dir, f.is_relative()) {
                (Some(d), true) => d.join(f),
                _ => f.clone(),
            };
            match std::fs::read_to_string(&full) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    if s.is_empty() {
                        out.push(ConfigProblem {
                            path,
                            line: None,
                            message: format!("secret file {} is empty", full.display()),
                        });
                        None
                    } else {
                        Some(s)
                    }
                }
                Err(e) => {
                    out.push(ConfigProblem {
                        path,
                        line: None,
                        message: format!("cannot read secret file {}: {e}", full.display()),
                    });
                    None
                }
            }
        };
        if let Some(p) = read("database.password_file".into(), &self.database.password_file) {
            self.database.password = Some(p);
        }
        for (i, m) in self.mailboxes.iter_mut().enumerate().filter(|(_, m)| m.enabled) {
            if let Some(p) = read(format!("mailboxes[{i}].password_file"), &m.password_file) {
                m.password = Some(p);
            }
            if let Some(o) = m.oauth.as_mut() {
                o.client_secret = read(format!("mailboxes[{i}].oauth.client_secret_file"), &o.client_secret_file);
            }
        }
        for z in self.pbx.zadarma.iter_mut() {
            z.secret = read("pbx.zadarma.secret_file".into(), &z.secret_file);
        }
        for z in self.pbx.novofon.iter_mut() {
            z.secret = read("pbx.novofon.secret_file".into(), &z.secret_file);
        }
        for m in self.pbx.mango.iter_mut() {
            m.api_salt = read("pbx.mango.api_salt_file".into(), &m.api_salt_file);
        }
        for t in self.pbx.twilio.iter_mut() {
            t.auth_token = read("pbx.twilio.auth_token_file".into(), &t.auth_token_file);
            t.dial_action_twiml = read("pbx.twilio.dial_action_twiml_file".into(), &t.dial_action_twiml_file);
        }
        for p in self.pbx.placetel.iter_mut() {
            p.secret = read("pbx.placetel.secret_file".into(), &p.secret_file);
        }
        for g in self.pbx.sipgate.iter_mut() {
            g.public_key = read("pbx.sipgate.public_key_file".into(), &g.public_key_file);
        }
        for c in self.pbx.cti.iter_mut() {
            c.token = read("pbx.cti.token_file".into(), &c.token_file);
        }
        for c in self.pbx.sipuni.iter_mut() {
            c.token = read("pbx.sipuni.token_file".into(), &c.token_file);
        }
        for (i, a) in self.pbx.asterisk.iter_mut().enumerate() {
            a.secret = read(format!("pbx.asterisk[{i}].secret_file"), &a.secret_file);
        }
        for (i, c) in self.pbx.cdr_table.iter_mut().enumerate() {
            c.password = read(format!("pbx.cdr_table[{i}].password_file"), &c.password_file);
        }
        for c in self.pbx.uis.iter_mut() {
            c.token = read("pbx.uis.token_file".into(), &c.token_file);
        }
        for c in self.pbx.yeastar.iter_mut() {
            c.token = read("pbx.yeastar.token_file".into(), &c.token_file);
        }
        for c in self.pbx.threecx.iter_mut() {
            c.token = read("pbx.3cx.token_file".into(), &c.token_file);
        }
        for c in self.pbx.itoolabs.iter_mut() {
            c.crm_token = read("pbx.itoolabs.crm_token_file".into(), &c.crm_token_file);
        }
        for g in self.pbx.generic.iter_mut() {
            g.token = read("pbx.generic.token_file".into(), &g.token_file);
            g.hmac_secret = read("pbx.generic.hmac_secret_file".into(), &g.hmac_secret_file);
        }
        self.oauth.key = read("oauth.key_file".into(), &self.oauth.key_file);
        if let Some(o) = self.smtp.oauth.as_mut() {
            o.client_secret = read("smtp.oauth.client_secret_file".into(), &o.client_secret_file);
        }
        if let Some(p) = read("smtp.password_file".into(), &self.smtp.password_file) {
            self.smtp.password = Some(p);
        }
        if let Some(p) = read("waves.unsubscribe_secret_file".into(), &self.waves.unsubscribe_secret_file) {
            self.waves.unsubscribe_secret = Some(p);
        }
        if let Some(k) = read("waves.dkim_private_key_file".into(), &self.waves.dkim_private_key_file) {
            match dkim_algorithm(&self.waves.dkim_algorithm).map(|a| lettre::message::dkim::DkimSigningKey::new(&k, a))
            {
                Some(Ok(_)) => self.waves.dkim_private_key = Some(k),
                Some(Err(e)) => out.push(ConfigProblem {
                    path: "waves.dkim_private_key_file".into(),
                    line: None,
                    message: format!("not a usable {} key: {e:?}", self.waves.dkim_algorithm),
                }),
                None => {}
            }
        }
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

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Syntax → env overrides → typed tree, collecting every syntax, unknown-key and type problem.
fn parse_text(text: &str, env: &BTreeMap<String, String>, out: &mut Vec<ConfigProblem>) -> Option<Config> {
    let (spanned, errors) = toml::de::DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            out.push(ConfigProblem {
                path: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_string(),
            });
        }
        return None;
    }
    let mut tree: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            out.push(ConfigProblem {
                path: String::new(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_string(),
            });
            return None;
        }
    };
    let mut from_env = std::collections::HashSet::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("INFLOW__") else { continue };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            out.push(ConfigProblem { path: format!("env {k}"), line: None, message: "empty key segment".into() });
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.clone()));
        if let Err(m) = set_path(&mut tree, &path, value) {
            out.push(ConfigProblem { path: format!("env {k}"), line: None, message: m });
        }
        from_env.insert(display_path(&path));
    }
    let root = spanned.get_ref();
    for _ in 0..100 {
        match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(tree.clone())) {
            // Keys that failed were removed (their defaults stand in), so the semantic checks
            // can still run and report their problems in the same pass.
            Ok(cfg) => return Some(cfg),
            Err(e) => {
                let mut segs = path_segments(e.path());
                let message = e.inner().to_string();
                let message = message.lines().next().unwrap_or("").trim().to_string();
                if let Some(field) = unknown_field(&message) {
                    if segs.last() != Some(&field) {
                        segs.push(field);
                    }
                }
                let shown = display_path(&segs);
                let line = if from_env.contains(&shown) { None } else { span_line(text, root, &segs) };
                let line_label = if from_env.contains(&shown) {
                    format!(" (from env INFLOW__{})", segs.join("__").to_ascii_uppercase())
                } else {
                    String::new()
                };
                out.push(ConfigProblem { path: shown, line, message: format!("{message}{line_label}") });
                if segs.is_empty() || !remove_path(&mut tree, &segs) {
                    return None;
                }
            }
        }
    }
    None
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn path_segments(p: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    p.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// `["mailboxes", "0", "tls"]` → `mailboxes[0].tls`.
fn display_path(segs: &[String]) -> String {
    let mut s = String::new();
    for seg in segs {
        if seg.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            s.push_str(&format!("[{seg}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(seg);
        }
    }
    s
}

/// `mailboxes[0].tls` → `["mailboxes", "0", "tls"]`.
fn split_path(p: &str) -> Vec<String> {
    p.replace('[', ".").replace(']', "").split('.').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn set_path(tree: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("empty path")?;
    if rest.is_empty() {
        tree.insert(first.clone(), value);
        return Ok(());
    }
    let entry = tree.entry(first.clone()).or_insert_with(|| {
        if rest[0].chars().all(|c| c.is_ascii_digit()) {
            toml::Value::Array(Vec::new())
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    set_in_value(entry, rest, value)
}

fn set_in_value(v: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    match v {
        toml::Value::Table(t) => set_path(t, path, value),
        toml::Value::Array(a) => {
            let (idx, rest) = path.split_first().ok_or("empty path")?;
            let i: usize = idx.parse().map_err(|_| format!("'{idx}' is not an index"))?;
            while a.len() <= i {
                a.push(toml::Value::Table(toml::Table::new()));
            }
            if rest.is_empty() {
                a[i] = value;
                Ok(())
            } else {
                set_in_value(&mut a[i], rest, value)
            }
        }
        _ => Err("cannot set a key inside a plain value".into()),
    }
}

fn remove_path(tree: &mut toml::Table, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else { return false };
    if rest.is_empty() {
        return tree.remove(first).is_some();
    }
    match tree.get_mut(first) {
        Some(v) => remove_in_value(v, rest),
        None => false,
    }
}

fn remove_in_value(v: &mut toml::Value, path: &[String]) -> bool {
    match v {
        toml::Value::Table(t) => remove_path(t, path),
        toml::Value::Array(a) => {
            let Some((idx, rest)) = path.split_first() else { return false };
            let Ok(i) = idx.parse::<usize>() else { return false };
            if i >= a.len() {
                return false;
            }
            if rest.is_empty() {
                // Keep indexes stable for later messages: blank the element instead.
                a[i] = toml::Value::Table(toml::Table::new());
                true
            } else {
                remove_in_value(&mut a[i], rest)
            }
        }
        _ => false,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The line of the key at `path` in the source, walking the spanned parse tree.
fn span_line(text: &str, root: &toml::de::DeTable<'_>, path: &[String]) -> Option<usize> {
    use toml::de::DeValue;
    let mut table = root;
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    let mut last_span = None;
    for seg in path {
        let item = if let Some(a) = array.take() {
            a.get(seg.parse::<usize>().ok()?)?
        } else {
            let (k, v) = table.get_key_value(seg.as_str())?;
            last_span = Some(k.span());
            v
        };
        if last_span.is_none() {
            last_span = Some(item.span());
        }
        match item.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    last_span.map(|s| line_of(text, s.start))
}

/// The OAuth checks a mailbox and the relay share: `[… .oauth]` present exactly when
/// `auth = "oauth2"`, a client id, and endpoints that make sense.
fn check_oauth(
    auth: MailAuth,
    oauth: Option<&OAuthConfig>,
    section: &str,
    p: &dyn Fn(&str) -> String,
    bad: &mut impl FnMut(String, String),
) {
    match (auth, oauth) {
        (MailAuth::Oauth2, None) => {
            bad(p("oauth"), format!("auth = \"oauth2\" needs {section} with provider and client_id"))
        }
        (MailAuth::Oauth2, Some(o)) => {
            if o.client_id.trim().is_empty() {
                bad(p("oauth.client_id"), "is required (the app registration's client id)".into());
            }
            if o.grant == OAuthGrantType::ClientCredentials {
                if o.client_secret_file.is_none() {
                    bad(
                        p("oauth.client_secret_file"),
                        "grant = \"client_credentials\" signs in with the app's secret: name the file that holds it"
                            .into(),
                    );
                }
                if o.provider == OAuthProvider::Google {
                    bad(p("oauth.grant"), "Google has no client-credentials grant for mail: use the delegated sign-in (inflow oauth login NAME)".into());
                }
            }
            if let Err(e) = crate::oauth::endpoints(o) {
                bad(p("oauth"), e);
            }
        }
        (MailAuth::Password, Some(_)) => {
            bad(p("oauth"), "is set but auth is \"password\": set auth = \"oauth2\" to use it".into())
        }
        (MailAuth::Password, None) => {}
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
        let text = "[database]\nurl = \"mysql://x\"\nbogus = 1\n\n[http]\nlisten = 5\n\n[org]\ntimezone = \"Mars/Base\"\n\n[[mailboxes]]\nname = \"sales\"\nhost = \"imap.example.com\"\ntls = \"plain\"\nuser = \"u\"\npassword = \"p\"\nowner = \"o\"\nfilter = 9\n";
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
                "[[mailboxes]]\nname = \"sales\"\nhost = \"127.0.0.1\"\ntls = \"plain\"\nuser = \"u\"\nowner = \"o\"\npassword_file = \"{f}\"\n"
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

    const EXAMPLE: &str = include_str!("../config/inflow.example.toml");

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

/// `waves.dkim_algorithm` → lettre's algorithm.
pub fn dkim_algorithm(s: &str) -> Option<lettre::message::dkim::DkimSigningAlgorithm> {
    match s {
        "rsa" => Some(lettre::message::dkim::DkimSigningAlgorithm::Rsa),
        "ed25519" => Some(lettre::message::dkim::DkimSigningAlgorithm::Ed25519),
        _ => None,
    }
}
