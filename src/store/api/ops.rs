//! The ops record sets of the API (inbound events, the quarantine, PBX calls, suppressions
//! …) and the gauges read at scrape time.

use serde_json::{Value as Json, json};

use super::*;
use crate::crm::entities::ColType;
use crate::store::db::{Exec, Value};
use crate::store::records::json_of;
use crate::store::{Result, Store};

/// Gauges read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct OpsGauges {
    /// (queue, items waiting)
    pub queues: Vec<(String, i64)>,
    pub mailboxes: Vec<crate::store::MailboxState>,
}

impl Store {
    /// Queue depths and mailbox states for `/metrics`.
    pub async fn ops_gauges(&self) -> Result<OpsGauges> {
        let mut db = self.db.clone();
        let one = |sql: &str| sql.to_string();
        let mut queues = Vec::new();
        for (name, sql) in [
            ("wave_deliveries", one("SELECT COUNT(*) AS n FROM wave_delivery WHERE state IN ('pending', 'sending')")),
            ("pbx_calls", one("SELECT COUNT(*) AS n FROM pbx_call WHERE processed_version < version")),
            ("notifications", one("SELECT COUNT(*) AS n FROM notification_log WHERE status = 'pending'")),
            ("inbound_pending", one("SELECT COUNT(*) AS n FROM inbound_event WHERE status = 'pending'")),
            (
                "quarantine",
                format!("SELECT COUNT(*) AS n FROM inbound_event WHERE {}", crate::store::ops::HELD_FOR_REPLAY),
            ),
        ] {
            queues.push((name.to_string(), db.fetch_one(&sql, vec![]).await?.get::<i64>("n")?));
        }
        queues.push(("jobs:pbx-call".into(), self.queued_jobs(crate::store::PBX_CALL_QUEUE).await?));
        let mut mailboxes = Vec::new();
        for r in db.fetch_all("SELECT mailbox, folder FROM mailbox_state ORDER BY mailbox, folder", vec![]).await? {
            let (m, f): (String, String) = (r.get("mailbox")?, r.get("folder")?);
            if let Some(st) = self.mailbox_state(&m, &f).await? {
                mailboxes.push(st);
            }
        }
        Ok(OpsGauges { queues, mailboxes })
    }
}

/// The ops record sets of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsSet {
    InboundEvents,
    InboundEmailLog,
    Quarantine,
    UnmatchedSenders,
    PbxCalls,
    Suppression,
    DupCandidates,
    Bounces,
    Mailboxes,
    /// Successful writes through the API, newest first (admins only).
    Audit,
}

impl OpsSet {
    /// (table, columns shown, newest-first column, unique key for a stable order)
    fn table(self) -> (&'static str, &'static [&'static str], &'static str, &'static str) {
        const INBOUND: &[&str] = &[
            "id",
            "source",
            "external_id",
            "received_at",
            "status",
            "reason",
            "class",
            "sender",
            "subject",
            "message_date",
            "result",
            "raw_location",
            "processed_at",
        ];
        match self {
            OpsSet::InboundEvents | OpsSet::InboundEmailLog | OpsSet::Quarantine | OpsSet::UnmatchedSenders => {
                ("inbound_event", INBOUND, "received_at", "id")
            }
            OpsSet::PbxCalls => (
                "pbx_call",
                &[
                    "provider",
                    "call_id",
                    "first_event_at",
                    "last_event_at",
                    "is_final",
                    "timed_out",
                    "status",
                    "reason",
                    "activityid",
                    "result",
                    "account",
                    "line",
                ],
                "first_event_at",
                "provider, call_id",
            ),
            OpsSet::Suppression => (
                "suppression",
                &["address", "kind", "reason", "source", "detail", "created_on"],
                "created_on",
                "address",
            ),
            OpsSet::DupCandidates => (
                "dup_candidate",
                &["id", "rule", "subject_type", "subject_value", "source_ref", "candidates", "status", "created_at"],
                "created_at",
                "id",
            ),
            OpsSet::Bounces => (
                "mail_bounce",
                &[
                    "address",
                    "hard_count",
                    "soft_count",
                    "delayed_count",
                    "last_reason",
                    "last_status",
                    "last_diagnostic",
                    "last_at",
                ],
                "last_at",
                "address",
            ),
            OpsSet::Mailboxes => (
                "mailbox_state",
                &[
                    "mailbox",
                    "folder",
                    "state",
                    "state_detail",
                    "uidvalidity",
                    "last_uid",
                    "duplicates",
                    "lease_holder",
                    "lease_until",
                    "last_poll_at",
                    "updated_at",
                ],
                "updated_at",
                "mailbox, folder",
            ),
            OpsSet::Audit => (
                "api_audit",
                &["id", "at", "systemuserid", "role", "token_name", "method", "route", "path", "status"],
                "at",
                "id",
            ),
        }
    }

    /// Text columns a request may filter on (equality, bound as text on both engines).
    fn filterable(self) -> &'static [&'static str] {
        match self {
            OpsSet::InboundEvents | OpsSet::InboundEmailLog | OpsSet::Quarantine | OpsSet::UnmatchedSenders => {
                &["id", "source", "external_id", "status", "class", "sender"]
            }
            OpsSet::PbxCalls => &["provider", "account", "call_id", "status", "activityid", "line"],
            OpsSet::Suppression => &["address", "kind", "reason", "source"],
            OpsSet::DupCandidates => &["id", "rule", "subject_type", "subject_value", "source_ref", "status"],
            OpsSet::Bounces => &["address", "last_reason", "last_status"],
            OpsSet::Mailboxes => &["mailbox", "folder", "state"],
            OpsSet::Audit => &["systemuserid", "role", "token_name", "method", "route"],
        }
    }
}

impl Store {
    /// A page of an ops table (`inbound_event`, `pbx_call`, `suppression`, `dup_candidate`),
    /// newest first, with optional equality filters on the named columns.
    pub async fn ops_page(
        &self,
        set: OpsSet,
        filters: &[(String, String)],
        page: i64,
        limit: i64,
    ) -> Result<std::result::Result<Page<Json>, QueryError>> {
        let (table, cols, newest, key) = set.table();
        let filterable = set.filterable();
        let mut conds = Vec::new();
        for (k, v) in filters {
            match filterable.iter().find(|c| **c == k.as_str()) {
                Some(c) => conds.push(Cond::new(format!("{c} = ?"), vec![Value::from(v.clone())])),
                None => {
                    return Ok(Err(qerr(
                        "unknown_filter",
                        format!("'{}' is not a filterable field of {table}", k.chars().take(60).collect::<String>()),
                    )));
                }
            }
        }
        if let OpsSet::UnmatchedSenders = set {
            // Mail from senders that matched nobody and made no record (R-EM-6's conditions unmet).
            conds.push(Cond::new("source = 'imap' AND status = 'skipped' AND class = 'filtered'", vec![]));
        }
        if let OpsSet::Quarantine = set {
            conds.push(Cond::new(crate::store::ops::HELD_FOR_REPLAY, vec![]));
        }
        if let OpsSet::InboundEmailLog = set {
            conds.push(Cond::new("source = 'imap'", vec![]));
        }
        let (where_, mut args) = render(&conds, 1);
        let n = args.len();
        let limit = limit.clamp(1, MAX_LIMIT);
        let page = page.max(1);
        let mut db = self.db.clone();
        let total: i64 =
            db.fetch_one(&format!("SELECT COUNT(*) AS n FROM {table}{where_}"), args.clone()).await?.get("n")?;
        args.push(limit.into());
        args.push(((page - 1).saturating_mul(limit)).into());
        let sql = format!(
            "SELECT {} FROM {table}{where_} ORDER BY {newest} DESC, {key} LIMIT ${} OFFSET ${}",
            cols.join(", "),
            n + 1,
            n + 2
        );
        let rows = db.fetch_all(&sql, args).await?;
        let items = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                for c in cols {
                    let v = r.value(c).unwrap_or(&Value::Null);
                    let ty = if c.ends_with("_at")
                        || c.ends_with("_until")
                        || *c == "created_on"
                        || *c == "received_at"
                        || *c == "processed_at"
                        || *c == "message_date"
                        || *c == "at"
                    {
                        ColType::Instant
                    } else {
                        ColType::Json
                    };
                    let j = match (ty, v) {
                        (ColType::Instant, _) => json_of(c, ColType::Instant, v)?,
                        (_, Value::Int(Some(i))) => json!(i),
                        (_, Value::Bool(Some(b))) => json!(b),
                        (_, Value::Real(Some(f))) => json!(f),
                        (_, Value::Text(Some(s))) if *c == "result" || *c == "candidates" => {
                            serde_json::from_str(s).unwrap_or(json!(s))
                        }
                        (_, Value::Text(Some(s))) => json!(s),
                        _ => Json::Null,
                    };
                    o.insert(c.to_string(), j);
                }
                Ok(Json::Object(o))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Ok(Page { items, total, page, limit }))
    }
}
