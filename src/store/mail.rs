//! Inbound e-mail: the facts a message's rules need (R-EM-3 correlation, R-EM-4 sender
//! resolution, R-RS-2, suppression, the sender rate), applying the plan with its
//! idempotency row (R-EM-1) in one transaction, quarantine and replay, and the mailbox
//! checkpoint and lease. Several messages share one transaction (group commit); a message
//! whose writes fail is retried alone and recorded as failed, never dropped.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use std::collections::{BTreeSet, HashMap, HashSet};

use super::db::{Exec, Tx, Value};
use super::ops::{self, DupCandidate, InboundEvent, Suppression};
use super::records::{get, insert_many, insert_rows};
use super::{Result, Store, StoreError};
use crate::crm::entities::{Activity, Lead};
use crate::crm::inbound::{FailedRecipient, Malformed, ParsedMail, Severity, hits_unsubscribe_address};
use crate::crm::mail::{MailContext, MailPlan, MailboxPolicy, Outbound, Wave, plan_mail};
use crate::crm::matching::{Hit, MatchOutcome, resolve_sender};
use crate::crm::status::EventStatus;
use crate::crm::{EmailAddress, EntityKind, EntityRef};

/// The inbound_event source of every mailbox: one key space, so the same message in two
/// mailboxes is one event (R-EM-1).
pub const SOURCE: &str = "imap";

/// One fetched message, parsed or not.
#[derive(Debug)]
pub struct MailInput {
    pub parsed: std::result::Result<ParsedMail, Malformed>,
    /// Kept for quarantined messages (replay after a fix); None when too big to keep.
    pub raw: Option<Vec<u8>>,
    /// Where the message was: `imap://<mailbox>/<folder>;UIDVALIDITY=v/;UID=n` (RFC 5092 style).
    pub location: String,
    /// Key for an unparsable message (hash of its bytes or headers); unused (empty) when
    /// `parsed` is Ok.
    pub raw_key: String,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MailOutcome {
    pub key: String,
    pub status: EventStatus,
    pub class: Option<String>,
    pub reason: Option<String>,
    pub created: Vec<EntityRef>,
    pub event_id: Option<Uuid>,
}

/// A mailbox folder's checkpoint and lease row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MailboxState {
    pub mailbox: String,
    pub folder: String,
    pub uidvalidity: Option<i64>,
    pub last_uid: i64,
    pub lease_holder: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub state: String,
    pub state_detail: Option<String>,
    pub last_poll_at: Option<DateTime<Utc>>,
}

/// The mailbox lease a batch is written under: the batch commits only while `holder` still
/// holds it (issue 22). The check is the transaction's first statement and, on PostgreSQL,
/// locks the lease row until the commit, so a takeover waits for the batch to end and a
/// holder that lost the lease (paused past `lease_secs`) writes nothing.
#[derive(Debug, Clone)]
pub struct LeaseFence {
    pub mailbox: String,
    pub folder: String,
    pub holder: String,
}

impl LeaseFence {
    async fn check(&self, tx: &mut Tx, now: DateTime<Utc>) -> Result<()> {
        let n = tx
            .execute(
                "UPDATE mailbox_state SET updated_at = $4 WHERE mailbox = $1 AND folder = $2 AND lease_holder \
                    = $3 AND lease_until >= $4",
                vec![self.mailbox.clone().into(), self.folder.clone().into(), self.holder.clone().into(), now.into()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::LeaseLost(format!("mailbox {} {}", self.mailbox, self.folder)));
        }
        Ok(())
    }
}

/// Bounce settings the store applies.
#[derive(Debug, Clone, Copy)]
pub struct BounceRules {
    /// Soft bounces before an address is suppressed.
    pub soft_limit: i64,
}

impl Store {
    /// Processes a batch of messages in one transaction. If the batch fails on a write,
    /// each message is retried in its own transaction so one bad message cannot block the
    /// others; a message that still fails is recorded as `failed` with the error.
    #[allow(clippy::too_many_arguments)] // the batch, its rules, and the lease it is written under
    pub async fn ingest_mail(
        &self,
        items: &[MailInput],
        policy: &MailboxPolicy,
        bounces: BounceRules,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
        fence: Option<&LeaseFence>,
    ) -> Result<Vec<MailOutcome>> {
        let attempt = async {
            let mut tx = self.db.begin().await?;
            if let Some(f) = fence {
                f.check(&mut tx, now).await?;
            }
            let mut facts = self.batch_facts(&mut tx, items, now).await?;
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(self.ingest_one(&mut tx, it, &mut facts, policy, bounces, tz, now).await?);
            }
            self.flush(&mut tx, &mut facts.pending).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(out)
        };
        match attempt.await {
            Ok(out) => Ok(out),
            Err(e @ StoreError::LeaseLost(_)) => Err(e),
            Err(e) if transient(&e) => Err(e),
            Err(batch_err) if items.len() > 1 => {
                tracing::warn!(error = %batch_err, n = items.len(), "mail batch failed; retrying its messages \
                    one by one");
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push(self.ingest_alone(it, policy, bounces, tz, now, None, fence).await?);
                }
                Ok(out)
            }
            Err(_) => Ok(vec![self.ingest_alone(&items[0], policy, bounces, tz, now, None, fence).await?]),
        }
    }

    /// One message in its own transaction; a write error becomes a `failed` event row.
    #[allow(clippy::too_many_arguments)]
    async fn ingest_alone(
        &self,
        it: &MailInput,
        policy: &MailboxPolicy,
        bounces: BounceRules,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
        replacing: Option<Uuid>,
        fence: Option<&LeaseFence>,
    ) -> Result<MailOutcome> {
        let mut tx = self.db.begin().await?;
        if let Some(f) = fence {
            f.check(&mut tx, now).await?;
        }
        let outcome = async {
            if let Some(old) = replacing {
                tx.execute(
                    &format!("DELETE FROM inbound_event WHERE id = $1 AND {}", ops::HELD_FOR_REPLAY),
                    vec![old.into()],
                )
                .await?;
            }
            let mut facts = self.batch_facts(&mut tx, std::slice::from_ref(it), now).await?;
            if replacing.is_some() {
                // An operator's replay is deliberate: the loop guard does not hold it back again.
                facts.recent.clear();
            }
            let mut o = self.ingest_one(&mut tx, it, &mut facts, policy, bounces, tz, now).await?;
            self.flush(&mut tx, &mut facts.pending).await?;
            // A replayed message keeps its event id, whatever it becomes (ids printed by
            // `inflow mail quarantine` stay valid across replays).
            if let (Some(old), Some(new)) = (replacing, o.event_id) {
                tx.execute("UPDATE inbound_event SET id = $1 WHERE id = $2", vec![old.into(), new.into()]).await?;
                o.event_id = Some(old);
            }
            Ok(o)
        }
        .await;
        match outcome {
            Ok(o) => {
                tx.commit().await?;
                Ok(o)
            }
            Err(e) if transient(&e) => Err(e),
            // Not the message's fault: the worker retries the batch, which then finds it seen.
            Err(e @ (StoreError::LeaseLost(_) | StoreError::Overtaken(_))) => Err(e),
            Err(e) => {
                drop(tx);
                let key = it.parsed.as_ref().map(|p| p.key.clone()).unwrap_or_else(|_| it.raw_key.clone());
                let reason = format!("processing failed: {e}");
                tracing::error!(key = %key, error = %e, "inbound message could not be applied; kept as failed \
                    for replay");
                let mut tx = self.db.begin().await?;
                let ev = InboundEvent {
                    id: replacing.unwrap_or_else(Uuid::new_v4),
                    ..event(&key, EventStatus::Failed, Some(reason.clone()), None, it, now)
                };
                if let Some(old) = replacing {
                    tx.execute("DELETE FROM inbound_event WHERE id = $1", vec![old.into()]).await?;
                }
                ops::record_inbound(&mut tx, &ev).await?;
                tx.commit().await?;
                Ok(MailOutcome {
                    key,
                    status: EventStatus::Failed,
                    class: None,
                    reason: Some(reason),
                    created: vec![],
                    event_id: Some(ev.id),
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn ingest_one(
        &self,
        tx: &mut Tx,
        it: &MailInput,
        facts: &mut BatchFacts,
        policy: &MailboxPolicy,
        bounces: BounceRules,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Result<MailOutcome> {
        let mail = match &it.parsed {
            Err(m) => {
                let ev = event(&it.raw_key, EventStatus::Quarantined, Some(m.to_string()), None, it, now);
                let status = match ops::record_inbound(tx, &ev).await? {
                    ops::InboundOutcome::New => EventStatus::Quarantined,
                    ops::InboundOutcome::Duplicate(_) => EventStatus::Duplicate,
                };
                return Ok(MailOutcome {
                    key: it.raw_key.clone(),
                    status,
                    class: None,
                    reason: Some(m.to_string()),
                    created: vec![],
                    event_id: Some(ev.id),
                });
            }
            Ok(m) => m,
        };
        // R-EM-1: seen before (here, in another mailbox, or earlier in this batch) → nothing new.
        // A message one mailbox skipped (its filter) may still count in another.
        if let Some(status) = facts.seen.get(&mail.key).filter(|s| **s != EventStatus::Skipped) {
            return Ok(MailOutcome {
                key: mail.key.clone(),
                status: EventStatus::Duplicate,
                class: None,
                reason: Some(format!("already {status}")),
                created: vec![],
                event_id: None,
            });
        }
        let ctx = self.mail_context(tx, facts, mail, policy, tz, now).await?;
        let plan = plan_mail(mail, &ctx, policy);
        self.apply_mail_plan(tx, &mut facts.pending, mail, &plan, bounces, now).await?;
        facts.learn(mail, &ctx, &plan);
        let created = plan.writes.created();
        let result = json!({
            "class": plan.class,
            "created": created,
            "correlation": ctx.outbound.as_ref().map(|o| json!({"activityid": o.activity_id, "method": o.method,
                "wave": o.wave.map(|w| w.activity_id)})),
            "bounce": plan.writes.bounce,
        });
        let id = Uuid::new_v4();
        let sender = ctx.sender.as_ref().map(|e| e.as_str().to_string());
        // A message the loop guard skipped keeps its bytes: it is listed with the quarantine
        // and can be replayed (nothing is ever lost to the guard).
        let raw = if plan.class == "rate_limited" { it.raw.clone() } else { None };
        let subject: String = mail.subject.chars().take(300).collect();
        facts.pending.events.push(vec![
            id.into(),
            SOURCE.into(),
            mail.key.clone().into(),
            now.into(),
            plan.status.into(),
            plan.reason.clone().into(),
            result.to_string().into(),
            it.location.clone().into(),
            now.into(),
            sender.or_else(|| (!mail.from.address.is_empty()).then(|| mail.from.address.to_lowercase())).into(),
            plan.class.into(),
            subject.into(),
            mail.date.into(),
            raw.into(),
        ]);
        let ev = InboundEvent { id, ..event(&mail.key, plan.status, None, None, it, now) };
        Ok(MailOutcome {
            key: mail.key.clone(),
            status: plan.status,
            class: Some(plan.class.into()),
            reason: plan.reason,
            created,
            event_id: Some(ev.id),
        })
    }

    /// Everything the messages of a batch need to know, in a handful of queries (not a
    /// dozen per message): seen keys, the senders' contact points, the outbound mail they
    /// answer, suppressions, the senders' recent counts, existing responses.
    async fn batch_facts(&self, tx: &mut Tx, items: &[MailInput], now: DateTime<Utc>) -> Result<BatchFacts> {
        let mut f = BatchFacts::default();
        let parsed: Vec<&ParsedMail> = items.iter().filter_map(|i| i.parsed.as_ref().ok()).collect();
        let senders: Vec<String> = parsed
            .iter()
            .filter_map(|m| EmailAddress::parse_with(&m.from.address, &self.norm.email_rules).ok())
            .map(|e| e.as_str().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let sv: Vec<Value> = senders.iter().map(|s| s.clone().into()).collect();
        // PostgreSQL runs under READ COMMITTED: two daemons (or mailboxes) must not both
        // decide "unknown sender → new lead" for one address. Lock the batch's senders (in
        // sorted order) until commit; SQLite's BEGIN IMMEDIATE already serialises writers.
        if tx.engine() == super::Engine::Postgres && !sv.is_empty() {
            for chunk in sv.chunks(super::ROWS_PER_STATEMENT) {
                let list = (1..=chunk.len()).map(|i| format!("(CAST(${i} AS TEXT))")).collect::<Vec<_>>().join(", ");
                tx.fetch_all(
                    &format!(
                        "SELECT COUNT(l) AS n FROM (SELECT \
                    CAST(pg_advisory_xact_lock(hashtextextended(v, 7)) AS TEXT) AS l FROM (SELECT v FROM \
                    (VALUES {list}) AS t(v) ORDER BY v) AS s) AS x"
                    ),
                    chunk.to_vec(),
                )
                .await?;
            }
        }
        // Seen keys only now, under the senders' locks: a worker that recorded one of these
        // messages (the same message in another mailbox) has committed by the time the locks
        // are ours, so it reads as seen here instead of being planned twice.
        let keys: Vec<Value> = parsed.iter().map(|m| m.key.clone().into()).collect();
        for r in in_chunks(
            tx,
            "SELECT external_id, status FROM inbound_event WHERE source = $1 AND external_id IN ({})",
            vec![SOURCE.into()],
            &keys,
        )
        .await?
        {
            f.seen.insert(r.get("external_id")?, r.get("status")?);
        }
        for r in in_chunks(
            tx,
            "SELECT entitytype, entityid, statecode, value FROM contact_point WHERE channel \
            = 'email' AND value IN ({})",
            vec![],
            &sv,
        )
        .await?
        {
            let kind: EntityKind = r.get("entitytype")?;
            f.points
                .entry(r.get("value")?)
                .or_default()
                .push((EntityRef::new(kind, r.get("entityid")?), r.get("statecode")?));
        }
        for r in in_chunks(tx, "SELECT address FROM suppression WHERE address IN ({})", vec![], &sv).await? {
            f.suppressed.insert(r.get("address")?);
        }
        // The loop guard counts a sender's records by the messages' own dates (R-EM-6 rate):
        // a first poll of a mailbox with years of history is no loop.
        let oldest = parsed.iter().map(|m| message_time(m, now)).min().unwrap_or(now);
        for r in in_chunks(
            tx,
            "SELECT sender, COALESCE(message_date, received_at) AS t FROM inbound_event WHERE \
                COALESCE(message_date, received_at) > $1 AND status = 'processed' \
             AND class IN ('inquiry', 'reply', 'unsubscribe') AND sender IN ({})",
            vec![(oldest - Duration::hours(1)).into()],
            &sv,
        )
        .await?
        {
            f.recent.entry(r.get("sender")?).or_default().push(r.get("t")?);
        }
        // R-EM-3 candidates: X-header ids, Message-IDs, tokens (for bounces: the original's).
        let (mut ids, mut mids, mut tokens) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for m in &parsed {
            if let Some(c) = &m.complaint {
                ids.extend(c.original_activity);
                mids.extend(c.original_message_id.clone());
            }
            match &m.bounce {
                Some(b) => {
                    ids.extend(b.original_activity);
                    mids.extend(b.original_message_id.clone());
                }
                None => {
                    ids.extend(m.correlation.activity);
                    mids.extend(m.correlation.message_ids.iter().take(20).cloned());
                    tokens.extend(m.correlation.token.clone());
                }
            }
        }
        let cols =
            <Activity as crate::crm::entities::Record>::COLS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
        let base =
            format!("SELECT {cols} FROM activity WHERE activitytypecode = 'email' AND directioncode = TRUE AND ");
        for (field, vals) in [
            ("activityid", ids.into_iter().map(Value::from).collect::<Vec<_>>()),
            ("messageid", mids.into_iter().map(Value::from).collect()),
            ("trackingtoken", tokens.into_iter().map(Value::from).collect()),
        ] {
            for r in in_chunks(tx, &format!("{base}{field} IN ({{}})"), vec![], &vals).await? {
                let a: Activity = super::records::from_row(&r)?;
                f.outbound.push(a);
            }
        }
        let waves: Vec<Value> = f
            .outbound
            .iter()
            .filter(|a| {
                matches!(a.regardingobjectidtype, Some(EntityKind::Campaignactivity | EntityKind::Bulkoperation))
            })
            .filter_map(|a| a.regardingobjectid)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(Value::from)
            .collect();
        // A wave is a campaign activity's (responses regard the campaign) or an e-mail quick
        // campaign's (R-QC-1: they regard its bulkoperation).
        for (sql, kind) in [
            ("SELECT activityid, regardingobjectid, ownerid FROM campaignactivity WHERE activityid IN ({})", None),
            (
                "SELECT activityid, activityid AS regardingobjectid, ownerid FROM bulkoperation WHERE \
                    activityid IN ({})",
                Some(EntityKind::Bulkoperation),
            ),
        ] {
            for r in in_chunks(tx, sql, vec![], &waves).await? {
                let w = Wave {
                    activity_id: r.get("activityid")?,
                    regarding: EntityRef::new(kind.unwrap_or(EntityKind::Campaign), r.get("regardingobjectid")?),
                    owner: r.get("ownerid")?,
                };
                f.waves.insert(w.activity_id, w);
            }
        }
        // R-RS-2: existing responses on those waves by these senders (by address or party),
        // looked up by sender, so a wave with 100,000 responses costs no more than a new one.
        if !waves.is_empty() {
            let parties: Vec<Value> = f
                .points
                .values()
                .flatten()
                .filter(|(r, _)| r.kind.is_party())
                .map(|(r, _)| Value::from(r.id))
                .collect::<Vec<_>>();
            let mut rows = in_chunks(
                tx,
                "SELECT campaignactivityid, customerid, emailaddress FROM campaignresponse WHERE emailaddress IN ({})",
                vec![],
                &sv,
            )
            .await?;
            rows.extend(
                in_chunks(
                    tx,
                    "SELECT campaignactivityid, customerid, emailaddress FROM \
                campaignresponse WHERE customerid IN ({})",
                    vec![],
                    &parties,
                )
                .await?,
            );
            for r in rows {
                let Some(wave) = r.get::<Option<Uuid>>("campaignactivityid")? else { continue };
                if let Some(c) = r.get::<Option<Uuid>>("customerid")? {
                    f.responses.insert((wave, c.to_string()));
                }
                if let Some(e) = r.get::<Option<String>>("emailaddress")? {
                    f.responses.insert((wave, e.to_lowercase()));
                }
            }
        }
        Ok(f)
    }

    async fn mail_context(
        &self,
        tx: &mut Tx,
        facts: &BatchFacts,
        mail: &ParsedMail,
        policy: &MailboxPolicy,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Result<MailContext> {
        let sender = EmailAddress::parse_with(&mail.from.address, &self.norm.email_rules).ok();
        let addr = sender.as_ref().map(|e| e.as_str().to_string());
        let points: &[(EntityRef, i32)] =
            addr.as_ref().and_then(|a| facts.points.get(a)).map(Vec::as_slice).unwrap_or(&[]);
        let internal_sender = points.iter().any(|(r, _)| r.kind == EntityKind::Systemuser);
        let party = if internal_sender {
            MatchOutcome::None
        } else {
            let hits: Vec<Hit> = points
                .iter()
                .filter(|(r, _)| r.kind.is_party())
                .map(|(r, st)| Hit { record: *r, statecode: *st, by_phone: false })
                .collect();
            resolve_sender(&hits)
        };
        let party_lead = match party.unique() {
            Some(r) if r.kind == EntityKind::Lead => get::<Lead>(tx, r.id).await?,
            _ => None,
        };
        let outbound = facts.correlate(mail);
        let response_exists = match outbound.as_ref().and_then(|o| o.wave) {
            Some(w) => {
                party.unique().is_some_and(|p| facts.responses.contains(&(w.activity_id, p.id.to_string())))
                    || addr.as_ref().is_some_and(|a| facts.responses.contains(&(w.activity_id, a.clone())))
            }
            None => false,
        };
        let suppressed = addr.as_ref().is_some_and(|a| facts.suppressed.contains(a));
        let at = message_time(mail, now);
        let recent_from_sender = addr
            .as_ref()
            .and_then(|a| facts.recent.get(a))
            .map_or(0, |ts| ts.iter().filter(|t| **t > at - Duration::hours(1) && **t <= at).count() as i64);
        let mailto_unsubscribe =
            policy.unsubscribe_mailto.as_deref().is_some_and(|m| hits_unsubscribe_address(&mail.recipients, m));
        Ok(MailContext {
            sender,
            internal_sender,
            party,
            party_lead,
            outbound,
            response_exists,
            suppressed,
            mailto_unsubscribe,
            recent_from_sender,
            tz,
            now,
            ids: [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()],
        })
    }

    /// Writes what a plan changes in existing rows now, and queues its new rows (inserted
    /// together by `flush` before the batch commits).
    async fn apply_mail_plan(
        &self,
        tx: &mut Tx,
        pending: &mut Pending,
        mail: &ParsedMail,
        plan: &MailPlan,
        bounces: BounceRules,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let w = &plan.writes;
        if let Some(l) = &w.lead_update {
            // R-RS-3 b: read in this transaction, so its version is current.
            super::records::update(tx, self, l).await?;
        }
        pending.leads.extend(w.lead.clone());
        pending.contacts.extend(w.contact.clone());
        pending.emails.extend(w.task.clone());
        if let Some(e) = &w.email {
            pending.emails.push(e.clone());
            for p in &w.parties {
                pending.parties.push(vec![
                    e.activityid.into(),
                    p.participationtypemask.into(),
                    p.party.map(|r| r.id).into(),
                    p.party.map(|r| r.kind).into(),
                    p.addressused.clone().into(),
                ]);
            }
        }
        pending.responses.extend(w.response.clone());
        if let Some(p) = w.opt_out {
            // R-OPT-3: donotsendmm (what CRM's auto-unsubscribe sets) and donotbulkemail.
            if p.kind.is_party() {
                let (table, key) = p.kind.table();
                tx.execute(
                    &format!(
                        "UPDATE {table} SET donotsendmm = TRUE, donotbulkemail = TRUE, modifiedon = $2, \
                        versionnumber = versionnumber + 1 WHERE {key} = $1"
                    ),
                    vec![p.id.into(), now.into()],
                )
                .await?;
            }
        }
        for (address, reason) in &w.suppress {
            ops::suppress(
                tx,
                &Suppression {
                    address: address.clone(),
                    kind: "email".into(),
                    reason: reason.clone(),
                    source: format!("{SOURCE}:{}", mail.key),
                    detail: None,
                    created_on: now,
                },
            )
            .await?;
        }
        if let Some(b) = &w.bounce {
            let mut any_hard = false;
            // Both the failed mailbox and the address written to (an alias in front of it).
            // (Collected first: an iterator of closures held across the awaits below would make
            // this future not Send.)
            let targets: Vec<(&FailedRecipient, String)> =
                b.recipients.iter().flat_map(|r| r.addresses().map(move |a| (r, a.to_string()))).collect();
            for (r, address) in targets {
                let Ok(addr) = EmailAddress::parse_with(&address, &self.norm.email_rules) else { continue };
                let (s, h, d) = match r.severity {
                    Severity::Hard => (0, 1, 0),
                    Severity::Soft => (1, 0, 0),
                    Severity::Delayed => (0, 0, 1),
                };
                any_hard |= r.severity == Severity::Hard;
                // The address's soft bounces so far come back with the upsert (one statement).
                let soft: i64 = tx
                    .fetch_one(
                        "INSERT INTO mail_bounce (address, soft_count, hard_count, delayed_count, last_status, \
                        last_diagnostic, last_at, last_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (address) DO UPDATE SET soft_count = mail_bounce.soft_count + \
                     excluded.soft_count, hard_count = mail_bounce.hard_count + excluded.hard_count, \
                       delayed_count = mail_bounce.delayed_count + excluded.delayed_count, last_status = \
                       excluded.last_status, last_diagnostic = excluded.last_diagnostic, \
                       last_at = excluded.last_at, last_reason = excluded.last_reason RETURNING soft_count",
                        vec![
                            addr.as_str().into(),
                            (s as i64).into(),
                            (h as i64).into(),
                            (d as i64).into(),
                            r.status.clone().into(),
                            r.diagnostic.clone().into(),
                            now.into(),
                            r.reason.as_str().into(),
                        ],
                    )
                    .await?
                    .get("soft_count")?;
                if let Some(reason) = crate::crm::bounce::suppression(
                    r.severity,
                    r.reason,
                    r.status.as_deref(),
                    soft,
                    bounces.soft_limit,
                    b.ours,
                ) {
                    ops::suppress(
                        tx,
                        &Suppression {
                            address: addr.as_str().into(),
                            kind: "email".into(),
                            reason,
                            source: format!("{SOURCE}:{}", mail.key),
                            detail: r.diagnostic.clone(),
                            created_on: now,
                        },
                    )
                    .await?;
                }
            }
            // R-WV-4: the delivery that bounced goes to 8 Failed (statecode back to Open).
            if let (Some(d), true) = (b.delivery, any_hard && b.ours) {
                tx.execute(
                    "UPDATE activity SET statecode = 0, statuscode = 8, modifiedon = $2, versionnumber = \
                        versionnumber + 1 WHERE activityid = $1 AND activitytypecode = 'email' AND \
                        directioncode = TRUE",
                    vec![d.into(), now.into()],
                )
                .await?;
            }
        }
        if let Some(c) = &w.dup_candidates {
            ops::record_dup_candidate(
                tx,
                &DupCandidate {
                    id: Uuid::new_v4(),
                    rule: "R-EM-4".into(),
                    subject_type: "email".into(),
                    subject_value: w.parties.first().and_then(|p| p.addressused.clone()).unwrap_or_default(),
                    source_ref: format!("{SOURCE}:{}", mail.key),
                    candidates: c.clone(),
                    status: crate::crm::status::CandidateStatus::Open,
                    created_at: now,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Inserts a batch's queued rows, several per statement, parents before children.
    async fn flush(&self, tx: &mut Tx, p: &mut Pending) -> Result<()> {
        insert_many(tx, self, &std::mem::take(&mut p.leads)).await?;
        insert_many(tx, self, &std::mem::take(&mut p.contacts)).await?;
        insert_many(tx, self, &std::mem::take(&mut p.emails)).await?;
        insert_rows(
            tx,
            "activityparty (activityid, participationtypemask, partyid, partyidtype, addressused)",
            &std::mem::take(&mut p.parties),
            "",
        )
        .await?;
        insert_many(tx, self, &std::mem::take(&mut p.responses)).await?;
        // Each event is new or replaces a `skipped` one. Fewer rows written means another
        // worker recorded one of these messages after this batch read its seen keys: what
        // the batch planned for it would double that worker's records (issue 22), so the
        // batch is undone and retried message by message, which then finds it seen.
        let events = std::mem::take(&mut p.events);
        let written = insert_rows(
            tx,
            "inbound_event (id, source, external_id, received_at, status, reason, result, raw_location, \
                processed_at, sender, class, subject, message_date, raw)",
            &events,
            " ON CONFLICT (source, external_id) DO UPDATE SET status = excluded.status, reason = \
                excluded.reason, result = excluded.result, raw_location = excluded.raw_location, \
               processed_at = excluded.processed_at, sender = excluded.sender, class = excluded.class, subject \
               = excluded.subject, message_date = excluded.message_date, \
               raw = excluded.raw WHERE inbound_event.status = 'skipped'",
        )
        .await?;
        if written < events.len() as u64 {
            let missing = events.len() as u64 - written;
            return Err(StoreError::Overtaken(format!("{missing} of the batch's {} mail events", events.len())));
        }
        Ok(())
    }

    /// Quarantined (or failed) mail events, oldest first.
    pub async fn quarantined_mail(&self) -> Result<Vec<InboundEvent>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                &format!(
                    "SELECT {} FROM inbound_event WHERE source = $1 AND {} ORDER BY received_at, id",
                    ops::INBOUND_COLS,
                    ops::HELD_FOR_REPLAY
                ),
                vec![SOURCE.into()],
            )
            .await?;
        rows.iter().map(ops::inbound_from_row).collect()
    }

    /// Replays one quarantined or failed message: its row is replaced by the outcome of
    /// processing it again (still quarantined if it still cannot be parsed).
    pub async fn replay_mail(
        &self,
        event_id: Uuid,
        it: &MailInput,
        policy: &MailboxPolicy,
        bounces: BounceRules,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Result<MailOutcome> {
        self.ingest_alone(it, policy, bounces, tz, now, Some(event_id), None).await
    }

    // ------------------------------------------------------------ checkpoint and lease

    /// Takes or renews the lease on a mailbox folder; true if `holder` has it until `now + ttl`.
    pub async fn acquire_mailbox_lease(
        &self,
        mailbox: &str,
        folder: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO mailbox_state (mailbox, folder, updated_at) VALUES ($1, $2, $3) ON CONFLICT (mailbox, \
                folder) DO NOTHING",
            vec![mailbox.into(), folder.into(), now.into()],
        )
        .await?;
        let n = tx
            .execute(
                "UPDATE mailbox_state SET lease_holder = $3, lease_until = $4, updated_at = $5 \
                 WHERE mailbox = $1 AND folder = $2 AND (lease_holder IS NULL OR lease_holder = $3 OR \
                 lease_until < $5)",
                vec![mailbox.into(), folder.into(), holder.into(), (now + ttl).into(), now.into()],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Takes the lease from `from`, a holder known to be gone (its process ended on this
    /// host), at once; only if `from` still holds it. True if `holder` has it now.
    pub async fn take_over_mailbox_lease(
        &self,
        mailbox: &str,
        folder: &str,
        from: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self
            .db
            .clone()
            .execute(
                "UPDATE mailbox_state SET lease_holder = $4, lease_until = $5, updated_at = $6 WHERE mailbox = \
                    $1 AND folder = $2 AND lease_holder = $3",
                vec![mailbox.into(), folder.into(), from.into(), holder.into(), (now + ttl).into(), now.into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Gives the lease up (clean shutdown) so another daemon need not wait for it to expire.
    pub async fn release_mailbox_lease(&self, mailbox: &str, folder: &str, holder: &str) -> Result<()> {
        self.db
            .clone()
            .execute(
                "UPDATE mailbox_state SET lease_holder = NULL, lease_until = NULL WHERE mailbox = $1 AND \
                folder = $2 AND lease_holder = $3",
                vec![mailbox.into(), folder.into(), holder.into()],
            )
            .await?;
        Ok(())
    }

    /// Moves the checkpoint and renews the lease; only the lease holder may. False if the
    /// lease was lost.
    #[allow(clippy::too_many_arguments)] // the checkpoint's own fields, each named at the call
    pub async fn save_mailbox_checkpoint(
        &self,
        mailbox: &str,
        folder: &str,
        holder: &str,
        uidvalidity: i64,
        last_uid: i64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self
            .db
            .clone()
            .execute(
                "UPDATE mailbox_state SET uidvalidity = $4, last_uid = $5, last_poll_at = $6, updated_at = $6, \
                    lease_until = $7 WHERE mailbox = $1 AND folder = $2 AND lease_holder = $3",
                vec![
                    mailbox.into(),
                    folder.into(),
                    holder.into(),
                    uidvalidity.into(),
                    last_uid.into(),
                    now.into(),
                    (now + lease).into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Counts messages of a batch that were seen before (the mailboxes ops view).
    pub async fn add_mailbox_duplicates(&self, mailbox: &str, folder: &str, n: i64) -> Result<()> {
        if n > 0 {
            self.db
                .clone()
                .execute(
                    "UPDATE mailbox_state SET duplicates = duplicates + $3 WHERE mailbox = $1 AND folder = $2",
                    vec![mailbox.into(), folder.into(), n.into()],
                )
                .await?;
        }
        Ok(())
    }

    /// Records the connection state operators see (and metrics read).
    pub async fn set_mailbox_status(
        &self,
        mailbox: &str,
        folder: &str,
        state: &str,
        detail: Option<&str>,
        polled: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.db
            .clone()
            .execute(
                "UPDATE mailbox_state SET state = $3, state_detail = $4, last_poll_at = CASE WHEN $5 THEN $6 \
                    ELSE last_poll_at END, updated_at = $6 WHERE mailbox = $1 AND folder = $2",
                vec![mailbox.into(), folder.into(), state.into(), detail.into(), polled.into(), now.into()],
            )
            .await?;
        Ok(())
    }

    pub async fn mailbox_state(&self, mailbox: &str, folder: &str) -> Result<Option<MailboxState>> {
        let r = self
            .db
            .clone()
            .fetch_optional(
                "SELECT mailbox, folder, uidvalidity, last_uid, lease_holder, lease_until, state, \
                    state_detail, last_poll_at FROM mailbox_state WHERE mailbox = $1 AND folder = $2",
                vec![mailbox.into(), folder.into()],
            )
            .await?;
        r.map(|r| {
            Ok(MailboxState {
                mailbox: r.get("mailbox")?,
                folder: r.get("folder")?,
                uidvalidity: r.get("uidvalidity")?,
                last_uid: r.get("last_uid")?,
                lease_holder: r.get("lease_holder")?,
                lease_until: r.get("lease_until")?,
                state: r.get("state")?,
                state_detail: r.get("state_detail")?,
                last_poll_at: r.get("last_poll_at")?,
            })
        })
        .transpose()
    }

    /// Counts of mail inbound events by status and class (tests, status views).
    pub async fn mail_event_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT status, COALESCE(class, '') AS class, COUNT(*) AS n FROM inbound_event WHERE \
                source = $1 GROUP BY status, class ORDER BY status, class",
                vec![SOURCE.into()],
            )
            .await?;
        rows.iter().map(|r| Ok((r.get("status")?, r.get("class")?, r.get("n")?))).collect()
    }
}

/// Errors worth retrying the whole batch for (the database, not the message): lost
/// connections, and on PostgreSQL serialization failures, deadlocks and shutdowns.
fn transient(e: &StoreError) -> bool {
    match e {
        StoreError::Unavailable(_) => true,
        StoreError::Db(
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed,
        ) => true,
        StoreError::Db(sqlx::Error::Database(d)) => d.code().is_some_and(|c| {
            matches!(c.as_ref(), "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "55P03") || c.starts_with("08")
        }),
        _ => false,
    }
}

fn event(
    key: &str,
    status: EventStatus,
    reason: Option<String>,
    result: Option<serde_json::Value>,
    it: &MailInput,
    now: DateTime<Utc>,
) -> InboundEvent {
    InboundEvent {
        id: Uuid::new_v4(),
        source: SOURCE.into(),
        external_id: key.into(),
        received_at: now,
        status,
        reason,
        result,
        raw: if status.keeps_raw() { it.raw.clone() } else { None },
        raw_location: Some(it.location.clone()),
        processed_at: Some(now),
    }
}

/// New rows of a batch, inserted together at its end.
#[derive(Default)]
struct Pending {
    leads: Vec<Lead>,
    contacts: Vec<crate::crm::entities::Contact>,
    emails: Vec<Activity>,
    responses: Vec<crate::crm::entities::CampaignResponse>,
    parties: Vec<Vec<Value>>,
    events: Vec<Vec<Value>>,
}

/// What a batch's messages need to know (see `Store::batch_facts`), kept current as each
/// message is applied so later messages of the same batch see earlier ones' records.
#[derive(Default)]
struct BatchFacts {
    pending: Pending,
    /// Inbound keys already recorded, with their status.
    seen: HashMap<String, EventStatus>,
    /// Normalised address → the records carrying it (with statecode), users included.
    points: HashMap<String, Vec<(EntityRef, i32)>>,
    outbound: Vec<Activity>,
    waves: HashMap<Uuid, Wave>,
    suppressed: HashSet<String>,
    /// Per sender, the dates of its recent records (see `message_time`).
    recent: HashMap<String, Vec<DateTime<Utc>>>,
    /// (wave, customer id or lower-case address) pairs that already have a response.
    responses: HashSet<(Uuid, String)>,
}

impl BatchFacts {
    /// R-EM-3 over the prefetched outbound mail: X-header, then In-Reply-To/References in
    /// order, then the token. For a bounce, the returned original's X-header and Message-ID.
    fn correlate(&self, mail: &ParsedMail) -> Option<Outbound> {
        let (xheader, ids, token): (Option<Uuid>, Vec<String>, Option<String>) = match (&mail.bounce, &mail.complaint) {
            (Some(b), _) => (b.original_activity, b.original_message_id.iter().cloned().collect(), None),
            (None, Some(c)) => (c.original_activity, c.original_message_id.iter().cloned().collect(), None),
            (None, None) => (
                mail.correlation.activity,
                mail.correlation.message_ids.iter().take(20).cloned().collect(),
                mail.correlation.token.clone(),
            ),
        };
        fn by(m: i32, a: Option<&Activity>) -> Option<(&Activity, i32)> {
            a.map(|a| (a, m))
        }
        let found = xheader
            .and_then(|x| by(2, self.outbound.iter().find(|a| a.activityid == x)))
            .or_else(|| {
                ids.iter()
                    .find_map(|id| by(3, self.outbound.iter().find(|a| a.messageid.as_deref() == Some(id.as_str()))))
            })
            .or_else(|| {
                token.and_then(|t| by(4, self.outbound.iter().find(|a| a.trackingtoken.as_deref() == Some(t.as_str()))))
            });
        let (a, method) = found?;
        let regarding = a.regardingobjectid.zip(a.regardingobjectidtype).map(|(id, k)| EntityRef::new(k, id));
        let wave = regarding
            .filter(|r| matches!(r.kind, EntityKind::Campaignactivity | EntityKind::Bulkoperation))
            .and_then(|r| self.waves.get(&r.id).copied());
        Some(Outbound { activity_id: a.activityid, method, regarding, wave, subject: a.subject.clone() })
    }

    /// Takes in what a message just wrote.
    fn learn(&mut self, mail: &ParsedMail, ctx: &MailContext, plan: &MailPlan) {
        self.seen.insert(mail.key.clone(), plan.status);
        let Some(addr) = ctx.sender.as_ref().map(|e| e.as_str().to_string()) else { return };
        let w = &plan.writes;
        if let Some(l) = &w.lead {
            self.points.entry(addr.clone()).or_default().push((EntityRef::new(EntityKind::Lead, l.leadid), 0));
        }
        if let Some(c) = &w.contact {
            self.points.entry(addr.clone()).or_default().push((EntityRef::new(EntityKind::Contact, c.contactid), 0));
        }
        for (a, _) in &w.suppress {
            self.suppressed.insert(a.clone());
        }
        if plan.status == EventStatus::Processed && matches!(plan.class, "inquiry" | "reply" | "unsubscribe") {
            self.recent.entry(addr.clone()).or_default().push(message_time(mail, ctx.now));
        }
        if let Some(r) = &w.response {
            if let Some(wave) = r.campaignactivityid {
                if let Some(c) = r.customerid {
                    self.responses.insert((wave, c.to_string()));
                }
                self.responses.insert((wave, addr));
            }
        }
    }
}

/// When a message was written, for the loop guard: its Date, but never later than now (a
/// sender's clock cannot push its mail out of the window).
fn message_time(mail: &ParsedMail, now: DateTime<Utc>) -> DateTime<Utc> {
    mail.date.map_or(now, |d| d.min(now))
}

/// Runs `sql` (with `{}` standing for an IN list) over `vals` in chunks, after the fixed
/// `args` ($1..); returns all rows. Nothing to look up → no query.
async fn in_chunks(tx: &mut Tx, sql: &str, args: Vec<Value>, vals: &[Value]) -> Result<Vec<super::db::Row>> {
    let mut out = Vec::new();
    for chunk in vals.chunks(super::ROWS_PER_STATEMENT) {
        let first = args.len() + 1;
        let list = (first..first + chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let mut a = args.clone();
        a.extend(chunk.iter().cloned());
        out.extend(tx.fetch_all(&sql.replace("{}", &list), a).await?);
    }
    Ok(out)
}
