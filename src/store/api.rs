//! Reading for the admin API: filtered, sorted, paged record lists, grouped counts, the
//! named views of DOMAIN §7, the ops tables, and the API's bearer tokens.
//!
//! Field names reach SQL only after they are looked up in a record's compile-time column
//! list (`field`), so a request names a column but never writes SQL; every value is a bind
//! parameter. A request's words ("revenue_gt", "view=stale") become `Cond`s here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::db::{Exec, Row, Value};
use super::records::{from_row, json_of};
use super::{Result, Store, StoreError};
use crate::crm::entities::{Col, ColType, Record};
use crate::crm::views as cal;

/// Columns every owned record has and the store always sets (`stamped`).
const ALWAYS_SET: [&str; 6] = ["createdon", "modifiedon", "statecode", "statuscode", "ownerid", "versionnumber"];

/// The largest page the API serves.
pub const MAX_LIMIT: i64 = 200;

/// A WHERE condition: an SQL fragment with `?` placeholders and its values. Built only here,
/// from column names found in a record's description and fixed fragments.
#[derive(Debug, Clone)]
pub struct Cond {
    sql: String,
    args: Vec<Value>,
}

impl Cond {
    fn new(sql: impl Into<String>, args: Vec<Value>) -> Cond {
        Cond { sql: sql.into(), args }
    }
}

/// A request the query layer refuses (a 400 for the API).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
}

fn qerr(code: &'static str, message: impl Into<String>) -> QueryError {
    QueryError { code, message: message.into() }
}

/// The column `name` of `R`, if it has one.
pub fn field<R: Record>(name: &str) -> Option<&'static Col> {
    R::COLS.iter().find(|c| c.name == name)
}

/// Parses a filter value as the column stores it.
fn parse_value(col: &Col, raw: &str, tz: Tz) -> std::result::Result<Value, QueryError> {
    let bad = |what: &str| {
        qerr("bad_filter", format!("{}: '{}' is not {what}", col.name, raw.chars().take(60).collect::<String>()))
    };
    Ok(match col.ty {
        ColType::Text | ColType::Json => Value::from(raw.to_string()),
        ColType::Uuid => Value::from(raw.parse::<Uuid>().map_err(|_| bad("a UUID"))?),
        ColType::Int => Value::from(raw.parse::<i64>().map_err(|_| bad("an integer"))?),
        ColType::Bool => Value::from(match raw {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad("true or false")),
        }),
        ColType::Money => {
            let m: crate::crm::Money = serde_json::from_str(raw).map_err(|_| bad("an amount"))?;
            Value::from(m)
        }
        ColType::Instant => {
            let t = DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                // A bare date is that day's local midnight in the org time zone (DOMAIN §7).
                .or_else(|_| chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map(|d| cal::start_of_day(d, tz)))
                .map_err(|_| bad("an RFC 3339 instant or a date"))?;
            Value::from(t)
        }
        ColType::Date => {
            Value::from(chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| bad("a date YYYY-MM-DD"))?)
        }
    })
}

const OPS: [(&str, &str); 6] = [("_gt", ">"), ("_ge", ">="), ("_lt", "<"), ("_le", "<="), ("_ne", "<>"), ("_null", "")];

/// A filter from a query parameter: `field=value`, `field_gt|_ge|_lt|_le|_ne=value`, or
/// `field_null=true|false`. Unknown fields are refused.
pub fn filter<R: Record>(param: &str, raw: &str, tz: Tz) -> std::result::Result<Cond, QueryError> {
    if let Some(col) = field::<R>(param) {
        return Ok(Cond::new(format!("{} = ?", col.name), vec![parse_value(col, raw, tz)?]));
    }
    for (suffix, op) in OPS {
        if let Some(col) = param.strip_suffix(suffix).and_then(field::<R>) {
            if suffix == "_null" {
                let want = match raw {
                    "true" => "IS NULL",
                    "false" => "IS NOT NULL",
                    _ => return Err(qerr("bad_filter", format!("{param}: expected true or false"))),
                };
                return Ok(Cond::new(format!("{} {want}", col.name), vec![]));
            }
            return Ok(Cond::new(format!("{} {op} ?", col.name), vec![parse_value(col, raw, tz)?]));
        }
    }
    Err(qerr(
        "unknown_filter",
        format!("'{}' is not a filterable field of {}", param.chars().take(60).collect::<String>(), R::TABLE),
    ))
}

/// A sort order: `field` or `-field`.
#[derive(Debug, Clone, Copy)]
pub struct Sort {
    pub col: &'static str,
    pub desc: bool,
}

pub fn sort<R: Record>(raw: &str) -> std::result::Result<Sort, QueryError> {
    let (name, desc) = match raw.strip_prefix('-') {
        Some(n) => (n, true),
        None => (raw, false),
    };
    field::<R>(name).map(|c| Sort { col: c.name, desc }).ok_or_else(|| {
        qerr("bad_sort", format!("cannot sort {} by '{}'", R::TABLE, name.chars().take(60).collect::<String>()))
    })
}

/// Renders conditions as a WHERE clause with `$n` placeholders starting at `first`.
fn render(conds: &[Cond], first: usize) -> (String, Vec<Value>) {
    if conds.is_empty() {
        return (String::new(), Vec::new());
    }
    let mut n = first;
    let mut parts = Vec::with_capacity(conds.len());
    let mut args = Vec::new();
    for c in conds {
        let mut s = String::with_capacity(c.sql.len() + 8);
        for ch in c.sql.chars() {
            if ch == '?' {
                s.push_str(&format!("${n}"));
                n += 1;
            } else {
                s.push(ch);
            }
        }
        parts.push(format!("({s})"));
        args.extend(c.args.iter().cloned());
    }
    (format!(" WHERE {}", parts.join(" AND ")), args)
}

/// One page of records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub limit: i64,
}

/// A count per value of a field.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Group {
    pub key: Json,
    /// What people read for the key: a picklist's label or the name of the record a
    /// lookup points at (issue 18 §9).
    pub label: Option<String>,
    pub count: i64,
}

/// What a named view asks of the store.
#[derive(Debug, Clone)]
pub enum ViewSpec {
    /// Records matching the conditions (more filters and a sort may be added).
    Rows {
        conds: Vec<Cond>,
        sort: Option<Sort>,
    },
    /// Counts grouped by one column.
    Groups {
        col: &'static str,
        conds: Vec<Cond>,
    },
    /// Leads created per local day over the last `days` days.
    CreationRate {
        days: u32,
    },
    /// Per-campaign reports.
    BudgetVsActual,
    Performance,
    /// Σ estimatedvalue and weighted Σ over open opportunities, with the rows.
    Pipeline,
    /// The manager tree.
    Hierarchy,
    /// Failed e-mails per wave run with the reason (optionally of one run, `?id=`).
    Failures(Option<Uuid>),
}

/// The facts a view needs besides the request's own filters.
#[derive(Debug, Clone)]
pub struct ViewCtx<'a> {
    pub me: Uuid,
    /// R-TASK-1: the activity types that can be overdue (`alerts.kinds`, activity table ones).
    pub overdue_kinds: &'a [String],
    pub now: DateTime<Utc>,
    pub tz: Tz,
    pub stale_lead_days: u32,
    pub params: &'a BTreeMap<String, String>,
}

fn rows(conds: Vec<Cond>) -> ViewSpec {
    ViewSpec::Rows { conds, sort: None }
}

fn eq(col: &'static str, v: impl Into<Value>) -> Cond {
    Cond::new(format!("{col} = ?"), vec![v.into()])
}

fn param_uuid(ctx: &ViewCtx, name: &str) -> std::result::Result<Uuid, QueryError> {
    let raw = ctx.params.get(name).ok_or_else(|| qerr("missing_parameter", format!("this view needs ?{name}=<id>")))?;
    raw.parse().map_err(|_| qerr("bad_parameter", format!("{name}: not a UUID")))
}

/// R-TASK-1's configured set, as a condition on `activitytypecode`.
fn overdue_kinds(ctx: &ViewCtx) -> Cond {
    let kinds: Vec<Value> = ctx.overdue_kinds.iter().map(|k| Value::from(k.clone())).collect();
    if kinds.is_empty() {
        return Cond::new("1 = 0", vec![]);
    }
    Cond::new(format!("activitytypecode IN ({})", vec!["?"; kinds.len()].join(", ")), kinds)
}

/// The named views of each entity set (DOMAIN §7).
pub fn views(table: &str) -> &'static [&'static str] {
    match table {
        "lead" => &[
            "all",
            "my-open",
            "open",
            "closed",
            "qualified",
            "disqualified",
            "older-than-6-months",
            "opened-this-week",
            "opened-last-week",
            "stale",
            "filter",
            "by-source",
            "by-campaign",
            "by-owner",
            "by-rating",
            "by-status",
            "creation-rate",
        ],
        "campaignresponse" => {
            &["all", "open", "by-campaign", "by-wave", "by-responsecode", "interested-unconverted", "unsubscribes"]
        }
        "campaign" => &["all", "active", "budget-vs-actual", "performance"],
        "campaignactivity" => &["all", "by-campaign", "waves-in-progress", "overdue"],
        "bulkoperation" => &["all", "runs", "failures"],
        "list" => &["all"],
        "activity" => &["all", "my-open", "due-today", "overdue", "overdue-by-owner", "escalated", "by-regarding"],
        "opportunity" => &["all", "open-pipeline", "closing-this-month", "won", "lost"],
        "systemuser" => &["all", "hierarchy", "without-manager"],
        _ => &["all"],
    }
}

/// The definition of view `view` of `table`.
pub fn view(table: &str, view: &str, ctx: &ViewCtx) -> std::result::Result<ViewSpec, QueryError> {
    let open = || eq("statecode", 0i64);
    let me = || eq("ownerid", ctx.me);
    let newest = Some(Sort { col: "createdon", desc: true });
    Ok(match (table, view) {
        (_, "all") => rows(vec![]),
        ("lead", "my-open") | ("activity", "my-open") => rows(vec![open(), me()]),
        ("lead", "open") | ("campaignresponse", "open") => rows(vec![open()]),
        ("lead", "closed") => rows(vec![Cond::new("statecode IN (1, 2)", vec![])]),
        ("lead", "qualified") => {
            ViewSpec::Rows { conds: vec![eq("statecode", 1i64)], sort: Some(Sort { col: "statuscode", desc: false }) }
        }
        ("lead", "disqualified") => {
            ViewSpec::Rows { conds: vec![eq("statecode", 2i64)], sort: Some(Sort { col: "statuscode", desc: false }) }
        }
        ("lead", "older-than-6-months") => {
            let mut c = vec![Cond::new("createdon < ?", vec![cal::months_ago(ctx.now, ctx.tz, 6).into()])];
            if ctx.params.get("all_states").map(String::as_str) != Some("true") {
                c.push(open());
            }
            rows(c)
        }
        ("lead", "opened-this-week") => ViewSpec::Rows {
            conds: vec![Cond::new(
                "createdon >= ? AND createdon <= ?",
                vec![cal::week_start(ctx.now, ctx.tz).into(), ctx.now.into()],
            )],
            sort: newest,
        },
        ("lead", "opened-last-week") => {
            let (a, b) = cal::last_week(ctx.now, ctx.tz);
            ViewSpec::Rows {
                conds: vec![Cond::new("createdon >= ? AND createdon < ?", vec![a.into(), b.into()])],
                sort: newest,
            }
        }
        ("lead", "stale") => {
            let since = ctx.now - chrono::Duration::days(i64::from(ctx.stale_lead_days));
            rows(vec![
                open(),
                Cond::new("createdon < ?", vec![since.into()]),
                Cond::new(
                    "NOT EXISTS (SELECT 1 FROM activity a WHERE a.regardingobjectid = lead.leadid AND a.modifiedon >= ?) \
                     AND NOT EXISTS (SELECT 1 FROM activityparty p JOIN activity a2 ON a2.activityid = p.activityid WHERE p.partyid = lead.leadid AND a2.modifiedon >= ?)",
                    vec![since.into(), since.into()],
                ),
            ])
        }
        ("lead", "filter") => rows(vec![]),
        ("lead", "by-source") => ViewSpec::Groups { col: "leadsourcecode", conds: vec![] },
        ("lead", "by-campaign") => ViewSpec::Groups { col: "campaignid", conds: vec![] },
        ("lead", "by-owner") => ViewSpec::Groups { col: "ownerid", conds: vec![] },
        ("lead", "by-rating") => ViewSpec::Groups { col: "leadqualitycode", conds: vec![] },
        ("lead", "by-status") => ViewSpec::Groups { col: "statuscode", conds: vec![] },
        ("lead", "creation-rate") => {
            let days = match ctx.params.get("days") {
                None => 30,
                Some(d) => d
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=366).contains(d))
                    .ok_or_else(|| qerr("bad_parameter", "days: an integer from 1 to 366"))?,
            };
            ViewSpec::CreationRate { days }
        }
        ("campaignresponse", "by-campaign") => ViewSpec::Groups { col: "regardingobjectid", conds: vec![] },
        ("campaignresponse", "by-wave") => ViewSpec::Groups { col: "campaignactivityid", conds: vec![] },
        ("campaignresponse", "by-responsecode") => ViewSpec::Groups { col: "responsecode", conds: vec![] },
        ("campaignresponse", "interested-unconverted") => rows(vec![eq("responsecode", 1i64), open()]),
        ("campaignresponse", "unsubscribes") => rows(vec![eq("responsecode", 3i64)]),
        ("campaign", "active") => rows(vec![open(), Cond::new("statuscode IN (1, 2)", vec![])]),
        ("campaign", "budget-vs-actual") => ViewSpec::BudgetVsActual,
        ("campaign", "performance") => ViewSpec::Performance,
        ("campaignactivity", "by-campaign") => match ctx.params.get("campaign") {
            Some(_) => rows(vec![eq("regardingobjectid", param_uuid(ctx, "campaign")?)]),
            None => ViewSpec::Groups { col: "regardingobjectid", conds: vec![] },
        },
        ("campaignactivity", "waves-in-progress") => rows(vec![Cond::new(
            "EXISTS (SELECT 1 FROM bulkoperation b WHERE b.regardingobjectid = campaignactivity.activityid AND b.statuscode IN (1, 2))",
            vec![],
        )]),
        // R-TASK-1 with a DateOnly due date: overdue once its local day has ended.
        ("campaignactivity", "overdue") => rows(vec![
            open(),
            Cond::new("scheduledend IS NOT NULL AND scheduledend < ?", vec![cal::today(ctx.now, ctx.tz).into()]),
        ]),
        ("bulkoperation", "runs") => ViewSpec::Rows { conds: vec![eq("operationtypecode", 4i64)], sort: newest },
        ("bulkoperation", "failures") => {
            ViewSpec::Failures(ctx.params.get("id").map(|_| param_uuid(ctx, "id")).transpose()?)
        }
        ("activity", "due-today") => {
            let (a, b) = cal::day_bounds(ctx.now, ctx.tz);
            rows(vec![open(), Cond::new("scheduledend >= ? AND scheduledend < ?", vec![a.into(), b.into()])])
        }
        ("activity", "overdue") => rows(vec![
            open(),
            overdue_kinds(ctx),
            Cond::new("scheduledend IS NOT NULL AND scheduledend < ?", vec![ctx.now.into()]),
        ]),
        ("activity", "overdue-by-owner") => ViewSpec::Groups {
            col: "ownerid",
            conds: vec![
                open(),
                overdue_kinds(ctx),
                Cond::new("scheduledend IS NOT NULL AND scheduledend < ?", vec![ctx.now.into()]),
            ],
        },
        ("activity", "escalated") => rows(vec![
            open(),
            overdue_kinds(ctx),
            Cond::new("scheduledend IS NOT NULL AND scheduledend < ?", vec![ctx.now.into()]),
            Cond::new(
                "EXISTS (SELECT 1 FROM notification_log n WHERE n.activityid = activity.activityid AND n.level >= 1 AND n.scheduledend = activity.scheduledend AND n.ownerid = activity.ownerid)",
                vec![],
            ),
        ]),
        ("activity", "by-regarding") => rows(vec![eq("regardingobjectid", param_uuid(ctx, "id")?)]),
        ("opportunity", "open-pipeline") => ViewSpec::Pipeline,
        ("opportunity", "closing-this-month") => {
            let (a, b) = cal::month_dates(ctx.now, ctx.tz);
            rows(vec![
                open(),
                Cond::new("estimatedclosedate >= ? AND estimatedclosedate < ?", vec![a.into(), b.into()]),
            ])
        }
        ("opportunity", "won") => rows(vec![eq("statecode", 1i64)]),
        ("opportunity", "lost") => rows(vec![eq("statecode", 2i64)]),
        ("systemuser", "hierarchy") => ViewSpec::Hierarchy,
        ("systemuser", "without-manager") => {
            rows(vec![Cond::new("parentsystemuserid IS NULL AND isdisabled = ?", vec![false.into()])])
        }
        _ => {
            return Err(qerr(
                "unknown_view",
                format!(
                    "{table} has no view '{}'; views: {}",
                    view.chars().take(60).collect::<String>(),
                    views(table).join(", ")
                ),
            ));
        }
    })
}

impl Store {
    /// A page of `R` matching `conds`, sorted (then by key, so pages are stable).
    pub async fn query_records<R: Record>(
        &self,
        conds: &[Cond],
        sort: Option<Sort>,
        page: i64,
        limit: i64,
    ) -> Result<Page<R>> {
        let (where_, mut args) = render(conds, 1);
        // NULLs last on both engines (PostgreSQL and SQLite disagree by default).
        let order = match sort {
            // Columns every record has are never NULL: sorting on them alone lets an index
            // give the order (a page of 50 out of 60,000 open leads without sorting them all).
            Some(s) if ALWAYS_SET.contains(&s.col) || s.col == R::KEY => {
                format!("{col} {}, {}", if s.desc { "DESC" } else { "ASC" }, R::KEY, col = s.col)
            }
            Some(s) => {
                format!("({col} IS NULL), {col} {}, {}", if s.desc { "DESC" } else { "ASC" }, R::KEY, col = s.col)
            }
            None => format!("{} DESC, {}", "createdon", R::KEY),
        };
        let limit = limit.clamp(1, MAX_LIMIT);
        let page = page.max(1);
        let n = args.len();
        let cols: Vec<&str> = R::COLS.iter().map(|c| c.name).collect();
        let sql = format!(
            "SELECT {} FROM {}{} ORDER BY {} LIMIT ${} OFFSET ${}",
            cols.join(", "),
            R::TABLE,
            where_,
            order,
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) AS n FROM {}{}", R::TABLE, where_);
        let mut db = self.db.clone();
        let total: i64 = db.fetch_one(&count_sql, args.clone()).await?.get("n")?;
        args.push(limit.into());
        args.push(((page - 1).saturating_mul(limit)).into());
        let items = db.fetch_all(&sql, args).await?.iter().map(from_row).collect::<Result<Vec<R>>>()?;
        Ok(Page { items, total, page, limit })
    }

    /// Counts of `R` matching `conds`, per value of `col` (largest first).
    pub async fn group_records<R: Record>(&self, col: &'static str, conds: &[Cond]) -> Result<Vec<Group>> {
        let c = field::<R>(col).ok_or_else(|| StoreError::Decode(format!("{} has no column {col}", R::TABLE)))?;
        let (where_, args) = render(conds, 1);
        let sql = format!(
            "SELECT {col} AS k, COUNT(*) AS n FROM {}{} GROUP BY {col} ORDER BY COUNT(*) DESC, {col}",
            R::TABLE,
            where_
        );
        let rows = self.db.clone().fetch_all(&sql, args).await?;
        let keys = rows
            .iter()
            .map(|r| json_of(c.name, c.ty, r.value("k").unwrap_or(&Value::Null)))
            .collect::<Result<Vec<_>>>()?;
        let labels = self.group_labels(R::TABLE, col, &keys).await?;
        rows.iter()
            .zip(keys)
            .zip(labels)
            .map(|((r, key), label)| Ok(Group { key, label, count: r.get("n")? }))
            .collect()
    }

    /// Leads created per local day over the last `days` days (oldest first, empty days as 0).
    pub async fn lead_creation_rate(&self, now: DateTime<Utc>, tz: Tz, days: u32) -> Result<Vec<Group>> {
        let first_day = cal::today(now, tz) - chrono::Days::new(u64::from(days) - 1);
        let from = cal::start_of_day(first_day, tz);
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT createdon FROM lead WHERE createdon >= $1 AND createdon <= $2",
                vec![from.into(), now.into()],
            )
            .await?;
        let mut counts: BTreeMap<chrono::NaiveDate, i64> =
            (0..days).map(|i| (first_day + chrono::Days::new(u64::from(i)), 0)).collect();
        for r in rows {
            let t: DateTime<Utc> = r.get("createdon")?;
            *counts.entry(cal::today(t, tz)).or_default() += 1;
        }
        Ok(counts.into_iter().map(|(d, n)| Group { key: json!(d.to_string()), label: None, count: n }).collect())
    }

    /// Campaign budget against actual cost (DOMAIN §7; variance = budgeted − total actual).
    pub async fn campaign_budget_vs_actual(&self) -> Result<Vec<Json>> {
        let rows = self
            .db
            .clone()
            .fetch_all("SELECT campaignid, name, budgetedcost, totalcampaignactivityactualcost, othercost, totalactualcost FROM campaign ORDER BY name, campaignid", vec![])
            .await?;
        let money =
            |r: &Row, c: &str| -> Result<Option<f64>> { Ok(r.get::<Option<i64>>(c)?.map(|m| m as f64 / 100.0)) };
        rows.iter()
            .map(|r| {
                let budget: Option<i64> = r.get("budgetedcost")?;
                let total: Option<i64> = r.get("totalactualcost")?;
                Ok(json!({
                    "campaignid": r.get::<String>("campaignid")?,
                    "name": r.get::<String>("name")?,
                    "budgetedcost": money(r, "budgetedcost")?,
                    "totalcampaignactivityactualcost": money(r, "totalcampaignactivityactualcost")?,
                    "othercost": money(r, "othercost")?,
                    "totalactualcost": money(r, "totalactualcost")?,
                    "variance": budget.map(|b| (b - total.unwrap_or(0)) as f64 / 100.0),
                    // R-WV-6b: flagged when the actual cost exceeds the budget.
                    "over_budget": budget.is_some_and(|b| total.unwrap_or(0) > b),
                }))
            })
            .collect()
    }

    /// Campaign performance: targeted, sent, failed, responses, response % against the
    /// expected %, leads, opportunities and won value.
    pub async fn campaign_performance(&self) -> Result<Vec<Json>> {
        let sql = "SELECT c.campaignid, c.name, c.expectedresponse, \
            (SELECT CAST(COALESCE(SUM(w.targeted), 0) AS BIGINT) FROM wave w JOIN campaignactivity ca ON ca.activityid = w.activityid WHERE ca.regardingobjectid = c.campaignid) AS targeted, \
            (SELECT COUNT(*) FROM wave_delivery d JOIN campaignactivity ca ON ca.activityid = d.wave_id WHERE ca.regardingobjectid = c.campaignid AND d.state = 'sent') AS sent, \
            (SELECT COUNT(*) FROM wave_delivery d JOIN campaignactivity ca ON ca.activityid = d.wave_id WHERE ca.regardingobjectid = c.campaignid AND d.state = 'failed') AS failed, \
            (SELECT COUNT(*) FROM campaignresponse r WHERE r.regardingobjectid = c.campaignid) AS responses, \
            (SELECT COUNT(*) FROM lead l WHERE l.campaignid = c.campaignid) AS leads, \
            (SELECT COUNT(*) FROM opportunity o WHERE o.campaignid = c.campaignid) AS opportunities, \
            (SELECT COUNT(*) FROM opportunity o WHERE o.campaignid = c.campaignid AND o.statecode = 1) AS won, \
            (SELECT CAST(COALESCE(SUM(COALESCE(o.actualvalue, o.estimatedvalue)), 0) AS BIGINT) FROM opportunity o WHERE o.campaignid = c.campaignid AND o.statecode = 1) AS won_value \
            FROM campaign c ORDER BY c.name, c.campaignid";
        let rows = self.db.clone().fetch_all(sql, vec![]).await?;
        rows.iter()
            .map(|r| {
                let targeted: i64 = r.get("targeted")?;
                let responses: i64 = r.get("responses")?;
                let rate = (targeted > 0).then(|| (responses as f64 * 1000.0 / targeted as f64).round() / 10.0);
                Ok(json!({
                    "campaignid": r.get::<String>("campaignid")?,
                    "name": r.get::<String>("name")?,
                    "targeted": targeted,
                    "sent": r.get::<i64>("sent")?,
                    "failed": r.get::<i64>("failed")?,
                    "responses": responses,
                    "response_rate": rate,
                    "expectedresponse": r.get::<Option<i64>>("expectedresponse")?,
                    "leads": r.get::<i64>("leads")?,
                    "opportunities": r.get::<i64>("opportunities")?,
                    // R-OPP-1: what won deals brought (actual value, else the estimate).
                    "won": r.get::<i64>("won")?,
                    "won_value": r.get::<i64>("won_value")? as f64 / 100.0,
                }))
            })
            .collect()
    }

    /// Open pipeline totals: Σ estimatedvalue and Σ estimatedvalue × closeprobability / 100.
    pub async fn pipeline_totals(&self) -> Result<Json> {
        let rows = self
            .db
            .clone()
            .fetch_all("SELECT estimatedvalue, closeprobability FROM opportunity WHERE statecode = 0", vec![])
            .await?;
        let (mut total, mut weighted, mut n) = (0i64, 0f64, 0i64);
        for r in rows {
            let v: Option<i64> = r.get("estimatedvalue")?;
            let p: Option<i64> = r.get("closeprobability")?;
            total += v.unwrap_or(0);
            weighted += v.unwrap_or(0) as f64 * p.unwrap_or(0) as f64 / 100.0;
            n += 1;
        }
        Ok(json!({"open": n, "estimatedvalue": total as f64 / 100.0, "weighted": (weighted).round() / 100.0}))
    }

    /// The manager tree: every user with their reports, roots are users without a manager
    /// (or whose manager chain loops).
    pub async fn user_hierarchy(&self) -> Result<Vec<Json>> {
        let rows = self.db.clone().fetch_all("SELECT systemuserid, fullname, parentsystemuserid, isdisabled FROM systemuser ORDER BY fullname, systemuserid", vec![]).await?;
        let mut users: Vec<(String, Option<String>, Option<String>, bool)> = Vec::new();
        for r in &rows {
            users.push((
                r.get("systemuserid")?,
                r.get("fullname")?,
                r.get("parentsystemuserid")?,
                r.get("isdisabled")?,
            ));
        }
        let known: std::collections::HashSet<&str> = users.iter().map(|u| u.0.as_str()).collect();
        fn node(
            id: &str,
            users: &[(String, Option<String>, Option<String>, bool)],
            seen: &mut std::collections::HashSet<String>,
        ) -> Json {
            let u = users.iter().find(|u| u.0 == id).expect("known user");
            seen.insert(id.to_string());
            let reports: Vec<Json> = users
                .iter()
                .filter(|r| r.2.as_deref() == Some(id) && !seen.contains(&r.0))
                .map(|r| r.0.clone())
                .collect::<Vec<_>>()
                .iter()
                .map(|r| node(r, users, seen))
                .collect();
            json!({"systemuserid": u.0, "fullname": u.1, "isdisabled": u.3, "reports": reports})
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for u in users.iter().filter(|u| u.2.as_deref().is_none_or(|m| !known.contains(m))) {
            out.push(node(&u.0, &users, &mut seen));
        }
        // Users in a manager loop have no root: show each loop from its first member.
        for u in &users {
            if !seen.contains(&u.0) {
                out.push(node(&u.0, &users, &mut seen));
            }
        }
        Ok(out)
    }

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
            conds.push(Cond::new(super::ops::HELD_FOR_REPLAY, vec![]));
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

/// Gauges read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct OpsGauges {
    /// (queue, items waiting)
    pub queues: Vec<(String, i64)>,
    pub mailboxes: Vec<super::MailboxState>,
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
            ("quarantine", format!("SELECT COUNT(*) AS n FROM inbound_event WHERE {}", super::ops::HELD_FOR_REPLAY)),
        ] {
            queues.push((name.to_string(), db.fetch_one(&sql, vec![]).await?.get::<i64>("n")?));
        }
        queues.push(("jobs:pbx-call".into(), self.queued_jobs(super::PBX_CALL_QUEUE).await?));
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

/// An API bearer token as stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub systemuserid: Uuid,
    pub role: String,
    pub created_on: DateTime<Utc>,
    /// None: the token does not expire.
    pub expires_on: Option<DateTime<Utc>>,
    /// When a request last used it (to the minute).
    pub last_used_on: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str = "id, name, systemuserid, role, created_on, expires_on, last_used_on";

fn token_from_row(r: &Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.get("id")?,
        name: r.get("name")?,
        systemuserid: r.get("systemuserid")?,
        role: r.get("role")?,
        created_on: r.get("created_on")?,
        expires_on: r.get("expires_on")?,
        last_used_on: r.get("last_used_on")?,
    })
}

/// A token's last use is written at most this often (a busy client makes no write per request).
const LAST_USE_EVERY_MS: i64 = 60_000;

impl Store {
    /// Stores a token's hash; the clear token is never stored.
    pub async fn add_api_token(
        &self,
        name: &str,
        token_sha256: &str,
        user: Uuid,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiToken> {
        self.add_api_token_expiring(name, token_sha256, user, role, None, now).await
    }

    /// [`Store::add_api_token`] with an expiry.
    pub async fn add_api_token_expiring(
        &self,
        name: &str,
        token_sha256: &str,
        user: Uuid,
        role: &str,
        expires_on: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ApiToken> {
        let t = ApiToken {
            id: Uuid::now_v7(),
            name: name.into(),
            systemuserid: user,
            role: role.into(),
            created_on: now,
            expires_on,
            last_used_on: None,
        };
        insert_token(&mut self.db.clone(), &t, token_sha256).await?;
        Ok(t)
    }

    /// The live token with this hash (not revoked, not expired at `now`); records its use.
    pub async fn api_token_by_hash(&self, token_sha256: &str, now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        let row = self
            .db
            .clone()
            .fetch_optional(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_token WHERE token_sha256 = $1 AND revoked_on IS NULL \
                     AND (expires_on IS NULL OR expires_on > $2)"
                ),
                vec![token_sha256.into(), now.into()],
            )
            .await?;
        let Some(t) = row.as_ref().map(token_from_row).transpose()? else { return Ok(None) };
        if t.last_used_on.is_none_or(|u| (now - u).num_milliseconds() >= LAST_USE_EVERY_MS) {
            self.db
                .clone()
                .execute(
                    "UPDATE api_token SET last_used_on = $2 WHERE id = $1 AND (last_used_on IS NULL OR last_used_on <= $3)",
                    vec![t.id.into(), now.into(), (now - chrono::Duration::milliseconds(LAST_USE_EVERY_MS)).into()],
                )
                .await?;
        }
        Ok(Some(t))
    }

    /// Revokes a token; returns whether one was live.
    pub async fn revoke_api_token(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        Ok(self
            .db
            .clone()
            .execute(
                "UPDATE api_token SET revoked_on = $2 WHERE id = $1 AND revoked_on IS NULL",
                vec![id.into(), now.into()],
            )
            .await?
            == 1)
    }

    /// Replaces a live token in one step: a new one with its name, user and role (and, if it
    /// expired on a term, the same term from now) takes its place, and it is revoked. None:
    /// no live token with this id.
    pub async fn rotate_api_token(&self, id: Uuid, token_sha256: &str, now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        let mut tx = self.db.begin().await?;
        let row = tx
            .fetch_optional(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_token WHERE id = $1 AND revoked_on IS NULL"),
                vec![id.into()],
            )
            .await?;
        let Some(old) = row.as_ref().map(token_from_row).transpose()? else { return Ok(None) };
        tx.execute("UPDATE api_token SET revoked_on = $2 WHERE id = $1", vec![id.into(), now.into()]).await?;
        let t = ApiToken {
            id: Uuid::now_v7(),
            created_on: now,
            expires_on: old.expires_on.map(|e| now + (e - old.created_on)),
            last_used_on: None,
            ..old
        };
        insert_token(&mut tx, &t, token_sha256).await?;
        tx.commit().await?;
        Ok(Some(t))
    }

    /// Live tokens (without their hashes), expired ones included (they show as such).
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_token WHERE revoked_on IS NULL ORDER BY created_on"),
                vec![],
            )
            .await?;
        rows.iter().map(token_from_row).collect()
    }
}

/// One write through the API, as the audit keeps it.
#[derive(Debug, Clone)]
pub struct ApiWrite {
    pub user: Uuid,
    pub role: String,
    pub token_name: String,
    pub method: String,
    /// The route's template (`/api/v1/leads/{id}`) and the path as called.
    pub route: String,
    pub path: String,
    pub status: u16,
}

impl Store {
    /// Appends a write to the audit (`GET /api/v1/ops/audit`).
    pub async fn record_api_write(&self, w: &ApiWrite, now: DateTime<Utc>) -> Result<()> {
        self.db
            .clone()
            .execute(
                "INSERT INTO api_audit (id, at, systemuserid, role, token_name, method, route, path, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    Uuid::now_v7().into(),
                    now.into(),
                    w.user.into(),
                    w.role.clone().into(),
                    w.token_name.clone().into(),
                    w.method.clone().into(),
                    w.route.clone().into(),
                    w.path.clone().into(),
                    i64::from(w.status).into(),
                ],
            )
            .await?;
        Ok(())
    }
}

async fn insert_token(ex: &mut impl Exec, t: &ApiToken, token_sha256: &str) -> Result<()> {
    ex.execute(
        "INSERT INTO api_token (id, name, token_sha256, systemuserid, role, created_on, expires_on) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            t.id.into(),
            t.name.clone().into(),
            token_sha256.into(),
            t.systemuserid.into(),
            t.role.clone().into(),
            t.created_on.into(),
            t.expires_on.into(),
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::entities::Lead;

    #[test]
    fn filters_name_columns_and_bind_values() {
        let msk = chrono_tz::Europe::Moscow;
        let c = filter::<Lead>("revenue_gt", "1000000", msk).unwrap();
        assert_eq!(c.sql, "revenue > ?");
        assert_eq!(c.args, vec![Value::Int(Some(100_000_000))]);
        let c = filter::<Lead>("address1_city", "Москва'; DROP TABLE lead; --", msk).unwrap();
        assert_eq!(c.sql, "address1_city = ?");
        assert_eq!(filter::<Lead>("leadid; DROP TABLE lead", "x", msk).unwrap_err().code, "unknown_filter");
        assert_eq!(filter::<Lead>("statecode", "open", msk).unwrap_err().code, "bad_filter");
        assert_eq!(filter::<Lead>("parentaccountid_null", "true", msk).unwrap().sql, "parentaccountid IS NULL");
        // A bare date is local midnight in the org zone: 1 May 00:00 in Moscow is 30 April 21:00 UTC.
        let c = filter::<Lead>("createdon_ge", "2026-05-01", msk).unwrap();
        assert_eq!(
            c.args,
            vec![Value::Int(Some(
                chrono::DateTime::parse_from_rfc3339("2026-04-30T21:00:00Z").unwrap().timestamp_millis()
            ))]
        );
        assert_eq!(sort::<Lead>("-createdon").unwrap().col, "createdon");
        assert_eq!(sort::<Lead>("1; --").unwrap_err().code, "bad_sort");
    }

    #[test]
    fn conditions_render_numbered_placeholders() {
        let (w, args) = render(&[eq("a", 1i64), Cond::new("b >= ? AND b < ?", vec![2i64.into(), 3i64.into()])], 1);
        assert_eq!(w, " WHERE (a = $1) AND (b >= $2 AND b < $3)");
        assert_eq!(args.len(), 3);
    }

    #[test]
    fn every_listed_view_is_defined() {
        let params: BTreeMap<String, String> = [("id".to_string(), Uuid::nil().to_string())].into();
        let ctx = ViewCtx {
            me: Uuid::nil(),
            overdue_kinds: &[],
            now: Utc::now(),
            tz: chrono_tz::Europe::Moscow,
            stale_lead_days: 30,
            params: &params,
        };
        for t in [
            "lead",
            "campaignresponse",
            "campaign",
            "campaignactivity",
            "bulkoperation",
            "list",
            "activity",
            "opportunity",
            "systemuser",
        ] {
            for v in views(t) {
                assert!(view(t, v, &ctx).is_ok(), "{t}/{v}");
            }
        }
        assert_eq!(view("lead", "nope", &ctx).unwrap_err().code, "unknown_view");
    }
}
