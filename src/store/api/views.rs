//! The named views of DOMAIN §7, per entity set: each is the conditions (or the grouping)
//! it adds to a list request, built from fixed fragments and the request's parameters.

use super::*;

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

pub(super) fn eq(col: &'static str, v: impl Into<Value>) -> Cond {
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
            // R-LD-5: nothing happened with the lead since. `lastactivityon` is kept by
            // SQLite's triggers (migration 0018) and by PostgreSQL's roll-up (0020, up to a
            // minute behind; see `store/rollup.rs`).
            let since = ctx.now - chrono::Duration::days(i64::from(ctx.stale_lead_days));
            rows(vec![
                open(),
                Cond::new("createdon < ?", vec![since.into()]),
                Cond::new("(lastactivityon IS NULL OR lastactivityon < ?)", vec![since.into()]),
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
            "EXISTS (SELECT 1 FROM bulkoperation b WHERE b.regardingobjectid = campaignactivity.activityid AND \
                b.statuscode IN (1, 2))",
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
                "EXISTS (SELECT 1 FROM notification_log n WHERE n.activityid = activity.activityid AND n.level \
                    >= 1 AND n.scheduledend = activity.scheduledend AND n.ownerid = activity.ownerid)",
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
