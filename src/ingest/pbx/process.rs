//! Turning a call's stored events into CRM records: merge the facts, gather what the rules
//! need (line, owner, party match, open callbacks), let `crm::calls::plan_call` decide, and
//! apply it through the store in one transaction. Runs in the `pbx-call` job; a sweep closes
//! calls whose final event never came.

use crate::crm::status::CallStatus;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CallFacts, merge};
use crate::config::Config;
use crate::crm::calls::{CallContext, CallPlan, CallRecord, Direction, Disposition, LineInfo, WaveRef, plan_call};
use crate::crm::entities::CampaignActivity;
use crate::crm::{EntityRef, Phone};
use crate::jobs::JobQueue;
use crate::store::{CallApply, RecordExt, Store, StoreError};

/// One call at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRef {
    pub provider: String,
    pub call_id: String,
    pub version: i64,
}

/// The job: process the calls one write batch (or one sweep) found due. Processing is
/// idempotent per call version, so a batch retried after a crash repeats nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessCalls {
    pub calls: Vec<CallRef>,
}

/// Explicit queue name (see DESIGN rule 9).
pub const QUEUE: &str = crate::store::PBX_CALL_QUEUE;

/// Most requests the writer commits in one transaction. The enqueuer stops merging due
/// calls into one job once it has this many (a job may hold a little more: whole batches).
const MAX_BATCH: usize = 512;

/// Most calls applied in one transaction. SQLite's webhook writer waits while one is
/// applied, so there it is kept to a couple of milliseconds.
const APPLY_CHUNK: usize = 32;
const APPLY_CHUNK_SQLITE: usize = 8;

/// Longest a chunk of call processing waits for the webhook writer on SQLite.
const YIELD_MAX: std::time::Duration = std::time::Duration::from_millis(50);

/// Group-commit writers working side by side on PostgreSQL.
const PG_WRITERS: usize = 3;

/// One webhook request's events on their way to the database; the handler answers once
/// `reply` says they are committed.
pub struct IngestRequest {
    pub provider: &'static str,
    /// The provider account it came through (`[[pbx.<provider>]]` `name`).
    pub account: String,
    pub rows: Vec<crate::store::PbxEventRow>,
    pub raw: String,
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<crate::store::PbxCallUpdate>, String>>,
}

/// Why events were not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitError {
    /// An id unfit to be a key: refused, never retried.
    Malformed(String),
    /// The writer or the database failed: retry later.
    Unavailable(String),
}

impl IngestRequest {
    /// Hands a provider's events (and the raw request) to the group-commit writer and waits
    /// until they are committed: the webhooks and the Asterisk client share this path.
    pub async fn submit(
        writer: &tokio::sync::mpsc::Sender<IngestRequest>,
        provider: &'static str,
        account: &str,
        events: &[super::CallEvent],
        raw: String,
    ) -> Result<Vec<crate::store::PbxCallUpdate>, SubmitError> {
        // Ids become keys and index entries: bounded length, no control characters.
        for e in events {
            for (name, v) in [("call id", &e.call_id), ("event id", &e.event_id)] {
                if v.is_empty() || v.len() > 512 || v.chars().any(char::is_control) {
                    return Err(SubmitError::Malformed(format!(
                        "the {name} must be 1..512 characters without control characters"
                    )));
                }
            }
        }
        let rows = events
            .iter()
            .map(|e| crate::store::PbxEventRow {
                call_id: e.call_id.clone(),
                event_id: e.event_id.clone(),
                facts: serde_json::to_string(&e.facts).unwrap_or_default(),
                is_final: e.facts.is_final,
            })
            .collect();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || SubmitError::Unavailable("the PBX writer has stopped".into());
        let account = account.to_string();
        writer.send(IngestRequest { provider, account, rows, raw, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(SubmitError::Unavailable)
    }
}

/// What processing needs from the configuration. The lines themselves are data
/// (`pbx_line`, seeded from `[[pbx.lines]]`), read per call so changes apply at once.
#[derive(Debug, Clone)]
pub struct PbxSettings {
    pub callback_sla: Duration,
    pub final_event_timeout: Duration,
    pub tz: Tz,
    pub region: String,
    pub lead_source: i32,
    pub default_owner: Option<String>,
    /// R-PBX-5's shortest answered call, for lines that do not set their own.
    pub min_answered_secs: i64,
    /// (provider, its name for an employee) → user (id or e-mail): `[pbx.extensions.*]`; and
    /// ("provider:account", name) → user: an account's own `extensions`, looked up first.
    pub extensions: std::collections::HashMap<(String, String), String>,
}

impl PbxSettings {
    pub fn from_config(cfg: &Config, accounts: &[super::PbxAccount]) -> PbxSettings {
        PbxSettings {
            callback_sla: Duration::seconds(cfg.pbx.callback_sla_secs as i64),
            final_event_timeout: Duration::seconds(cfg.pbx.final_event_timeout_secs as i64),
            tz: cfg.tz(),
            region: cfg.org.default_phone_region.to_ascii_uppercase(),
            lead_source: 100_000_001,
            default_owner: cfg.pbx.default_owner.clone(),
            min_answered_secs: cfg.pbx.min_answered_seconds as i64,
            extensions: cfg
                .pbx
                .extensions
                .iter()
                .flat_map(|(p, m)| m.iter().map(move |(x, u)| ((p.clone(), x.clone()), u.clone())))
                .chain(accounts.iter().flat_map(|a| {
                    let key = format!("{}:{}", a.adapter.name(), a.name);
                    a.extensions.iter().map(move |(x, u)| ((key.clone(), x.clone()), u.clone()))
                }))
                .collect(),
        }
    }
}

/// `[[pbx.lines]]` as the lines the store is seeded with on start.
pub fn config_lines(cfg: &Config, now: chrono::DateTime<Utc>) -> Vec<crate::crm::calls::PbxLine> {
    cfg.pbx
        .lines
        .iter()
        .map(|l| crate::crm::calls::PbxLine {
            // Used only when the number is new; a known number keeps its row (and id).
            pbx_lineid: Uuid::new_v4(),
            did: l.did.clone(),
            name: None,
            owner: l.owner.clone(),
            campaignactivityid: l.campaignactivity_id,
            campaignid: l.campaign_id,
            create_leads: l.create_leads,
            min_answered_seconds: l.min_answered_seconds.map(|s| s as i64),
            lead_subject: l.lead_subject.clone(),
            from_config: true,
            createdon: now,
            modifiedon: now,
        })
        .collect()
}

/// Shared by the webhook handlers, the job worker and the sweep.
pub struct PbxRuntime {
    pub store: Store,
    pub settings: PbxSettings,
    pub queue: JobQueue<ProcessCalls>,
    /// Line owners and waves found recently (positive answers only, for `LOOKUP_TTL`), so a
    /// busy line does not resolve the same owner and wave for every call.
    pub lookups: std::sync::Mutex<Lookups>,
    /// Chunks of a job refused as a whole (a re-check conflict or a database error) and
    /// processed a call at a time instead.
    pub fallbacks: std::sync::atomic::AtomicU64,
    /// A batch is being processed at once beside its job (`run_enqueuer`): one at a time,
    /// so under steady traffic the jobs do the work and the writer keeps the database.
    inline_busy: std::sync::atomic::AtomicBool,
}

/// How long a resolved owner or wave is reused.
const LOOKUP_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The lookup cache of `PbxRuntime`.
#[derive(Default)]
pub struct Lookups {
    users: std::collections::HashMap<String, (std::time::Instant, Uuid)>,
    waves: std::collections::HashMap<Uuid, (std::time::Instant, WaveRef)>,
}

/// A call read and planned, waiting to be applied.
struct PreparedCall {
    apply: CallApply,
    /// The call's disposition, for the metric; none for a call with no facts (not counted).
    disposition: Option<String>,
    /// The caller's number: calls sharing one are applied one after another.
    number: Option<String>,
}

impl PreparedCall {
    fn call_ref(&self) -> CallRef {
        CallRef {
            provider: self.apply.provider.clone(),
            call_id: self.apply.call_id.clone(),
            version: self.apply.version,
        }
    }
}

enum Prepared {
    /// Nothing to apply (not due, or already processed).
    Done(Outcome),
    Apply(Box<PreparedCall>),
}

/// What processing did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not final yet and not timed out: a later event or the sweep will come back.
    Waiting,
    /// Already processed at this version (or a newer version is pending).
    Stale,
    Processed(Vec<EntityRef>),
    Skipped(String),
}

fn record(provider: &str, call_id: &str, m: &CallFacts, region: &str, timed_out: bool) -> CallRecord {
    let external = m.external.as_deref().map(|n| Phone::parse(n, region)).unwrap_or(Phone::None);
    let disposition =
        m.disposition.unwrap_or(if m.answered_at.is_some() { Disposition::Answered } else { Disposition::Missed });
    CallRecord {
        provider: provider.to_string(),
        call_id: call_id.to_string(),
        // A call seen only through a tracking number or an external caller is inbound.
        direction: m.direction.unwrap_or(Direction::Inbound),
        external,
        external_raw: m.external.clone(),
        did: m.did.as_deref().and_then(|d| Phone::parse(d, region).e164().map(str::to_string)),
        line: m.line.as_deref().and_then(|d| Phone::parse(d, region).e164().map(str::to_string)),
        extension: m.extension.clone(),
        started_at: m.started_at,
        answered_at: m.answered_at,
        ended_at: m.ended_at,
        duration_secs: m.duration_secs.unwrap_or(0).max(0),
        disposition,
        recording: m.recording.clone(),
        timed_out,
    }
}

impl PbxRuntime {
    pub fn new(store: Store, settings: PbxSettings, queue: JobQueue<ProcessCalls>) -> PbxRuntime {
        PbxRuntime {
            store,
            settings,
            queue,
            lookups: Default::default(),
            fallbacks: Default::default(),
            inline_busy: Default::default(),
        }
    }

    /// A config owner (id or e-mail) as a user id; found answers are reused for a minute.
    async fn owner(&self, owner: &str) -> Result<Option<Uuid>, StoreError> {
        if let Some((at, id)) = self.lookups.lock().ok().and_then(|l| l.users.get(owner).copied()) {
            if at.elapsed() < LOOKUP_TTL {
                return Ok(Some(id));
            }
        }
        let found = self.store.resolve_user(owner).await?;
        if let (Some(id), Ok(mut l)) = (found, self.lookups.lock()) {
            l.users.insert(owner.to_string(), (std::time::Instant::now(), id));
        }
        Ok(found)
    }

    /// A line's wave (campaign activity → campaign, owner); found answers reused for a minute.
    async fn wave(&self, id: Uuid) -> Result<Option<WaveRef>, StoreError> {
        if let Some((at, w)) = self.lookups.lock().ok().and_then(|l| l.waves.get(&id).copied()) {
            if at.elapsed() < LOOKUP_TTL {
                return Ok(Some(w));
            }
        }
        let found = self.store.get::<CampaignActivity>(id).await?.map(|w| WaveRef {
            activity_id: w.activityid,
            campaign_id: w.regardingobjectid,
            owner: w.ownerid,
        });
        if let (Some(w), Ok(mut l)) = (found, self.lookups.lock()) {
            l.waves.insert(id, (std::time::Instant::now(), w));
        }
        Ok(found)
    }

    /// Processes a call if it is due: final, or silent past the timeout.
    #[tracing::instrument(level = "debug", skip_all, fields(provider, call_id))]
    pub async fn process(&self, provider: &str, call_id: &str, now: DateTime<Utc>) -> Result<Outcome, StoreError> {
        match self.prepare(provider, call_id, now).await? {
            Prepared::Done(outcome) => Ok(outcome),
            Prepared::Apply(a) => {
                let applied = self.apply_all(std::slice::from_ref(&*a), now).await?;
                Ok(self.applied(&a, applied[0]))
            }
        }
    }

    /// On SQLite, lets webhook batches being written go first (`WriteGate`), for at most
    /// `YIELD_MAX`: the webhook's answer is what a provider waits for, the CRM records can
    /// come a moment later, but must not wait for the traffic to stop.
    async fn yield_to_webhooks(&self) {
        self.store.gate.yield_to_urgent(YIELD_MAX).await;
    }

    /// What applying a prepared call came to (counted and logged once it is committed).
    fn applied(&self, a: &PreparedCall, applied: bool) -> Outcome {
        if !applied {
            return Outcome::Stale;
        }
        let c = &a.apply;
        match &c.writes {
            Some(w) => {
                metrics::counter!("inflow_pbx_calls_total", "provider" => c.provider.clone(),
                    "disposition" => a.disposition.clone().unwrap_or_default(), "outcome" => "processed")
                .increment(1);
                tracing::info!(provider = %c.provider, call_id = %c.call_id, activity = %w.activity.activityid,
                    created = w.created().len(), timed_out = c.timed_out, "call recorded");
                Outcome::Processed(w.created())
            }
            None => {
                let reason = c.reason.clone().unwrap_or_default();
                if let Some(d) = &a.disposition {
                    metrics::counter!("inflow_pbx_calls_total", "provider" => c.provider.clone(),
                        "disposition" => d.clone(), "outcome" => "skipped")
                    .increment(1);
                    tracing::info!(provider = %c.provider, call_id = %c.call_id, %reason, "call skipped");
                }
                Outcome::Skipped(reason)
            }
        }
    }

    /// What processing a call now would apply, if it is due; nothing is applied. (For
    /// checking a plan against others made at the same time.)
    pub async fn plan(
        &self,
        provider: &str,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<CallApply>, StoreError> {
        Ok(match self.prepare(provider, call_id, now).await? {
            Prepared::Apply(a) => Some(a.apply),
            Prepared::Done(_) => None,
        })
    }

    /// Reads what the rules need about a call and plans it. The only write is the dup
    /// candidate an ambiguous number opens (`match_or_queue`, idempotent per call).
    async fn prepare(&self, provider: &str, call_id: &str, now: DateTime<Utc>) -> Result<Prepared, StoreError> {
        let Some(call) = self.store.pbx_call(provider, call_id).await? else {
            return Ok(Prepared::Done(Outcome::Stale));
        };
        if call.status != CallStatus::Open || call.processed_version >= call.version {
            return Ok(Prepared::Done(Outcome::Stale));
        }
        let timed_out = !call.is_final && call.last_event_at < now - self.settings.final_event_timeout;
        if !call.is_final && !timed_out {
            return Ok(Prepared::Done(Outcome::Waiting));
        }
        let skip = |reason: String, disposition: Option<String>, number: Option<String>| {
            Prepared::Apply(Box::new(PreparedCall {
                apply: CallApply {
                    provider: provider.to_string(),
                    call_id: call_id.to_string(),
                    version: call.version,
                    writes: None,
                    status: CallStatus::Skipped,
                    reason: Some(reason),
                    timed_out,
                    line: None,
                },
                disposition,
                number,
            }))
        };
        let facts: Vec<CallFacts> = self
            .store
            .pbx_call_facts(provider, call_id)
            .await?
            .iter()
            .map(|j| serde_json::from_str(j).map_err(StoreError::decode))
            .collect::<Result<_, _>>()?;
        let merged = merge(&facts);
        if merged.direction.is_none() && merged.external.is_none() && merged.did.is_none() {
            // Only stray events (a recording of an unknown leg, say): nothing to record.
            return Ok(skip("no call facts: only events without numbers or direction arrived".into(), None, None));
        }
        let rec = record(provider, call_id, &merged, &self.settings.region, timed_out);

        // Facts for the rules.
        let mut line_row = None;
        for n in [&rec.did, &rec.line].into_iter().flatten() {
            line_row = self.store.pbx_line_by_did(n).await?;
            if line_row.is_some() {
                break;
            }
        }
        // The line the call is counted under: the configured one, else the dialled number.
        let line_number = line_row.as_ref().map(|l| l.did.clone()).or_else(|| rec.did.clone());
        let mut line = None;
        if let Some(l) = line_row {
            let owner = self.owner(&l.owner).await?;
            // R-PBX-4: the line's wave, or its campaign's current phone campaign activity.
            let wave_id = match (l.campaignactivityid, l.campaignid) {
                (Some(a), _) => Some(a),
                (None, Some(c)) => {
                    self.store.current_phone_activity(c, now.with_timezone(&self.settings.tz).date_naive()).await?
                }
                (None, None) => None,
            };
            let wave = match wave_id {
                Some(id) => self.wave(id).await?,
                None => None,
            };
            if (l.campaignactivityid.is_some() || l.campaignid.is_some()) && wave.is_none() {
                tracing::warn!(did = %l.did, "the line's campaign has no campaign activity to respond to; no \
                    campaign response");
            }
            if let Some(owner) = owner {
                line = Some(LineInfo {
                    owner,
                    wave,
                    create_leads: l.create_leads,
                    min_answered_secs: l.min_answered_seconds.unwrap_or(self.settings.min_answered_secs),
                    lead_subject: l.lead_subject.clone().unwrap_or_else(|| "Phone call".into()),
                });
            } else {
                tracing::warn!(did = %l.did, owner = %l.owner, "the line's owner is not a known user");
            }
        }
        // The provider's own name for the employee first, then the users' extensions.
        let ext_user = match &rec.extension {
            Some(x) => match self
                .settings
                .extensions
                .get(&(format!("{provider}:{}", call.account), x.clone()))
                .or_else(|| self.settings.extensions.get(&(provider.to_string(), x.clone())))
            {
                Some(u) => self.owner(u).await?,
                None => self.store.user_by_extension(x).await?,
            },
            None => None,
        };
        let e164 = rec.external.e164().map(str::to_string);
        let party = match &e164 {
            Some(n) => self.store.match_or_queue(None, Some(n), &format!("pbx:{provider}:{call_id}"), now).await?,
            None => crate::crm::matching::MatchOutcome::None,
        };
        // R-PBX-3: a missed call's callback belongs to the caller's account manager, else
        // the line's owner, not to whichever extension happened to ring; answered and
        // outbound calls to the extension's user.
        let missed = rec.direction == Direction::Inbound && !rec.answered();
        let party_owner = match party.unique().filter(|p| p.kind.is_party()) {
            Some(p) if missed => self.store.enabled_owner(p).await?,
            _ => None,
        };
        let mut owner = crate::crm::calls::call_owner(missed, party_owner, line.as_ref().map(|l| l.owner), ext_user);
        if owner.is_none() {
            if let Some(o) = &self.settings.default_owner {
                owner = self.owner(o).await?;
            }
        }
        let existing = match call.activityid {
            Some(id) => self.store.get(id).await?,
            None => None,
        };
        // R-PBX-3 (one open callback per number) and R-PBX-6 (an answered call closes the
        // open ones) read the same rows.
        let open_calls = match &e164 {
            Some(n) => self.store.open_phonecalls(n).await?,
            None => Vec::new(),
        };
        let open_callback = open_calls.first().map(|o| o.id);
        let response_exists = match line.as_ref().and_then(|l| l.wave) {
            Some(w) => {
                self.store.wave_response_exists(w.activity_id, party.unique().map(|p| p.id), e164.as_deref()).await?
            }
            None => false,
        };
        let ctx = CallContext {
            line,
            owner,
            party,
            existing,
            open_callback,
            open_calls,
            response_exists,
            callback_sla: self.settings.callback_sla,
            lead_source: self.settings.lead_source,
            tz: self.settings.tz,
            now,
            ids: [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()],
        };
        let disposition = format!("{:?}", rec.disposition).to_lowercase();
        Ok(match plan_call(&rec, &ctx) {
            CallPlan::Skip(reason) => skip(reason, Some(disposition), e164),
            CallPlan::Apply(writes) => Prepared::Apply(Box::new(PreparedCall {
                apply: CallApply {
                    provider: provider.to_string(),
                    call_id: call_id.to_string(),
                    version: call.version,
                    writes: Some(*writes),
                    status: CallStatus::Processed,
                    reason: None,
                    timed_out,
                    line: line_number,
                },
                disposition: Some(disposition),
                number: e164,
            })),
        })
    }

    /// Processes a job's calls: each is prepared (read and planned), then the plans are
    /// applied a chunk (`APPLY_CHUNK`) to a transaction, so a busy line costs one commit per
    /// chunk rather than one per call. Calls sharing a caller's number are applied one
    /// after another instead: the first may create the lead or callback the next must see.
    /// If a chunk is refused (a plan's re-check found a lead or response that appeared
    /// meanwhile), each of its calls is processed on its own, with a fresh plan.
    pub async fn process_batch(
        &self,
        calls: &[CallRef],
        now: DateTime<Utc>,
    ) -> Vec<(CallRef, Result<Outcome, StoreError>)> {
        let mut results = Vec::new();
        let mut batch: Vec<PreparedCall> = Vec::new();
        let mut later: Vec<&CallRef> = Vec::new();
        let mut numbers = std::collections::HashSet::new();
        for c in calls {
            match self.prepare(&c.provider, &c.call_id, now).await {
                Ok(Prepared::Done(o)) => results.push((c.clone(), Ok(o))),
                Ok(Prepared::Apply(a)) => {
                    if a.number.as_ref().is_some_and(|n| !numbers.insert(n.clone())) {
                        later.push(c);
                    } else {
                        batch.push(*a);
                    }
                }
                Err(e) => results.push((c.clone(), Err(e))),
            }
        }
        let size =
            if self.store.db.engine() == crate::store::Engine::Sqlite { APPLY_CHUNK_SQLITE } else { APPLY_CHUNK };
        for chunk in batch.chunks(size) {
            match self.apply_all(chunk, now).await {
                Ok(applied) => {
                    results.extend(chunk.iter().zip(applied).map(|(a, ok)| (a.call_ref(), Ok(self.applied(a, ok)))))
                }
                Err(e) => {
                    self.fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    metrics::counter!("inflow_pbx_batch_fallbacks_total").increment(1);
                    tracing::debug!(error = %e, calls = chunk.len(), "a chunk of calls was refused; processing \
                        its calls one by one");
                    for a in chunk {
                        results.push((a.call_ref(), self.process(&a.apply.provider, &a.apply.call_id, now).await));
                    }
                }
            }
        }
        for c in later {
            results.push((c.clone(), self.process(&c.provider, &c.call_id, now).await));
        }
        results
    }

    /// Applies prepared calls in one transaction (after yielding to the webhook writer).
    #[tracing::instrument(level = "debug", skip_all, fields(calls = batch.len()))]
    async fn apply_all(&self, batch: &[PreparedCall], now: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.yield_to_webhooks().await;
        let mut tx = self.store.db.begin().await?;
        let applied =
            self.store.apply_pbx_calls(&mut tx, &batch.iter().map(|a| &a.apply).collect::<Vec<_>>(), now).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Enqueues processing of these call versions as one job.
    pub async fn enqueue(&self, calls: Vec<CallRef>) {
        if calls.is_empty() {
            return;
        }
        let n = calls.len();
        let key = format!("pbx-batch:{}", Uuid::new_v4());
        if let Err(e) = self.queue.push(ProcessCalls { calls }, &key, crate::jobs::DEFAULT_MAX_ATTEMPTS).await {
            // The sweep finds the calls again; nothing is lost.
            tracing::warn!(calls = n, error = %e, "could not enqueue call processing; the sweep will retry");
        }
    }

    /// Enqueues every call that is due: final calls not yet processed (e.g. a crash between
    /// storing the event and enqueueing) and calls whose final event never came.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let due = self.store.pbx_calls_due(now, self.settings.final_event_timeout, 500).await?;
        let n = due.len();
        self.enqueue(
            due.into_iter().map(|c| CallRef { provider: c.provider, call_id: c.call_id, version: c.version }).collect(),
        )
        .await;
        Ok(n)
    }

    /// The group-commit writer: takes every request waiting in the channel, stores them in
    /// one transaction, answers each, and hands the calls that became final to the enqueuer.
    /// PostgreSQL runs `PG_WRITERS` of these loops side by side (one batch collects and
    /// inserts while another waits for its commit to be flushed); SQLite has one writer.
    /// Ends when every sender is gone (the HTTP server has stopped) and the last calls are
    /// enqueued.
    pub async fn run_writer(self: Arc<Self>, rx: tokio::sync::mpsc::Receiver<IngestRequest>) {
        // Due calls, writers → enqueuer. Each writer owns a sender and drops it when it
        // ends; the enqueuer then drains what is left and ends, and this function waits for
        // it. Unbounded: a call ref is small, and the writers must never wait on the queue.
        let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel();
        let enqueuer = tokio::spawn(self.clone().run_enqueuer(due_rx));
        let writers = if self.store.db.engine() == crate::store::Engine::Postgres { PG_WRITERS } else { 1 };
        // The writers take turns at the request channel: the one holding the lock gathers a
        // batch, lets go, and writes it while the next gathers.
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        futures::future::join_all((0..writers).map(|_| self.clone().write_batches(rx.clone(), due_tx.clone()))).await;
        drop(due_tx);
        let _ = enqueuer.await;
    }

    async fn write_batches(
        self: Arc<Self>,
        rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<IngestRequest>>>,
        due_tx: tokio::sync::mpsc::UnboundedSender<Vec<CallRef>>,
    ) {
        loop {
            let batch = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else { return };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                batch
            };
            let reqs: Vec<(&str, &str, &[crate::store::PbxEventRow], &str)> =
                batch.iter().map(|r| (r.provider, r.account.as_str(), r.rows.as_slice(), r.raw.as_str())).collect();
            let stored = {
                let _urgent = self.store.gate.urgent();
                self.store.record_pbx_events(&reqs, Utc::now()).await
            };
            match stored {
                Ok(results) => {
                    let mut due = Vec::new();
                    for (r, ups) in batch.into_iter().zip(results) {
                        due.extend(ups.iter().filter(|u| u.new_event && u.is_final).map(|u| CallRef {
                            provider: r.provider.to_string(),
                            call_id: u.call_id.clone(),
                            version: u.version,
                        }));
                        let _ = r.reply.send(Ok(ups));
                    }
                    if !due.is_empty() {
                        // The enqueuer outlives every writer; if it were gone, the sweep
                        // would still find these calls.
                        let _ = due_tx.send(due);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, requests = batch.len(), "storing PBX events failed");
                    for r in batch {
                        let _ = r.reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }

    /// Enqueues the calls the writers found due, off their path: a writer goes on to its next
    /// batch while the job is stored, and calls from several batches that arrive meanwhile
    /// become one job. A crash before the job is stored loses nothing: the calls are final
    /// and unprocessed in `pbx_call`, and the sweep enqueues them.
    async fn run_enqueuer(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<CallRef>>) {
        while let Some(mut calls) = rx.recv().await {
            while calls.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => calls.extend(more),
                    Err(_) => break,
                }
            }
            let inline = (calls.len() <= INLINE_MAX).then(|| calls.clone());
            self.enqueue(calls).await;
            // A few calls at a time (a quiet line, not a flood): processed at once as well,
            // so a call becomes an activity in well under a second whatever the job poller's
            // idle back-off; the durable job then finds them done (stale) and does nothing.
            use std::sync::atomic::Ordering;
            if let Some(calls) = inline.filter(|_| !self.inline_busy.swap(true, Ordering::AcqRel)) {
                /// Lets the next batch in, even if processing this one panicked.
                struct Done(Arc<PbxRuntime>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.inline_busy.store(false, Ordering::Release);
                    }
                }
                let done = Done(self.clone());
                tokio::spawn(async move {
                    for (c, r) in done.0.process_batch(&calls, Utc::now()).await {
                        if let Err(e) = r {
                            tracing::debug!(provider = %c.provider, call_id = %c.call_id, error = %e,
                                "processing at once failed; the job retries it");
                        }
                    }
                });
            }
        }
    }
}

/// At most this many calls finished together are processed at once beside their job.
const INLINE_MAX: usize = 8;

/// The job handler: every call of the batch is attempted; any failure retries the job
/// (calls already done are skipped as stale).
pub async fn handle(
    job: ProcessCalls,
    rt: apalis::prelude::Data<Arc<PbxRuntime>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    let mut failed = Vec::new();
    for (c, r) in rt.process_batch(&job.calls, Utc::now()).await {
        if let Err(e) = r {
            tracing::warn!(provider = %c.provider, call_id = %c.call_id, error = %e, "processing a call \
                failed; will retry");
            failed.push(c.call_id);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} calls failed: {}", failed.len(), job.calls.len(), failed.join(", ")).into())
    }
}
