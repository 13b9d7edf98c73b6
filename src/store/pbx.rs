//! PBX call records: raw events (idempotent per provider event id), per-call aggregation
//! rows, and applying a call's CRM writes in one transaction.

use crate::crm::status::{CallStatus, EventStatus};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value as Json;
use uuid::Uuid;

use super::db::{Exec, Row, Value};
use super::records::{insert_many, insert_rows, update};
use super::{Result, Store, StoreError};
use crate::crm::calls::CallWrites;
use crate::crm::{EmailAddress, EntityKind, EntityRef};

/// One accepted webhook event, ready to store.
#[derive(Debug, Clone)]
pub struct PbxEventRow {
    pub call_id: String,
    pub event_id: String,
    /// The normalised facts, as JSON.
    pub facts: String,
    pub is_final: bool,
}

/// What storing an event did to its call.
#[derive(Debug, Clone, PartialEq)]
pub struct PbxCallUpdate {
    pub call_id: String,
    /// False for a redelivered event (nothing changed).
    pub new_event: bool,
    pub version: i64,
    pub is_final: bool,
    pub status: CallStatus,
    pub activityid: Option<Uuid>,
}

/// A planned call's outcome, to apply (`Store::apply_pbx_calls`).
#[derive(Debug, Clone)]
pub struct CallApply {
    pub provider: String,
    pub call_id: String,
    /// The call version the plan was made from.
    pub version: i64,
    /// The CRM writes; none for a skipped call.
    pub writes: Option<CallWrites>,
    /// `Processed` or `Skipped`.
    pub status: CallStatus,
    pub reason: Option<String>,
    pub timed_out: bool,
    /// The line it came in on: the configured line's number, else the dialled one (E.164).
    pub line: Option<String>,
}

/// A call's aggregation row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PbxCall {
    pub provider: String,
    pub call_id: String,
    pub first_event_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    pub is_final: bool,
    pub timed_out: bool,
    pub version: i64,
    pub processed_version: i64,
    pub status: CallStatus,
    pub reason: Option<String>,
    pub activityid: Option<Uuid>,
    pub result: Option<Json>,
    /// The provider account the call came through (`[[pbx.<provider>]]` `name`; an Asterisk
    /// PBX's name).
    pub account: String,
}

const CALL_COLS: &str = "provider, call_id, first_event_at, last_event_at, is_final, timed_out, version, \
    processed_version, status, reason, activityid, result, account";

fn call_from_row(r: &Row) -> Result<PbxCall> {
    Ok(PbxCall {
        provider: r.get("provider")?,
        call_id: r.get("call_id")?,
        first_event_at: r.get("first_event_at")?,
        last_event_at: r.get("last_event_at")?,
        is_final: r.get("is_final")?,
        timed_out: r.get("timed_out")?,
        version: r.get("version")?,
        processed_version: r.get("processed_version")?,
        status: r.get("status")?,
        reason: r.get("reason")?,
        activityid: r.get("activityid")?,
        result: r
            .get::<Option<String>>("result")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(StoreError::decode)?,
        account: r.get("account")?,
    })
}

/// The oldest open callback (a phone call with a due date) for a number, other than
/// `except`: what the plan reads and the apply re-checks.
async fn open_callback_in(ex: &mut impl Exec, e164: &str, except: Option<Uuid>) -> Result<Option<Uuid>> {
    let row = ex
        .fetch_optional(
            "SELECT activityid FROM activity WHERE phonenumber = $1 AND statecode = 0 AND activitytypecode = \
                'phonecall' AND scheduledend IS NOT NULL \
             AND ($2 IS NULL OR activityid <> $2) ORDER BY createdon LIMIT 1",
            vec![e164.into(), except.into()],
        )
        .await?;
    row.map(|r| r.get("activityid")).transpose()
}

/// R-RS-2: whether this caller (by party or number) already responded to this wave: what
/// the plan reads and the apply re-checks.
async fn wave_response_in(
    ex: &mut impl Exec,
    wave: Uuid,
    customer: Option<Uuid>,
    telephone: Option<&str>,
) -> Result<bool> {
    let row = ex
        .fetch_optional(
            "SELECT activityid FROM campaignresponse WHERE campaignactivityid = $1 AND ((customerid IS NOT \
                NULL AND customerid = $2) OR (telephone IS NOT NULL AND telephone = $3)) LIMIT 1",
            vec![wave.into(), customer.into(), telephone.into()],
        )
        .await?;
    Ok(row.is_some())
}

/// The job queue of call processing (DESIGN rule 9: an explicit name). Named here, where
/// the calls are stored, so the ops gauges can count it without knowing the ingest.
pub const PBX_CALL_QUEUE: &str = "pbx-call";

/// R-PBX-6: completes an open call closed by an answered one, if it is still open (a person
/// may have closed it meanwhile: then it stays as they left it).
async fn close_open_call(ex: &mut impl Exec, c: &crate::crm::calls::Closure, now: DateTime<Utc>) -> Result<()> {
    ex.execute(
        "UPDATE activity SET statecode = 1, statuscode = $2, actualend = $3, \
           description = CASE WHEN description IS NULL OR description = '' THEN $4 ELSE description || $5 END, \
           modifiedon = $6, versionnumber = versionnumber + 1 \
         WHERE activityid = $1 AND statecode = 0",
        vec![
            c.activity_id.into(),
            c.statuscode.into(),
            c.actualend.into(),
            c.line.clone().into(),
            format!("\n{}", c.line).into(),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Whether a call's plan leaves an open callback for its number (R-PBX-3).
fn opens_callback(w: &CallWrites) -> bool {
    w.activity.statecode == 0 && w.activity.scheduledend.is_some()
}

/// `($1, …, $w), ($w+1, …)` for `n` rows of `w` parameters.
fn tuples(n: usize, w: usize) -> String {
    (0..n).map(|i| format!("({})", super::records::placeholders(w, i * w + 1))).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Stores the events of several webhook requests in one transaction (group commit):
    /// each new event is kept with its request's raw body and bumps its call's version
    /// (reopening a processed call so late facts are applied); a redelivered event changes
    /// nothing. A batch costs three statements whatever its size: one multi-row insert of
    /// the events, one multi-row upsert of the calls they touch, one read of the rest.
    /// Returns, per request, what happened to each event's call.
    pub async fn record_pbx_events(
        &self,
        requests: &[(&str, &str, &[PbxEventRow], &str)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<PbxCallUpdate>>> {
        use std::collections::{BTreeMap, HashSet};
        let mut tx = self.db.begin().await?;
        // 1. Every event, once: the database says which are new.
        let mut new_events: HashSet<(String, String)> = HashSet::new();
        // (provider, event, raw request, account)
        let mut all: Vec<(&str, &PbxEventRow, &str, &str)> =
            requests.iter().flat_map(|(p, a, evs, raw)| evs.iter().map(move |e| (*p, e, *raw, *a))).collect();
        // Several batches are written at once on PostgreSQL: rows are locked in one order
        // (events by id here, calls by the sorted map below), so two batches that share an
        // event or a call wait for each other instead of deadlocking.
        all.sort_by(|a, b| (a.0, &a.1.event_id).cmp(&(b.0, &b.1.event_id)));
        // On PostgreSQL one statement per batch (columns as arrays, the same text and plan
        // whatever the batch size); on SQLite multi-row VALUES.
        let pg = tx.engine() == super::Engine::Postgres;
        for chunk in all.chunks(if pg { usize::MAX } else { super::ROWS_PER_STATEMENT }) {
            const TAIL: &str = " ON CONFLICT (provider, event_id) DO NOTHING RETURNING provider, event_id";
            const INTO: &str =
                "INSERT INTO pbx_event (id, provider, event_id, call_id, received_at, facts, raw, account)";
            let rows: Vec<Vec<Value>> = chunk
                .iter()
                .map(|(p, e, raw, a)| {
                    vec![
                        Uuid::new_v4().into(),
                        (*p).into(),
                        e.event_id.clone().into(),
                        e.call_id.clone().into(),
                        now.into(),
                        e.facts.clone().into(),
                        (*raw).into(),
                        (*a).into(),
                    ]
                })
                .collect();
            let (sql, args) = match super::records::unnest(tx.engine(), &rows, 8) {
                Some((casts, args)) => (format!("{INTO} SELECT * FROM UNNEST({casts}){TAIL}"), args),
                None => {
                    (format!("{INTO} VALUES {}{TAIL}", tuples(rows.len(), 8)), rows.into_iter().flatten().collect())
                }
            };
            for r in tx.fetch_all(&sql, args).await? {
                new_events.insert((r.get("provider")?, r.get("event_id")?));
            }
        }
        // 2. Each call touched by a new event: one upsert row (new-event count, finality).
        // The call's account is its first event's (a call does not move between accounts).
        let mut touched: BTreeMap<(String, String), (i64, bool, &str)> = BTreeMap::new();
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for (p, e, _, a) in &all {
            let id = (p.to_string(), e.event_id.clone());
            if new_events.contains(&id) && seen.insert(id) {
                let t = touched.entry((p.to_string(), e.call_id.clone())).or_insert((0, false, a));
                t.0 += 1;
                t.1 |= e.is_final;
            }
        }
        let mut calls: BTreeMap<(String, String), PbxCall> = BTreeMap::new();
        let touched: Vec<_> = touched.into_iter().collect();
        for chunk in touched.chunks(if pg { usize::MAX } else { super::ROWS_PER_STATEMENT }) {
            let tail = format!(
                " ON CONFLICT (provider, call_id) DO UPDATE SET last_event_at = excluded.last_event_at, \
                  is_final = (pbx_call.is_final OR excluded.is_final), version = pbx_call.version + \
                  excluded.version, status = 'open' RETURNING {CALL_COLS}"
            );
            const INTO: &str = "INSERT INTO pbx_call (provider, call_id, first_event_at, last_event_at, \
                is_final, version, status, account)";
            let rows: Vec<Vec<Value>> = chunk
                .iter()
                .map(|((p, c), (n, fin, a))| {
                    vec![p.clone().into(), c.clone().into(), now.into(), (*fin).into(), (*n).into(), (*a).into()]
                })
                .collect();
            let (sql, args) = match super::records::unnest(tx.engine(), &rows, 6) {
                Some((casts, args)) => (
                    format!(
                        "{INTO} SELECT p, c, t, t, f, v, 'open', a FROM UNNEST({casts}) AS u(p, c, t, f, v, a){tail}"
                    ),
                    args,
                ),
                None => {
                    let values: Vec<String> = (0..rows.len())
                        .map(|i| {
                            let n = i * 6;
                            format!(
                                "(${}, ${}, ${}, ${2}, ${}, ${}, 'open', ${})",
                                n + 1,
                                n + 2,
                                n + 3,
                                n + 4,
                                n + 5,
                                n + 6
                            )
                        })
                        .collect();
                    (format!("{INTO} VALUES {}{tail}", values.join(", ")), rows.into_iter().flatten().collect())
                }
            };
            for r in tx.fetch_all(&sql, args).await? {
                let call = call_from_row(&r)?;
                calls.insert((call.provider.clone(), call.call_id.clone()), call);
            }
        }
        // 3. Calls only redelivered events touched: read as they are.
        for (p, e, _, _) in &all {
            let key = (p.to_string(), e.call_id.clone());
            if let std::collections::btree_map::Entry::Vacant(slot) = calls.entry(key) {
                let row = tx
                    .fetch_one(
                        &format!("SELECT {CALL_COLS} FROM pbx_call WHERE provider = $1 AND call_id = $2"),
                        vec![(*p).into(), e.call_id.clone().into()],
                    )
                    .await?;
                slot.insert(call_from_row(&row)?);
            }
        }
        tx.commit().await?;
        let mut reported: HashSet<(String, String)> = HashSet::new();
        Ok(requests
            .iter()
            .map(|(p, _, evs, _)| {
                evs.iter()
                    .map(|e| {
                        let call = &calls[&(p.to_string(), e.call_id.clone())];
                        // An event id repeated within one batch counts as new only once.
                        let new_event = new_events.contains(&(p.to_string(), e.event_id.clone()))
                            && reported.insert((p.to_string(), e.event_id.clone()));
                        PbxCallUpdate {
                            call_id: e.call_id.clone(),
                            new_event,
                            version: call.version,
                            is_final: call.is_final,
                            status: call.status,
                            activityid: call.activityid,
                        }
                    })
                    .collect()
            })
            .collect())
    }

    pub async fn pbx_call(&self, provider: &str, call_id: &str) -> Result<Option<PbxCall>> {
        let row = self
            .db
            .clone()
            .fetch_optional(
                &format!("SELECT {CALL_COLS} FROM pbx_call WHERE provider = $1 AND call_id = $2"),
                vec![provider.into(), call_id.into()],
            )
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The stored facts (JSON) of every event of a call.
    pub async fn pbx_call_facts(&self, provider: &str, call_id: &str) -> Result<Vec<String>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT facts FROM pbx_event WHERE provider = $1 AND call_id = $2 ORDER BY received_at, event_id",
                vec![provider.into(), call_id.into()],
            )
            .await?;
        rows.iter().map(|r| r.get("facts")).collect()
    }

    /// Calls waiting for processing: final ones, and open ones silent for `timeout`.
    pub async fn pbx_calls_due(&self, now: DateTime<Utc>, timeout: Duration, limit: i64) -> Result<Vec<PbxCall>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                &format!(
                    "SELECT {CALL_COLS} FROM pbx_call WHERE status = 'open' AND (is_final OR \
                    last_event_at < $1) ORDER BY last_event_at LIMIT $2"
                ),
                vec![(now - timeout).into(), limit.into()],
            )
            .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Applies processed calls in `tx`: each call's CRM writes (if any) and outcome, only if
    /// the call is still at its version and not yet processed at it (so two daemons, or a
    /// late event, never double-apply). Returns, per call, whether it applied. A plan whose
    /// re-check fails is a `Conflict` (see `recheck_call_plan`), which refuses them all.
    /// The records of all the calls go in one multi-row insert per table.
    ///
    /// Locks are taken in two phases, each in one order, so that concurrent applies and the
    /// webhook writers (which upsert `pbx_call` rows in (provider, call_id) order) never wait
    /// on each other in a cycle: first every call row, by (provider, call_id); then the
    /// re-checks' advisory locks, sorted (`recheck_locks`).
    pub async fn apply_pbx_calls(
        &self,
        tx: &mut super::db::Tx,
        calls: &[&CallApply],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        use crate::crm::entities::{Activity, CampaignResponse, Lead};
        let results: Vec<String> = calls
            .iter()
            .map(|c| {
                let w = c.writes.as_ref();
                serde_json::json!({ "activityid": w.map(|w| w.activity.activityid),
                    "created": w.map(|w| w.created()).unwrap_or_default() })
                .to_string()
            })
            .collect();
        // Phase 1: the call rows.
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by(|&a, &b| (&calls[a].provider, &calls[a].call_id).cmp(&(&calls[b].provider, &calls[b].call_id)));
        let mut applied = vec![false; calls.len()];
        for i in order {
            let CallApply { provider, call_id, version, writes, status, reason, timed_out, line } = calls[i];
            let n = tx
                .execute(
                    "UPDATE pbx_call SET processed_version = $3, status = $4, reason = $5, timed_out = $6, \
                        result = $7, \
                       activityid = COALESCE($8, activityid), line = COALESCE($9, line) \
                     WHERE provider = $1 AND call_id = $2 AND version = $3 AND processed_version < $3",
                    vec![
                        provider.clone().into(),
                        call_id.clone().into(),
                        (*version).into(),
                        (*status).into(),
                        reason.clone().into(),
                        (*timed_out).into(),
                        results[i].clone().into(),
                        writes.as_ref().map(|w| w.activity.activityid).into(),
                        line.clone().into(),
                    ],
                )
                .await?;
            applied[i] = n > 0;
        }
        // Phase 2: the re-checks' locks, the re-checks and the records.
        let plans: Vec<&CallWrites> =
            calls.iter().zip(&applied).filter(|(_, a)| **a).filter_map(|(c, _)| c.writes.as_ref()).collect();
        Self::recheck_locks(tx, &plans).await?;
        let (mut leads, mut activities, mut responses): (Vec<Lead>, Vec<Activity>, Vec<CampaignResponse>) =
            Default::default();
        let (mut parties, mut events): (Vec<Vec<Value>>, Vec<Vec<Value>>) = Default::default();
        // R-RS-2 within the batch: the re-check reads only what is stored.
        let mut responders = std::collections::HashSet::new();
        for (i, call) in calls.iter().enumerate() {
            if !applied[i] {
                continue;
            }
            let CallApply { provider, call_id, writes, status, reason, .. } = call;
            if let Some(w) = writes {
                Self::recheck_call_plan(tx, provider, call_id, w).await?;
                if let Some(r) = &w.response {
                    let by_party =
                        r.customerid.is_some_and(|c| !responders.insert((r.campaignactivityid, Some(c), None)));
                    let by_number = r
                        .telephone
                        .as_ref()
                        .is_some_and(|t| !responders.insert((r.campaignactivityid, None, Some(t.clone()))));
                    if by_party || by_number {
                        return Err(StoreError::Conflict {
                            kind: "pbx_call",
                            id: format!("{provider}:{call_id} (another call of the batch responds to the same wave)"),
                        });
                    }
                    responses.push(r.clone());
                }
                leads.extend(w.lead.clone());
                if w.is_new {
                    activities.push(w.activity.clone());
                } else {
                    update(tx, self, &w.activity).await?;
                    tx.execute("DELETE FROM activityparty WHERE activityid = $1", vec![w.activity.activityid.into()])
                        .await?;
                }
                for c in &w.closes {
                    close_open_call(tx, c, now).await?;
                }
                if let Some((id, line)) = &w.note_on {
                    tx.execute(
                        "UPDATE activity SET description = CASE WHEN description IS NULL OR description = '' \
                            THEN $2 ELSE description || $3 END, \
                           modifiedon = $4, versionnumber = versionnumber + 1 WHERE activityid = $1 AND statecode = 0",
                        vec![(*id).into(), line.clone().into(), format!("\n{line}").into(), now.into()],
                    )
                    .await?;
                }
                parties.extend(w.parties.iter().map(|p| {
                    vec![
                        w.activity.activityid.into(),
                        p.participationtypemask.into(),
                        p.party.map(|r| r.id).into(),
                        p.party.map(|r| r.kind).into(),
                        p.addressused.clone().into(),
                    ]
                }));
            }
            // R-PBX-1: the call's idempotency + audit row, with the refs it produced.
            let state = match status {
                CallStatus::Processed => EventStatus::Processed,
                CallStatus::Failed => EventStatus::Failed,
                CallStatus::Open | CallStatus::Skipped => EventStatus::Skipped,
            };
            events.push(vec![
                Uuid::new_v4().into(),
                format!("pbx:{provider}").into(),
                call_id.clone().into(),
                now.into(),
                state.into(),
                reason.clone().into(),
                results[i].clone().into(),
                now.into(),
            ]);
        }
        insert_many(tx, self, &leads).await?;
        insert_many(tx, self, &activities).await?;
        insert_rows(
            tx,
            "activityparty (activityid, participationtypemask, partyid, partyidtype, addressused)",
            &parties,
            "",
        )
        .await?;
        insert_many(tx, self, &responses).await?;
        insert_rows(
            tx,
            "inbound_event (id, source, external_id, received_at, status, reason, result, processed_at)",
            &events,
            " ON CONFLICT (source, external_id) DO UPDATE SET status = excluded.status, reason = \
                excluded.reason, result = excluded.result, processed_at = excluded.processed_at",
        )
        .await?;
        Ok(applied)
    }

    /// A call is planned outside this transaction, so two calls processed at once (two
    /// daemons, or concurrent jobs on PostgreSQL) could each plan what only one may make:
    /// a lead for a new number (R-DUP-3), a response to a wave from one caller, by number
    /// or by party (R-RS-2), an open callback for a number (R-PBX-3). Applies that make
    /// any of these are serialised by what they make (`recheck_locks`: advisory locks on
    /// PostgreSQL; SQLite has one writer) and re-check what the plan saw: if such a record
    /// has appeared since, the apply is refused and the job retries with a fresh plan,
    /// which then links to it. Nothing doubled.
    async fn recheck_call_plan(tx: &mut super::db::Tx, provider: &str, call_id: &str, w: &CallWrites) -> Result<()> {
        let Some(num) = w.activity.phonenumber.as_deref().filter(|n| n.starts_with('+')) else { return Ok(()) };
        let conflict = |what: &str| StoreError::Conflict {
            kind: "pbx_call",
            id: format!("{provider}:{call_id} ({what} for {num} appeared meanwhile)"),
        };
        if w.lead.is_some() {
            let hits = super::ops::party_hits(tx, None, Some(num)).await?;
            if !matches!(crate::crm::matching::resolve(&hits), crate::crm::matching::MatchOutcome::None) {
                return Err(conflict("a record"));
            }
        }
        if let Some(r) = &w.response {
            if let Some(wave) = r.campaignactivityid {
                if wave_response_in(tx, wave, r.customerid, r.telephone.as_deref()).await? {
                    return Err(conflict("a response to the wave"));
                }
            }
        }
        if opens_callback(w) && open_callback_in(tx, num, Some(w.activity.activityid)).await?.is_some() {
            return Err(conflict("an open callback"));
        }
        Ok(())
    }

    /// Takes, on PostgreSQL, the advisory locks that serialise these plans' re-checks (see
    /// `recheck_call_plan`): one per number that gets a lead, a response or a callback, and
    /// one per (wave, party) that gets a response. All of a transaction's locks are taken
    /// here, sorted, so two transactions never hold one each while waiting for the other.
    async fn recheck_locks(tx: &mut super::db::Tx, plans: &[&CallWrites]) -> Result<()> {
        if tx.engine() != super::Engine::Postgres {
            return Ok(());
        }
        let mut keys = std::collections::BTreeSet::new();
        for w in plans {
            let Some(num) = w.activity.phonenumber.as_deref().filter(|n| n.starts_with('+')) else { continue };
            if w.lead.is_some() || w.response.is_some() || opens_callback(w) {
                keys.insert(format!("pbx-number:{num}"));
            }
            if let Some((wave, party)) = w.response.as_ref().and_then(|r| r.campaignactivityid.zip(r.customerid)) {
                keys.insert(format!("pbx-response:{wave}:{party}"));
            }
        }
        for k in keys {
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", vec![k.into()]).await?;
        }
        Ok(())
    }

    /// The card a PBX shows for a ringing number: the one record it matches (R-DUP-3), its
    /// name, and its owner's extension when that owner is enabled. None when no single
    /// record has the number.
    pub async fn caller_card(&self, phone: &str) -> Result<Option<crate::crm::calls::CallerCard>> {
        let crate::crm::matching::MatchOutcome::Unique(r) = self.match_party(None, Some(phone)).await? else {
            return Ok(None);
        };
        let mut db = self.db.clone();
        let name = super::names::names_of(&mut db, r.kind, &[r.id]).await?.remove(&r.id).unwrap_or_default();
        let (table, key) = r.kind.table();
        let ext = db
            .fetch_optional(
                &format!(
                    "SELECT u.pbx_extension FROM {table} t JOIN systemuser u ON u.systemuserid = t.ownerid \
                     WHERE t.{key} = $1 AND u.isdisabled = FALSE"
                ),
                vec![r.id.into()],
            )
            .await?
            .map(|row| row.get::<Option<String>>("pbx_extension"))
            .transpose()?
            .flatten();
        Ok(Some(crate::crm::calls::CallerCard { record: r, name, owner_extension: ext }))
    }

    /// An enabled user by PBX extension.
    pub async fn user_by_extension(&self, ext: &str) -> Result<Option<Uuid>> {
        let row = self
            .db
            .clone()
            .fetch_optional(
                "SELECT systemuserid FROM systemuser WHERE pbx_extension = $1 AND isdisabled = FALSE",
                vec![ext.into()],
            )
            .await?;
        row.map(|r| r.get("systemuserid")).transpose()
    }

    /// A user named by id or by internal e-mail (config `owner` values).
    pub async fn resolve_user(&self, owner: &str) -> Result<Option<Uuid>> {
        if let Ok(id) = owner.trim().parse::<Uuid>() {
            let row = self
                .db
                .clone()
                .fetch_optional("SELECT systemuserid FROM systemuser WHERE systemuserid = $1", vec![id.into()])
                .await?;
            return row.map(|r| r.get("systemuserid")).transpose();
        }
        let Ok(email) = EmailAddress::parse_with(owner, &self.norm.email_rules) else { return Ok(None) };
        let users = self.users_by_email(&email).await?;
        Ok((users.len() == 1).then(|| users[0].id))
    }

    /// The open phone calls with a due date for a number, oldest first (R-PBX-3, R-PBX-6):
    /// callbacks and call-list calls, each with when it came to be.
    pub async fn open_phonecalls(&self, e164: &str) -> Result<Vec<crate::crm::calls::OpenCall>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT activityid, COALESCE(actualend, actualstart, createdon) AS since FROM activity \
                 WHERE phonenumber = $1 AND statecode = 0 AND activitytypecode = 'phonecall' AND scheduledend \
                 IS NOT NULL ORDER BY createdon, activityid",
                vec![e164.into()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(crate::crm::calls::OpenCall { id: r.get("activityid")?, since: r.get("since")? }))
            .collect()
    }

    /// The owner of an account, contact or lead, if that owner is an enabled user.
    pub async fn enabled_owner(&self, of: EntityRef) -> Result<Option<Uuid>> {
        if !of.kind.is_party() {
            return Ok(None);
        }
        let (table, key) = of.kind.table();
        let sql = format!(
            "SELECT r.ownerid FROM {table} r JOIN systemuser u ON u.systemuserid = r.ownerid WHERE r.{key} = \
                $1 AND u.isdisabled = FALSE"
        );
        let row = self.db.clone().fetch_optional(&sql, vec![of.id.into()]).await?;
        row.map(|r| r.get("ownerid")).transpose()
    }

    /// R-RS-2: whether this caller (by party or number) already responded to this wave.
    pub async fn wave_response_exists(
        &self,
        wave: Uuid,
        customer: Option<Uuid>,
        telephone: Option<&str>,
    ) -> Result<bool> {
        wave_response_in(&mut self.db.clone(), wave, customer, telephone).await
    }

    /// Phone-call activities recorded for a number (newest first).
    pub async fn phonecalls_for(&self, e164: &str) -> Result<Vec<crate::crm::entities::Activity>> {
        let cols = <crate::crm::entities::Activity as crate::crm::entities::Record>::COLS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .db
            .clone()
            .fetch_all(
                &format!(
                    "SELECT {cols} FROM activity WHERE phonenumber = $1 AND activitytypecode = $2 \
                ORDER BY createdon DESC, activityid"
                ),
                vec![e164.into(), EntityKind::Phonecall.into()],
            )
            .await?;
        rows.iter().map(super::records::from_row).collect()
    }

    /// How far a polled CDR table has been read (the latest call end seen), if ever.
    pub async fn cdr_checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>> {
        let row = self
            .db
            .clone()
            .fetch_optional("SELECT read_until FROM pbx_cdr_checkpoint WHERE source = $1", vec![source.into()])
            .await?;
        row.map(|r| r.get("read_until")).transpose()
    }

    /// Records how far a CDR table has been read, once its rows are stored.
    pub async fn save_cdr_checkpoint(&self, source: &str, read_until: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        self.db
            .clone()
            .execute(
                "INSERT INTO pbx_cdr_checkpoint (source, read_until, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (source) DO UPDATE SET read_until = excluded.read_until, updated_at = excluded.updated_at",
                vec![source.into(), read_until.into(), now.into()],
            )
            .await?;
        Ok(())
    }
}
