//! Party indexing and matching (R-DUP-1..4, R-EM-4) and the daemon tables of DOMAIN §2.13:
//! inbound_event, suppression, dup_candidate, notification_log. Every write here is
//! idempotent by a unique key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

use super::db::{Exec, Value};
use super::{Result, Store, StoreError};
use crate::crm::entities::Record;
use crate::crm::matching::{Hit, MatchOutcome};
use crate::crm::normalize::account_name_key;
use crate::crm::{EmailAddress, EntityKind, EntityRef, Phone};

/// Which fields of a party are matchable, and how.
fn indexed_fields(kind: EntityKind) -> (&'static [&'static str], &'static [&'static str], Option<&'static str>) {
    match kind {
        EntityKind::Contact => {
            (&["emailaddress1", "emailaddress2", "emailaddress3"], &["telephone1", "telephone2", "mobilephone"], None)
        }
        EntityKind::Lead => {
            (&["emailaddress1", "emailaddress2", "emailaddress3"], &["telephone1", "mobilephone"], None)
        }
        EntityKind::Account => (&["emailaddress1", "emailaddress2", "emailaddress3"], &["telephone1"], Some("name")),
        EntityKind::Systemuser => (&["internalemailaddress"], &[], None),
        _ => (&[], &[], None),
    }
}

/// Re-indexes the matchable addresses of a party record in the caller's transaction.
pub(crate) async fn index_contact_points<R: Record>(ex: &mut impl Exec, store: &Store, rec: &R) -> Result<()> {
    index_points(ex, store, rec, true).await
}

/// Indexes a record's contact points; `replace` first drops its old ones (not needed for a
/// record inserted just now, which has none).
pub(crate) async fn index_points<R: Record>(ex: &mut impl Exec, store: &Store, rec: &R, replace: bool) -> Result<()> {
    if replace {
        ex.execute(
            "DELETE FROM contact_point WHERE entitytype = $1 AND entityid = $2",
            vec![R::KIND.as_str().into(), rec.id().to_string().into()],
        )
        .await?;
    }
    insert_points(ex, &contact_points(store, rec)?).await
}

/// One contact_point row: (entitytype, entityid, field, channel, value, statecode).
pub(crate) type PointRow = (&'static str, String, &'static str, &'static str, String, i64);

/// The matchable addresses of a party record (none for other records).
pub(crate) fn contact_points<R: Record>(store: &Store, rec: &R) -> Result<Vec<PointRow>> {
    let (emails, phones, name) = indexed_fields(R::KIND);
    if emails.is_empty() && phones.is_empty() {
        return Ok(Vec::new());
    }
    let json = serde_json::to_value(rec).map_err(StoreError::decode)?;
    let obj = json.as_object().ok_or_else(|| StoreError::decode("record is not an object"))?;
    let text = |f: &str| obj.get(f).and_then(Json::as_str).map(str::to_string);
    let statecode = match R::KIND {
        EntityKind::Systemuser => obj.get("isdisabled").and_then(Json::as_bool).map(|d| d as i64).unwrap_or(0),
        _ => obj.get("statecode").and_then(Json::as_i64).unwrap_or(0),
    };
    let kind = R::KIND.as_str();
    let id = rec.id().to_string();
    let mut points: Vec<PointRow> = Vec::new();
    for f in emails {
        if let Some(e) = text(f).and_then(|raw| EmailAddress::parse_with(&raw, &store.norm.email_rules).ok()) {
            points.push((kind, id.clone(), f, "email", e.as_str().to_string(), statecode));
        }
    }
    for f in phones {
        if let Some(p) = text(f).map(|raw| Phone::parse(&raw, &store.norm.default_region)) {
            if let Some(e) = p.e164() {
                points.push((kind, id.clone(), f, "phone", e.to_string(), statecode));
            }
        }
    }
    if let Some(f) = name {
        if let Some(k) = text(f).and_then(|n| account_name_key(&n)) {
            points.push((kind, id.clone(), f, "name", k, statecode));
        }
    }
    Ok(points)
}

/// Inserts contact_point rows, several per statement.
pub(crate) async fn insert_points(ex: &mut impl Exec, points: &[PointRow]) -> Result<()> {
    let rows: Vec<Vec<Value>> = points
        .iter()
        .map(|(kind, id, field, channel, value, state)| {
            vec![
                (*kind).into(),
                id.clone().into(),
                (*field).into(),
                (*channel).into(),
                value.clone().into(),
                (*state).into(),
            ]
        })
        .collect();
    super::records::insert_rows(
        ex,
        "contact_point (entitytype, entityid, field, channel, value, statecode)",
        &rows,
        "",
    )
    .await?;
    Ok(())
}

/// Party hits (contacts, leads, accounts) for an e-mail and/or an E.164 number.
pub(crate) async fn party_hits(ex: &mut impl Exec, email: Option<&str>, phone: Option<&str>) -> Result<Vec<Hit>> {
    let rows = ex
        .fetch_all(
            "SELECT entitytype, entityid, channel, statecode FROM contact_point \
             WHERE entitytype IN ('contact', 'lead', 'account') \
               AND ((channel = 'email' AND value = $1) OR (channel = 'phone' AND value = $2))",
            vec![email.into(), phone.into()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Hit {
                record: EntityRef::new(r.get("entitytype")?, r.get("entityid")?),
                statecode: r.get("statecode")?,
                by_phone: r.get::<String>("channel")? == "phone",
            })
        })
        .collect()
}

/// Records of `kind` whose `field` (a contact_point field, e.g. `emailaddress1` or `name`)
/// equals `value` among records in `statecode` (None = any state).
pub(crate) async fn field_matches(
    ex: &mut impl Exec,
    kind: EntityKind,
    field: &str,
    value: &str,
    statecode: Option<i32>,
) -> Result<Vec<EntityRef>> {
    let rows = ex
        .fetch_all(
            "SELECT entityid FROM contact_point WHERE entitytype = $1 AND field = $2 AND value = $3 AND ($4 IS \
                NULL OR statecode = $4)",
            vec![kind.into(), field.into(), value.into(), Value::Int(statecode.map(i64::from))],
        )
        .await?;
    rows.iter().map(|r| Ok(EntityRef::new(kind, r.get("entityid")?))).collect()
}

/// An idempotency + audit row for one inbound item (DOMAIN §2.13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    pub id: Uuid,
    /// `imap:<mailbox>`, `pbx:<provider>`, …
    pub source: String,
    /// Normalised Message-ID, PBX call/event id, or a content hash.
    pub external_id: String,
    pub received_at: DateTime<Utc>,
    pub status: crate::crm::status::EventStatus,
    pub reason: Option<String>,
    /// Created entity references and other results, as JSON.
    pub result: Option<Json>,
    #[serde(skip)]
    pub raw: Option<Vec<u8>>,
    pub raw_location: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
}

impl InboundEvent {
    /// The configured mailbox a stored message came from (`imap://<mailbox>/<folder>;UIDVALIDITY=…/;UID=…`).
    pub fn mailbox(&self) -> Option<&str> {
        self.raw_location.as_deref()?.strip_prefix("imap://")?.split('/').next()
    }
}

/// Whether recording an inbound item created a new row.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundOutcome {
    New,
    /// Seen before: the existing row (its status and result tell what happened then).
    Duplicate(Box<InboundEvent>),
}

/// Inbound events kept for an operator to replay: what could not be parsed or applied, and
/// what the loop guard held back (their bytes are stored; see `Store::replay_mail`).
pub(crate) const HELD_FOR_REPLAY: &str =
    "(status IN ('quarantined', 'failed') OR (status = 'skipped' AND class = 'rate_limited'))";

pub(crate) const INBOUND_COLS: &str =
    "id, source, external_id, received_at, status, reason, result, raw, raw_location, processed_at";

pub(crate) fn inbound_from_row(r: &super::db::Row) -> Result<InboundEvent> {
    Ok(InboundEvent {
        id: r.get("id")?,
        source: r.get("source")?,
        external_id: r.get("external_id")?,
        received_at: r.get("received_at")?,
        status: r.get("status")?,
        reason: r.get("reason")?,
        result: r
            .get::<Option<String>>("result")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(StoreError::decode)?,
        raw: r.get("raw")?,
        raw_location: r.get("raw_location")?,
        processed_at: r.get("processed_at")?,
    })
}

/// Inserts the event unless (source, external_id) exists; reports which happened.
pub(crate) async fn record_inbound(ex: &mut impl Exec, ev: &InboundEvent) -> Result<InboundOutcome> {
    let n = ex
        .execute(
            &format!(
                "INSERT INTO inbound_event ({INBOUND_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                $10) ON CONFLICT (source, external_id) DO NOTHING"
            ),
            vec![
                ev.id.into(),
                ev.source.clone().into(),
                ev.external_id.clone().into(),
                ev.received_at.into(),
                ev.status.into(),
                ev.reason.clone().into(),
                ev.result.as_ref().map(|j| j.to_string()).into(),
                ev.raw.clone().into(),
                ev.raw_location.clone().into(),
                ev.processed_at.into(),
            ],
        )
        .await?;
    if n == 1 {
        return Ok(InboundOutcome::New);
    }
    let row = ex
        .fetch_one(
            &format!("SELECT {INBOUND_COLS} FROM inbound_event WHERE source = $1 AND external_id = $2"),
            vec![ev.source.clone().into(), ev.external_id.clone().into()],
        )
        .await?;
    Ok(InboundOutcome::Duplicate(Box::new(inbound_from_row(&row)?)))
}

/// Sets the outcome of an inbound item.
pub(crate) async fn finish_inbound(
    ex: &mut impl Exec,
    id: Uuid,
    status: &str,
    reason: Option<&str>,
    result: Option<&Json>,
    at: DateTime<Utc>,
) -> Result<()> {
    let n = ex
        .execute(
            "UPDATE inbound_event SET status = $2, reason = $3, result = $4, processed_at = $5 WHERE id = $1",
            vec![id.into(), status.into(), reason.into(), result.map(|j| j.to_string()).into(), at.into()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound { kind: "inbound_event", id: id.to_string() });
    }
    Ok(())
}

/// An address-level opt-out (DOMAIN §2.13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    /// A normalised e-mail address or an E.164 number.
    pub address: String,
    /// email | phone
    pub kind: String,
    pub reason: String,
    pub source: String,
    pub detail: Option<String>,
    pub created_on: DateTime<Utc>,
}

/// Adds a suppression unless the address is already suppressed (the first reason stays).
/// Returns whether a row was added.
pub(crate) async fn suppress(ex: &mut impl Exec, s: &Suppression) -> Result<bool> {
    let n = ex
        .execute(
            "INSERT INTO suppression (address, kind, reason, source, detail, created_on) VALUES ($1, $2, $3, \
                $4, $5, $6) ON CONFLICT (address) DO NOTHING",
            vec![
                s.address.clone().into(),
                s.kind.clone().into(),
                s.reason.clone().into(),
                s.source.clone().into(),
                s.detail.clone().into(),
                s.created_on.into(),
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn suppression(ex: &mut impl Exec, address: &str) -> Result<Option<Suppression>> {
    let row = ex
        .fetch_optional(
            "SELECT address, kind, reason, source, detail, created_on FROM suppression WHERE address = $1",
            vec![address.into()],
        )
        .await?;
    row.map(|r| {
        Ok(Suppression {
            address: r.get("address")?,
            kind: r.get("kind")?,
            reason: r.get("reason")?,
            source: r.get("source")?,
            detail: r.get("detail")?,
            created_on: r.get("created_on")?,
        })
    })
    .transpose()
}

/// An ambiguous match waiting for a person (R-DUP-3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DupCandidate {
    pub id: Uuid,
    pub rule: String,
    /// email | phone | name
    pub subject_type: String,
    pub subject_value: String,
    /// What raised it (e.g. an inbound event id); empty if none.
    pub source_ref: String,
    pub candidates: Vec<EntityRef>,
    pub status: crate::crm::status::CandidateStatus,
    pub created_at: DateTime<Utc>,
}

/// Records an ambiguous match once per (rule, value, source); returns whether it is new.
pub(crate) async fn record_dup_candidate(ex: &mut impl Exec, d: &DupCandidate) -> Result<bool> {
    // R-DUP-5: a set a person dismissed is never proposed again.
    if super::merge::all_pairs_dismissed(ex, &d.candidates).await? {
        return Ok(false);
    }
    let n = ex
        .execute(
            "INSERT INTO dup_candidate (id, rule, subject_type, subject_value, source_ref, candidates, status, \
                created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (rule, subject_value, source_ref) DO NOTHING",
            vec![
                d.id.into(),
                d.rule.clone().into(),
                d.subject_type.clone().into(),
                d.subject_value.clone().into(),
                d.source_ref.clone().into(),
                serde_json::to_string(&d.candidates).map_err(StoreError::decode)?.into(),
                d.status.into(),
                d.created_at.into(),
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(crate) async fn dup_candidates(ex: &mut impl Exec, status: &str) -> Result<Vec<DupCandidate>> {
    let rows = ex
        .fetch_all(
            "SELECT id, rule, subject_type, subject_value, source_ref, candidates, status, created_at FROM \
                dup_candidate WHERE status = $1 ORDER BY created_at, id",
            vec![status.into()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DupCandidate {
                id: r.get("id")?,
                rule: r.get("rule")?,
                subject_type: r.get("subject_type")?,
                subject_value: r.get("subject_value")?,
                source_ref: r.get("source_ref")?,
                candidates: serde_json::from_str(&r.get::<String>("candidates")?).map_err(StoreError::decode)?,
                status: r.get("status")?,
                created_at: r.get("created_at")?,
            })
        })
        .collect()
}

/// One (activity, level, due date) notification slot (R-TASK-5).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationClaim {
    pub activityid: Uuid,
    pub activitytype: EntityKind,
    pub level: i32,
    pub scheduledend: DateTime<Utc>,
    /// The owner the escalation is for: a new owner restarts it (R-TASK-5).
    pub ownerid: Uuid,
    pub recipient: String,
    pub recipient_userid: Option<Uuid>,
    /// The digest this notification goes out in, and what it says (JSON).
    pub digest_id: Option<Uuid>,
    pub item: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Jobs of queue `name` still in the apalis tables (any status). Dialect: the two apalis
    /// backends keep their tables under different names.
    /// Jobs of a queue still to run: waiting, running, or failed with attempts left (apalis
    /// fetches those again). Done and killed jobs stay in the table but are not queued.
    pub async fn queued_jobs(&self, name: &str) -> Result<i64> {
        const STILL_TO_RUN: &str = "job_type = $1 AND (status IN ('Pending', 'Queued', 'Running') OR (status = \
            'Failed' AND attempts < max_attempts))";
        let sql = match self.engine() {
            super::Engine::Sqlite => format!("SELECT COUNT(*) AS n FROM Jobs WHERE {STILL_TO_RUN}"),
            super::Engine::Postgres => format!("SELECT COUNT(*) AS n FROM apalis.jobs WHERE {STILL_TO_RUN}"),
        };
        self.db.clone().fetch_one(&sql, vec![name.into()]).await?.get("n")
    }

    /// R-DUP-3: matches an e-mail and/or phone (raw values; normalised here) to one party.
    pub async fn match_party(&self, email: Option<&str>, phone: Option<&str>) -> Result<MatchOutcome> {
        let email = email.and_then(|e| EmailAddress::parse_with(e, &self.norm.email_rules).ok());
        let phone = phone.map(|p| Phone::parse(p, &self.norm.default_region));
        let e164 = phone.as_ref().and_then(Phone::e164);
        if email.is_none() && e164.is_none() {
            return Ok(MatchOutcome::None);
        }
        let hits = party_hits(&mut self.db.clone(), email.as_ref().map(EmailAddress::as_str), e164).await?;
        Ok(crate::crm::matching::resolve(&hits))
    }

    /// R-EM-4 step 1: the enabled or disabled users whose internal address this is.
    pub async fn users_by_email(&self, email: &EmailAddress) -> Result<Vec<EntityRef>> {
        field_matches(&mut self.db.clone(), EntityKind::Systemuser, "internalemailaddress", email.as_str(), None).await
    }

    pub async fn record_inbound(&self, ev: &InboundEvent) -> Result<InboundOutcome> {
        let mut tx = self.db.begin().await?;
        let out = record_inbound(&mut tx, ev).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn finish_inbound(
        &self,
        id: Uuid,
        status: &str,
        reason: Option<&str>,
        result: Option<&Json>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        finish_inbound(&mut self.db.clone(), id, status, reason, result, at).await
    }

    pub async fn inbound_event(&self, source: &str, external_id: &str) -> Result<Option<InboundEvent>> {
        let row = self
            .db
            .clone()
            .fetch_optional(
                &format!("SELECT {INBOUND_COLS} FROM inbound_event WHERE source = $1 AND external_id = $2"),
                vec![source.into(), external_id.into()],
            )
            .await?;
        row.as_ref().map(inbound_from_row).transpose()
    }

    /// One inbound event by its id, with its stored bytes (the quarantine's detail page).
    pub async fn inbound_event_by_id(&self, id: Uuid) -> Result<Option<InboundEvent>> {
        let row = self
            .db
            .clone()
            .fetch_optional(&format!("SELECT {INBOUND_COLS} FROM inbound_event WHERE id = $1"), vec![id.into()])
            .await?;
        row.as_ref().map(inbound_from_row).transpose()
    }

    pub async fn suppress(&self, s: &Suppression) -> Result<bool> {
        suppress(&mut self.db.clone(), s).await
    }

    pub async fn suppression(&self, address: &str) -> Result<Option<Suppression>> {
        suppression(&mut self.db.clone(), address).await
    }

    pub async fn record_dup_candidate(&self, d: &DupCandidate) -> Result<bool> {
        record_dup_candidate(&mut self.db.clone(), d).await
    }

    pub async fn dup_candidates(&self, status: &str) -> Result<Vec<DupCandidate>> {
        dup_candidates(&mut self.db.clone(), status).await
    }

    /// Claims one slot; true if this call created it (so the caller sends), false if it
    /// existed. One (activity, level, due date, owner) is claimed at most once (R-TASK-5).
    pub async fn claim_notification(&self, c: &NotificationClaim) -> Result<bool> {
        Ok(self.claim_notifications(std::slice::from_ref(c)).await?[0])
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
}
