//! Reading for the admin API: filtered, sorted, paged record lists, grouped counts, the
//! named views of DOMAIN §7 (`views`); the ops tables (`ops`), the API's bearer tokens
//! (`tokens`) and the audit of its writes (`audit`).
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

mod audit;
mod ops;
mod tokens;
mod views;
pub use audit::*;
pub use ops::*;
pub use tokens::*;
pub use views::*;

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
    if let Some(col) = param.strip_suffix("_begins").and_then(field::<R>) {
        if col.ty != ColType::Text {
            return Err(qerr("bad_filter", format!("{param}: only text fields take _begins")));
        }
        return Ok(begins_with(col.name, raw));
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

/// "Begins with" (Dynamics' quick find): the text as typed or with its first letter in
/// capitals (people type "ivan" for Ivan; PostgreSQL's LIKE minds case, SQLite's minds it
/// for letters outside ASCII). `%`, `_` and `\` in the text match themselves.
fn begins_with(col: &'static str, text: &str) -> Cond {
    let escaped: String =
        text.chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
    let mut chars = escaped.chars();
    let capital: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
    Cond::new(
        format!(r"({col} LIKE ? ESCAPE '\' OR {col} LIKE ? ESCAPE '\')"),
        vec![format!("{escaped}%").into(), format!("{capital}%").into()],
    )
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
            .fetch_all(
                "SELECT campaignid, name, budgetedcost, totalcampaignactivityactualcost, othercost, \
                totalactualcost FROM campaign ORDER BY name, campaignid",
                vec![],
            )
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
            (SELECT CAST(COALESCE(SUM(w.targeted), 0) AS BIGINT) FROM wave w JOIN campaignactivity ca ON \
            ca.activityid = w.activityid WHERE ca.regardingobjectid = c.campaignid) AS targeted, \
            (SELECT COUNT(*) FROM wave_delivery d JOIN campaignactivity ca ON ca.activityid = d.wave_id WHERE \
            ca.regardingobjectid = c.campaignid AND d.state = 'sent') AS sent, \
            (SELECT COUNT(*) FROM wave_delivery d JOIN campaignactivity ca ON ca.activityid = d.wave_id WHERE \
            ca.regardingobjectid = c.campaignid AND d.state = 'failed') AS failed, \
            (SELECT COUNT(*) FROM campaignresponse r WHERE r.regardingobjectid = c.campaignid) AS responses, \
            (SELECT COUNT(*) FROM lead l WHERE l.campaignid = c.campaignid) AS leads, \
            (SELECT COUNT(*) FROM opportunity o WHERE o.campaignid = c.campaignid) AS opportunities, \
            (SELECT COUNT(*) FROM opportunity o WHERE o.campaignid = c.campaignid AND o.statecode = 1) AS won, \
            (SELECT CAST(COALESCE(SUM(COALESCE(o.actualvalue, o.estimatedvalue)), 0) AS BIGINT) FROM \
            opportunity o WHERE o.campaignid = c.campaignid AND o.statecode = 1) AS won_value \
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
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT systemuserid, fullname, parentsystemuserid, isdisabled \
            FROM systemuser ORDER BY fullname, systemuserid",
                vec![],
            )
            .await?;
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
        // Quick find: as typed or capitalised, wildcards matched as themselves; text only.
        let c = filter::<Lead>("lastname_begins", "иван", msk).unwrap();
        assert_eq!(c.sql, r"(lastname LIKE ? ESCAPE '\' OR lastname LIKE ? ESCAPE '\')");
        assert_eq!(c.args, vec![Value::from("иван%".to_string()), Value::from("Иван%".to_string())]);
        let c = filter::<Lead>("lastname_begins", "50%_off", msk).unwrap();
        assert_eq!(c.args[0], Value::from(r"50\%\_off%".to_string()));
        assert!(filter::<Lead>("createdon_begins", "2026", msk).is_err());
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
