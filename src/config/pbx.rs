//! `[pbx]`: the call-record webhooks' settings, one section per provider, each one table
//! (one account) or a list of named accounts, plus the lines and the Asterisk and CDR-table
//! readers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
