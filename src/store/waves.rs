//! Campaign e-mail waves (DOMAIN §4.4, §4.5): schedule, expansion at start (R-WV-2/3, one
//! transaction that freezes the member set into delivery rows, e-mail activities and the
//! bulkoperation), claiming due deliveries under a lease and the relay's rate, recording
//! SMTP outcomes, completion with the books (R-WV-5), pause/resume/cancel, the unsubscribe
//! link (R-OPT-3) and the per-wave figures. SQL only; the decisions are `crm::waves`.
//!
//! Exactly once: a delivery row (with its Message-ID and token) exists before its SMTP
//! attempt; a claim is a lease (`claimed_by`, `claimed_until`) committed before the send, so
//! a daemon that dies mid-send leaves rows another claim picks up once the lease ends. Only
//! messages the relay accepted but whose result was not yet committed can go twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use super::db::{Array, Engine, Exec, Tx, Value};
use super::ops::{self, Suppression};
use super::records::{insert, insert_rows, load};
use super::{Result, Store, StoreError};
use crate::crm::entities::{BulkOperation, Campaign, CampaignActivity, CampaignResponse, MarketingList};
use crate::crm::waves::{ExpandSettings, Member, WaveAction, WaveState, gcra_take, next_state, plan_recipients};
use crate::crm::{EmailAddress, EntityKind, RuleError};

/// What a marketer schedules.
#[derive(Debug, Clone, Serialize)]
pub struct WaveSchedule {
    pub activity_id: Uuid,
    pub start_at: DateTime<Utc>,
    /// The zone the start was given in (shown back to marketers).
    pub timezone: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub from_address: String,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    /// Messages per minute for this wave (the relay's own limit applies as well).
    pub rate_per_minute: Option<u32>,
    /// Wave 2 = "members who did not respond to wave 1": the wave whose responders are skipped.
    pub skip_responders_of: Option<Uuid>,
}

/// A wave as stored.
#[derive(Debug, Clone, Serialize)]
pub struct WaveRow {
    pub activity_id: Uuid,
    pub campaign_id: Uuid,
    pub owner: Uuid,
    pub subject_line: String,
    pub state: WaveState,
    pub schedule: WaveSchedule,
    pub bulkoperation_id: Option<Uuid>,
    pub targeted: Option<i64>,
    pub excluded: BTreeMap<String, i64>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Renders the personalised subject of one recipient of a wave.
pub type SubjectRenderer<'a> =
    dyn Fn(&WaveRow, &serde_json::Map<String, serde_json::Value>) -> std::result::Result<String, String> + Sync + 'a;

/// How expansion writes messages.
pub struct ExpandOptions<'a> {
    pub tz: Tz,
    /// Right-hand side of our Message-IDs.
    pub message_id_domain: String,
    /// R-OPT-1 [DESIGN]: honour `donotsendonoptout = false` only when set.
    pub allow_optout_override: bool,
    /// Renders the personalised subject of one recipient (stored on its e-mail activity).
    pub subject: &'a SubjectRenderer<'a>,
    /// Recipients per expansion transaction.
    pub chunk: usize,
    /// How long an expansion may go without progress before another daemon resumes it.
    pub lease: Duration,
    /// Called after each committed expansion chunk with its number (crash tests).
    pub after_chunk: &'a (dyn Fn(usize) + Sync),
    /// Held around each expansion transaction: the caller's other writers take it too, so
    /// on SQLite they queue here instead of sleeping in SQLite's busy handler.
    pub turn: Option<&'a tokio::sync::Mutex<()>>,
}

/// The result of starting one due wave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StartOutcome {
    Started {
        wave: Uuid,
        recipients: usize,
    },
    /// The preconditions failed: the wave is aborted with the reason.
    Aborted {
        wave: Uuid,
        reason: String,
    },
}

/// A delivery handed to a sender.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub wave_id: Uuid,
    pub address: String,
    pub written: String,
    pub member: crate::crm::EntityRef,
    pub message_id: String,
    pub token: String,
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub attempts: i32,
    pub subject: String,
    /// The claim's lease: past it, another daemon may take the delivery.
    pub claimed_until: DateTime<Utc>,
}

/// What a claim returned.
#[derive(Debug, Default)]
pub struct Claim {
    pub items: Vec<ClaimedDelivery>,
    /// Nothing may go before this much time passes (rate or relay back-off).
    pub wait: Option<std::time::Duration>,
}

/// The outcome of one SMTP attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Sent,
    /// Retry at `at` (the attempt counts).
    Retry {
        at: DateTime<Utc>,
        detail: String,
    },
    /// Failed for good; `suppress` puts the address on the suppression list with `detail`.
    Failed {
        reason: String,
        detail: String,
        suppress: bool,
    },
    /// Not attempted or not the recipient's fault (throttle, relay down, shutdown): back to
    /// pending at `at` without counting an attempt.
    Released {
        at: DateTime<Utc>,
    },
    /// The wave cannot be sent (sender refused): aborts the wave; the delivery goes back.
    AbortWave {
        detail: String,
    },
}

#[derive(Debug, Clone)]
pub struct DeliveryResult {
    pub id: Uuid,
    pub wave_id: Uuid,
    pub address: String,
    pub outcome: DeliveryOutcome,
}

/// Per-wave figures (issue 5 §4, R-WV-7).
#[derive(Debug, Clone, Serialize)]
pub struct WaveStatus {
    pub wave: WaveRow,
    pub campaign_name: String,
    pub pending: i64,
    pub in_flight: i64,
    pub sent: i64,
    pub failed: i64,
    pub canceled: i64,
    pub failed_by_reason: BTreeMap<String, i64>,
    /// Sent messages the IMAP ingest later saw bounce.
    pub bounced: i64,
    pub responded: i64,
    /// R-WV-7: responses ÷ sent, %; and the campaign's expected response %.
    pub response_rate: Option<f64>,
    pub expected_response: Option<i32>,
    pub bulkoperation_status: Option<i32>,
}

/// What the unsubscribe link did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum UnsubscribeOutcome {
    Done { address: String },
    AlreadyDone { address: String },
}

const WAVE_COLS: &str = "w.activityid, w.state, w.start_at, w.timezone, w.subject_template, w.text_template, w.html_template, w.from_address, w.from_name, w.reply_to, \
    w.rate_per_minute, w.skip_responders_of, w.bulkoperationid, w.targeted, w.excluded, w.error, w.started_at, w.finished_at, \
    ca.regardingobjectid AS campaign_id, ca.ownerid AS owner, ca.subject AS subject_line";

fn wave_from_row(r: &super::db::Row) -> Result<WaveRow> {
    let state: String = r.get("state")?;
    let excluded: Option<String> = r.get("excluded")?;
    Ok(WaveRow {
        activity_id: r.get("activityid")?,
        campaign_id: r.get("campaign_id")?,
        owner: r.get("owner")?,
        subject_line: r.get("subject_line")?,
        state: WaveState::parse(&state).ok_or_else(|| StoreError::Decode(format!("wave state '{state}'")))?,
        schedule: WaveSchedule {
            activity_id: r.get("activityid")?,
            start_at: r.get("start_at")?,
            timezone: r.get("timezone")?,
            subject: r.get("subject_template")?,
            text: r.get("text_template")?,
            html: r.get("html_template")?,
            from_address: r.get("from_address")?,
            from_name: r.get("from_name")?,
            reply_to: r.get("reply_to")?,
            rate_per_minute: r.get::<Option<i64>>("rate_per_minute")?.map(|n| n as u32),
            skip_responders_of: r.get("skip_responders_of")?,
        },
        bulkoperation_id: r.get("bulkoperationid")?,
        targeted: r.get("targeted")?,
        excluded: excluded
            .map(|e| serde_json::from_str(&e))
            .transpose()
            .map_err(StoreError::decode)?
            .unwrap_or_default(),
        error: r.get("error")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
    })
}

async fn wave_in(ex: &mut impl Exec, id: Uuid) -> Result<WaveRow> {
    let row = ex
        .fetch_optional(&format!("SELECT {WAVE_COLS} FROM wave w JOIN campaignactivity ca ON ca.activityid = w.activityid WHERE w.activityid = $1"), vec![id.into()])
        .await?
        .ok_or_else(|| StoreError::NotFound { kind: "wave", id: id.to_string() })?;
    wave_from_row(&row)
}

/// Ids per `IN (...)` list: SQLite looks `$N` parameters up by name with a linear scan, so
/// long lists cost more per id (see `ROWS_PER_STATEMENT`).
const IN_CHUNK: usize = 100;

/// `id IN (...)` conditions over `ids`, parameters from `$first`: on PostgreSQL one
/// `= ANY($first::text[])` with one array parameter (one statement, one cached plan), on
/// SQLite `IN` lists of `IN_CHUNK`.
fn id_sets(engine: Engine, first: usize, ids: &[Uuid]) -> Vec<(String, Vec<Value>)> {
    if ids.is_empty() {
        return Vec::new();
    }
    if engine == Engine::Postgres {
        return vec![(
            format!("= ANY(${first}::text[])"),
            vec![Value::Array(Array::Text(ids.iter().map(|i| Some(i.to_string())).collect()))],
        )];
    }
    ids.chunks(IN_CHUNK)
        .map(|c| (format!("IN ({})", in_list(first, c.len())), c.iter().map(|i| Value::from(*i)).collect()))
        .collect()
}

/// `IN ($k, $k+1, ...)` for `n` parameters starting at `first`.
fn in_list(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn lock_rows(engine: Engine) -> &'static str {
    match engine {
        // Several daemons claim at once on PostgreSQL; SQLite has one writer (BEGIN IMMEDIATE).
        Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        Engine::Sqlite => "",
    }
}

fn member_table(kind: EntityKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        EntityKind::Account => {
            ("account", "accountid", "t.name AS company, NULL AS firstname, NULL AS lastname, NULL AS jobtitle")
        }
        EntityKind::Contact => ("contact", "contactid", "NULL AS company, t.firstname, t.lastname, t.jobtitle"),
        _ => ("lead", "leadid", "t.companyname AS company, t.firstname, t.lastname, t.jobtitle"),
    }
}

fn text_var(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, v: Option<String>) {
    if let Some(v) = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        map.insert(key.into(), serde_json::Value::String(v));
    }
}

/// Reads the facts of one list's members (R-WV-2): a static list through `listmember`, a
/// dynamic one through its criteria evaluated now, in one query either way.
async fn list_member_facts(ex: &mut impl Exec, list_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Member>> {
    let l: MarketingList = load(ex, list_id).await?;
    let kind = crate::crm::criteria::member_kind(l.createdfromcode)
        .ok_or_else(|| StoreError::Decode("bad createdfromcode".into()))?;
    let (table, key, extra) = member_table(kind);
    let cols = format!(
        "t.{key} AS id, t.statecode, t.emailaddress1, t.emailaddress2, t.emailaddress3, t.donotemail, t.donotbulkemail, t.donotsendmm, t.lastusedincampaign, t.address1_city, {extra}"
    );
    let (sql, args) = if l.isdynamic {
        let doc = l.query.clone().unwrap_or(serde_json::Value::Null);
        let criteria = crate::crm::criteria::parse(kind, &doc)?;
        let (members_sql, args) = super::criteria::compile_members_query(&criteria, ex.engine(), now);
        (
            format!(
                "SELECT {cols} FROM {table} t WHERE t.{key} IN (SELECT id FROM ({members_sql}) m) ORDER BY t.{key}"
            ),
            args,
        )
    } else {
        // A join the planner answers with the primary key even before the new rows are
        // analysed (an IN subquery here took 30 s on PostgreSQL right after a bulk import).
        (
            format!(
                "SELECT {cols} FROM listmember lm JOIN {table} t ON t.{key} = lm.entityid WHERE lm.listid = $1 ORDER BY t.{key}"
            ),
            vec![Value::from(list_id)],
        )
    };
    // Streamed: each row becomes a compact member as it arrives (a list of 20,000 read as
    // rows first held ~4 KB per member at the peak).
    ex.fetch_map(&sql, args, |r| member_from_row(kind, &r)).await
}

fn member_from_row(kind: EntityKind, r: &super::db::Row) -> Result<Member> {
    let mut vars = serde_json::Map::new();
    let (first, last): (Option<String>, Option<String>) = (r.get("firstname")?, r.get("lastname")?);
    let full = [first.clone(), last.clone()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    text_var(&mut vars, "first_name", first);
    text_var(&mut vars, "last_name", last);
    text_var(&mut vars, "full_name", Some(full));
    text_var(&mut vars, "company", r.get("company")?);
    text_var(&mut vars, "job_title", r.get("jobtitle")?);
    text_var(&mut vars, "city", r.get("address1_city")?);
    Ok(Member {
        kind,
        id: r.get("id")?,
        statecode: r.get("statecode")?,
        emails: [r.get("emailaddress1")?, r.get("emailaddress2")?, r.get("emailaddress3")?],
        donotemail: r.get("donotemail")?,
        donotbulkemail: r.get("donotbulkemail")?,
        donotsendmm: r.get("donotsendmm")?,
        lastusedincampaign: r.get("lastusedincampaign")?,
        vars,
    })
}

/// The personalisation of frozen recipients, read again (a resumed expansion).
async fn frozen_recipients(
    ex: &mut impl Exec,
    frozen: Vec<(EntityKind, Uuid, String, String)>,
) -> Result<Vec<crate::crm::waves::Recipient>> {
    let mut vars: HashMap<Uuid, serde_json::Map<String, serde_json::Value>> = HashMap::new();
    let mut by_kind: BTreeMap<EntityKind, Vec<Uuid>> = BTreeMap::new();
    for (k, id, _, _) in &frozen {
        by_kind.entry(*k).or_default().push(*id);
    }
    for (kind, ids) in by_kind {
        let (table, key, extra) = member_table(kind);
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT t.{key} AS id, t.statecode, t.emailaddress1, t.emailaddress2, t.emailaddress3, t.donotemail, t.donotbulkemail, t.donotsendmm, t.lastusedincampaign, t.address1_city, {extra} \
                 FROM {table} t WHERE t.{key} IN ({})",
                in_list(1, chunk.len())
            );
            for r in ex.fetch_all(&sql, chunk.iter().map(|i| Value::from(*i)).collect()).await? {
                let m = member_from_row(kind, &r)?;
                vars.insert(m.id, m.vars);
            }
        }
    }
    Ok(frozen
        .into_iter()
        .map(|(kind, id, address, written)| crate::crm::waves::Recipient {
            kind,
            id,
            address,
            written,
            vars: vars.remove(&id).unwrap_or_default(),
        })
        .collect())
}

impl Store {
    /// The `optouts` view of a list (R-OPT-1): members no marketing e-mail reaches, and why.
    pub async fn list_optouts(&self, list_id: Uuid, now: DateTime<Utc>) -> Result<Vec<serde_json::Value>> {
        let mut db = self.db.clone();
        let members = list_member_facts(&mut db, list_id, now).await?;
        let rules = self.norm.email_rules.clone();
        let normalize = |e: &str| EmailAddress::parse_with(e, &rules).ok().map(|a| a.as_str().to_string());
        let all: Vec<String> = members
            .iter()
            .flat_map(|m| m.emails.iter().flatten())
            .filter_map(|e| normalize(e))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let suppressed = suppressed_among(&mut db, &all).await?;
        Ok(members
            .iter()
            .filter_map(|m| {
                let why = crate::crm::waves::optout_reasons(m, normalize, &suppressed);
                (!why.is_empty()).then(|| serde_json::json!({"kind": m.kind, "id": m.id, "reasons": why}))
            })
            .collect())
    }

    /// The `failures` view of bulk operations: failed e-mails per wave run with the reason.
    pub async fn wave_failures(&self, bulkoperation: Option<Uuid>, limit: i64) -> Result<Vec<serde_json::Value>> {
        let mut sql = "SELECT b.activityid AS run, d.wave_id, d.address, d.reason, d.detail, d.attempts FROM wave_delivery d                        JOIN wave w ON w.activityid = d.wave_id JOIN bulkoperation b ON b.activityid = w.bulkoperationid WHERE d.state = 'failed'"
            .to_string();
        let mut args = Vec::new();
        if let Some(b) = bulkoperation {
            sql.push_str(" AND b.activityid = $1");
            args.push(Value::from(b));
        }
        sql.push_str(&format!(" ORDER BY d.wave_id, d.address LIMIT {}", limit.clamp(1, 10_000)));
        self.db
            .clone()
            .fetch_all(&sql, args)
            .await?
            .iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "bulkoperationid": r.get::<String>("run")?, "wave": r.get::<String>("wave_id")?, "address": r.get::<String>("address")?,
                    "reason": r.get::<Option<String>>("reason")?, "detail": r.get::<Option<String>>("detail")?, "attempts": r.get::<i64>("attempts")?,
                }))
            })
            .collect()
    }
}

/// Which of `addresses` are suppressed.
async fn suppressed_among(ex: &mut impl Exec, addresses: &[String]) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for chunk in addresses.chunks(400) {
        let sql = format!("SELECT address FROM suppression WHERE address IN ({})", in_list(1, chunk.len()));
        for r in ex.fetch_all(&sql, chunk.iter().map(|a| a.clone().into()).collect()).await? {
            out.insert(r.get("address")?);
        }
    }
    Ok(out)
}

/// A tracking token in Dynamics' shape (`CRM:` + letters/digits), unique per message: the
/// time-ordered id without its version and variant digits (48 time bits, 72 random), so
/// tokens of one wave also sit together in their index.
fn token_for(id: Uuid) -> String {
    let h = id.simple().to_string().to_uppercase();
    format!("CRM:{}{}{}", &h[..12], &h[13..16], &h[17..])
}

impl Store {
    /// Schedules (or, while still scheduled, re-schedules) a wave. R-WV-1 is checked now
    /// and again at start.
    pub async fn schedule_wave(&self, s: &WaveSchedule, now: DateTime<Utc>) -> Result<WaveRow> {
        let mut tx = self.db.begin().await?;
        let ca: CampaignActivity = load(&mut tx, s.activity_id).await?;
        self.check_preconditions(&mut tx, &ca).await?;
        if let Some(prev) = s.skip_responders_of {
            let p: CampaignActivity = load(&mut tx, prev).await?;
            if p.regardingobjectid != ca.regardingobjectid {
                return Err(RuleError::new(
                    "R-WV-2",
                    "wave_of_other_campaign",
                    "the wave whose responders are skipped belongs to another campaign",
                )
                .into());
            }
        }
        let existing =
            tx.fetch_optional("SELECT state FROM wave WHERE activityid = $1", vec![s.activity_id.into()]).await?;
        if let Some(r) = existing {
            let state: String = r.get("state")?;
            if state != "scheduled" {
                return Err(RuleError::conflict(
                    "R-WV-5",
                    "wave_already_started",
                    format!("the wave is {state}; only a scheduled wave can be rescheduled"),
                )
                .into());
            }
            if tx
                .execute("DELETE FROM wave WHERE activityid = $1 AND state = 'scheduled'", vec![s.activity_id.into()])
                .await?
                == 0
            {
                return Err(RuleError::conflict(
                    "R-WV-5",
                    "wave_already_started",
                    "the wave started meanwhile; only a scheduled wave can be rescheduled",
                )
                .into());
            }
        }
        tx.execute(
            "INSERT INTO wave (activityid, state, start_at, timezone, subject_template, text_template, html_template, from_address, from_name, reply_to, rate_per_minute, skip_responders_of, created_at, updated_at) \
             VALUES ($1, 'scheduled', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
            vec![
                s.activity_id.into(),
                s.start_at.into(),
                s.timezone.clone().into(),
                s.subject.clone().into(),
                s.text.clone().into(),
                s.html.clone().into(),
                s.from_address.clone().into(),
                s.from_name.clone().into(),
                s.reply_to.clone().into(),
                s.rate_per_minute.map(i64::from).into(),
                s.skip_responders_of.into(),
                now.into(),
            ],
        )
        .await?;
        let w = wave_in(&mut tx, s.activity_id).await?;
        tx.commit().await?;
        Ok(w)
    }

    /// R-WV-1 for a campaign activity.
    async fn check_preconditions(&self, tx: &mut impl Exec, ca: &CampaignActivity) -> Result<()> {
        let campaign: Campaign = load(tx, ca.regardingobjectid).await?;
        let rows = tx
            .fetch_all(
                "SELECT listid FROM campaignactivityitem WHERE campaignactivityid = $1 ORDER BY listid",
                vec![ca.activityid.into()],
            )
            .await?;
        let mut targets = Vec::new();
        for r in rows {
            targets.push(load::<MarketingList>(tx, r.get("listid")?).await?);
        }
        let linked = tx
            .fetch_all("SELECT listid FROM campaignitem WHERE campaignid = $1", vec![campaign.campaignid.into()])
            .await?;
        let linked = linked.iter().map(|r| r.get("listid")).collect::<Result<Vec<Uuid>>>()?;
        crate::crm::campaign::check_wave_preconditions(&campaign, ca, &targets, &linked)?;
        Ok(())
    }

    pub async fn wave(&self, id: Uuid) -> Result<WaveRow> {
        wave_in(&mut self.db.clone(), id).await
    }

    pub async fn waves(&self) -> Result<Vec<WaveRow>> {
        let rows = self.db.clone().fetch_all(&format!("SELECT {WAVE_COLS} FROM wave w JOIN campaignactivity ca ON ca.activityid = w.activityid ORDER BY w.start_at, w.activityid"), vec![]).await?;
        rows.iter().map(wave_from_row).collect()
    }

    /// Starts every scheduled wave whose time has come: each in its own transaction, so
    /// two daemons racing start it once (the conditional state change decides).
    pub async fn start_due_waves(&self, now: DateTime<Utc>, opts: &ExpandOptions<'_>) -> Result<Vec<StartOutcome>> {
        let due = self
            .db
            .clone()
            .fetch_all(
                "SELECT activityid FROM wave WHERE state = 'scheduled' AND start_at <= $1 ORDER BY start_at",
                vec![now.into()],
            )
            .await?;
        let mut out = Vec::new();
        for r in due {
            let id: Uuid = r.get("activityid")?;
            match self.start_wave(id, now, opts).await {
                Ok(Some(o)) => out.push(o),
                Ok(None) => {}
                Err(e) => out.push(self.wave_failed(id, e, now).await?),
            }
        }
        Ok(out)
    }

    /// One wave's start or expansion failed: a rule or data error (a template that does not
    /// render, criteria that no longer parse) aborts that wave; anything else is left for
    /// the next scan. Either way the other waves go on.
    async fn wave_failed(&self, id: Uuid, e: StoreError, now: DateTime<Utc>) -> Result<StartOutcome> {
        match e {
            StoreError::Rule(_) | StoreError::Decode(_) | StoreError::NotFound { .. } => {
                let reason = e.to_string();
                tracing::error!(wave = %id, error = %reason, "wave cannot be expanded; aborted");
                self.abort_wave(id, &reason, now).await?;
                Ok(StartOutcome::Aborted { wave: id, reason })
            }
            other => {
                tracing::warn!(wave = %id, error = %other, "wave expansion failed; retried at the next scan");
                Ok(StartOutcome::Aborted { wave: id, reason: format!("transient: {other}") })
            }
        }
    }

    /// R-WV-2 / R-WV-3: the member set of a wave evaluated at `now`.
    async fn plan_wave(
        &self,
        tx: &mut impl Exec,
        wave: &WaveRow,
        ca: &CampaignActivity,
        now: DateTime<Utc>,
        opts: &ExpandOptions<'_>,
    ) -> Result<crate::crm::waves::Expansion> {
        let lists = tx
            .fetch_all(
                "SELECT listid FROM campaignactivityitem WHERE campaignactivityid = $1 ORDER BY listid",
                vec![wave.activity_id.into()],
            )
            .await?;
        let mut members = Vec::new();
        for l in lists {
            members.extend(list_member_facts(tx, l.get("listid")?, now).await?);
        }
        let rules = self.norm.email_rules.clone();
        let normalize = |e: &str| EmailAddress::parse_with(e, &rules).ok().map(|a| a.as_str().to_string());
        let all_addresses: Vec<String> = members
            .iter()
            .flat_map(|m| m.emails.iter().flatten())
            .filter_map(|e| normalize(e))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let suppressed = suppressed_among(tx, &all_addresses).await?;
        let mut responded = HashSet::new();
        if let Some(prev) = wave.schedule.skip_responders_of {
            for r in tx
                .fetch_all(
                    "SELECT customerid, emailaddress FROM campaignresponse WHERE campaignactivityid = $1",
                    vec![prev.into()],
                )
                .await?
            {
                if let Some(c) = r.get::<Option<String>>("customerid")? {
                    responded.insert(c);
                }
                if let Some(e) = r.get::<Option<String>>("emailaddress")?.and_then(|e| normalize(&e)) {
                    responded.insert(e);
                }
            }
        }
        let settings = ExpandSettings {
            skip_opted_out: ca.donotsendonoptout || !opts.allow_optout_override,
            ignore_inactive: ca.ignoreinactivelistmembers,
            exclude_days: ca.excludeifcontactedinxdays,
            today: now.with_timezone(&opts.tz).date_naive(),
        };
        Ok(plan_recipients(members, &settings, normalize, &suppressed, &responded))
    }

    /// R-WV-4: delivery rows (Message-ID, token, personalised subject) for recipients.
    fn delivery_rows(
        wave: &WaveRow,
        recipients: &[crate::crm::waves::Recipient],
        now: DateTime<Utc>,
        opts: &ExpandOptions<'_>,
    ) -> Result<Vec<Vec<Value>>> {
        let mut rows = Vec::with_capacity(recipients.len());
        for r in recipients {
            // Time-ordered ids: a wave's rows sit together in the B-trees, so claiming and
            // recording a batch rewrites a few pages rather than one page per message.
            let did = Uuid::now_v7();
            let message_id = format!("{}@{}", did.simple(), opts.message_id_domain);
            let token = token_for(did);
            let subject: String = (opts.subject)(wave, &r.vars)
                .map_err(|e| {
                    RuleError::new("R-WV-4", "template_error", format!("the subject cannot be rendered: {e}"))
                })?
                .chars()
                .take(200)
                .collect();
            let mut vars = r.vars.clone();
            vars.insert("email".into(), serde_json::Value::String(r.written.clone()));
            rows.push(vec![
                did.into(),
                wave.activity_id.into(),
                r.address.clone().into(),
                r.written.clone().into(),
                r.id.into(),
                r.kind.into(),
                message_id.into(),
                token.into(),
                serde_json::Value::Object(vars).to_string().into(),
                subject.into(),
                "pending".into(),
                0i32.into(),
                now.into(),
            ]);
        }
        Ok(rows)
    }

    async fn insert_deliveries(tx: &mut Tx, rows: &[Vec<Value>]) -> Result<()> {
        insert_rows(
            tx,
            "wave_delivery (id, wave_id, address, written, member_id, member_type, message_id, token, vars, subject, state, attempts, next_attempt_at)",
            rows,
            " ON CONFLICT (wave_id, address) DO NOTHING",
        )
        .await
    }

    /// Writes `chunks` of a wave's recipients, one transaction each, while the wave is still
    /// sending or paused (a cancel stops it); the last one marks the wave expanded. Each
    /// transaction renews the expansion lease, so another daemon resumes only a dead one.
    async fn expand_chunks(
        &self,
        wave: &WaveRow,
        chunks: &[&[crate::crm::waves::Recipient]],
        first_index: usize,
        now: DateTime<Utc>,
        opts: &ExpandOptions<'_>,
    ) -> Result<bool> {
        for (i, chunk) in chunks.iter().enumerate() {
            let rows = Self::delivery_rows(wave, chunk, now, opts)?;
            let last = i + 1 == chunks.len();
            let _turn = match opts.turn {
                Some(t) => Some(t.lock().await),
                None => None,
            };
            let mut tx = self.db.begin().await?;
            let n = tx
                .execute(
                    "UPDATE wave SET expand_until = $2, expanded = $3, updated_at = $4, frozen = CASE WHEN $3 THEN NULL ELSE frozen END \
                     WHERE activityid = $1 AND expanded = FALSE AND state IN ('sending', 'paused')",
                    vec![wave.activity_id.into(), (Utc::now() + opts.lease).into(), last.into(), now.into()],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            Self::insert_deliveries(&mut tx, &rows).await?;
            tx.commit().await?;
            (opts.after_chunk)(first_index + i + 1);
        }
        Ok(true)
    }

    /// R-WV-2..4: freezes the member set of one wave (targeted, excluded by reason, the
    /// run) in one transaction with its first `opts.chunk` deliveries; the rest follow in
    /// transactions of that size, so a big list neither holds the write lock for long nor
    /// waits to start sending.
    async fn start_wave(&self, id: Uuid, now: DateTime<Utc>, opts: &ExpandOptions<'_>) -> Result<Option<StartOutcome>> {
        // Read first, outside the write lock (a big list takes a while): the wave, R-WV-1
        // and the member set, evaluated now.
        let mut db = self.db.clone();
        let wave = wave_in(&mut db, id).await?;
        if wave.state != WaveState::Scheduled {
            return Ok(None);
        }
        let ca: CampaignActivity = load(&mut db, id).await?;
        let today = now.with_timezone(&opts.tz).date_naive();
        if let Err(e) = self.check_preconditions(&mut db, &ca).await {
            let reason = e.to_string();
            self.abort_wave(id, &reason, now).await?;
            return Ok(Some(StartOutcome::Aborted { wave: id, reason }));
        }
        let plan = self.plan_wave(&mut db, &wave, &ca, now, opts).await?;
        let turn = match opts.turn {
            Some(t) => Some(t.lock().await),
            None => None,
        };
        let mut tx = self.db.begin().await?;
        // The conditional state change decides which daemon starts the wave.
        let n = tx.execute("UPDATE wave SET state = 'sending', started_at = $2, updated_at = $2 WHERE activityid = $1 AND state = 'scheduled'", vec![id.into(), now.into()]).await?;
        if n == 0 {
            return Ok(None);
        }
        let mut ca: CampaignActivity = load(&mut tx, id).await?;
        // The run (R-WV-5): bulkoperation 4 Distribute, In Progress.
        let run = BulkOperation {
            activityid: Uuid::new_v4(),
            operationtypecode: 4,
            createdrecordtypecode: Some(4),
            regardingobjectid: id,
            regardingobjectidtype: EntityKind::Campaignactivity,
            subject: Some(ca.subject.clone()),
            targetmemberscount: Some(plan.targeted as i32),
            successcount: Some(0),
            failurecount: Some(0),
            ..Default::default()
        }
        .stamped(wave.owner, EntityKind::Systemuser, now, None);
        let run = BulkOperation { statuscode: 2, ..run };
        insert(&mut tx, self, &run).await?;
        let chunks: Vec<&[crate::crm::waves::Recipient]> = plan.recipients.chunks(opts.chunk.max(1)).collect();
        let first = chunks.first().copied().unwrap_or(&[]);
        Self::insert_deliveries(&mut tx, &Self::delivery_rows(&wave, first, now, opts)?).await?;
        let excluded: BTreeMap<&str, usize> = plan.excluded.clone();
        tx.execute(
            "UPDATE wave SET bulkoperationid = $2, targeted = $3, excluded = $4, updated_at = $5, expand_until = $6, expanded = $7, frozen = $8 WHERE activityid = $1",
            vec![
                id.into(),
                run.activityid.into(),
                (plan.targeted as i64).into(),
                serde_json::to_string(&excluded).map_err(StoreError::decode)?.into(),
                now.into(),
                (Utc::now() + opts.lease).into(),
                (chunks.len() <= 1).into(),
                if chunks.len() > 1 {
                    // Who and where only (the personalisation is read again on a resume).
                    let who: Vec<(EntityKind, Uuid, &str, &str)> = plan.recipients.iter().map(|r| (r.kind, r.id, r.address.as_str(), r.written.as_str())).collect();
                    Some(serde_json::to_string(&who).map_err(StoreError::decode)?)
                } else {
                    None
                }
                .into(),
            ],
        )
        .await?;
        // R-WV-5: the campaign activity is In Progress from its actual start.
        ca.statuscode = 0;
        ca.actualstart = Some(today);
        ca.modifiedon = now;
        super::records::update(&mut tx, self, &ca).await?;
        tx.commit().await?;
        drop(turn);
        if chunks.len() > 1 {
            (opts.after_chunk)(1);
            if let Err(e) = self.expand_chunks(&wave, &chunks[1..], 1, now, opts).await {
                self.wave_failed(id, e, now).await?;
            }
        }
        Ok(Some(StartOutcome::Started { wave: id, recipients: plan.recipients.len() }))
    }

    /// Finishes expansions whose daemon died (their lease ended) from the member set frozen
    /// at the start; only the missing deliveries are added (one per address, as ever).
    pub async fn resume_expansions(&self, now: DateTime<Utc>, opts: &ExpandOptions<'_>) -> Result<Vec<Uuid>> {
        let rows = self
            .db
            .clone()
            .fetch_all("SELECT activityid FROM wave WHERE state IN ('sending', 'paused') AND expanded = FALSE AND expand_until < $1", vec![now.into()])
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: Uuid = r.get("activityid")?;
            let mut tx = self.db.begin().await?;
            let n = tx
                .execute(
                    "UPDATE wave SET expand_until = $3 WHERE activityid = $1 AND expanded = FALSE AND expand_until < $2 AND state IN ('sending', 'paused')",
                    vec![id.into(), now.into(), (Utc::now() + opts.lease).into()],
                )
                .await?;
            if n == 0 {
                continue;
            }
            tx.commit().await?;
            // The lease is ours: plan outside the write lock.
            let mut db = self.db.clone();
            let planned = async {
                let wave = wave_in(&mut db, id).await?;
                // The member set frozen at the start; re-evaluated only if none was kept.
                let frozen: Option<String> = db
                    .fetch_one("SELECT frozen FROM wave WHERE activityid = $1", vec![id.into()])
                    .await?
                    .get("frozen")?;
                let plan = match frozen {
                    Some(f) => crate::crm::waves::Expansion {
                        recipients: frozen_recipients(&mut db, serde_json::from_str(&f).map_err(StoreError::decode)?)
                            .await?,
                        ..Default::default()
                    },
                    None => {
                        let ca: CampaignActivity = load(&mut db, id).await?;
                        self.plan_wave(&mut db, &wave, &ca, now, opts).await?
                    }
                };
                Ok::<_, StoreError>((wave, plan))
            };
            let (wave, plan) = match planned.await {
                Ok(p) => p,
                Err(e) => {
                    self.wave_failed(id, e, now).await?;
                    continue;
                }
            };
            let chunks: Vec<&[crate::crm::waves::Recipient]> = plan.recipients.chunks(opts.chunk.max(1)).collect();
            if chunks.is_empty() {
                self.db
                    .clone()
                    .execute("UPDATE wave SET expanded = TRUE WHERE activityid = $1", vec![id.into()])
                    .await?;
            } else if let Err(e) = self.expand_chunks(&wave, &chunks, 0, now, opts).await {
                self.wave_failed(id, e, now).await?;
            }
            out.push(id);
        }
        Ok(out)
    }

    /// Claims up to `want` due deliveries of sending waves for `holder` until `now + lease`,
    /// within the relay's rate (`relay_rate` per minute, shared by every daemon) and each
    /// wave's own rate, unless the relay is backing off.
    pub async fn claim_deliveries(
        &self,
        holder: &str,
        relay: &str,
        relay_rate: Option<u32>,
        want: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Claim> {
        let mut tx = self.db.begin().await?;
        let engine = tx.engine();
        tx.execute(
            "INSERT INTO smtp_relay (relay, updated_at) VALUES ($1, $2) ON CONFLICT (relay) DO NOTHING",
            vec![relay.into(), now.into()],
        )
        .await?;
        // The relay's row is locked only when its rate is charged below; without a rate it
        // is only read (its back-off), so daemons do not queue on it.
        let lock = if engine == Engine::Postgres && relay_rate.is_some() { " FOR UPDATE" } else { "" };
        let r = tx
            .fetch_one(
                &format!("SELECT tat, throttled_until FROM smtp_relay WHERE relay = $1{lock}"),
                vec![relay.into()],
            )
            .await?;
        let (relay_tat, throttled_until): (i64, i64) = (r.get("tat")?, r.get("throttled_until")?);
        let now_ms = now.timestamp_millis();
        if throttled_until > now_ms {
            return Ok(Claim {
                items: vec![],
                wait: Some(std::time::Duration::from_millis((throttled_until - now_ms) as u64)),
            });
        }
        let mut budget = want;
        let mut wait: Option<i64> = None;
        if let Some(rate) = relay_rate {
            let (g, _, w) = gcra_take(relay_tat, now_ms, rate, want);
            budget = g;
            if g == 0 {
                wait = Some(w);
            }
        }
        // Read without a row lock: an expansion chunk holds the wave's row for its whole
        // transaction, and claims must not wait for it. Only a wave with a rate of its own is
        // locked (below), to charge its GCRA state.
        let waves = tx
            .fetch_all(
                "SELECT w.activityid, w.rate_per_minute, w.tat, w.from_address, ca.ownerid FROM wave w JOIN campaignactivity ca ON ca.activityid = w.activityid \
                 WHERE w.state = 'sending' ORDER BY w.start_at, w.activityid",
                vec![],
            )
            .await?;
        let mut items = Vec::new();
        let mut used_total = 0usize;
        for w in waves {
            if budget == 0 {
                break;
            }
            let wid: Uuid = w.get("activityid")?;
            let (rate, mut wtat): (Option<i64>, i64) = (w.get("rate_per_minute")?, w.get("tat")?);
            if rate.is_some() && engine == Engine::Postgres {
                match tx
                    .fetch_optional(
                        "SELECT tat FROM wave WHERE activityid = $1 AND state = 'sending' FOR UPDATE",
                        vec![wid.into()],
                    )
                    .await?
                {
                    Some(r) => wtat = r.get("tat")?,
                    None => continue,
                }
            }
            let mut allow = budget;
            if let Some(rate) = rate {
                let (g, _, ww) = gcra_take(wtat, now_ms, rate as u32, budget);
                allow = g;
                if g == 0 {
                    wait = Some(wait.map_or(ww, |x| x.min(ww)));
                    continue;
                }
            }
            // Two index range scans (due pending rows; claims whose lease ended) rather than
            // one OR, which SQLite answers by scanning every delivery of the wave.
            let cols = "d.id, d.address, d.written, d.member_id, d.member_type, d.message_id, d.token, d.vars, d.subject, d.attempts, d.has_activity";
            let lock = lock_rows(engine).replace("UPDATE", "UPDATE OF d");
            let mut rows = tx
                .fetch_all(
                    &format!("SELECT {cols} FROM wave_delivery d WHERE d.wave_id = $1 AND d.state = 'sending' AND d.claimed_until < $2 LIMIT $3{lock}"),
                    vec![wid.into(), now.into(), (allow as i64).into()],
                )
                .await?;
            if rows.len() < allow {
                rows.extend(
                    tx.fetch_all(
                        &format!(
                            "SELECT {cols} FROM wave_delivery d WHERE d.wave_id = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2 \
                             ORDER BY d.next_attempt_at LIMIT $3{lock}"
                        ),
                        vec![wid.into(), now.into(), ((allow - rows.len()) as i64).into()],
                    )
                    .await?,
                );
            }
            if rows.is_empty() {
                continue;
            }
            let (from_address, owner): (String, Uuid) = (w.get("from_address")?, w.get("ownerid")?);
            let mut ids = Vec::with_capacity(rows.len());
            let mut fresh = Vec::new();
            let mut parties = Vec::new();
            for r in &rows {
                let vars: String = r.get("vars")?;
                let vars = match serde_json::from_str::<serde_json::Value>(&vars).map_err(StoreError::decode)? {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                };
                let id: Uuid = r.get("id")?;
                ids.push(id);
                let (written, subject): (String, String) = (r.get("written")?, r.get("subject")?);
                let member = crate::crm::EntityRef::new(r.get("member_type")?, r.get("member_id")?);
                if !r.get::<bool>("has_activity")? {
                    // R-WV-4: the outbound e-mail activity, regarding the wave, 7 Sending
                    // (state 1 Completed, DOMAIN §5; a failure moves it back to 0 Open). As
                    // no indexed column changes when it is marked Sent, PostgreSQL can
                    // update it in place (HOT).
                    fresh.push(vec![
                        id.into(),
                        EntityKind::Email.into(),
                        subject.clone().into(),
                        wid.into(),
                        EntityKind::Campaignactivity.into(),
                        true.into(),
                        r.get::<String>("message_id")?.into(),
                        r.get::<String>("token")?.into(),
                        from_address.clone().into(),
                        written.clone().into(),
                        0i32.into(),
                        owner.into(),
                        EntityKind::Systemuser.into(),
                        1i32.into(),
                        7i32.into(),
                        now.into(),
                        now.into(),
                        1i64.into(),
                    ]);
                    parties.push(vec![
                        id.into(),
                        2i32.into(),
                        member.id.into(),
                        member.kind.into(),
                        written.clone().into(),
                    ]);
                }
                items.push(ClaimedDelivery {
                    id,
                    wave_id: wid,
                    address: r.get("address")?,
                    written,
                    member,
                    message_id: r.get("message_id")?,
                    token: r.get("token")?,
                    vars,
                    attempts: r.get("attempts")?,
                    subject,
                    claimed_until: now + lease,
                });
            }
            if let Some(rate) = rate {
                let (_, tat, _) = gcra_take(wtat, now_ms, rate as u32, ids.len());
                tx.execute("UPDATE wave SET tat = $2 WHERE activityid = $1", vec![wid.into(), tat.into()]).await?;
            }
            insert_rows(
                &mut tx,
                "activity (activityid, activitytypecode, subject, regardingobjectid, regardingobjectidtype, directioncode, messageid, trackingtoken, sender, torecipients, \
                 deliveryattempts, ownerid, owneridtype, statecode, statuscode, createdon, modifiedon, versionnumber)",
                &fresh,
                " ON CONFLICT (activityid) DO NOTHING",
            )
            .await?;
            insert_rows(
                &mut tx,
                "activityparty (activityid, participationtypemask, partyid, partyidtype, addressused)",
                &parties,
                "",
            )
            .await?;
            let again: Vec<Uuid> = rows
                .iter()
                .zip(&ids)
                .filter(|(r, _)| r.get::<bool>("has_activity").unwrap_or(true))
                .map(|(_, i)| *i)
                .collect();
            for (set, ids) in id_sets(engine, 3, &ids) {
                let mut args: Vec<Value> = vec![holder.into(), (now + lease).into()];
                args.extend(ids);
                tx.execute(&format!("UPDATE wave_delivery SET state = 'sending', claimed_by = $1, claimed_until = $2, has_activity = TRUE WHERE id {set}"), args).await?;
            }
            // R-WV-4: 7 Sending again for retries and taken-over claims.
            for (set, ids) in id_sets(engine, 1, &again) {
                tx.execute(&format!("UPDATE activity SET statuscode = 7 WHERE activityid {set}"), ids).await?;
            }
            budget -= ids.len();
            used_total += ids.len();
        }
        if let Some(rate) = relay_rate {
            // Only what was used is charged to the relay.
            let (_, tat, _) = gcra_take(relay_tat, now_ms, rate, used_total);
            if tat != relay_tat {
                tx.execute(
                    "UPDATE smtp_relay SET tat = $2, updated_at = $3 WHERE relay = $1",
                    vec![relay.into(), tat.into(), now.into()],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(Claim { items, wait: wait.map(|w| std::time::Duration::from_millis(w.max(1) as u64)) })
    }

    /// Records SMTP outcomes in one transaction. A throttle (`throttle = Some(base)`) backs
    /// the whole relay off, doubling while throttles repeat; a success resets that.
    pub async fn record_deliveries(
        &self,
        results: &[DeliveryResult],
        holder: &str,
        relay: &str,
        throttle: Option<(Duration, String)>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let sent: Vec<Uuid> = results.iter().filter(|r| r.outcome == DeliveryOutcome::Sent).map(|r| r.id).collect();
        for (set, ids) in id_sets(tx.engine(), 2, &sent) {
            let mut args: Vec<Value> = vec![now.into()];
            args.extend(ids);
            tx.execute(
                &format!("UPDATE wave_delivery SET state = 'sent', attempts = attempts + 1, sent_at = $1, claimed_by = NULL, claimed_until = NULL, reason = NULL WHERE id {set} AND state IN ('sending', 'pending')"),
                args.clone(),
            )
            .await?;
            // R-WV-4: 3 Sent (state 1 Completed).
            tx.execute(
                &format!("UPDATE activity SET statecode = 1, statuscode = 3, senton = $1, actualend = $1, deliveryattempts = COALESCE(deliveryattempts, 0) + 1, modifiedon = $1, versionnumber = versionnumber + 1 WHERE activityid {set}"),
                args,
            )
            .await?;
        }
        let mut abort: Vec<(Uuid, String)> = Vec::new();
        for r in results {
            match &r.outcome {
                DeliveryOutcome::Sent => {}
                DeliveryOutcome::Retry { at, detail } => {
                    // Only while this holder still has the claim (a replayed group commit or
                    // a lease another daemon took over changes nothing).
                    let n = tx
                        .execute(
                            "UPDATE wave_delivery SET state = 'pending', attempts = attempts + 1, next_attempt_at = $2, reason = 'retry', detail = $3, claimed_by = NULL, claimed_until = NULL \
                             WHERE id = $1 AND state = 'sending' AND claimed_by = $4",
                            vec![r.id.into(), (*at).into(), detail.clone().into(), holder.into()],
                        )
                        .await?;
                    if n > 0 {
                        tx.execute("UPDATE activity SET statuscode = 6, deliveryattempts = COALESCE(deliveryattempts, 0) + 1 WHERE activityid = $1", vec![r.id.into()]).await?;
                    }
                }
                DeliveryOutcome::Failed { reason, detail, suppress } => {
                    let n = tx
                        .execute(
                            "UPDATE wave_delivery SET state = 'failed', attempts = attempts + 1, reason = $2, detail = $3, claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND state = 'sending' AND claimed_by = $4",
                            vec![r.id.into(), reason.clone().into(), detail.clone().into(), holder.into()],
                        )
                        .await?;
                    if n == 0 {
                        continue;
                    }
                    // R-WV-4: 8 Failed, statecode back to 0 Open, attempts counted.
                    tx.execute(
                        "UPDATE activity SET statecode = 0, statuscode = 8, deliveryattempts = COALESCE(deliveryattempts, 0) + 1, modifiedon = $2, versionnumber = versionnumber + 1 WHERE activityid = $1",
                        vec![r.id.into(), now.into()],
                    )
                    .await?;
                    if *suppress {
                        ops::suppress(
                            &mut tx,
                            &Suppression {
                                address: r.address.clone(),
                                kind: "email".into(),
                                reason: "smtp_rejected".into(),
                                source: "wave".into(),
                                detail: Some(detail.clone()),
                                created_on: now,
                            },
                        )
                        .await?;
                    }
                }
                DeliveryOutcome::Released { at } => {
                    let n = tx
                        .execute(
                            "UPDATE wave_delivery SET state = 'pending', next_attempt_at = $2, claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND state = 'sending' AND claimed_by = $3",
                            vec![r.id.into(), (*at).into(), holder.into()],
                        )
                        .await?;
                    if n > 0 {
                        tx.execute(
                            "UPDATE activity SET statuscode = 6 WHERE activityid = $1 AND statuscode = 7",
                            vec![r.id.into()],
                        )
                        .await?;
                    }
                }
                DeliveryOutcome::AbortWave { detail } => {
                    tx.execute("UPDATE wave_delivery SET state = 'pending', claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND state = 'sending' AND claimed_by = $2", vec![r.id.into(), holder.into()]).await?;
                    if !abort.iter().any(|(w, _)| *w == r.wave_id) {
                        abort.push((r.wave_id, detail.clone()));
                    }
                }
            }
        }
        if let Some((base, reply)) = throttle {
            let r = tx.fetch_one("SELECT throttle_streak FROM smtp_relay WHERE relay = $1", vec![relay.into()]).await?;
            let streak: i32 = r.get("throttle_streak")?;
            let wait = crate::crm::waves::retry_delay(
                base.to_std().unwrap_or_default(),
                streak as u32 + 1,
                std::time::Duration::from_secs(600),
            );
            let until = now + Duration::from_std(wait).unwrap_or_default();
            tx.execute(
                "UPDATE smtp_relay SET throttled_until = $2, throttle_streak = throttle_streak + 1, last_reply = $3, updated_at = $4 WHERE relay = $1",
                vec![relay.into(), until.into(), reply.into(), now.into()],
            )
            .await?;
        } else if !sent.is_empty() {
            tx.execute(
                "UPDATE smtp_relay SET throttle_streak = 0 WHERE relay = $1 AND throttle_streak <> 0",
                vec![relay.into()],
            )
            .await?;
        }
        tx.commit().await?;
        // After the commit: a failure here must not make the caller replay the outcomes.
        for (w, detail) in abort {
            if let Err(e) = self.abort_wave(w, &detail, now).await {
                tracing::warn!(wave = %w, error = %e, "could not abort the wave; its sender stays refused and the next outcome retries");
            }
        }
        Ok(())
    }

    /// Hands back this holder's claims (shutdown): pending again, no attempt counted.
    pub async fn release_claims(&self, holder: &str, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE activity SET statuscode = 6 WHERE statuscode = 7 AND activityid IN (SELECT id FROM wave_delivery WHERE claimed_by = $1 AND state = 'sending')",
            vec![holder.into()],
        )
        .await?;
        let n = tx
            .execute("UPDATE wave_delivery SET state = 'pending', next_attempt_at = $2, claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1 AND state = 'sending'", vec![holder.into(), now.into()])
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Completes every sending wave with nothing left to try (R-WV-5): bulkoperation
    /// 4 Completed with its counts, the campaign activity 6 Completed (still Open) with
    /// `actualend`, `lastusedincampaign` on contacted members, `lastusedon` on the lists.
    pub async fn finish_waves(&self, now: DateTime<Utc>, tz: Tz) -> Result<Vec<Uuid>> {
        self.sweep_deliveries(now).await?;
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT w.activityid FROM wave w WHERE w.state = 'sending' AND w.expanded = TRUE AND NOT EXISTS (SELECT 1 FROM wave_delivery d WHERE d.wave_id = w.activityid AND d.state IN ('pending', 'sending'))",
                vec![],
            )
            .await?;
        let today = now.with_timezone(&tz).date_naive();
        let mut done = Vec::new();
        for r in rows {
            let id: Uuid = r.get("activityid")?;
            let mut tx = self.db.begin().await?;
            let n = tx
                .execute(
                    "UPDATE wave SET state = 'completed', finished_at = $2, updated_at = $2 WHERE activityid = $1 AND state = 'sending' AND expanded = TRUE \
                     AND NOT EXISTS (SELECT 1 FROM wave_delivery d WHERE d.wave_id = $1 AND d.state IN ('pending', 'sending'))",
                    vec![id.into(), now.into()],
                )
                .await?;
            if n == 0 {
                continue;
            }
            self.close_run(&mut tx, id, 1, 4, now).await?;
            let mut ca: CampaignActivity = load(&mut tx, id).await?;
            ca.statuscode = 6;
            ca.actualend = Some(today);
            ca.modifiedon = now;
            super::records::update(&mut tx, self, &ca).await?;
            for (kind, table, key) in
                [("contact", "contact", "contactid"), ("lead", "lead", "leadid"), ("account", "account", "accountid")]
            {
                tx.execute(
                    &format!("UPDATE {table} SET lastusedincampaign = $3 WHERE {key} IN (SELECT member_id FROM wave_delivery WHERE wave_id = $1 AND state = 'sent' AND member_type = $2)"),
                    vec![id.into(), kind.into(), today.into()],
                )
                .await?;
            }
            tx.execute("UPDATE list SET lastusedon = $2 WHERE listid IN (SELECT listid FROM campaignactivityitem WHERE campaignactivityid = $1)", vec![id.into(), today.into()]).await?;
            tx.commit().await?;
            done.push(id);
        }
        Ok(done)
    }

    /// Deliveries that must not wait any longer: those of canceled or aborted waves (left
    /// pending by a late outcome, or claimed by a daemon that died), and pending ones whose
    /// address was suppressed after the expansion (a bounce or an unsubscribe meanwhile:
    /// R-OPT-1 holds until the send).
    async fn sweep_deliveries(&self, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        const ENDED: &str = "wave_id IN (SELECT activityid FROM wave WHERE state IN ('canceled', 'aborted')) AND (state = 'pending' OR (state = 'sending' AND claimed_until < $1))";
        const SUPPRESSED: &str = "state = 'pending' AND address IN (SELECT address FROM suppression) AND wave_id IN (SELECT activityid FROM wave WHERE state IN ('sending', 'paused'))";
        let cancel_emails = |cond: &str| {
            format!(
                "UPDATE activity SET statecode = 2, statuscode = 5, modifiedon = $1 WHERE activityid IN (SELECT id FROM wave_delivery WHERE {cond})"
            )
        };
        let cancel = |cond: &str, reason: &str| {
            format!(
                "UPDATE wave_delivery SET state = 'canceled', reason = '{reason}', claimed_by = NULL, claimed_until = NULL WHERE {cond}"
            )
        };
        tx.execute(&cancel_emails(ENDED), vec![now.into()]).await?;
        tx.execute(&cancel(ENDED, "wave_ended"), vec![now.into()]).await?;
        tx.execute(&cancel_emails(SUPPRESSED), vec![now.into()]).await?;
        tx.execute(&cancel(SUPPRESSED, "suppressed"), vec![]).await?;
        tx.commit().await
    }

    /// Sets the run's final state with its counts.
    async fn close_run(
        &self,
        tx: &mut Tx,
        wave: Uuid,
        statecode: i32,
        statuscode: i32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let c = tx
            .fetch_one(
                "SELECT SUM(CASE WHEN state = 'sent' THEN 1 ELSE 0 END) AS ok, SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS bad FROM wave_delivery WHERE wave_id = $1",
                vec![wave.into()],
            )
            .await?;
        let (ok, bad): (Option<i64>, Option<i64>) = (c.get("ok")?, c.get("bad")?);
        tx.execute(
            "UPDATE bulkoperation SET statecode = $2, statuscode = $3, successcount = $4, failurecount = $5, modifiedon = $6, versionnumber = versionnumber + 1 \
             WHERE activityid = (SELECT bulkoperationid FROM wave WHERE activityid = $1)",
            vec![wave.into(), statecode.into(), statuscode.into(), ok.unwrap_or(0).into(), bad.unwrap_or(0).into(), now.into()],
        )
        .await?;
        Ok(())
    }

    /// Pause, resume or cancel (R-WV-5). Cancel stops every pending delivery (their e-mail
    /// activities become Canceled); messages already handed to the relay finish.
    pub async fn control_wave(&self, id: Uuid, action: WaveAction, now: DateTime<Utc>) -> Result<WaveRow> {
        let mut tx = self.db.begin().await?;
        let w = wave_in(&mut tx, id).await?;
        let to = next_state(w.state, action)?;
        let n = tx
            .execute("UPDATE wave SET state = $3, updated_at = $4, finished_at = CASE WHEN $3 = 'canceled' THEN $4 ELSE finished_at END WHERE activityid = $1 AND state = $2", vec![
                id.into(),
                w.state.as_str().into(),
                to.as_str().into(),
                now.into(),
            ])
            .await?;
        if n == 0 {
            return Err(StoreError::Conflict { kind: "wave", id: id.to_string() });
        }
        if to == WaveState::Canceled {
            tx.execute(
                "UPDATE activity SET statecode = 2, statuscode = 5, modifiedon = $2 WHERE activityid IN (SELECT id FROM wave_delivery WHERE wave_id = $1 AND state = 'pending')",
                vec![id.into(), now.into()],
            )
            .await?;
            tx.execute("UPDATE wave_delivery SET state = 'canceled', reason = 'wave_canceled' WHERE wave_id = $1 AND state = 'pending'", vec![id.into()]).await?;
            if w.bulkoperation_id.is_some() {
                self.close_run(&mut tx, id, 2, 5, now).await?;
            }
        }
        let out = wave_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Stops a wave on an error (R-WV-5: run 3 Aborted, campaign activity 5 System Aborted).
    pub async fn abort_wave(&self, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .execute(
                "UPDATE wave SET state = 'aborted', error = $2, finished_at = $3, updated_at = $3 WHERE activityid = $1 AND state IN ('scheduled', 'sending', 'paused')",
                vec![id.into(), reason.into(), now.into()],
            )
            .await?;
        if n == 0 {
            return Ok(());
        }
        tx.execute(
            "UPDATE activity SET statecode = 2, statuscode = 5, modifiedon = $2 WHERE activityid IN (SELECT id FROM wave_delivery WHERE wave_id = $1 AND state = 'pending')",
            vec![id.into(), now.into()],
        )
        .await?;
        tx.execute("UPDATE wave_delivery SET state = 'canceled', reason = 'wave_aborted' WHERE wave_id = $1 AND state = 'pending'", vec![id.into()]).await?;
        self.close_run(&mut tx, id, 1, 3, now).await?;
        tx.execute("UPDATE campaignactivity SET statuscode = 5, modifiedon = $2, versionnumber = versionnumber + 1 WHERE activityid = $1 AND statecode = 0", vec![id.into(), now.into()]).await?;
        tx.commit().await
    }

    /// The figures of one wave.
    pub async fn wave_status(&self, id: Uuid) -> Result<WaveStatus> {
        let mut db = self.db.clone();
        let wave = wave_in(&mut db, id).await?;
        let campaign: Campaign = load(&mut db, wave.campaign_id).await?;
        let mut counts: HashMap<String, i64> = HashMap::new();
        for r in db
            .fetch_all(
                "SELECT state, COUNT(*) AS n FROM wave_delivery WHERE wave_id = $1 GROUP BY state",
                vec![id.into()],
            )
            .await?
        {
            counts.insert(r.get("state")?, r.get("n")?);
        }
        let mut failed_by_reason = BTreeMap::new();
        for r in db.fetch_all("SELECT COALESCE(reason, 'unknown') AS reason, COUNT(*) AS n FROM wave_delivery WHERE wave_id = $1 AND state = 'failed' GROUP BY COALESCE(reason, 'unknown')", vec![id.into()]).await? {
            failed_by_reason.insert(r.get("reason")?, r.get("n")?);
        }
        let bounced: i64 = db
            .fetch_one("SELECT COUNT(*) AS n FROM wave_delivery d JOIN activity a ON a.activityid = d.id WHERE d.wave_id = $1 AND d.state = 'sent' AND a.statuscode = 8", vec![id.into()])
            .await?
            .get("n")?;
        let responded: i64 = db
            .fetch_one("SELECT COUNT(*) AS n FROM campaignresponse WHERE campaignactivityid = $1", vec![id.into()])
            .await?
            .get("n")?;
        let run_status = match wave.bulkoperation_id {
            Some(b) => db
                .fetch_optional("SELECT statuscode FROM bulkoperation WHERE activityid = $1", vec![b.into()])
                .await?
                .map(|r| r.get("statuscode"))
                .transpose()?,
            None => None,
        };
        let sent = counts.get("sent").copied().unwrap_or(0);
        Ok(WaveStatus {
            campaign_name: campaign.name.clone(),
            pending: counts.get("pending").copied().unwrap_or(0),
            in_flight: counts.get("sending").copied().unwrap_or(0),
            sent,
            failed: counts.get("failed").copied().unwrap_or(0),
            canceled: counts.get("canceled").copied().unwrap_or(0),
            failed_by_reason,
            bounced,
            responded,
            response_rate: crate::crm::campaign::response_rate(responded, sent),
            expected_response: campaign.expectedresponse,
            bulkoperation_status: run_status,
            wave,
        })
    }

    /// The recipient and wave of a delivery (the unsubscribe page).
    pub async fn delivery_address(&self, id: Uuid) -> Result<Option<(String, Uuid)>> {
        let r = self
            .db
            .clone()
            .fetch_optional("SELECT written, wave_id FROM wave_delivery WHERE id = $1", vec![id.into()])
            .await?;
        r.map(|r| Ok((r.get("written")?, r.get("wave_id")?))).transpose()
    }

    /// R-OPT-3 through the unsubscribe link: opt-out flags on the member (`donotsendmm`,
    /// `donotbulkemail`), the address suppressed, a campaign response with code 3 on the
    /// wave. Once per delivery (an inbound_event keyed by the delivery id).
    pub async fn unsubscribe_delivery(
        &self,
        id: Uuid,
        via: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UnsubscribeOutcome>> {
        let mut tx = self.db.begin().await?;
        let Some(d) = tx
            .fetch_optional(
                "SELECT wave_id, address, written, member_id, member_type FROM wave_delivery WHERE id = $1",
                vec![id.into()],
            )
            .await?
        else {
            return Ok(None);
        };
        let (wave_id, address, written): (Uuid, String, String) =
            (d.get("wave_id")?, d.get("address")?, d.get("written")?);
        let member = crate::crm::EntityRef::new(d.get("member_type")?, d.get("member_id")?);
        let ev = ops::InboundEvent {
            id: Uuid::new_v4(),
            source: "unsubscribe".into(),
            external_id: id.to_string(),
            received_at: now,
            status: "processed".into(),
            reason: Some(via.into()),
            result: None,
            raw: None,
            raw_location: None,
            processed_at: Some(now),
        };
        if let ops::InboundOutcome::Duplicate(_) = ops::record_inbound(&mut tx, &ev).await? {
            return Ok(Some(UnsubscribeOutcome::AlreadyDone { address: written }));
        }
        let (table, key, _) = member_table(member.kind);
        tx.execute(
            &format!("UPDATE {table} SET donotsendmm = TRUE, donotbulkemail = TRUE, modifiedon = $2, versionnumber = versionnumber + 1 WHERE {key} = $1"),
            vec![member.id.into(), now.into()],
        )
        .await?;
        ops::suppress(
            &mut tx,
            &Suppression {
                address: address.clone(),
                kind: "email".into(),
                reason: "unsubscribe".into(),
                source: via.into(),
                detail: Some(format!("delivery {id}")),
                created_on: now,
            },
        )
        .await?;
        let wave = wave_in(&mut tx, wave_id).await?;
        let tz: Tz = wave.schedule.timezone.parse().unwrap_or(chrono_tz::UTC);
        let resp = CampaignResponse {
            activityid: Uuid::new_v4(),
            subject: format!("Unsubscribe: {}", wave.subject_line).chars().take(200).collect(),
            regardingobjectid: wave.campaign_id,
            regardingobjectidtype: EntityKind::Campaign,
            originatingactivityid: Some(id),
            originatingactivityidtype: Some(EntityKind::Email),
            campaignactivityid: Some(wave_id),
            customerid: Some(member.id),
            customeridtype: Some(member.kind),
            emailaddress: Some(written.clone()),
            responsecode: 3,
            channeltypecode: Some(1),
            receivedon: Some(now.with_timezone(&tz).date_naive()),
            ..Default::default()
        }
        .stamped(wave.owner, EntityKind::Systemuser, now, None);
        insert(&mut tx, self, &resp).await?;
        tx.commit().await?;
        Ok(Some(UnsubscribeOutcome::Done { address: written }))
    }

    /// A key generated once and shared by every instance on this database.
    pub async fn instance_secret(&self, name: &str, now: DateTime<Utc>) -> Result<String> {
        let mut tx = self.db.begin().await?;
        let fresh = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        tx.execute(
            "INSERT INTO instance_secret (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            vec![name.into(), fresh.into(), now.into()],
        )
        .await?;
        let v: String =
            tx.fetch_one("SELECT value FROM instance_secret WHERE name = $1", vec![name.into()]).await?.get("value")?;
        tx.commit().await?;
        Ok(v)
    }

    /// Deliveries of a wave (tests and the status view): (address, state, attempts, message_id).
    pub async fn wave_deliveries(&self, wave: Uuid) -> Result<Vec<(String, String, i32, String)>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT address, state, attempts, message_id FROM wave_delivery WHERE wave_id = $1 ORDER BY address",
                vec![wave.into()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("address")?, r.get("state")?, r.get("attempts")?, r.get("message_id")?)))
            .collect()
    }
}

/// Today's date in `tz` (tests and callers that pass the clock).
pub fn local_date(now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}
