//! The console's pages and the actions their forms post. Each handler checks the role
//! (the API's matrix), reads through the store operations the API uses (named views,
//! groups, campaign figures, a wave's status), and renders one template; an action checks
//! the form token, calls the one store operation its API route calls, and redirects back
//! (303) so a reload never repeats it.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::chart::{self, Series};
use super::i18n::{self, Lang};
use super::session::Signed;
use super::{frame, redirect, render};
use crate::crm::entities::{Activity, Lead};
use crate::crm::labels;
use crate::crm::waves::{WaveAction, WaveState};
use crate::http::api::{Access, Area};
use crate::http::{ApiError, AppState};
use crate::store::StoreError;
use crate::store::api::{self as q, Cond, Group, Sort, ViewCtx, ViewSpec};

/// A chart and the table of its figures.
#[derive(Debug, Serialize)]
pub(super) struct ChartView {
    pub id: String,
    pub title: String,
    pub svg: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub empty: bool,
    /// Per row, where its first cell leads (the list it counts), if anywhere.
    pub links: Vec<Option<String>>,
}

/// A store failure as a page (the API's status and message).
pub(super) fn failed(who: &Signed, e: StoreError) -> Response {
    let api = ApiError::from(e);
    let message = if api.status.is_server_error() { i18n::t(who.lang, "error").to_string() } else { api.message };
    who.error(api.status, &message)
}

pub(super) fn view_ctx<'a>(
    s: &'a AppState,
    who: &Signed,
    now: DateTime<Utc>,
    params: &'a BTreeMap<String, String>,
) -> ViewCtx<'a> {
    ViewCtx {
        me: who.user,
        overdue_kinds: &s.api.overdue_kinds,
        now,
        tz: s.api.tz(),
        stale_lead_days: s.api.stale_lead_days,
        params,
    }
}

/// The conditions of a named view (DOMAIN §7), as the API applies them.
pub(super) fn view_conds(table: &str, view: &str, c: &ViewCtx) -> (Vec<Cond>, Option<Sort>) {
    match q::view(table, view, c) {
        Ok(ViewSpec::Rows { conds, sort }) => (conds, sort),
        Ok(ViewSpec::Groups { conds, .. }) => (conds, None),
        // The views named here are fixed and need no parameters.
        _ => (Vec::new(), None),
    }
}

/// The label of a group's key: a picklist label or a record's name, in the language.
fn group_label(lang: Lang, g: &Group) -> String {
    match (&g.label, &g.key) {
        (Some(l), _) => i18n::label(lang, l),
        (None, J::Null) => i18n::t(lang, "none").to_string(),
        (None, k) => k.as_str().map(str::to_string).unwrap_or_else(|| k.to_string()),
    }
}

/// One series of counts over groups, as a bar chart and its table.
fn group_chart(lang: Lang, id: &str, title: &str, dim: &str, groups: &[Group]) -> ChartView {
    let cats: Vec<String> = groups.iter().map(|g| group_label(lang, g)).collect();
    let count = i18n::t(lang, "count").to_string();
    let series = [Series { name: count.clone(), values: groups.iter().map(|g| g.count as f64).collect() }];
    ChartView {
        id: id.into(),
        title: title.into(),
        svg: chart::bars(id, title, &cats, &series),
        columns: vec![i18n::t(lang, dim).to_string(), count],
        rows: cats.iter().zip(groups).map(|(c, g)| vec![c.clone(), g.count.to_string()]).collect(),
        empty: groups.is_empty(),
        links: Vec::new(),
    }
}

pub(super) fn query_params(raw: Option<String>) -> BTreeMap<String, String> {
    raw.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(&q).ok())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default()
}

/// `GET /`: new leads per day by source, leads by source / campaign / owner, and this
/// week's leads against last week's by state.
pub async fn dashboard(who: Signed, State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Leads)) {
        return r;
    }
    let params = query_params(raw);
    let days: u32 = if params.get("days").map(String::as_str) == Some("90") { 90 } else { 30 };
    match dashboard_data(&s, &who, days, &params).await {
        Ok(charts) => {
            let mut m = frame(&who, "dashboard");
            m.insert("charts".into(), json!(charts));
            m.insert("days".into(), json!(days));
            render("dashboard.html", J::Object(m), StatusCode::OK)
        }
        Err(e) => failed(&who, e),
    }
}

async fn dashboard_data(
    s: &AppState,
    who: &Signed,
    days: u32,
    params: &BTreeMap<String, String>,
) -> crate::store::Result<Vec<ChartView>> {
    let lang = who.lang;
    let now = Utc::now();
    let tz = s.api.tz();
    let mut charts = Vec::new();

    // The figures are independent reads: ask for them at once (each on its own pooled
    // connection; both engines read concurrently).
    let c = view_ctx(s, who, now, params);
    let (this_week, last_week) =
        (view_conds("lead", "opened-this-week", &c).0, view_conds("lead", "opened-last-week", &c).0);
    let (per_day, by_source, by_campaign, by_owner, this, last) = futures::try_join!(
        s.store.lead_creation_by_source(now, tz, days),
        s.store.group_records::<Lead>("leadsourcecode", &[]),
        s.store.group_records::<Lead>("campaignid", &[]),
        s.store.group_records::<Lead>("ownerid", &[]),
        s.store.group_records::<Lead>("statecode", &this_week),
        s.store.group_records::<Lead>("statecode", &last_week),
    )?;

    // New leads per day, stacked by source.
    let all_days = crate::crm::views::last_days(now, tz, days);
    let mut sources: Vec<Option<i64>> = per_day.iter().map(|d| d.series).collect();
    sources.sort_by_key(|c| (c.is_none(), *c));
    sources.dedup();
    let source_name = |c: &Option<i64>| match c {
        Some(code) => labels::picklist("lead", "leadsourcecode", *code)
            .map(|l| i18n::label(lang, l))
            .unwrap_or_else(|| code.to_string()),
        None => i18n::t(lang, "none").to_string(),
    };
    let count: BTreeMap<(NaiveDate, Option<i64>), i64> = per_day.iter().map(|x| ((x.day, x.series), x.count)).collect();
    let series: Vec<Series> = sources
        .iter()
        .map(|src| Series {
            name: source_name(src),
            values: all_days.iter().map(|d| count.get(&(*d, *src)).copied().unwrap_or(0) as f64).collect(),
        })
        .collect();
    let title = format!(
        "{} — {}",
        i18n::t(lang, "new_leads_per_day"),
        i18n::t(lang, "last_n_days").replace("{n}", &days.to_string())
    );
    let x_labels: Vec<String> = all_days.iter().map(|d| i18n::day(lang, *d)).collect();
    let mut columns = vec![i18n::t(lang, "day").to_string()];
    columns.extend(series.iter().map(|s| s.name.clone()));
    columns.push(i18n::t(lang, "total").to_string());
    let rows = all_days
        .iter()
        .enumerate()
        .filter(|(i, _)| series.iter().any(|s| s.values[*i] > 0.0))
        .map(|(i, d)| {
            let mut r = vec![i18n::date(lang, *d)];
            r.extend(series.iter().map(|s| (s.values[i] as i64).to_string()));
            r.push((series.iter().map(|s| s.values[i]).sum::<f64>() as i64).to_string());
            r
        })
        .collect();
    charts.push(ChartView {
        id: "per-day".into(),
        svg: chart::stacked_columns("per-day", &title, &x_labels, &series),
        title,
        columns,
        rows,
        empty: per_day.is_empty(),
        links: Vec::new(),
    });

    for (id, groups, key, dim) in [
        ("by-source", by_source, "leads_by_source", "source"),
        ("by-campaign", by_campaign, "leads_by_campaign", "campaign"),
        ("by-owner", by_owner, "leads_by_owner", "owner"),
    ] {
        let mut chart = group_chart(lang, id, i18n::t(lang, key), dim, &groups);
        if dim == "source" {
            // Each source's row opens the leads it counts.
            chart.links =
                groups.iter().map(|g| g.key.as_i64().map(|c| format!("/leads?view=all&source={c}"))).collect();
        }
        charts.push(chart);
    }

    // This week against last week, by state (Open, Qualified, Disqualified).
    let states: Vec<(i64, String)> = (0..=2)
        .map(|code| {
            (code, labels::picklist("lead", "statecode", code).map(|l| i18n::label(lang, l)).unwrap_or_default())
        })
        .collect();
    let count_of = |gs: &[Group], code: i64| gs.iter().find(|g| g.key == json!(code)).map_or(0, |g| g.count);
    let series = [
        Series {
            name: i18n::t(lang, "this_week").into(),
            values: states.iter().map(|(c, _)| count_of(&this, *c) as f64).collect(),
        },
        Series {
            name: i18n::t(lang, "last_week").into(),
            values: states.iter().map(|(c, _)| count_of(&last, *c) as f64).collect(),
        },
    ];
    let cats: Vec<String> = states.iter().map(|(_, l)| l.clone()).collect();
    let title = i18n::t(lang, "leads_this_week").to_string();
    charts.push(ChartView {
        id: "weeks".into(),
        svg: chart::bars("weeks", &title, &cats, &series),
        title,
        columns: vec![i18n::t(lang, "state").into(), series[0].name.clone(), series[1].name.clone()],
        rows: states
            .iter()
            .map(|(c, l)| vec![l.clone(), count_of(&this, *c).to_string(), count_of(&last, *c).to_string()])
            .collect(),
        empty: this.is_empty() && last.is_empty(),
        links: Vec::new(),
    });
    Ok(charts)
}

/// An open activity as the work list shows it.
#[derive(Debug, Serialize)]
struct WorkItem {
    id: Uuid,
    subject: String,
    kind: String,
    due: String,
    overdue: bool,
    regarding: String,
}

/// `GET /work`: the person's open activities, soonest due first, with complete and cancel;
/// for those who may read sales records, overdue activities by owner.
pub async fn work(who: Signed, State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let params = query_params(raw);
    match work_data(&s, &who, &params).await {
        Ok((items, overdue)) => {
            let mut m = frame(&who, "work");
            m.insert("items".into(), json!(items));
            m.insert("charts".into(), json!(overdue));
            m.insert(
                "done".into(),
                json!(match params.get("done").map(String::as_str) {
                    Some("completed") => Some(i18n::t(who.lang, "done_completed")),
                    Some("canceled") => Some(i18n::t(who.lang, "done_canceled")),
                    _ => None,
                }),
            );
            render("work.html", J::Object(m), StatusCode::OK)
        }
        Err(e) => failed(&who, e),
    }
}

async fn work_data(
    s: &AppState,
    who: &Signed,
    params: &BTreeMap<String, String>,
) -> crate::store::Result<(Vec<WorkItem>, Vec<ChartView>)> {
    let lang = who.lang;
    let now = Utc::now();
    let tz = s.api.tz();
    let c = view_ctx(s, who, now, params);
    let (conds, _) = view_conds("activity", "my-open", &c);
    let page = s
        .store
        .query_records::<Activity>(&conds, Some(Sort { col: "scheduledend", desc: false }), 1, q::MAX_LIMIT)
        .await?;
    let mut as_json: Vec<J> = page.items.iter().map(|a| serde_json::to_value(a).unwrap_or(J::Null)).collect();
    s.store.add_lookup_names("activity", &mut as_json).await?;
    let items = page
        .items
        .iter()
        .zip(&as_json)
        .map(|(a, j)| WorkItem {
            id: a.activityid,
            subject: a.subject.clone().unwrap_or_default(),
            kind: i18n::kind(lang, a.activitytypecode.as_str()),
            due: a.scheduledend.map(|t| i18n::datetime(lang, t, tz)).unwrap_or_default(),
            overdue: a.scheduledend.is_some_and(|t| t < now),
            regarding: j.get("regardingobjectid_name").and_then(J::as_str).unwrap_or_default().to_string(),
        })
        .collect();
    let overdue = if who.can(Access::Read(Area::Sales)) {
        let (conds, _) = view_conds("activity", "overdue-by-owner", &c);
        let groups = s.store.group_records::<Activity>("ownerid", &conds).await?;
        let (esc_conds, _) = view_conds("activity", "escalated", &c);
        let escalated = s.store.group_records::<Activity>("ownerid", &esc_conds).await?;
        let mut chart = group_chart(lang, "overdue", i18n::t(lang, "overdue_by_owner"), "owner", &groups);
        // R-TASK-3: beside each owner's overdue count, how many reached their manager.
        chart.columns.push(i18n::t(lang, "escalated").into());
        for (row, g) in chart.rows.iter_mut().zip(&groups) {
            row.push(escalated.iter().find(|e| e.key == g.key).map_or(0, |e| e.count).to_string());
        }
        let days = 30;
        let calls = s.store.calls_per_day(now, tz, days).await?;
        let per_line = s.store.calls_per_line(now, tz, days).await?;
        let callbacks = s.store.callbacks_per_day(now, tz, days).await?;
        vec![
            chart,
            day_pair_chart(lang, "calls", "calls_per_day", ("answered", "missed"), &calls, now, tz, days),
            line_chart(lang, &per_line, days),
            day_pair_chart(lang, "callbacks", "callbacks_per_day", ("opened", "closed"), &callbacks, now, tz, days),
        ]
    } else {
        Vec::new()
    };
    Ok((items, overdue))
}

/// Inbound calls answered and missed per line: a bar pair per line, named by the line's
/// name and number (a number no configured line has is shown as it was dialled).
fn line_chart(lang: Lang, per_line: &[(String, Option<String>, i64, i64)], days: u32) -> ChartView {
    let labels: Vec<String> = per_line
        .iter()
        .map(|(n, name, _, _)| match name {
            Some(name) => format!("{name} ({n})"),
            None => n.clone(),
        })
        .collect();
    let series = [
        Series { name: i18n::t(lang, "answered").into(), values: per_line.iter().map(|l| l.2 as f64).collect() },
        Series { name: i18n::t(lang, "missed").into(), values: per_line.iter().map(|l| l.3 as f64).collect() },
    ];
    let title = format!(
        "{} — {}",
        i18n::t(lang, "calls_per_line"),
        i18n::t(lang, "last_n_days").replace("{n}", &days.to_string())
    );
    ChartView {
        id: "lines".into(),
        svg: chart::bars("lines", &title, &labels, &series),
        title,
        columns: vec![i18n::t(lang, "line").into(), series[0].name.clone(), series[1].name.clone()],
        rows: labels.iter().zip(per_line).map(|(l, x)| vec![l.clone(), x.2.to_string(), x.3.to_string()]).collect(),
        empty: per_line.is_empty(),
        links: Vec::new(),
    }
}

/// Two figures per day over the last `days` days, as side-by-side columns and a table of
/// the days that have any.
#[allow(clippy::too_many_arguments)]
fn day_pair_chart(
    lang: Lang,
    id: &str,
    title_key: &str,
    (a, b): (&str, &str),
    per_day: &BTreeMap<NaiveDate, (i64, i64)>,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    days: u32,
) -> ChartView {
    let all_days = crate::crm::views::last_days(now, tz, days);
    let get = |d: &NaiveDate| per_day.get(d).copied().unwrap_or_default();
    let series = [
        Series { name: i18n::t(lang, a).into(), values: all_days.iter().map(|d| get(d).0 as f64).collect() },
        Series { name: i18n::t(lang, b).into(), values: all_days.iter().map(|d| get(d).1 as f64).collect() },
    ];
    let title =
        format!("{} — {}", i18n::t(lang, title_key), i18n::t(lang, "last_n_days").replace("{n}", &days.to_string()));
    let x_labels: Vec<String> = all_days.iter().map(|d| i18n::day(lang, *d)).collect();
    ChartView {
        id: id.into(),
        svg: chart::grouped_columns(id, &title, &x_labels, &series),
        title,
        columns: vec![i18n::t(lang, "day").into(), series[0].name.clone(), series[1].name.clone()],
        rows: all_days
            .iter()
            .filter(|d| get(d) != (0, 0))
            .map(|d| vec![i18n::date(lang, *d), get(d).0.to_string(), get(d).1.to_string()])
            .collect(),
        empty: per_day.is_empty(),
        links: Vec::new(),
    }
}

/// `POST /work/{id}/complete|cancel`: closes one of the person's activities (R-ACT-1; the
/// store refuses another's unless the person is an admin or their manager).
pub async fn work_action(
    who: Signed,
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    // R-ACT-1: any role finishes its own work; the store refuses another's.
    let id = match who.posted(&body, Access::OwnWork, &id) {
        Ok(p) => p.id,
        Err(r) => return *r,
    };
    let (act, done) = match action.as_str() {
        "complete" => (crate::crm::work::CloseAction::Complete, "completed"),
        "cancel" => (crate::crm::work::CloseAction::Cancel, "canceled"),
        _ => return who.error(StatusCode::NOT_FOUND, i18n::t(who.lang, "not_found")),
    };
    let actor = crate::crm::work::Actor { user: who.user, admin: who.role == crate::http::api::Role::Admin };
    match s.store.close_activity(id, act, &Default::default(), actor, Utc::now(), s.api.tz()).await {
        Ok(_) => redirect(&format!("/work?done={done}")),
        Err(e) => failed(&who, e),
    }
}

/// `GET /campaigns`: budget against actual cost (R-WV-6), response rate against expected,
/// and the e-mail waves with their state.
pub async fn campaigns(who: Signed, State(s): State<AppState>) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Marketing)) {
        return r;
    }
    match campaigns_data(&s, who.lang).await {
        Ok((charts, waves, campaigns)) => {
            let mut m = frame(&who, "campaigns");
            m.insert("charts".into(), json!(charts));
            m.insert("campaigns".into(), json!(campaigns));
            m.insert("waves".into(), json!(waves));
            render("campaigns.html", J::Object(m), StatusCode::OK)
        }
        Err(e) => failed(&who, e),
    }
}

fn wave_state_word(lang: Lang, st: WaveState) -> &'static str {
    i18n::t(lang, st.as_str())
}

async fn campaigns_data(s: &AppState, lang: Lang) -> crate::store::Result<(Vec<ChartView>, Vec<J>, Vec<J>)> {
    let cur = &s.console.currency;
    let budget = s.store.campaign_budget_vs_actual().await?;
    let name = |c: &J| c["name"].as_str().unwrap_or_default().to_string();
    let num = |c: &J, k: &str| c[k].as_f64().unwrap_or(0.0);
    let cats: Vec<String> = budget.iter().map(name).collect();
    let (b, a) = (i18n::t(lang, "budget"), i18n::t(lang, "actual"));
    let series = [
        Series { name: format!("{b}, {cur}"), values: budget.iter().map(|c| num(c, "budgetedcost")).collect() },
        Series { name: format!("{a}, {cur}"), values: budget.iter().map(|c| num(c, "totalactualcost")).collect() },
    ];
    let title = i18n::t(lang, "budget_vs_actual").to_string();
    let money = |v: &J| v.as_f64().map(|x| i18n::money(lang, x, cur)).unwrap_or_else(|| "—".into());
    let mut charts = vec![ChartView {
        id: "budget".into(),
        svg: chart::bars("budget", &title, &cats, &series),
        title,
        columns: vec![i18n::t(lang, "campaign").into(), b.into(), a.into(), i18n::t(lang, "over_budget_col").into()],
        rows: budget
            .iter()
            .map(|c| {
                let over = if c["over_budget"].as_bool() == Some(true) { i18n::t(lang, "over_budget") } else { "" };
                vec![name(c), money(&c["budgetedcost"]), money(&c["totalactualcost"]), over.to_string()]
            })
            .collect(),
        empty: budget.is_empty(),
        links: Vec::new(),
    }];

    let perf = s.store.campaign_performance().await?;
    let (r, e) = (i18n::t(lang, "responses"), i18n::t(lang, "expected"));
    let series = [
        Series { name: format!("{r}, %"), values: perf.iter().map(|c| num(c, "response_rate")).collect() },
        Series { name: format!("{e}, %"), values: perf.iter().map(|c| num(c, "expectedresponse")).collect() },
    ];
    let title = i18n::t(lang, "response_rate").to_string();
    let pct = |v: &J| v.as_f64().map(|x| format!("{x}")).unwrap_or_else(|| "—".into());
    charts.push(ChartView {
        id: "response".into(),
        svg: chart::bars("response", &title, &perf.iter().map(name).collect::<Vec<_>>(), &series),
        title,
        columns: vec![
            i18n::t(lang, "campaign").into(),
            i18n::t(lang, "targeted").into(),
            i18n::t(lang, "responses").into(),
            format!("{r}, %"),
            format!("{e}, %"),
        ],
        rows: perf
            .iter()
            .map(|c| {
                vec![
                    name(c),
                    c["targeted"].to_string(),
                    c["responses"].to_string(),
                    pct(&c["response_rate"]),
                    pct(&c["expectedresponse"]),
                ]
            })
            .collect(),
        empty: perf.is_empty(),
        links: Vec::new(),
    });

    let tz = s.api.tz();
    let waves = s
        .store
        .waves()
        .await?
        .into_iter()
        .map(|w| {
            json!({
                "id": w.activity_id,
                "subject": w.subject_line,
                "state": wave_state_word(lang, w.state),
                "start": i18n::datetime(lang, w.schedule.start_at, tz),
                "targeted": w.targeted,
            })
        })
        .collect();
    let campaigns = budget.iter().map(|c| json!({"id": c["campaignid"], "name": c["name"]})).collect();
    Ok((charts, waves, campaigns))
}

/// `GET /waves/{id}`: a wave's progress (pending, sent, failed by reason, bounced,
/// responded) as a chart and figures; refreshes itself while the wave sends; pause, resume
/// and cancel for those who run campaigns.
pub async fn wave(who: Signed, State(s): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Marketing)) {
        return r;
    }
    let lang = who.lang;
    let Ok(id) = id.parse::<Uuid>() else { return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")) };
    let st = match s.store.wave_status(id).await {
        Ok(st) => st,
        Err(e) => return failed(&who, e),
    };
    let tz = s.api.tz();
    let figures: Vec<(&str, i64)> = vec![
        ("pending", st.pending + st.in_flight),
        ("sent", st.sent),
        ("failed", st.failed),
        ("bounced", st.bounced),
        ("responded", st.responded),
        ("canceled", st.canceled),
    ];
    let cats: Vec<String> = figures.iter().map(|(k, _)| i18n::t(lang, k).to_string()).collect();
    let title = i18n::t(lang, "wave_progress").to_string();
    let count = i18n::t(lang, "count").to_string();
    let chart = ChartView {
        id: "progress".into(),
        svg: chart::bars(
            "progress",
            &title,
            &cats,
            &[Series { name: count.clone(), values: figures.iter().map(|(_, v)| *v as f64).collect() }],
        ),
        title,
        columns: vec![i18n::t(lang, "state").into(), count],
        rows: cats.iter().zip(&figures).map(|(c, (_, v))| vec![c.clone(), v.to_string()]).collect(),
        empty: false,
        links: Vec::new(),
    };
    let state = st.wave.state;
    let mut m = frame(&who, "campaigns");
    m.insert(
        "wave".into(),
        json!({
            "id": id,
            "subject": st.wave.subject_line,
            "campaign": st.campaign_name,
            "state": wave_state_word(lang, state),
            "targeted": st.wave.targeted,
            "start": i18n::datetime(lang, st.wave.schedule.start_at, tz),
            "started": st.wave.started_at.map(|t| i18n::datetime(lang, t, tz)),
            "finished": st.wave.finished_at.map(|t| i18n::datetime(lang, t, tz)),
            "response_rate": st.response_rate,
            "expected_response": st.expected_response,
            "failed_by_reason": st.failed_by_reason,
            "excluded": st.wave.excluded,
            "error": st.wave.error,
            // Mail waits on the relay (throttled, unreachable, its sign-in refused), only while sending.
            "relay_held": st.relay_held.as_ref().filter(|_| state == WaveState::Sending),
            // R-WV-5 (`crm::waves::next_state`): pause only while sending.
            "can_pause": state == WaveState::Sending,
            "can_resume": state == WaveState::Paused,
            "can_cancel": matches!(state, WaveState::Sending | WaveState::Scheduled | WaveState::Paused),
            "refresh": state == WaveState::Sending,
        }),
    );
    m.insert("chart".into(), json!(chart));
    m.insert("sent".into(), json!(query_params(raw).contains_key("sent")));
    m.insert("can_test_send".into(), json!(s.waves.is_some()));
    render("wave.html", J::Object(m), StatusCode::OK)
}

/// `POST /waves/{id}/pause|resume|cancel` (R-WV-5), for marketers and admins.
pub async fn wave_action(
    who: Signed,
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (f, id) = match who.posted(&body, Access::Write(Area::Marketing), &id) {
        Ok(p) => (p.form, p.id),
        Err(r) => return *r,
    };
    if action == "test-send" {
        let to = f.get("to").map(|t| t.trim()).unwrap_or_default();
        return match crate::http::api::test_send_wave(&s, id, to, Default::default()).await {
            Ok(()) => redirect(&format!("/waves/{id}?sent=1")),
            Err(e) => who.error(e.status, &e.message),
        };
    }
    let action = match action.as_str() {
        "pause" => WaveAction::Pause,
        "resume" => WaveAction::Resume,
        "cancel" => WaveAction::Cancel,
        _ => return who.error(StatusCode::NOT_FOUND, i18n::t(who.lang, "not_found")),
    };
    match s.store.control_wave(id, action, Utc::now()).await {
        Ok(_) => redirect(&format!("/waves/{id}")),
        Err(e) => failed(&who, e),
    }
}
