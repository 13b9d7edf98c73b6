//! The wave sender: starts due waves (expansion in `store::waves`), claims due deliveries
//! under a lease and the relay's rate, renders each message (minijinja), sends it over a
//! few long-lived SMTP connections (lettre's connection API, so a refused recipient is told
//! apart from a refused sender and the connection survives a 5xx), and records outcomes in
//! group commits. Also: template checks at schedule time, test sends that touch no counts,
//! and the signed unsubscribe links (RFC 8058 one-click).
//!
//! Who owns what: the claim loop owns the job sender; K sender tasks share the job receiver
//! and each owns one SMTP connection; the recorder owns the result receiver and is the only
//! writer of outcomes. Shutdown: the loop stops claiming, senders hand unsent jobs back as
//! `Released`, the recorder commits everything it got, then the holder's claims are released.
//!
//! Here: the runtime (claim loop, senders, recorder), scheduling and test sends. Beside it:
//! `message` (templates and bodies), `session` (pipelined SMTP transactions), `links`
//! (signed unsubscribe links) and `settings`; the relay itself is `crate::smtp`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use lettre::Address;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::crm::waves::{Stage, Verdict, classify, retry_delay};
use crate::store::waves::{ClaimedDelivery, DeliveryOutcome, DeliveryResult, ExpandOptions, WaveRow, WaveSchedule};
use crate::store::{Store, StoreError};

mod links;
mod message;
mod session;
mod settings;

pub use links::*;
pub use message::*;
use session::*;
pub use settings::*;

/// Our correlation header (the IMAP ingest reads it back from replies and bounces).
pub const XHEADER_ACTIVITY: &str = crate::crm::inbound::XHEADER_ACTIVITY;

pub use crate::smtp::Relay;

/// How long the recorder gathers outcomes into one commit. Bounds the extra latency of a
/// result, and with it what a crash can leave accepted but unrecorded.
const GROUP_COMMIT_MS: u64 = 10;

/// Process-wide counters of the crash-test failpoints.
static ATTEMPTED: AtomicUsize = AtomicUsize::new(0);
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

/// The wave failpoints (`crate::failpoint`): `wave-before-smtp:N` before the N-th SMTP
/// attempt; `wave-after-smtp:N` right after the relay accepted the N-th message, before its
/// commit; `wave-mid-expansion:N` right after the N-th expansion chunk committed.
fn failpoint(name: &str, n: usize) {
    crate::failpoint::hit_nth(name, n);
}

/// One message ready for SMTP.
struct Job {
    d: ClaimedDelivery,
    wave: Arc<(WaveRow, Templates)>,
}

/// The sender runtime of one daemon.
pub struct WaveRuntime {
    pub store: Store,
    pub relay: Relay,
    pub s: WaveSettings,
    pub holder: String,
    pub signer: LinkSigner,
    waves: Mutex<HashMap<Uuid, Arc<(WaveRow, Templates)>>>,
    /// Epoch ms until which no session sends (after a throttle or an unusable relay).
    backoff_until: std::sync::atomic::AtomicI64,
}

/// What one message looks like on the wire, for a delivery or a test send.
pub struct Built {
    pub from: Address,
    pub to: Address,
    pub bytes: Vec<u8>,
}

impl WaveRuntime {
    pub fn new(store: Store, relay: Relay, s: WaveSettings, holder: &str, signer: LinkSigner) -> WaveRuntime {
        WaveRuntime {
            store,
            relay,
            s,
            holder: holder.to_string(),
            signer,
            waves: Mutex::new(HashMap::new()),
            backoff_until: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// SQLite's one writer: the claim loop, the recorder and the expansion take turns
    /// (`store::WriteGate`). On PostgreSQL their transactions touch different rows and run
    /// side by side.
    async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.store.gate.turn().await
    }

    /// The unsubscribe URL of a delivery.
    pub fn unsubscribe_url(&self, delivery: Uuid) -> String {
        format!("{}/u/{}", self.s.base_url, self.signer.token(delivery))
    }

    fn expand_options<'a>(&'a self, subject: &'a crate::store::waves::SubjectRenderer) -> ExpandOptions<'a> {
        ExpandOptions {
            tz: self.s.tz,
            message_id_domain: self.s.message_id_domain.clone(),
            allow_optout_override: self.s.allow_optout_override,
            subject,
            chunk: self.s.expansion_chunk,
            lease: self.s.lease,
            after_chunk: &|n| failpoint("wave-mid-expansion", n),
        }
    }

    /// Starts due waves, resumes expansions a dead daemon left, and completes finished
    /// waves (each daemon may do it: the state
    /// changes are conditional, so a wave starts and completes once).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        // Compiled once per wave, not once per recipient.
        let compiled: std::sync::Mutex<HashMap<Uuid, Arc<Templates>>> = std::sync::Mutex::new(HashMap::new());
        let render = |w: &WaveRow, vars: &serde_json::Map<String, serde_json::Value>| {
            let t = {
                let mut c = compiled.lock().map_err(|_| "template cache poisoned".to_string())?;
                match c.get(&w.activity_id) {
                    Some(t) => t.clone(),
                    None => {
                        let t = Arc::new(Templates::compile(&w.schedule)?);
                        c.insert(w.activity_id, t.clone());
                        t
                    }
                }
            };
            t.subject(vars)
        };
        let opts = self.expand_options(&render);
        for o in self.store.start_due_waves(now, &opts).await? {
            tracing::info!(outcome = ?o, "wave start");
        }
        for w in self.store.resume_expansions(now, &opts).await? {
            tracing::info!(wave = %w, "wave expansion resumed");
        }
        for w in self.store.finish_waves(now, self.s.tz).await? {
            tracing::info!(wave = %w, "wave completed");
        }
        Ok(())
    }

    /// A wave's row and compiled templates; the error says whether it is permanent (the
    /// templates do not compile) or passing (the database).
    async fn wave(&self, id: Uuid) -> Result<Arc<(WaveRow, Templates)>, (bool, String)> {
        let mut cache = self.waves.lock().await;
        if let Some(w) = cache.get(&id) {
            return Ok(w.clone());
        }
        let row = self.store.wave(id).await.map_err(|e| (false, e.to_string()))?;
        let t = Templates::compile(&row.schedule).map_err(|e| (true, e))?;
        let w = Arc::new((row, t));
        cache.insert(id, w.clone());
        Ok(w)
    }

    /// Renders and builds one wave message: personalised subject/text/HTML, our Message-ID,
    /// X-header and token, List-Unsubscribe (https + mailto) with One-Click (RFC 8058).
    pub fn build(
        &self,
        wave: &WaveRow,
        t: &Templates,
        d: &ClaimedDelivery,
        test: bool,
        eightbit: bool,
    ) -> Result<Built, String> {
        let url = if test { format!("{}/u/test", self.s.base_url) } else { self.unsubscribe_url(d.id) };
        let mut vars = d.vars.clone();
        vars.insert("unsubscribe_url".into(), url.clone().into());
        vars.insert("campaign_code".into(), d.token.clone().into());
        let subject = if test {
            format!("[TEST] {}", t.subject(&vars)?)
        } else if d.subject.is_empty() {
            t.subject(&vars)?
        } else {
            d.subject.clone()
        };
        let text = t.render("body.txt", &vars)?;
        let from_addr: Address = wave.schedule.from_address.parse().map_err(|e| format!("from address: {e}"))?;
        let to_addr: Address =
            d.written.parse().or_else(|_| d.address.parse()).map_err(|e| format!("recipient address: {e}"))?;
        let mut b = lettre::Message::builder()
            .from(Mailbox::new(wave.schedule.from_name.clone(), from_addr.clone()))
            .to(Mailbox::new(None, to_addr.clone()))
            .subject(subject)
            .message_id(Some(format!("<{}>", d.message_id)));
        if let Some(r) = &wave.schedule.reply_to {
            b = b.reply_to(r.parse().map_err(|e| format!("reply-to: {e}"))?);
        }
        let mut unsub = format!("<{url}>");
        if let Some(m) = &self.s.mailto {
            unsub.push_str(&format!(", <mailto:{m}?subject=unsubscribe%20{}>", d.token.replace(':', "%3A")));
        }
        if !test {
            b = b
                .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(XHEADER_ACTIVITY), d.id.to_string()))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str(crate::crm::inbound::XHEADER_TOKEN),
                    d.token.clone(),
                ));
        }
        b = b.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), unsub)).raw_header(
            HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ),
        );
        let part =
            |ctype: ContentType, body: String| SinglePart::builder().header(ctype).body(transfer_body(body, eightbit));
        // Long paragraphs go as format=flowed (RFC 3676) so the text part can stay 8-bit.
        let (text_type, text) = if eightbit && text.lines().any(|l| l.len() > FLOW_WIDTH) {
            (ContentType::parse("text/plain; charset=utf-8; format=flowed").map_err(|e| e.to_string())?, flowed(&text))
        } else {
            (ContentType::TEXT_PLAIN, text)
        };
        let msg = if t.has_html {
            let html = t.render("body.html", &vars)?;
            b.multipart(
                MultiPart::alternative()
                    .singlepart(part(text_type, text))
                    .singlepart(part(ContentType::TEXT_HTML, html)),
            )
        } else {
            b.singlepart(part(text_type, text))
        }
        .map_err(|e| e.to_string())?;
        let mut msg = msg;
        if let Some(d) = &self.s.dkim {
            msg.sign(d);
        }
        let envelope_from: Address = match &self.s.bounce_address {
            Some(a) => a.parse().map_err(|e| format!("bounce address: {e}"))?,
            None => from_addr,
        };
        Ok(Built { from: envelope_from, to: to_addr, bytes: msg.formatted() })
    }

    /// Sends a wave's message to `to` as a test: rendered with fallbacks (or `vars`), marked
    /// [TEST], no X-header; no delivery row, no counts, no activity.
    pub async fn test_send(
        &self,
        wave: Uuid,
        to: &str,
        vars: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        let row = self.store.wave(wave).await?;
        let t = Templates::compile(&row.schedule).map_err(|e| anyhow::anyhow!(e))?;
        let d = ClaimedDelivery {
            id: Uuid::new_v4(),
            wave_id: wave,
            address: to.to_string(),
            written: to.to_string(),
            member: crate::crm::EntityRef::new(crate::crm::EntityKind::Contact, Uuid::nil()),
            message_id: format!("test.{}@{}", Uuid::new_v4().simple(), self.s.message_id_domain),
            token: "CRM:TEST".into(),
            vars,
            attempts: 0,
            subject: String::new(),
            claimed_until: Utc::now() + chrono::Duration::hours(1),
        };
        let built = self.build(&row, &t, &d, true, false).map_err(|e| anyhow::anyhow!(e))?;
        let mut conn = self.relay.connect().await.map_err(|e| anyhow::anyhow!(e))?;
        transact(&mut conn, false, &built.from, &built.to, &built.bytes)
            .await
            .map_err(|(stage, e)| anyhow::anyhow!("{stage:?}: {e}"))?;
        let _ = conn.quit().await;
        Ok(())
    }

    /// Runs until `token` is cancelled.
    /// Takes back the claims of a daemon of this host that is gone (restarted by systemd
    /// after a crash) instead of waiting `claim_lease_secs` for them to run out. Its messages
    /// in flight may go again — as they would once the claims ran out: the stated bound.
    async fn take_back_dead_claims(&self) {
        let host = crate::lease::hostname();
        let holders = match self.store.claim_holders().await {
            Ok(h) => h,
            Err(e) => return tracing::warn!(error = %e, "could not look for a dead daemon's claims; they run out"),
        };
        for h in holders.iter().filter(|h| crate::lease::is_gone(h, &host)) {
            match self.store.release_claims(h, Utc::now()).await {
                Ok(n) => tracing::info!(previous = %h, deliveries = n, "took back the claims of a daemon that is gone"),
                Err(e) => tracing::warn!(previous = %h, error = %e, "could not take back a dead daemon's claims"),
            }
        }
    }

    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        self.take_back_dead_claims().await;
        let (job_tx, job_rx) = mpsc::channel::<Job>(self.s.batch * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel::<(DeliveryResult, Option<String>)>(self.s.batch * 4);
        let inflight = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(Notify::new());
        let mut senders = Vec::new();
        for _ in 0..self.s.pool {
            senders.push(tokio::spawn(self.clone().sender(job_rx.clone(), res_tx.clone(), token.clone())));
        }
        // The claim loop hands deliveries it cannot start back through the recorder too.
        let res_tx_claim = res_tx.clone();
        drop(res_tx);
        let recorder = tokio::spawn(self.clone().recorder(res_rx, inflight.clone(), notify.clone()));
        let max_inflight = self.s.batch * 2;
        // Starting (expanding) and completing waves runs beside the claims, so a big wave
        // starts sending after its first expansion chunk.
        let scanner = {
            let rt = self.clone();
            let token = token.clone();
            let notify = notify.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = rt.tick(Utc::now()).await {
                        tracing::warn!(error = %e, "wave scan failed; retrying");
                    }
                    notify.notify_one();
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(rt.s.poll) => {}
                    }
                }
            })
        };
        let mut trouble = false;
        loop {
            if token.is_cancelled() {
                break;
            }
            let now = Utc::now();
            // Claim in big batches (each claim is a transaction): only once half a batch of
            // room is free, or when nothing is in flight at all.
            let busy = inflight.load(Ordering::Acquire);
            let room = max_inflight.saturating_sub(busy).min(self.s.batch);
            if room == 0 || (busy > 0 && room < self.s.batch.div_ceil(2)) {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(self.s.poll) => {}
                }
                continue;
            }
            let claimed = {
                let _turn = self.turn().await;
                self.store
                    .claim_deliveries(&self.holder, &self.relay.key, self.s.relay_rate, room, self.s.lease, now)
                    .await
            };
            let claim = match claimed {
                Ok(c) => {
                    if trouble {
                        tracing::info!("wave claims work again");
                        trouble = false;
                    }
                    c
                }
                Err(e) => {
                    if !trouble {
                        tracing::warn!(error = %e, "cannot claim deliveries; retrying");
                        trouble = true;
                    }
                    tokio::select! { _ = token.cancelled() => break, _ = tokio::time::sleep(self.s.poll) => {} }
                    continue;
                }
            };
            if claim.items.is_empty() {
                let wait = claim.wait.unwrap_or(self.s.poll).min(self.s.poll);
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            inflight.fetch_add(claim.items.len(), Ordering::AcqRel);
            for d in claim.items {
                match self.wave(d.wave_id).await {
                    Ok(w) => {
                        if job_tx.send(Job { d, wave: w }).await.is_err() {
                            break;
                        }
                    }
                    Err((permanent, e)) => {
                        if permanent {
                            tracing::error!(wave = %d.wave_id, error = %e, "wave templates unusable; aborting \
                                the wave");
                            if let Err(err) = self.store.abort_wave(d.wave_id, &e, Utc::now()).await {
                                tracing::warn!(wave = %d.wave_id, error = %err, "could not abort the wave");
                            }
                        }
                        // This delivery goes back (the sweep cancels it if its wave ended).
                        let r = DeliveryResult {
                            id: d.id,
                            wave_id: d.wave_id,
                            address: d.address.clone(),
                            outcome: DeliveryOutcome::Released {
                                at: Utc::now() + chrono::Duration::from_std(self.s.poll).unwrap_or_default(),
                            },
                        };
                        if res_tx_claim.send((r, None)).await.is_err() {
                            inflight.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
            }
        }
        drop(job_tx);
        drop(res_tx_claim);
        let _ = scanner.await;
        for s in senders {
            let _ = s.await;
        }
        let _ = recorder.await;
        match self.store.release_claims(&self.holder, Utc::now()).await {
            Ok(n) if n > 0 => tracing::info!(released = n, "unsent wave deliveries handed back"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not hand back claims; they return when the lease ends"),
        }
    }

    /// One SMTP session working through jobs.
    async fn sender(
        self: Arc<Self>,
        jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
        results: mpsc::Sender<(DeliveryResult, Option<String>)>,
        token: CancellationToken,
    ) {
        let mut conn: Option<(AsyncSmtpConnection, bool)> = None;
        loop {
            let job = { jobs.lock().await.recv().await };
            let Some(job) = job else { break };
            let (outcome, throttle) = if token.is_cancelled() {
                (DeliveryOutcome::Released { at: Utc::now() }, None)
            } else {
                self.deliver(&job, &mut conn).await
            };
            let r = DeliveryResult { id: job.d.id, wave_id: job.d.wave_id, address: job.d.address.clone(), outcome };
            if results.send((r, throttle)).await.is_err() {
                break;
            }
        }
        if let Some((mut c, _)) = conn {
            let _ = tokio::time::timeout(self.relay.timeout, c.quit()).await;
        }
    }

    /// Sends one message; returns its outcome and, for a throttle or a relay failure, the
    /// reply that backs the relay off.
    async fn deliver(
        &self,
        job: &Job,
        conn: &mut Option<(AsyncSmtpConnection, bool)>,
    ) -> (DeliveryOutcome, Option<String>) {
        let now = Utc::now();
        let (wave, templates) = (&job.wave.0, &job.wave.1);
        // Never send on a claim that may pass to another daemon before the transaction ends
        // (margin: the relay's timeout, at most half the lease), nor while the relay backs off.
        let margin = chrono::Duration::from_std(self.relay.timeout).unwrap_or_default().min(self.s.lease / 2);
        if now + margin >= job.d.claimed_until {
            return (DeliveryOutcome::Released { at: now }, None);
        }
        if now.timestamp_millis() < self.backoff_until.load(Ordering::Acquire) {
            return (
                DeliveryOutcome::Released {
                    at: DateTime::from_timestamp_millis(self.backoff_until.load(Ordering::Acquire)).unwrap_or(now),
                },
                None,
            );
        }
        if conn.as_ref().is_none_or(|(c, _)| c.has_broken()) {
            *conn = None;
            match tokio::time::timeout(self.relay.timeout, self.relay.connect()).await {
                Ok(Ok(mut c)) => {
                    let p = tokio::time::timeout(self.relay.timeout, offers_pipelining(&mut c)).await.unwrap_or(false);
                    *conn = Some((c, p));
                }
                Ok(Err(e)) => {
                    // An expired sign-in fails nobody: the deliveries wait, the relay's row says why.
                    let text = e.to_string();
                    match e {
                        crate::smtp::ConnectError::Auth(_) => {
                            tracing::error!(relay = %self.relay.key, error = %text, "the relay refuses our \
                                sign-in; waves wait")
                        }
                        crate::smtp::ConnectError::Failed(_) => {
                            tracing::warn!(relay = %self.relay.key, error = %text, "cannot open an SMTP session")
                        }
                    }
                    let until = now + chrono::Duration::from_std(self.s.throttle_backoff).unwrap_or_default();
                    self.backoff_until.fetch_max(until.timestamp_millis(), Ordering::AcqRel);
                    return (DeliveryOutcome::Released { at: now }, Some(text));
                }
                Err(_) => return (DeliveryOutcome::Released { at: now }, Some("timed out connecting".into())),
            }
        }
        let (c, pipelining) = conn.as_mut().expect("connected above");
        // 8-bit bodies where the relay takes them (RFC 6152): no quoted-printable for
        // Cyrillic text, which would triple its size.
        let eightbit = c.server_info().supports_feature(Extension::EightBitMime);
        let built = match self.build(wave, templates, &job.d, false, eightbit) {
            Ok(b) => b,
            Err(e) => {
                return (DeliveryOutcome::Failed { reason: "message_error".into(), detail: e, suppress: false }, None);
            }
        };
        failpoint("wave-before-smtp", ATTEMPTED.fetch_add(1, Ordering::SeqCst) + 1);
        let res =
            tokio::time::timeout(self.relay.timeout, transact(c, *pipelining, &built.from, &built.to, &built.bytes))
                .await;
        let (stage, err) = match res {
            Ok(Ok(())) => {
                failpoint("wave-after-smtp", ACCEPTED.fetch_add(1, Ordering::SeqCst) + 1);
                return (DeliveryOutcome::Sent, None);
            }
            Ok(Err(e)) => e,
            Err(_) => {
                *conn = None;
                return (self.retry(&job.d, "timed out".into(), now), None);
            }
        };
        let code = reply_code(&err);
        let text = err.to_string();
        // Keep the session for the next message when the server answered; drop it otherwise.
        if code.is_some() && !matches!(code, Some(421)) {
            if !matches!(tokio::time::timeout(self.relay.timeout, c.command(Rset)).await, Ok(Ok(_))) {
                *conn = None;
            }
        } else {
            if let Some((mut c, _)) = conn.take() {
                c.abort().await;
            }
        }
        match classify(stage, code, &text) {
            Verdict::Retry => (self.retry(&job.d, text, now), None),
            Verdict::Throttled | Verdict::RelayDown => {
                // The other sessions hold back their queued messages too.
                let until = now + chrono::Duration::from_std(self.s.throttle_backoff).unwrap_or_default();
                self.backoff_until.fetch_max(until.timestamp_millis(), Ordering::AcqRel);
                (DeliveryOutcome::Released { at: now }, Some(text))
            }
            Verdict::Rejected { suppress } => (
                DeliveryOutcome::Failed {
                    reason: if suppress { "recipient_rejected".into() } else { "message_rejected".into() },
                    detail: text,
                    suppress,
                },
                None,
            ),
            Verdict::SenderRejected => {
                (DeliveryOutcome::AbortWave { detail: format!("the relay refused the sender: {text}") }, None)
            }
        }
    }

    /// A transient failure: retry with backoff, or fail once the attempts are used up.
    fn retry(&self, d: &ClaimedDelivery, detail: String, now: DateTime<Utc>) -> DeliveryOutcome {
        let attempts = d.attempts as u32 + 1;
        if attempts >= self.s.max_attempts {
            return DeliveryOutcome::Failed { reason: "attempts_exhausted".into(), detail, suppress: false };
        }
        let wait = retry_delay(self.s.retry_base, attempts, self.s.retry_max);
        DeliveryOutcome::Retry { at: now + chrono::Duration::from_std(wait).unwrap_or_default(), detail }
    }

    /// Commits outcomes in groups (one transaction per group); never drops one.
    async fn recorder(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(DeliveryResult, Option<String>)>,
        inflight: Arc<AtomicUsize>,
        notify: Arc<Notify>,
    ) {
        let mut buf: Vec<DeliveryResult> = Vec::new();
        loop {
            let Some((first, t)) = rx.recv().await else { break };
            let mut throttle = t;
            buf.push(first);
            // Group commit: gather what arrives within a few milliseconds (each commit is a
            // transaction and, on SQLite with synchronous=FULL, an fsync).
            let window = tokio::time::Instant::now() + Duration::from_millis(GROUP_COMMIT_MS);
            while buf.len() < 500 {
                match tokio::time::timeout_at(window, rx.recv()).await {
                    Ok(Some((r, t))) => {
                        buf.push(r);
                        if t.is_some() {
                            throttle = t;
                        }
                    }
                    _ => break,
                }
            }
            // Released deliveries go back after the relay's back-off, not at once.
            let backoff = throttle
                .as_ref()
                .map(|reply| (chrono::Duration::from_std(self.s.throttle_backoff).unwrap_or_default(), reply.clone()));
            if let Some((_, reply)) = &backoff {
                tracing::warn!(relay = %self.relay.key, reply = %reply, "relay throttling or unavailable; backing off");
            }
            let mut wait = Duration::from_millis(100);
            loop {
                let recorded = {
                    let _turn = self.turn().await;
                    self.store.record_deliveries(&buf, &self.holder, &self.relay.key, backoff.clone(), Utc::now()).await
                };
                match recorded {
                    Ok(()) => {
                        for r in &buf {
                            let outcome = match r.outcome {
                                DeliveryOutcome::Sent => "sent",
                                DeliveryOutcome::Retry { .. } => "retry",
                                DeliveryOutcome::Failed { .. } => "failed",
                                DeliveryOutcome::Released { .. } => "released",
                                DeliveryOutcome::AbortWave { .. } => "abort_wave",
                            };
                            metrics::counter!("inflow_wave_deliveries_total", "outcome" => outcome).increment(1);
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, n = buf.len(), "cannot record delivery outcomes; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
            inflight.fetch_sub(buf.len(), Ordering::AcqRel);
            buf.clear();
            notify.notify_one();
        }
    }
}

/// Checks templates and addresses, then schedules (the CLI and the admin API use this).
pub async fn schedule(store: &Store, s: &WaveSchedule, now: DateTime<Utc>) -> anyhow::Result<WaveRow> {
    check_schedule(s)?;
    Ok(store.schedule_wave(s, now).await?)
}

/// An e-mail quick campaign's message (R-QC-1) as a wave's schedule, checked as a wave's
/// is: `subject` and `description` are its templates (the API and the CLI use this).
pub fn quick_campaign_message(
    p: &crate::crm::quick::QuickParams,
    start_at: DateTime<Utc>,
    zone: chrono_tz::Tz,
    from_address: String,
) -> anyhow::Result<WaveSchedule> {
    let s = WaveSchedule {
        // The quick campaign's id, given when it is written.
        activity_id: uuid::Uuid::nil(),
        start_at,
        timezone: zone.name().to_string(),
        subject: p.subject.clone(),
        text: p.description.clone().unwrap_or_default(),
        html: p.html.clone(),
        from_address,
        from_name: p.from_name.clone(),
        reply_to: p.reply_to.clone(),
        rate_per_minute: p.rate_per_minute,
        skip_responders_of: None,
    };
    check_schedule(&s)?;
    Ok(s)
}

/// Checks a wave's rate, templates (rendered on sample members) and addresses.
pub fn check_schedule(s: &WaveSchedule) -> anyhow::Result<()> {
    if s.rate_per_minute == Some(0) {
        anyhow::bail!("rate_per_minute 0 would never send; leave it unset for the relay's rate");
    }
    let t = Templates::compile(s).map_err(|e| anyhow::anyhow!("template error: {e}"))?;
    // Unknown filters and the like only show when rendering: try every part on a sample
    // member, and on one with nothing but an address.
    let sample: serde_json::Map<String, serde_json::Value> = [
        ("first_name", "Анна"),
        ("last_name", "Иванова"),
        ("full_name", "Анна Иванова"),
        ("company", "ООО Ромашка"),
        ("job_title", "CTO"),
        ("city", "Москва"),
        ("email", "anna@example.com"),
        ("unsubscribe_url", "https://example.com/u/x"),
        ("campaign_code", "CRM:TEST"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.into())))
    .collect();
    let bare: serde_json::Map<String, serde_json::Value> = sample
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "email" | "unsubscribe_url" | "campaign_code"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for vars in [&sample, &bare] {
        t.subject(vars).map_err(|e| anyhow::anyhow!("template error: subject: {e}"))?;
        t.render("body.txt", vars).map_err(|e| anyhow::anyhow!("template error: {e}"))?;
        if t.has_html {
            t.render("body.html", vars).map_err(|e| anyhow::anyhow!("template error: {e}"))?;
        }
    }
    s.from_address.parse::<Address>().map_err(|e| anyhow::anyhow!("from address '{}': {e}", s.from_address))?;
    if let Some(r) = &s.reply_to {
        r.parse::<Mailbox>().map_err(|e| anyhow::anyhow!("reply-to '{r}': {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_line_opening_dots_only() {
        assert_eq!(dot_stuff(b".x\r\na.b\r\n.\r\n..y\r.z"), b"..x\r\na.b\r\n..\r\n...y\r.z\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b"plain"), b"plain\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b"\r\n.\r\n."), b"\r\n..\r\n..\r\n.\r\n".to_vec());
    }

    #[test]
    fn bodies_go_7bit_or_8bit_up_to_998_octet_lines() {
        let url = format!("Unsubscribe: https://crm.example.com/u/{}\n", "a".repeat(120));
        let b = transfer_body(format!("Hello\n{url}bye"), false);
        assert_eq!(b.encoding(), ContentTransferEncoding::SevenBit, "a long ASCII line is fine in 7bit");
        assert_eq!(b.into_vec(), format!("Hello\r\n{}bye", url.replace('\n', "\r\n")).into_bytes());
        let ru = "Здравствуйте, Анна! ".repeat(20);
        let b = transfer_body(ru.clone(), true);
        assert_eq!(b.encoding(), ContentTransferEncoding::EightBit);
        assert_eq!(b.into_vec(), ru.clone().into_bytes(), "no quoted-printable for Cyrillic to an 8BITMIME relay");
        let seven = transfer_body(ru, false).encoding();
        assert!(
            matches!(seven, ContentTransferEncoding::QuotedPrintable | ContentTransferEncoding::Base64),
            "8-bit text to a 7-bit relay is encoded: {seven:?}"
        );
        assert_ne!(
            transfer_body("x".repeat(1200), true).encoding(),
            ContentTransferEncoding::SevenBit,
            "over 998 octets a line must be encoded"
        );
    }

    #[test]
    fn flowed_text_breaks_long_lines_softly_and_keeps_short_ones() {
        let long = "Здравствуйте, Анна! ".repeat(10);
        let f = flowed(&format!("{long}\nshort line  \nFrom here\n>quoted"));
        let lines: Vec<&str> = f.split('\n').collect();
        assert!(lines.iter().all(|l| l.len() <= FLOW_WIDTH + 1), "{f}");
        // Soft breaks end with a space; joining them gives the paragraph back.
        let para: String = lines.iter().take_while(|l| l.ends_with(' ')).copied().collect::<Vec<_>>().concat();
        let last = lines[lines.iter().take_while(|l| l.ends_with(' ')).count()];
        assert_eq!(format!("{para}{last}"), long.trim_end());
        assert!(f.contains("\nshort line\n"), "hard line ends lose trailing spaces");
        assert!(f.contains("\n From here\n") && f.ends_with("\n >quoted"), "space-stuffing: {f}");
        let word = "x".repeat(100);
        assert_eq!(flowed(&word), word, "an unbreakable word stays whole");
    }

    #[test]
    fn unsubscribe_tokens_are_signed_and_checked() {
        let s = LinkSigner::new(b"key one");
        let id = Uuid::new_v4();
        let t = s.token(id);
        assert_eq!(s.verify(&t), Some(id));
        assert_eq!(LinkSigner::new(b"key two").verify(&t), None);
        let (hex, sig) = t.split_once('.').unwrap();
        let other = Uuid::new_v4().simple().to_string();
        assert_eq!(s.verify(&format!("{other}.{sig}")), None, "a signature is bound to its delivery");
        assert_eq!(s.verify(hex), None);
        assert_eq!(s.verify(&format!("{hex}.{}", &sig[1..])), None);
        assert_eq!(s.verify("../../etc/passwd"), None);
    }

    #[test]
    fn templates_personalise_with_fallbacks_and_escape_html() {
        let s = WaveSchedule {
            activity_id: Uuid::nil(),
            start_at: Utc::now(),
            timezone: "UTC".into(),
            subject: "{{ first_name | default(\"колега\") }}, news\n".into(),
            text: "Hi {{ first_name | default(\"колега\") }} from {{ company | default(\"your company\") }}".into(),
            html: Some("<p>{{ company }}</p>".into()),
            from_address: "a@b.ru".into(),
            from_name: None,
            reply_to: None,
            rate_per_minute: None,
            skip_responders_of: None,
        };
        let t = Templates::compile(&s).unwrap();
        let mut vars = serde_json::Map::new();
        assert_eq!(t.subject(&vars).unwrap(), "колега, news");
        vars.insert("first_name".into(), "Анна".into());
        vars.insert("company".into(), "<Рога & Копыта>".into());
        assert_eq!(t.render("body.txt", &vars).unwrap(), "Hi Анна from <Рога & Копыта>");
        assert_eq!(t.render("body.html", &vars).unwrap(), "<p>&lt;Рога &amp; Копыта&gt;</p>");
        let bad = WaveSchedule { text: "{% if %}".into(), ..s };
        assert!(Templates::compile(&bad).err().unwrap().starts_with("text:"));
    }
}
