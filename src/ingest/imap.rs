//! The mailbox worker (DOMAIN §4.1; DESIGN rules 2 and 5): one task per `[[mailboxes]]`
//! entry. It holds the mailbox's lease, connects (implicit TLS, STARTTLS, or plain to
//! loopback), fetches new messages by UID with `BODY.PEEK[]` (never setting \Seen), has
//! them parsed (`ingest::mail`) and applied (`store`), then moves or flags them and only
//! then advances the (UIDVALIDITY, last UID) checkpoint. It waits with IDLE where the
//! server has it, polling otherwise, and reconnects with capped exponential backoff,
//! logging one line per state change. It never deletes mail.
//!
//! Owned by `app::start`, which spawns [`MailboxRuntime::run`] and cancels it through the
//! shared shutdown token; the CLI uses [`MailboxRuntime::replay`] for quarantined mail.

use crate::crm::status::EventStatus;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::Session;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{AutoCreate, Config, MailboxConfig, TlsMode};
use crate::crm::mail::{Create, MailboxPolicy};
use crate::ingest::mail::{self, Malformed};
use crate::store::{BounceRules, MailInput, MailOutcome, Store};

/// Longest a single server round trip may take before the connection counts as lost.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// A batch holds at most this many bytes of mail (besides `batch_size` messages), so memory
/// and each FETCH's duration stay bounded when large messages come in a row.
const BATCH_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// RFC 2177: re-issue IDLE well before the server's 30-minute inactivity limit.
const IDLE_MAX: Duration = Duration::from_secs(25 * 60);

/// The transport under the IMAP client: plain TCP or TLS over TCP.
#[derive(Debug)]
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A batch being applied in the background while the next is fetched.
type BatchTask = tokio::task::JoinHandle<Result<Vec<MailOutcome>, Trouble>>;

/// Why a mailbox is not being worked right now. The kind is what state-change logging
/// compares: a retry that fails the same way logs nothing new.
#[derive(Debug)]
pub enum Trouble {
    /// TCP connect failed or timed out.
    Unreachable(String),
    /// TLS handshake or certificate problem.
    Tls(String),
    /// The server refused the login: wrong user or password.
    Credentials(String),
    /// The OAuth 2.0 grant is dead (revoked, expired) or missing: someone must sign in again.
    AuthExpired(String),
    /// The folder cannot be selected, or the server answered something we cannot use.
    Server(String),
    /// The connection dropped mid-session (server restart, network).
    Lost(String),
    /// The database refused a write.
    Store(crate::store::StoreError),
    /// The batch's task died (a panic): nothing of it was committed.
    Batch(String),
    /// The configured owner is not a CRM user.
    Owner(String),
    /// Another daemon holds the mailbox's lease now: the batch wrote nothing.
    LeaseLost(String),
}

impl Trouble {
    fn kind(&self) -> &'static str {
        match self {
            Trouble::Unreachable(_) => "unreachable",
            Trouble::Tls(_) => "tls_failed",
            Trouble::Credentials(_) => "login_rejected",
            Trouble::AuthExpired(_) => "auth_expired",
            Trouble::Server(_) => "server_error",
            Trouble::Lost(_) => "connection_lost",
            Trouble::Store(_) | Trouble::Batch(_) => "store_error",
            Trouble::Owner(_) => "owner_unknown",
            Trouble::LeaseLost(_) => "standby",
        }
    }
    fn detail(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Trouble::Unreachable(d)
            | Trouble::Tls(d)
            | Trouble::Credentials(d)
            | Trouble::AuthExpired(d)
            | Trouble::Server(d)
            | Trouble::Lost(d)
            | Trouble::Batch(d)
            | Trouble::Owner(d)
            | Trouble::LeaseLost(d) => d.into(),
            Trouble::Store(e) => e.to_string().into(),
        }
    }
}

/// A store error ends the session; a lost lease means another daemon has the mailbox now.
impl From<crate::store::StoreError> for Trouble {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::LeaseLost(d) => Trouble::LeaseLost(d),
            other => Trouble::Store(other),
        }
    }
}

/// XOAUTH2 or OAUTHBEARER: the initial response to the server's empty challenge; to the
/// error challenge a refusing server sends, the mechanism's abort answer, so it ends with NO.
struct Sasl {
    initial: Option<String>,
    abort: &'static str,
}

impl async_imap::Authenticator for Sasl {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        self.initial.take().unwrap_or_else(|| self.abort.to_string())
    }
}

fn lost(e: impl std::fmt::Display) -> Trouble {
    Trouble::Lost(e.to_string())
}

/// One server round trip with a deadline. A NO or BAD answer is the server refusing the
/// command (a missing folder, no permission), not a lost connection.
async fn io<T>(what: &str, f: impl std::future::Future<Output = async_imap::error::Result<T>>) -> Result<T, Trouble> {
    use async_imap::error::Error;
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Error::No(m) | Error::Bad(m))) => Err(Trouble::Server(format!("{what} refused: {}", m.trim()))),
        Ok(Err(e)) => Err(Trouble::Lost(format!("{what}: {e}"))),
        Err(_) => Err(Trouble::Lost(format!("{what}: no answer in {} s", IO_TIMEOUT.as_secs()))),
    }
}

/// One configured mailbox: settings, rules policy and the store.
pub struct MailboxRuntime {
    pub cfg: MailboxConfig,
    store: Store,
    policy_base: MailboxPolicy,
    bounces: BounceRules,
    tz: chrono_tz::Tz,
    /// This daemon's lease holder id.
    holder: String,
    tls: Arc<rustls::ClientConfig>,
    /// The server refused the last XOAUTH2 token: the next attempt refreshes first.
    oauth_refused: std::sync::atomic::AtomicBool,
    tokens: crate::oauth::LazyTokens,
}

use tokio_rustls::rustls;

impl MailboxRuntime {
    pub fn new(cfg: &Config, mb: &MailboxConfig, store: Store, holder: &str) -> anyhow::Result<MailboxRuntime> {
        let policy_base = MailboxPolicy {
            name: mb.name.clone(),
            owner: Uuid::nil(),
            filter: mb.filter,
            create: match mb.auto_create {
                AutoCreate::None => Create::Nothing,
                AutoCreate::Leads => Create::Leads,
                AutoCreate::Contacts => Create::Contacts,
            },
            create_responses: mb.create_responses_for_incoming_email,
            auto_unsubscribe: mb.auto_unsubscribe,
            auto_convert: mb.auto_convert,
            lead_source: mb.default_leadsourcecode,
            sender_hourly_limit: mb.sender_hourly_limit as i64,
            unsubscribe_keywords: cfg.waves.unsubscribe_keywords.clone(),
            unsubscribe_mailto: cfg.waves.unsubscribe_mailto.clone(),
        };
        Ok(MailboxRuntime {
            cfg: mb.clone(),
            policy_base,
            bounces: BounceRules { soft_limit: mb.soft_bounce_limit as i64 },
            tz: cfg.tz(),
            holder: holder.to_string(),
            tls: crate::tls::client_config(mb.tls_ca_file.as_deref())?,
            oauth_refused: std::sync::atomic::AtomicBool::new(false),
            tokens: crate::oauth::LazyTokens::new(store.clone(), cfg.oauth.key.clone()),
            store,
        })
    }

    /// The policy with the owner resolved now (the owner may be created after start).
    async fn policy(&self) -> Result<MailboxPolicy, Trouble> {
        let owner = self.store.resolve_user(&self.cfg.owner).await?;
        let Some(owner) = owner else {
            return Err(Trouble::Owner(format!(
                "owner '{}' is not a CRM user (systemuser id or internal e-mail)",
                self.cfg.owner
            )));
        };
        Ok(MailboxPolicy { owner, ..self.policy_base.clone() })
    }

    /// Parses fetched messages into store inputs (quarantine reasons included).
    fn prepare(&self, msgs: Vec<Fetched>, uidvalidity: u32) -> Vec<MailInput> {
        let limit = self.cfg.max_message_bytes as u64;
        let items: Vec<MailInput> = msgs
            .into_iter()
            .map(|f| {
                let location =
                    format!("imap://{}/{};UIDVALIDITY={}/;UID={}", self.cfg.name, self.cfg.folder, uidvalidity, f.uid);
                match f.body {
                    Body::Full(raw) => {
                        let parsed = mail::parse(&raw, limit);
                        let raw_key = mail::raw_key_if_unread(&parsed, &raw);
                        // Kept for every message: a quarantined or failed one is stored with its
                        // bytes so it can be replayed (the store drops them otherwise).
                        MailInput { raw: Some(raw), parsed, location, raw_key }
                    }
                    Body::HeaderOnly { header, size } => {
                        // Over the limit: quarantined with its headers; the message stays on the
                        // server (in the processed folder) for whoever handles it.
                        let key = mail::raw_key(&header);
                        MailInput {
                            parsed: Err(Malformed::TooBig { size, limit }),
                            raw: Some(header),
                            location,
                            raw_key: key,
                        }
                    }
                }
            })
            .collect();
        items
    }

    /// Applies a batch in one transaction, on a task of its own so the next batch can be
    /// fetched and parsed meanwhile.
    fn commit(
        &self,
        policy: &MailboxPolicy,
        items: Vec<MailInput>,
    ) -> tokio::task::JoinHandle<Result<Vec<MailOutcome>, Trouble>> {
        let (store, policy, bounces, tz) = (self.store.clone(), policy.clone(), self.bounces, self.tz);
        let fence = crate::store::LeaseFence {
            mailbox: self.cfg.name.clone(),
            folder: self.cfg.folder.clone(),
            holder: self.holder.clone(),
        };
        tokio::spawn(
            async move { Ok(store.ingest_mail(&items, &policy, bounces, tz, Utc::now(), Some(&fence)).await?) },
        )
    }

    /// After a batch committed: move or flag its messages, then advance the checkpoint
    /// (renewing the lease). False if the lease was lost.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(level = "debug", skip_all, fields(mailbox = %self.cfg.name, messages = chunk.len()))]
    async fn finish_batch(
        &self,
        s: &mut Session<Conn>,
        chunk: &[(u32, u32)],
        outcomes: &[MailOutcome],
        has_move: bool,
        has_uidplus: bool,
        uidvalidity: u32,
        lease: chrono::Duration,
    ) -> Result<bool, Trouble> {
        let c = &self.cfg;
        crate::failpoint::hit("imap-after-commit");
        for o in outcomes {
            metrics::counter!("inflow_mail_messages_total", "mailbox" => c.name.clone(),
                "class" => o.class.clone().unwrap_or_else(|| "none".into()), "status" => o.status.as_str())
            .increment(1);
            if o.status == EventStatus::Quarantined {
                metrics::counter!("inflow_mail_quarantined_total", "mailbox" => c.name.clone()).increment(1);
            }
            if o.status == EventStatus::Duplicate {
                metrics::counter!("inflow_mail_duplicates_total", "mailbox" => c.name.clone()).increment(1);
            }
            match o.status {
                EventStatus::Quarantined | EventStatus::Failed => {
                    tracing::warn!(mailbox = %c.name, key = %o.key, reason = o.reason.as_deref().unwrap_or(""),
                        "message {}", o.status)
                }
                // Visible without debug logging: the same Message-ID seen again (another
                // mailbox, a re-sent copy, or a different message reusing an id).
                EventStatus::Duplicate => {
                    tracing::info!(mailbox = %c.name, key = %o.key, reason = o.reason.as_deref().unwrap_or(""),
                        "message already seen; nothing new recorded")
                }
                _ => {
                    tracing::debug!(mailbox = %c.name, key = %o.key, status = %o.status,
                        class = o.class.as_deref().unwrap_or(""), "message handled")
                }
            }
        }
        let dups = outcomes.iter().filter(|o| o.status == EventStatus::Duplicate).count() as i64;
        if let Err(e) = self.store.add_mailbox_duplicates(&c.name, &c.folder, dups).await {
            tracing::warn!(mailbox = %c.name, error = %e, "duplicate count not recorded");
        }
        let set = uid_set(chunk.iter().map(|(u, _)| *u));
        match self.mark_processed(s, &set, has_move, has_uidplus).await {
            Ok(()) => {}
            // The records are committed; a refused MOVE/STORE (quota, a bad folder name) must
            // not stall the mailbox on these messages forever. They stay where they are.
            Err(Trouble::Server(m)) => {
                tracing::warn!(mailbox = %c.name, uids = %set, "processed mail could not be moved or flagged \
                    ({m}); it stays in {}", c.folder)
            }
            Err(t) => return Err(t),
        }
        crate::failpoint::hit("imap-before-checkpoint");
        let last_uid = chunk.last().map(|(u, _)| *u).unwrap_or(0);
        self.store
            .save_mailbox_checkpoint(
                &c.name,
                &c.folder,
                &self.holder,
                uidvalidity as i64,
                last_uid as i64,
                lease,
                Utc::now(),
            )
            .await
            .map_err(Trouble::from)
    }

    /// Re-processes a quarantined or failed message from its stored bytes.
    #[tracing::instrument(skip_all, fields(mailbox = %self.cfg.name, event = %ev.id))]
    pub async fn replay(&self, ev: &crate::store::InboundEvent) -> anyhow::Result<MailOutcome> {
        let policy = self.policy().await.map_err(|t| anyhow::anyhow!("{}", t.detail()))?;
        let Some(raw) = ev.raw.clone() else { anyhow::bail!("event {} has no stored bytes to replay", ev.id) };
        if ev.reason.as_deref().is_some_and(|r| r.contains("over the mailbox limit")) {
            anyhow::bail!(
                "event {} was over max_message_bytes: only its header is stored; the whole message is at {}",
                ev.id,
                ev.raw_location.as_deref().unwrap_or("?")
            );
        }
        let limit = self.cfg.max_message_bytes as u64;
        let parsed = mail::parse(&raw, limit);
        let it = MailInput {
            raw_key: mail::raw_key_if_unread(&parsed, &raw),
            raw: Some(raw),
            parsed,
            location: ev.raw_location.clone().unwrap_or_default(),
        };
        Ok(self.store.replay_mail(ev.id, &it, &policy, self.bounces, self.tz, Utc::now()).await?)
    }

    /// Takes or renews the mailbox lease; a holder that is provably gone (a daemon of this
    /// host that died: systemd's restart after a crash) is replaced at once instead of after
    /// `lease_secs`.
    async fn lease_or_take_over(
        &self,
        folder: &str,
        lease: chrono::Duration,
    ) -> Result<bool, crate::store::StoreError> {
        let now = Utc::now();
        if self.store.acquire_mailbox_lease(&self.cfg.name, folder, &self.holder, lease, now).await? {
            return Ok(true);
        }
        let held_by = self.store.mailbox_state(&self.cfg.name, folder).await?.and_then(|s| s.lease_holder);
        match held_by {
            Some(old) if crate::lease::is_gone(&old, &crate::lease::hostname()) => {
                let taken =
                    self.store.take_over_mailbox_lease(&self.cfg.name, folder, &old, &self.holder, lease, now).await?;
                if taken {
                    tracing::info!(mailbox = %self.cfg.name, previous = %old, "took over the lease of a daemon \
                        that is gone");
                }
                Ok(taken)
            }
            _ => Ok(false),
        }
    }

    /// The worker: lease, connect, fetch, wait; until `token` is cancelled.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let max_backoff = Duration::from_secs(self.cfg.max_backoff_secs.max(1));
        let lease = chrono::Duration::seconds(self.cfg.lease_secs as i64);
        let mut last: Option<String> = None;
        let folder = self.cfg.folder.clone();
        while !token.is_cancelled() {
            match self.lease_or_take_over(&folder, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    self.report(&mut last, "standby", "another daemon holds this mailbox's lease").await;
                    if sleep_or_cancel(&token, Duration::from_secs(self.cfg.lease_secs / 3 + 1)).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    self.report(&mut last, "store_error", &e.to_string()).await;
                    if sleep_or_cancel(&token, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(max_backoff);
                    continue;
                }
            }
            let mut connected = false;
            let r = self.session(&token, &mut last, &mut connected).await;
            if connected {
                backoff = Duration::from_secs(1);
            }
            match r {
                Ok(()) => {}
                Err(t) => {
                    self.report(&mut last, t.kind(), &t.detail()).await;
                    if sleep_or_cancel(&token, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
        let _ = self.store.release_mailbox_lease(&self.cfg.name, &folder, &self.holder).await;
        tracing::info!(mailbox = %self.cfg.name, "mailbox worker stopped");
    }

    /// Logs and records a state change (once per change, not per retry).
    async fn report(&self, last: &mut Option<String>, state: &str, detail: &str) {
        if last.as_deref() == Some(state) {
            return;
        }
        let m = &self.cfg.name;
        match state {
            "connected" => tracing::info!(mailbox = %m, host = %self.cfg.host, folder = %self.cfg.folder, "{detail}"),
            "standby" => tracing::info!(mailbox = %m, "standby: {detail}"),
            "login_rejected" => {
                tracing::error!(mailbox = %m, user = %self.cfg.user, "login rejected: wrong user or password \
                    ({detail}); retrying with backoff")
            }
            "owner_unknown" => tracing::error!(mailbox = %m, "{detail}; retrying with backoff"),
            "auth_expired" => tracing::error!(mailbox = %m, "{detail}; nothing is fetched until then"),
            "tls_failed" => {
                tracing::error!(mailbox = %m, host = %self.cfg.host, "TLS failed: {detail}; retrying with backoff")
            }
            "unreachable" => {
                tracing::warn!(mailbox = %m, host = %self.cfg.host, port = self.cfg.port, "server unreachable: \
                    {detail}; retrying with backoff")
            }
            "connection_lost" => tracing::warn!(mailbox = %m, "connection lost: {detail}; reconnecting with backoff"),
            _ => tracing::warn!(mailbox = %m, state, "{detail}"),
        }
        *last = Some(state.to_string());
        // Counted in memory as well: when the database itself is the trouble (a full disk,
        // an outage), the state row below cannot be written, and this is what shows it.
        if !matches!(state, "connected" | "standby") {
            metrics::counter!("inflow_mailbox_errors_total", "mailbox" => m.clone(), "state" => state.to_string())
                .increment(1);
        }
        let _ = self
            .store
            .set_mailbox_status(&self.cfg.name, &self.cfg.folder, state, Some(detail), false, Utc::now())
            .await;
    }

    #[tracing::instrument(level = "debug", skip_all, fields(mailbox = %self.cfg.name, host = %self.cfg.host))]
    /// A signed-in session, and for an OAuth sign-in the time its token stops being good.
    async fn connect(&self) -> Result<(Session<Conn>, Option<DateTime<Utc>>), Trouble> {
        let c = &self.cfg;
        let tcp =
            match tokio::time::timeout(Duration::from_secs(30), TcpStream::connect((c.host.as_str(), c.port))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(Trouble::Unreachable(format!("{}:{}: {e}", c.host, c.port))),
                Err(_) => return Err(Trouble::Unreachable(format!("{}:{}: connect timed out", c.host, c.port))),
            };
        let _ = tcp.set_nodelay(true);
        let tls = |tcp: TcpStream| async move {
            let name = rustls::pki_types::ServerName::try_from(c.host.clone())
                .map_err(|e| Trouble::Tls(format!("'{}': {e}", c.host)))?;
            let s = tokio::time::timeout(
                Duration::from_secs(30),
                tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| Trouble::Tls("handshake timed out".into()))?
            .map_err(|e| Trouble::Tls(e.to_string()))?;
            Ok::<_, Trouble>(Conn::Tls(Box::new(s)))
        };
        let mut client = match c.tls {
            TlsMode::Implicit => async_imap::Client::new(tls(tcp).await?),
            TlsMode::Plain | TlsMode::Starttls => async_imap::Client::new(Conn::Plain(tcp)),
        };
        // The greeting comes first (also before STARTTLS, which has no second greeting).
        match io("greeting", async { client.read_response().await.map_err(async_imap::error::Error::from) }).await? {
            Some(_) => {}
            None => return Err(Trouble::Lost("server closed the connection before its greeting".into())),
        }
        if c.tls == TlsMode::Starttls {
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| Trouble::Tls(format!("STARTTLS refused: {e}")))?;
            let Conn::Plain(tcp) = client.into_inner() else { unreachable!("STARTTLS starts on plain TCP") };
            client = async_imap::Client::new(tls(tcp).await?);
        }
        if let (crate::config::MailAuth::Oauth2, Some(o)) = (c.auth, &c.oauth) {
            return self.authenticate(client, o).await;
        }
        let password = c.password.clone().unwrap_or_default();
        match tokio::time::timeout(IO_TIMEOUT, client.login(&c.user, &password)).await {
            Err(_) => Err(Trouble::Lost("login: no answer".into())),
            Ok(Ok(s)) => Ok((s, None)),
            Ok(Err((async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m), _))) => {
                Err(Trouble::Credentials(m.trim().to_string()))
            }
            Ok(Err((e, _))) => Err(lost(format!("login: {e}"))),
        }
    }

    /// SASL XOAUTH2 with the grant's access token. A refusal with a token that was not just
    /// refreshed gets one refresh and one retry on a new connection's next attempt.
    async fn authenticate(
        &self,
        client: async_imap::Client<Conn>,
        o: &crate::config::OAuthConfig,
    ) -> Result<(Session<Conn>, Option<DateTime<Utc>>), Trouble> {
        use crate::oauth::OAuthError;
        let trouble = |e: OAuthError| match e {
            e if e.needs_person() => Trouble::AuthExpired(e.to_string()),
            OAuthError::Store(e) => e.into(),
            e => Trouble::Unreachable(e.to_string()),
        };
        let c = &self.cfg;
        let fresh = self.oauth_refused.swap(false, std::sync::atomic::Ordering::Relaxed);
        let tokens = self.tokens.get().await.map_err(trouble)?;
        let (token, until) = tokens.access_token_until(&c.name, o, fresh).await.map_err(trouble)?;
        let (mechanism, initial) = crate::oauth::sasl(o.mechanism, &c.user, &c.host, c.port, &token);
        let auth = Sasl { initial: Some(initial), abort: crate::oauth::sasl_abort(o.mechanism) };
        match tokio::time::timeout(IO_TIMEOUT, client.authenticate(mechanism, auth)).await {
            Err(_) => Err(Trouble::Lost("AUTHENTICATE: no answer".into())),
            Ok(Ok(s)) => Ok((s, Some(until))),
            Ok(Err((async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m), _))) => {
                if fresh {
                    Err(Trouble::Credentials(format!("{mechanism} refused with a fresh token: {}", m.trim())))
                } else {
                    // The token may have been revoked early: refresh before the next attempt.
                    self.oauth_refused.store(true, std::sync::atomic::Ordering::Relaxed);
                    Err(Trouble::Lost(format!("{mechanism} refused ({}): refreshing the token", m.trim())))
                }
            }
            Ok(Err((e, _))) => Err(lost(format!("AUTHENTICATE: {e}"))),
        }
    }

    async fn session(
        &self,
        token: &CancellationToken,
        last: &mut Option<String>,
        connected: &mut bool,
    ) -> Result<(), Trouble> {
        let policy = self.policy().await?;
        let (mut s, token_until) = self.connect().await?;
        let caps = io("CAPABILITY", s.capabilities()).await?;
        let has_idle = caps.has_str("IDLE");
        let has_move = caps.has_str("MOVE");
        let has_uidplus = caps.has_str("UIDPLUS");
        let c = &self.cfg;
        if let Some(dest) = &c.processed_folder {
            // Exists already → NO [ALREADYEXISTS]: fine.
            let _ = io("CREATE", s.create(utf7_imap(dest))).await;
        }
        let mb = match tokio::time::timeout(IO_TIMEOUT, s.select(utf7_imap(&c.folder))).await {
            Ok(Ok(mb)) => mb,
            Ok(Err(async_imap::error::Error::No(m))) => {
                return Err(Trouble::Server(format!("cannot select folder '{}': {m}", c.folder)));
            }
            Ok(Err(e)) => return Err(lost(format!("SELECT: {e}"))),
            Err(_) => return Err(Trouble::Lost("SELECT: no answer".into())),
        };
        let Some(uidvalidity) = mb.uid_validity else {
            return Err(Trouble::Server("the server sent no UIDVALIDITY".into()));
        };
        let state = self.store.mailbox_state(&c.name, &c.folder).await?;
        let mut last_uid: u32 = match &state {
            Some(st) if st.uidvalidity == Some(uidvalidity as i64) => st.last_uid as u32,
            Some(st) if st.uidvalidity.is_some() => {
                tracing::warn!(mailbox = %c.name, old = st.uidvalidity, new = uidvalidity, "UIDVALIDITY \
                    changed: rescanning the folder (already-seen messages are recognised by Message-ID)");
                0
            }
            _ => 0,
        };
        *connected = true;
        self.report(
            last,
            "connected",
            &format!(
                "connected ({}; IDLE {})",
                if c.processed_folder.is_some() { "moving processed mail" } else { "flagging processed mail" },
                if has_idle && c.idle { "on" } else { "off" }
            ),
        )
        .await;
        let lease = chrono::Duration::seconds(c.lease_secs as i64);
        let wait_max = Duration::from_secs(c.poll_interval_secs.min(c.lease_secs / 3).max(1)).min(IDLE_MAX);
        loop {
            if token.is_cancelled() {
                let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
                return Ok(());
            }
            // Servers may keep a session whose token has expired, or may not (Gmail): sign in
            // again with a fresh one before it dies rather than find out mid-batch.
            if token_until.is_some_and(|t| t <= Utc::now()) {
                tracing::info!(mailbox = %c.name, "the access token is about to expire: reconnecting with a fresh one");
                let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
                return Ok(());
            }
            if !self.store.acquire_mailbox_lease(&c.name, &c.folder, &self.holder, lease, Utc::now()).await? {
                tracing::warn!(mailbox = %c.name, "lease lost to another daemon; stepping back");
                let _ = tokio::time::timeout(Duration::from_secs(5), s.logout()).await;
                return Ok(());
            }
            // New messages by UID (a `n:*` range always returns the last message: filter).
            // Each response is reduced to (UID, size) as it arrives: async-imap gives every
            // response its own read buffer (about 6 KB), so collecting 10,000 of them first
            // held 64 MB.
            let sizes: Vec<(u32, u32)> = {
                let stream =
                    io("UID FETCH sizes", s.uid_fetch(format!("{}:*", last_uid + 1), "(UID RFC822.SIZE)")).await?;
                let sized = stream.try_filter_map(|f| {
                    std::future::ready(Ok(f.uid.map(|u| (u, f.size.unwrap_or(0))).filter(|(u, _)| *u > last_uid)))
                });
                let mut v: Vec<(u32, u32)> = io("UID FETCH sizes", sized.try_collect::<Vec<_>>()).await?;
                v.sort_unstable();
                v
            };
            // A two-stage pipeline: batch N commits on its own task while batch N+1 is
            // fetched and parsed; N's messages are moved and checkpointed only after its
            // commit, before N+1 is applied.
            let chunks = batches(&sizes, c.batch_size.max(1) as usize, BATCH_MAX_BYTES);
            let mut next = 0;
            let mut in_flight: Option<(BatchTask, &[(u32, u32)])> = None;
            loop {
                // Shutdown between batches: everything before is committed and checkpointed.
                let fetched = if next < chunks.len() && !token.is_cancelled() {
                    next += 1;
                    Some((chunks[next - 1], self.fetch_chunk(&mut s, chunks[next - 1]).await))
                } else {
                    None
                };
                if let Some((h, done)) = in_flight.take() {
                    let outcomes = h.await.map_err(|e| Trouble::Batch(e.to_string()))??;
                    if !self.finish_batch(&mut s, done, &outcomes, has_move, has_uidplus, uidvalidity, lease).await? {
                        tracing::warn!(mailbox = %c.name, "lease lost before the checkpoint; stepping back");
                        return Ok(());
                    }
                    last_uid = done.last().map(|(u, _)| *u).unwrap_or(last_uid);
                }
                let Some((chunk, msgs)) = fetched else { break };
                let msgs = msgs?;
                let done = &chunk[..msgs.len()];
                if done.len() < chunk.len() {
                    // Stop after this prefix: nothing past the missing UID may be checkpointed.
                    next = chunks.len();
                }
                let items = self.prepare(msgs, uidvalidity);
                in_flight = Some((self.commit(&policy, items), done));
            }
            if sizes.is_empty() {
                // Record the poll even when nothing came, so "last successful poll" is true.
                let _ = self
                    .store
                    .save_mailbox_checkpoint(
                        &c.name,
                        &c.folder,
                        &self.holder,
                        uidvalidity as i64,
                        last_uid as i64,
                        lease,
                        Utc::now(),
                    )
                    .await;
            }
            // Wait for new mail: IDLE where offered, else sleep until the next poll; never past
            // the token's end.
            let wait_max = match token_until {
                Some(t) => wait_max.min((t - Utc::now()).to_std().unwrap_or_default().max(Duration::from_millis(100))),
                None => wait_max,
            };
            if c.idle && has_idle {
                let mut idle = s.idle();
                io("IDLE", idle.init()).await?;
                let waited = {
                    let (wait, stop) = idle.wait_with_timeout(wait_max);
                    let mut wait = std::pin::pin!(wait);
                    // An overall deadline too: the server's keepalives ("* OK Still here") may
                    // restart async-imap's inactivity timeout, and the lease needs renewing.
                    tokio::select! {
                        r = &mut wait => r.map(|_| ()),
                        _ = token.cancelled() => {
                            drop(stop);
                            wait.await.map(|_| ())
                        }
                        _ = tokio::time::sleep(wait_max + Duration::from_secs(1)) => {
                            drop(stop);
                            wait.await.map(|_| ())
                        }
                    }
                };
                waited.map_err(|e| lost(format!("IDLE: {e}")))?;
                s = io("DONE", idle.done()).await?;
            } else if sleep_or_cancel(token, wait_max).await {
                continue;
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(mailbox = %self.cfg.name, messages = chunk.len()))]
    async fn fetch_chunk(&self, s: &mut Session<Conn>, chunk: &[(u32, u32)]) -> Result<Vec<Fetched>, Trouble> {
        let limit = self.cfg.max_message_bytes as u64;
        let (small, big): (Vec<_>, Vec<_>) = chunk.iter().partition(|(_, size)| (*size as u64) <= limit);
        let mut out: Vec<Fetched> = Vec::with_capacity(chunk.len());
        if !small.is_empty() {
            // Each body is copied out as its response arrives, and the response (with its
            // read buffer) dropped.
            let stream =
                io("UID FETCH", s.uid_fetch(uid_set(small.iter().map(|(u, _)| *u)), "(UID BODY.PEEK[])")).await?;
            let bodies = stream.try_filter_map(|f| {
                std::future::ready(Ok(f
                    .uid
                    .zip(f.body())
                    .map(|(uid, body)| Fetched { uid, body: Body::Full(body.to_vec()) })))
            });
            out.extend(io("UID FETCH", bodies.try_collect::<Vec<_>>()).await?);
        }
        if !big.is_empty() {
            let stream = io(
                "UID FETCH headers",
                s.uid_fetch(uid_set(big.iter().map(|(u, _)| *u)), "(UID RFC822.SIZE BODY.PEEK[HEADER])"),
            )
            .await?;
            let headers = stream.try_filter_map(|f| {
                std::future::ready(Ok(f.uid.map(|uid| Fetched {
                    uid,
                    body: Body::HeaderOnly {
                        header: f.header().unwrap_or_default().to_vec(),
                        size: f.size.unwrap_or(0) as u64,
                    },
                })))
            });
            out.extend(io("UID FETCH headers", headers.try_collect::<Vec<_>>()).await?);
        }
        // async-imap ends a FETCH stream at the tagged reply without telling NO from OK, so a
        // UID without its body (a transient "NO Some messages could not be FETCHed", or one
        // expunged meanwhile) is not processed, moved or checkpointed: only the prefix before
        // it is; the next round fetches from there again.
        out.sort_by_key(|f| f.uid);
        let prefix = chunk.iter().zip(out.iter()).take_while(|((u, _), f)| *u == f.uid).count();
        if prefix < chunk.len() {
            let missing = chunk[prefix].0;
            if prefix == 0 {
                return Err(Trouble::Server(format!("the server returned no body for UID {missing}; retrying")));
            }
            tracing::warn!(mailbox = %self.cfg.name, uid = missing, "no body returned for a UID; this batch \
                stops before it");
            out.truncate(prefix);
        }
        Ok(out)
    }

    /// Moves processed mail to the configured folder (MOVE, or COPY + \Deleted + UID
    /// EXPUNGE of exactly those UIDs), or flags it. Never deletes without a copy.
    async fn mark_processed(
        &self,
        s: &mut Session<Conn>,
        set: &str,
        has_move: bool,
        has_uidplus: bool,
    ) -> Result<(), Trouble> {
        match &self.cfg.processed_folder {
            Some(dest) if has_move => io("UID MOVE", s.uid_mv(set, utf7_imap(dest))).await,
            Some(dest) if has_uidplus => {
                io("UID COPY", s.uid_copy(set, utf7_imap(dest))).await?;
                let st = io("UID STORE", s.uid_store(set, "+FLAGS.SILENT (\\Deleted)")).await?;
                io("UID STORE", st.try_collect::<Vec<_>>()).await?;
                let ex = io("UID EXPUNGE", s.uid_expunge(set)).await?;
                io("UID EXPUNGE", ex.try_collect::<Vec<_>>()).await?;
                Ok(())
            }
            _ => {
                let st =
                    io("UID STORE", s.uid_store(set, format!("+FLAGS.SILENT ({})", self.cfg.processed_flag))).await?;
                io("UID STORE", st.try_collect::<Vec<_>>()).await?;
                Ok(())
            }
        }
    }
}

/// A fetched message: whole, or only its header when over the size limit.
pub struct Fetched {
    pub uid: u32,
    pub body: Body,
}

pub enum Body {
    Full(Vec<u8>),
    HeaderOnly { header: Vec<u8>, size: u64 },
}

/// A mailbox name in IMAP's modified UTF-7 (RFC 3501 §5.1.3): printable ASCII as is ("&"
/// as "&-"), anything else as modified base64 of UTF-16 between "&" and "-".
pub fn utf7_imap(name: &str) -> String {
    use base64::Engine;
    let b64 =
        base64::engine::GeneralPurpose::new(&base64::alphabet::IMAP_MUTF7, base64::engine::general_purpose::NO_PAD);
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&b64.encode(bytes));
            out.push('-');
            run.clear();
        }
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            out.push(ch);
            if ch == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Splits (uid, size) pairs into consecutive batches of at most `count` messages and
/// `max_bytes` bytes (a single larger message forms a batch of its own).
pub fn batches(sizes: &[(u32, u32)], count: usize, max_bytes: u64) -> Vec<&[(u32, u32)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, size)) in sizes.iter().enumerate() {
        let n = i - start;
        if n > 0 && (n >= count || bytes + *size as u64 > max_bytes) {
            out.push(&sizes[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += *size as u64;
    }
    if start < sizes.len() {
        out.push(&sizes[start..]);
    }
    out
}

/// `1,2,5:9`-style UID set from sorted UIDs.
pub fn uid_set(uids: impl IntoIterator<Item = u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for u in uids {
        run = match run {
            Some((a, b)) if u == b + 1 => Some((a, u)),
            Some((a, b)) => {
                out.push(if a == b { a.to_string() } else { format!("{a}:{b}") });
                Some((u, u))
            }
            None => Some((u, u)),
        };
    }
    if let Some((a, b)) = run {
        out.push(if a == b { a.to_string() } else { format!("{a}:{b}") });
    }
    out.join(",")
}

/// Sleeps unless cancelled first; true if cancelled.
async fn sleep_or_cancel(token: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = token.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn folder_names_in_modified_utf7() {
        // RFC 3501 §5.1.3's example, and a Cyrillic name as Dovecot stores it.
        assert_eq!(super::utf7_imap("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(super::utf7_imap("Обработанные"), "&BB4EMQRABDAEMQQ+BEIEMAQ9BD0ESwQ1-");
        assert_eq!(super::utf7_imap("A&B"), "A&-B");
        assert_eq!(super::utf7_imap("INBOX"), "INBOX");
    }

    #[test]
    fn batches_are_capped_by_count_and_bytes() {
        let sizes: Vec<(u32, u32)> = vec![(1, 10), (2, 10), (3, 10), (4, 100), (5, 10)];
        let b = super::batches(&sizes, 2, 1000);
        assert_eq!(b.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
        let b = super::batches(&sizes, 50, 35);
        assert_eq!(
            b.iter().map(|c| c.iter().map(|(u, _)| *u).collect::<Vec<_>>()).collect::<Vec<_>>(),
            vec![vec![1, 2, 3], vec![4], vec![5]]
        );
        assert!(super::batches(&[], 50, 35).is_empty());
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(super::uid_set([1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(super::uid_set([4]), "4");
        assert_eq!(super::uid_set([]), "");
    }
}
