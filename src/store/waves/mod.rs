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
//!
//! Here: the types, schedule, control and figures. Beside it: `expand` (the member set and
//! the delivery rows), `deliver` (claims and outcomes, the exactly-once core), `finish`
//! (completion and the books) and `unsubscribe` (the link).

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

mod deliver;
mod expand;
mod finish;
mod unsubscribe;

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
    /// The campaign of the wave's campaign activity; None for an e-mail quick campaign
    /// (R-QC-1), whose wave shares its bulkoperation's id and sends to its one list.
    pub campaign_id: Option<Uuid>,
    /// The quick campaign's list (None for a campaign activity's wave).
    pub quick_list: Option<Uuid>,
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

impl WaveRow {
    /// What its responses regard: the campaign, or the quick campaign (its bulkoperation,
    /// whose id the wave shares).
    pub fn responses_regard(&self) -> crate::crm::EntityRef {
        match self.campaign_id {
            Some(c) => crate::crm::EntityRef::new(EntityKind::Campaign, c),
            None => crate::crm::EntityRef::new(EntityKind::Bulkoperation, self.activity_id),
        }
    }
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
    /// The campaign's name, or a quick campaign's subject.
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
    /// While the wave has mail to send and the relay is backing off (throttled, unreachable,
    /// refusing our sign-in): the relay's last reply, which says why the mail waits.
    pub relay_held: Option<String>,
}

/// What the unsubscribe link did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum UnsubscribeOutcome {
    Done { address: String },
    AlreadyDone { address: String },
}

const WAVE_COLS: &str = "w.activityid, w.state, w.start_at, w.timezone, w.subject_template, w.text_template, \
    w.html_template, w.from_address, w.from_name, w.reply_to, \
    w.rate_per_minute, w.skip_responders_of, w.bulkoperationid, w.targeted, w.excluded, w.error, w.started_at, \
    w.finished_at, \
    ca.regardingobjectid AS campaign_id, q.regardingobjectid AS quick_list, COALESCE(ca.ownerid, q.ownerid) AS owner, \
    COALESCE(ca.subject, q.subject, '') AS subject_line";

/// A wave's source: its campaign activity, or the quick campaign (bulkoperation) whose id
/// it shares (R-QC-1).
const WAVE_FROM: &str = "wave w LEFT JOIN campaignactivity ca ON ca.activityid = w.activityid \
    LEFT JOIN bulkoperation q ON q.activityid = w.activityid AND q.regardingobjectidtype = 'list'";

fn wave_from_row(r: &super::db::Row) -> Result<WaveRow> {
    let state: String = r.get("state")?;
    let excluded: Option<String> = r.get("excluded")?;
    Ok(WaveRow {
        activity_id: r.get("activityid")?,
        campaign_id: r.get("campaign_id")?,
        quick_list: r.get("quick_list")?,
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

pub(in crate::store) async fn wave_in(ex: &mut impl Exec, id: Uuid) -> Result<WaveRow> {
    let row = ex
        .fetch_optional(&format!("SELECT {WAVE_COLS} FROM {WAVE_FROM} WHERE w.activityid = $1"), vec![id.into()])
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
    let (table, key) = kind.table();
    let vars = match kind {
        EntityKind::Account => "t.name AS company, NULL AS firstname, NULL AS lastname, NULL AS jobtitle",
        EntityKind::Contact => "NULL AS company, t.firstname, t.lastname, t.jobtitle",
        _ => "t.companyname AS company, t.firstname, t.lastname, t.jobtitle",
    };
    (table, key, vars)
}

fn text_var(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, v: Option<String>) {
    if let Some(v) = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        map.insert(key.into(), serde_json::Value::String(v));
    }
}

/// Writes a scheduled wave.
pub(in crate::store) async fn insert_wave(tx: &mut Tx, s: &WaveSchedule, now: DateTime<Utc>) -> Result<()> {
    tx.execute(
        "INSERT INTO wave (activityid, state, start_at, timezone, subject_template, text_template, \
            html_template, from_address, from_name, reply_to, rate_per_minute, skip_responders_of, created_at, \
            updated_at) \
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
    Ok(())
}

/// The lists a wave sends to: its campaign activity's targets, or its quick campaign's list.
const WAVE_LISTS: &str = "SELECT listid FROM campaignactivityitem WHERE campaignactivityid = $1 \
    UNION SELECT regardingobjectid AS listid FROM bulkoperation WHERE activityid = $1 AND \
    regardingobjectidtype = 'list'";

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
        insert_wave(&mut tx, s, now).await?;
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

    /// R-QC-1 at a quick campaign's start: its list is still there and active.
    async fn check_quick_preconditions(&self, ex: &mut impl Exec, wave: &WaveRow) -> Result<()> {
        let list =
            wave.quick_list.ok_or_else(|| StoreError::Decode(format!("wave {} has no source", wave.activity_id)))?;
        crate::crm::quick::check_list(&load::<MarketingList>(ex, list).await?)?;
        Ok(())
    }

    pub async fn wave(&self, id: Uuid) -> Result<WaveRow> {
        wave_in(&mut self.db.clone(), id).await
    }

    pub async fn waves(&self) -> Result<Vec<WaveRow>> {
        let rows = self
            .db
            .clone()
            .fetch_all(&format!("SELECT {WAVE_COLS} FROM {WAVE_FROM} ORDER BY w.start_at, w.activityid"), vec![])
            .await?;
        rows.iter().map(wave_from_row).collect()
    }

    /// Pause, resume or cancel (R-WV-5). Cancel stops every pending delivery (their e-mail
    /// activities become Canceled); messages already handed to the relay finish.
    pub async fn control_wave(&self, id: Uuid, action: WaveAction, now: DateTime<Utc>) -> Result<WaveRow> {
        let mut tx = self.db.begin().await?;
        let w = wave_in(&mut tx, id).await?;
        let to = next_state(w.state, action)?;
        let n = tx
            .execute(
                "UPDATE wave SET state = $3, updated_at = $4, finished_at = CASE WHEN $3 = 'canceled' \
                THEN $4 ELSE finished_at END WHERE activityid = $1 AND state = $2",
                vec![id.into(), w.state.as_str().into(), to.as_str().into(), now.into()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Conflict { kind: "wave", id: id.to_string() });
        }
        if to == WaveState::Canceled {
            tx.execute(
                "UPDATE activity SET statecode = 2, statuscode = 5, modifiedon = $2 WHERE activityid IN \
                    (SELECT id FROM wave_delivery WHERE wave_id = $1 AND state = 'pending')",
                vec![id.into(), now.into()],
            )
            .await?;
            tx.execute(
                "UPDATE wave_delivery SET state = 'canceled', reason = 'wave_canceled' WHERE wave_id = \
                $1 AND state = 'pending'",
                vec![id.into()],
            )
            .await?;
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
                "UPDATE wave SET state = 'aborted', error = $2, finished_at = $3, updated_at = $3 WHERE \
                    activityid = $1 AND state IN ('scheduled', 'sending', 'paused')",
                vec![id.into(), reason.into(), now.into()],
            )
            .await?;
        if n == 0 {
            return Ok(());
        }
        tx.execute(
            "UPDATE activity SET statecode = 2, statuscode = 5, modifiedon = $2 WHERE activityid IN (SELECT id \
                FROM wave_delivery WHERE wave_id = $1 AND state = 'pending')",
            vec![id.into(), now.into()],
        )
        .await?;
        tx.execute(
            "UPDATE wave_delivery SET state = 'canceled', reason = 'wave_aborted' WHERE wave_id = $1 \
            AND state = 'pending'",
            vec![id.into()],
        )
        .await?;
        self.close_run(&mut tx, id, 1, 3, now).await?;
        tx.execute(
            "UPDATE campaignactivity SET statuscode = 5, modifiedon = $2, versionnumber = versionnumber \
            + 1 WHERE activityid = $1 AND statecode = 0",
            vec![id.into(), now.into()],
        )
        .await?;
        tx.commit().await
    }

    /// The figures of one wave.
    pub async fn wave_status(&self, id: Uuid) -> Result<WaveStatus> {
        let mut db = self.db.clone();
        let wave = wave_in(&mut db, id).await?;
        let (campaign_name, expected_response) = match wave.campaign_id {
            Some(c) => {
                let campaign: Campaign = load(&mut db, c).await?;
                (campaign.name, campaign.expectedresponse)
            }
            // A quick campaign has no campaign: its subject names it.
            None => (wave.subject_line.clone(), None),
        };
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
        for r in db
            .fetch_all(
                "SELECT COALESCE(reason, 'unknown') AS reason, COUNT(*) AS n FROM wave_delivery \
            WHERE wave_id = $1 AND state = 'failed' GROUP BY COALESCE(reason, 'unknown')",
                vec![id.into()],
            )
            .await?
        {
            failed_by_reason.insert(r.get("reason")?, r.get("n")?);
        }
        let bounced: i64 = db
            .fetch_one(
                "SELECT COUNT(*) AS n FROM wave_delivery d JOIN activity a ON a.activityid = d.id WHERE \
                d.wave_id = $1 AND d.state = 'sent' AND a.statuscode = 8",
                vec![id.into()],
            )
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
        let pending = counts.get("pending").copied().unwrap_or(0);
        let relay_held = if pending > 0 {
            db.fetch_optional(
                "SELECT last_reply FROM smtp_relay WHERE throttled_until > $1 AND last_reply IS NOT NULL \
                 ORDER BY throttled_until DESC LIMIT 1",
                vec![Utc::now().into()],
            )
            .await?
            .map(|r| r.get("last_reply"))
            .transpose()?
        } else {
            None
        };
        Ok(WaveStatus {
            relay_held,
            campaign_name,
            pending,
            in_flight: counts.get("sending").copied().unwrap_or(0),
            sent,
            failed: counts.get("failed").copied().unwrap_or(0),
            canceled: counts.get("canceled").copied().unwrap_or(0),
            failed_by_reason,
            bounced,
            responded,
            response_rate: crate::crm::campaign::response_rate(responded, sent),
            expected_response,
            bulkoperation_status: run_status,
            wave,
        })
    }

    /// The `failures` view of bulk operations: failed e-mails per wave run with the reason.
    pub async fn wave_failures(&self, bulkoperation: Option<Uuid>, limit: i64) -> Result<Vec<serde_json::Value>> {
        let mut sql = "SELECT b.activityid AS run, d.wave_id, d.address, d.reason, d.detail, d.attempts FROM \
            wave_delivery d                        JOIN wave w ON w.activityid = d.wave_id JOIN bulkoperation \
            b ON b.activityid = w.bulkoperationid WHERE d.state = 'failed'"
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
                    "bulkoperationid": r.get::<String>("run")?, "wave": r.get::<String>("wave_id")?,
                        "address": r.get::<String>("address")?,
                    "reason": r.get::<Option<String>>("reason")?, "detail": r.get::<Option<String>>("detail")?,
                        "attempts": r.get::<i64>("attempts")?,
                }))
            })
            .collect()
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
