//! The entity sets: list (views, filters, groups, names beside ids), get, create (with
//! each record type's checks) and update (through the rules of leads, activities,
//! opportunities and campaigns).

use super::*;

// Entity sets

/// A record type served as an entity set.
pub trait Entity: Record {
    const SET: &'static str;
    const AREA: Area;
}

macro_rules! entity {
    ($($t:ty => $set:literal, $area:ident;)*) => {$(
        impl Entity for $t { const SET: &'static str = $set; const AREA: Area = Area::$area; }
    )*};
}
entity! {
    SystemUser => "systemusers", Sales;
    Account => "accounts", Sales;
    Contact => "contacts", Sales;
    Lead => "leads", Leads;
    Opportunity => "opportunities", Sales;
    MarketingList => "lists", Marketing;
    Campaign => "campaigns", Marketing;
    CampaignActivity => "campaignactivities", Marketing;
    BulkOperation => "bulkoperations", Marketing;
    CampaignResponse => "campaignresponses", Marketing;
    Activity => "activities", Sales;
}

pub(super) async fn list_h<R: Entity>(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<J>, ApiError> {
    let p = list_params(raw.as_deref())?;
    let mut conds = Vec::new();
    for (k, v) in &p.filters {
        conds.push(q::filter::<R>(k, v, s.api.tz()).map_err(bad)?);
    }
    let mut sort = p.sort.as_deref().map(q::sort::<R>).transpose().map_err(bad)?;
    let ctx = ViewCtx {
        me: c.user,
        overdue_kinds: &s.api.overdue_kinds,
        now: Utc::now(),
        tz: s.api.tz(),
        stale_lead_days: s.api.stale_lead_days,
        params: &p.extra,
    };
    let spec = q::view(R::TABLE, p.view.as_deref().unwrap_or("all"), &ctx).map_err(bad)?;
    if let Some(g) = &p.group_by {
        let col = q::field::<R>(g).ok_or_else(|| {
            bad(QueryError {
                code: "bad_group_by",
                message: format!("cannot group {} by '{}'", R::TABLE, g.chars().take(60).collect::<String>()),
            })
        })?;
        match spec {
            ViewSpec::Rows { conds: vc, .. } | ViewSpec::Groups { conds: vc, .. } => conds.extend(vc),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_group_by",
                    "this view is a report; group_by applies to record views",
                ));
            }
        }
        let groups = s.store.group_records::<R>(col.name, &conds).await?;
        return Ok(Json(json!({ "groups": groups })));
    }
    Ok(Json(match spec {
        ViewSpec::Rows { conds: vc, sort: vs } => {
            conds.extend(vc);
            sort = sort.or(vs);
            let mut page = serde_json::to_value(s.store.query_records::<R>(&conds, sort, p.page, p.limit).await?)
                .map_err(internal)?;
            named(&s, R::TABLE, &mut page).await?;
            page
        }
        ViewSpec::Groups { col, conds: vc } => {
            conds.extend(vc);
            json!({ "groups": s.store.group_records::<R>(col, &conds).await? })
        }
        ViewSpec::CreationRate { days } => {
            json!({ "groups": s.store.lead_creation_rate(ctx.now, ctx.tz, days).await? })
        }
        ViewSpec::BudgetVsActual => json!({ "items": s.store.campaign_budget_vs_actual().await? }),
        ViewSpec::Performance => json!({ "items": s.store.campaign_performance().await? }),
        ViewSpec::Hierarchy => json!({ "items": s.store.user_hierarchy().await? }),
        ViewSpec::Failures(run) => json!({ "items": s.store.wave_failures(run, p.limit).await? }),
        ViewSpec::Pipeline => {
            conds.push(q::filter::<R>("statecode", "0", ctx.tz).map_err(bad)?);
            let mut page = serde_json::to_value(s.store.query_records::<R>(&conds, sort, p.page, p.limit).await?)
                .map_err(internal)?;
            named(&s, R::TABLE, &mut page).await?;
            page["totals"] = s.store.pipeline_totals().await?;
            page
        }
    }))
}

/// Adds `<lookup>_name` beside each lookup of a page's records (issue 18 §9).
pub(super) async fn named(s: &AppState, table: &str, page: &mut J) -> Result<(), ApiError> {
    if let Some(items) = page.get_mut("items").and_then(J::as_array_mut) {
        s.store.add_lookup_names(table, items).await?;
    }
    Ok(())
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "response could not be built");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
}

pub(super) async fn get_h<R: Entity>(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<R>, ApiError> {
    Ok(Json(s.store.load::<R>(parse_id(&id)?).await?))
}

/// Fields a client never writes: keys, audit stamps, version, and state (actions change it).
pub(super) const SERVER_FIELDS: [&str; 8] =
    ["createdon", "createdby", "modifiedon", "modifiedby", "versionnumber", "statecode", "statuscode", "owneridtype"];

/// Per entity: fields the daemon keeps (roll-ups, books, snapshots) and, on update, fields
/// that are fixed once the record exists (DOMAIN §2: a list's member type and kind, a wave's
/// campaign).
pub(super) fn read_only(table: &str, create: bool) -> &'static [&'static str] {
    match (table, create) {
        ("list", true) => &["membercount", "lastusedon", "lockstatus"],
        ("list", false) => &["createdfromcode", "isdynamic", "membercount", "lastusedon", "lockstatus"],
        ("campaign", _) => &["totalcampaignactivityactualcost", "totalactualcost"],
        ("campaignactivity", true) => &["actualstart", "actualend"],
        ("campaignactivity", false) => &["regardingobjectid", "actualstart", "actualend"],
        ("lead", _) => &["lastusedincampaign", "qualifyingopportunityid", "masterid"],
        // R-OPP-1: the close facts are written by win/lose, the Act by close-deal.
        ("opportunity", true) => &["actualvalue", "actualclosedate", "deal_closed_on"],
        ("opportunity", false) => &["originatingleadid", "actualvalue", "actualclosedate", "deal_closed_on"],
        // R-ACT-1: state changes go through complete/cancel/reopen; the type is fixed.
        ("activity", false) => &["activitytypecode"],
        ("contact" | "account", _) => &["lastusedincampaign", "masterid"],
        _ => &[],
    }
}

/// Checks a body's fields against `R`'s columns; returns the object.
pub(super) fn record_fields<R: Record>(body: J, create: bool) -> Result<serde_json::Map<String, J>, ApiError> {
    let J::Object(obj) = body else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "the body must be a JSON object"));
    };
    for k in obj.keys() {
        if k == "versionnumber" && !create {
            continue;
        }
        if k == R::KEY || SERVER_FIELDS.contains(&k.as_str()) || read_only(R::TABLE, create).contains(&k.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "read_only_field",
                format!("{k} is kept by the server or fixed once the record exists"),
            ));
        }
        if q::field::<R>(k).is_none() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_field",
                format!("{} has no field '{}'", R::TABLE, k.chars().take(60).collect::<String>()),
            ));
        }
    }
    Ok(obj)
}

pub(super) fn typed<R: Record>(obj: serde_json::Map<String, J>) -> Result<R, ApiError> {
    parse_json(&serde_json::to_vec(&J::Object(obj)).map_err(internal)?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateQuery {
    /// `allow`: create even when the duplicate rules find a match.
    duplicates: Option<String>,
}

pub(super) fn create_mode(raw: Option<&str>) -> Result<CreateMode, ApiError> {
    let cq: CreateQuery = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string()))?;
    match cq.duplicates.as_deref() {
        None | Some("check") => Ok(CreateMode::CheckDuplicates),
        Some("allow") => Ok(CreateMode::IgnoreDuplicates),
        Some(_) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "duplicates: check or allow")),
    }
}

/// A record type the API creates.
pub trait Creatable: Entity {
    fn prepare(self, owner: Uuid, me: Uuid, now: chrono::DateTime<Utc>, s: &AppState) -> Result<Self, ApiError>;
    fn create(s: &AppState, rec: Self, mode: CreateMode) -> impl Future<Output = Result<Self, ApiError>> + Send;
}

pub(super) fn required(ok: bool, field: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "missing_field", format!("{field} is required")))
    }
}

macro_rules! creatable {
    ($t:ty, |$r:ident, $st:ident| $check:block, |$s:ident, $rec:ident, $mode:ident| $create:expr) => {
        impl Creatable for $t {
            fn prepare(mut self, owner: Uuid, me: Uuid, now: chrono::DateTime<Utc>, $st: &AppState) -> Result<Self,
                ApiError> {
                self.activityid_or_key_new();
                let $r = &mut self;
                $check
                Ok(self.stamped(owner, EntityKind::Systemuser, now, Some(me)))
            }
            async fn create($s: &AppState, $rec: Self, $mode: CreateMode) -> Result<Self, ApiError> {
                Ok($create)
            }
        }
    };
}

/// Gives a record being created a fresh key.
pub(super) trait NewKey {
    fn activityid_or_key_new(&mut self);
}
macro_rules! new_key {
    ($($t:ty => $k:ident),*) => {$(
        impl NewKey for $t {
            fn activityid_or_key_new(&mut self) {
                self.$k = Uuid::now_v7();
            }
        }
    )*};
}
new_key!(Lead => leadid, Contact => contactid, Account => accountid, Campaign => campaignid,
    MarketingList => listid, CampaignActivity => activityid, Activity => activityid, Opportunity => opportunityid);

creatable!(
    Lead,
    |r, _st| {
        if r.leadqualitycode == 0 {
            r.leadqualitycode = 2;
        }
        required(!r.lastname.trim().is_empty(), "lastname")?;
        required(!r.subject.trim().is_empty(), "subject")?;
    },
    |s, rec, mode| s.store.create_lead(&rec, mode).await?
);
creatable!(
    Contact,
    |r, _st| {
        required(!r.lastname.trim().is_empty(), "lastname")?;
    },
    |s, rec, mode| s.store.create_contact(&rec, mode).await?
);
creatable!(
    Account,
    |r, _st| {
        required(!r.name.trim().is_empty(), "name")?;
    },
    |s, rec, mode| s.store.create_account(&rec, mode).await?
);
creatable!(
    Campaign,
    |r, st| {
        required(!r.name.trim().is_empty(), "name")?;
        if r.transactioncurrencyid.trim().is_empty() {
            r.transactioncurrencyid = st.store.default_currency.clone();
        }
        // R-WV-6: no activities yet, so the total is the other cost.
        r.totalcampaignactivityactualcost = Some(crate::crm::Money::ZERO);
        r.totalactualcost = Some(r.othercost.unwrap_or(crate::crm::Money::ZERO));
    },
    |s, rec, _mode| {
        s.store.insert(&rec).await?;
        rec
    }
);
creatable!(
    MarketingList,
    |r, _st| {
        required(!r.listname.trim().is_empty(), "listname")?;
        if ![1, 2, 4].contains(&r.createdfromcode) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_member_type",
                "createdfromcode: 1 account, 2 contact or 4 lead",
            ));
        }
    },
    |s, rec, _mode| {
        s.store.insert(&rec).await?;
        rec
    }
);
creatable!(
    CampaignActivity,
    |r, _st| {
        required(!r.subject.trim().is_empty(), "subject")?;
    },
    |s, rec, _mode| s.store.create_campaign_activity(&rec).await?
);
creatable!(
    Activity,
    |r, _st| {
        if !matches!(
            r.activitytypecode,
            EntityKind::Task | EntityKind::Phonecall | EntityKind::Appointment | EntityKind::Letter | EntityKind::Fax
        ) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_activity_type",
                "activitytypecode: task, phonecall, appointment, letter or fax (e-mail is created by the daemon)",
            ));
        }
    },
    |s, rec, _mode| {
        s.store.insert(&rec).await?;
        rec
    }
);

creatable!(
    Opportunity,
    |r, st| {
        if r.opportunityratingcode == 0 {
            r.opportunityratingcode = 2;
        }
        if r.transactioncurrencyid.as_deref().is_none_or(|c| c.trim().is_empty()) {
            r.transactioncurrencyid = Some(st.store.default_currency.clone());
        }
    },
    |s, rec, _mode| s.store.create_opportunity(&rec).await?
);

pub(super) async fn create_h<R: Creatable>(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    RawQuery(raw): RawQuery,
    Body(body): Body<J>,
) -> Result<Response, ApiError> {
    let mode = create_mode(raw.as_deref())?;
    let obj = record_fields::<R>(body, true)?;
    let owner = match obj.get("ownerid") {
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "ownerid: not a UUID"))?,
        None => c.user,
    };
    if s.store.get::<SystemUser>(owner).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_owner",
            format!("ownerid {owner} is not a user"),
        ));
    }
    let rec = typed::<R>(obj)?.prepare(owner, c.user, Utc::now(), &s)?;
    let out = R::create(&s, rec, mode).await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A record type the API updates (PATCH: the fields given, optionally `versionnumber` for
/// optimistic concurrency).
pub(super) async fn patch_h<R: Entity>(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<J>,
) -> Result<Json<R>, ApiError> {
    let id = parse_id(&id)?;
    let mut obj = record_fields::<R>(body, false)?;
    // Costs roll up to the campaign (R-WV-6): they go through the operations that do that.
    let cost = match R::TABLE {
        "campaignactivity" => obj.remove("actualcost").map(|v| ("actualcost", v)),
        "campaign" => obj.remove("othercost").map(|v| ("othercost", v)),
        _ => None,
    };
    let cost = cost
        .map(|(f, v)| {
            serde_json::from_value::<Option<crate::crm::Money>>(v)
                .map(|m| (f, m))
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("{f}: {e}")))
        })
        .transpose()?;
    let current = s.store.load::<R>(id).await?;
    let J::Object(mut merged) = serde_json::to_value(&current).map_err(internal)? else {
        return Err(internal("record is not an object"));
    };
    let expected = obj.get("versionnumber").cloned();
    for (k, v) in obj {
        merged.insert(k, v);
    }
    if let Some(v) = expected {
        merged.insert("versionnumber".into(), v);
    }
    if merged.contains_key("modifiedby") {
        merged.insert("modifiedby".into(), json!(c.user));
        merged.insert("modifiedon".into(), json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
    }
    let rec: R = typed(merged)?;
    let mut out = update_any(&s, rec).await?;
    if let Some((field, money)) = cost {
        match field {
            "actualcost" => {
                s.store.set_campaign_activity_cost(id, money, Utc::now()).await?;
            }
            _ => {
                s.store.set_campaign_othercost(id, money, Utc::now()).await?;
            }
        }
        out = s.store.load::<R>(id).await?;
    }
    Ok(Json(out))
}

pub(super) async fn update_any<R: Entity>(s: &AppState, rec: R) -> Result<R, ApiError> {
    // Leads go through their rules (R-LD-*); other records are written as given.
    fn cast<A: serde::Serialize, B: DeserializeOwned>(a: &A) -> Result<B, ApiError> {
        serde_json::from_value(serde_json::to_value(a).map_err(internal)?).map_err(internal)
    }
    // Leads, activities and opportunities go through their rules (R-LD-*, R-ACT-*, R-OPP-1);
    // other records are written as given.
    match R::TABLE {
        "lead" => cast(&s.store.update_lead(&cast::<R, Lead>(&rec)?).await?),
        "activity" => cast(&s.store.update_activity(&cast::<R, Activity>(&rec)?).await?),
        "opportunity" => cast(&s.store.update_opportunity(&cast::<R, Opportunity>(&rec)?).await?),
        "campaign" => cast(&s.store.update_campaign(&cast::<R, Campaign>(&rec)?, Utc::now()).await?),
        _ => Ok(s.store.update(&rec).await?),
    }
}
