//! The admin API, `/api/v1` (issue 7; views and actions of DOMAIN §7 and §3).
//!
//! One table (`table()`) lists every route with its method, path, the access it needs and
//! what the OpenAPI document says about it; the router, the bearer-token check and
//! `/api/v1/openapi.json` are all built from that table, so a route cannot exist without
//! being documented and guarded. Handlers parse the request into typed values, call one
//! store operation (one transaction), and map rule refusals to 409/422 with
//! `{"error": {"code", "message"}}`. No SQL here: filters and views are words the store
//! turns into conditions on columns it knows.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as J, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ApiError, AppState};

mod work;
use crate::crm::EntityKind;
use crate::crm::entities::{
    Account, Activity, BulkOperation, Campaign, CampaignActivity, CampaignResponse, ColType, Contact, Lead,
    MarketingList, Opportunity, Record, SystemUser,
};
use crate::store::api::{self as q, QueryError, ViewCtx, ViewSpec};
use crate::store::{CreateMode, RecordExt};

/// Roles a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Marketer,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "marketer" => Some(Role::Marketer),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// What a route touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Users, accounts, contacts, opportunities, activities.
    Sales,
    /// Leads: marketers read them.
    Leads,
    /// Lists, campaigns, waves, responses, bulk operations.
    Marketing,
    /// Inbound events, quarantine, PBX calls, suppression, dup candidates.
    Ops,
    /// The API description.
    Meta,
}

/// The access a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read(Area),
    Write(Area),
    /// Any role: the handler lets the caller act on their own work (and their reports'),
    /// admins on everything (R-ACT-1).
    OwnWork,
}

/// admin: everything; marketer: lists, campaigns, waves, responses, and reading leads;
/// viewer: reading.
pub fn allowed(role: Role, access: Access) -> bool {
    matches!(
        (role, access),
        (Role::Admin, _)
            | (_, Access::OwnWork)
            | (_, Access::Read(Area::Meta))
            | (Role::Viewer, Access::Read(_))
            | (Role::Marketer, Access::Read(Area::Marketing | Area::Leads))
            | (Role::Marketer, Access::Write(Area::Marketing))
    )
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Uuid,
    pub role: Role,
    pub token: String,
}

/// Lowercase hex SHA-256 of a token: what config and database hold.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, URL-safe).
pub fn new_token() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    format!("ifl_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Resolves the bearer token of a request, then checks the route's access.
async fn authorize(state: &AppState, headers: &HeaderMap, access: Access) -> Result<Caller, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    let raw = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    let hash = token_hash(token);
    let found = match state
        .api
        .tokens
        .iter()
        .find(|t| subtle::ConstantTimeEq::ct_eq(t.sha256.as_bytes(), hash.as_bytes()).into())
    {
        Some(t) => Some((t.user, t.role.clone(), t.name.clone())),
        None => state.store.api_token_by_hash(&hash).await?.map(|t| (t.systemuserid, t.role, t.name)),
    };
    let (user, role, name) = found.ok_or_else(unauthorized)?;
    let role = Role::parse(&role).ok_or_else(unauthorized)?;
    // A token acts as its user: one who is gone or disabled can no longer act.
    match state.store.get::<SystemUser>(user).await? {
        Some(u) if !u.isdisabled => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the token's user is disabled or unknown",
            ));
        }
    }
    if !allowed(role, access) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {role:?} role may not do this").to_lowercase(),
        ));
    }
    Ok(Caller { user, role, token: name })
}

async fn guard(State((state, access)): State<(AppState, Access)>, mut req: Request, next: Next) -> Response {
    match authorize(&state, req.headers(), access).await {
        Ok(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// API settings the handlers need.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub enabled: bool,
    pub tokens: Vec<crate::config::ApiTokenConfig>,
    pub tz: Option<chrono_tz::Tz>,
    pub stale_lead_days: u32,
    /// R-TASK-1's types that live in the activity table (from `alerts.kinds`).
    pub overdue_kinds: Vec<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            enabled: true,
            tokens: Vec::new(),
            tz: None,
            stale_lead_days: 30,
            overdue_kinds: vec!["task".into(), "phonecall".into()],
        }
    }
}

impl ApiSettings {
    fn tz(&self) -> chrono_tz::Tz {
        self.tz.unwrap_or(chrono_tz::Europe::Moscow)
    }
}

// ---------------------------------------------------------------------------------------
// Request parsing

/// A JSON body, with errors as API errors: too large → 413, not JSON / wrong type /
/// unknown field → 400 naming the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "body_too_large", "the request body is over the limit")
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
            }
        })?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { Bytes::from_static(b"{}") } else { bytes };
        parse_json(&bytes).map(Body)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() { inner.to_string() } else { format!("{path}: {inner}") };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", msg)
    })
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", "the id in the path is not a UUID"))
}

fn bad(e: QueryError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message)
}

/// Query parameters of list routes.
struct ListParams {
    view: Option<String>,
    page: i64,
    limit: i64,
    sort: Option<String>,
    group_by: Option<String>,
    /// View parameters (`id`, `campaign`, `all_states`, `days`).
    extra: BTreeMap<String, String>,
    filters: Vec<(String, String)>,
}

const VIEW_PARAMS: [&str; 4] = ["id", "campaign", "all_states", "days"];

fn list_params(raw: Option<&str>) -> Result<ListParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string()))?;
    let mut p = ListParams {
        view: None,
        page: 1,
        limit: 50,
        sort: None,
        group_by: None,
        extra: BTreeMap::new(),
        filters: Vec::new(),
    };
    let int = |k: &str, v: &str, lo: i64, hi: i64| -> Result<i64, ApiError> {
        v.parse::<i64>().ok().filter(|n| (lo..=hi).contains(n)).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_pagination", format!("{k}: an integer from {lo} to {hi}"))
        })
    };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in pairs {
        let reserved =
            matches!(k.as_str(), "view" | "page" | "limit" | "sort" | "group_by") || VIEW_PARAMS.contains(&k.as_str());
        if reserved && !seen.insert(k.clone()) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_parameter", format!("{k} is given twice")));
        }
        match k.as_str() {
            "view" => p.view = Some(v),
            "page" => p.page = int("page", &v, 1, 1_000_000)?,
            "limit" => p.limit = int("limit", &v, 1, q::MAX_LIMIT)?,
            "sort" => p.sort = Some(v),
            "group_by" => p.group_by = Some(v),
            k if VIEW_PARAMS.contains(&k) => {
                // Checked here whatever the view, so a wrong value is never silently ignored.
                let ok = match k {
                    "id" | "campaign" => v.parse::<Uuid>().is_ok(),
                    "all_states" => v == "true" || v == "false",
                    _ => v.parse::<u32>().is_ok_and(|d| (1..=366).contains(&d)),
                };
                if !ok {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_parameter",
                        format!("{k}: not a valid value"),
                    ));
                }
                p.extra.insert(k.to_string(), v);
            }
            _ => p.filters.push((k, v)),
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------
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

async fn list_h<R: Entity>(
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
async fn named(s: &AppState, table: &str, page: &mut J) -> Result<(), ApiError> {
    if let Some(items) = page.get_mut("items").and_then(J::as_array_mut) {
        s.store.add_lookup_names(table, items).await?;
    }
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "response could not be built");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
}

async fn get_h<R: Entity>(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<R>, ApiError> {
    Ok(Json(s.store.load::<R>(parse_id(&id)?).await?))
}

/// Fields a client never writes: keys, audit stamps, version, and state (actions change it).
const SERVER_FIELDS: [&str; 8] =
    ["createdon", "createdby", "modifiedon", "modifiedby", "versionnumber", "statecode", "statuscode", "owneridtype"];

/// Per entity: fields the daemon keeps (roll-ups, books, snapshots) and, on update, fields
/// that are fixed once the record exists (DOMAIN §2: a list's member type and kind, a wave's
/// campaign).
fn read_only(table: &str, create: bool) -> &'static [&'static str] {
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
fn record_fields<R: Record>(body: J, create: bool) -> Result<serde_json::Map<String, J>, ApiError> {
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

fn typed<R: Record>(obj: serde_json::Map<String, J>) -> Result<R, ApiError> {
    parse_json(&serde_json::to_vec(&J::Object(obj)).map_err(internal)?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    /// `allow`: create even when the duplicate rules find a match.
    duplicates: Option<String>,
}

fn create_mode(raw: Option<&str>) -> Result<CreateMode, ApiError> {
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

fn required(ok: bool, field: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "missing_field", format!("{field} is required")))
    }
}

macro_rules! creatable {
    ($t:ty, |$r:ident, $st:ident| $check:block, |$s:ident, $rec:ident, $mode:ident| $create:expr) => {
        impl Creatable for $t {
            fn prepare(mut self, owner: Uuid, me: Uuid, now: chrono::DateTime<Utc>, $st: &AppState) -> Result<Self, ApiError> {
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
trait NewKey {
    fn activityid_or_key_new(&mut self);
}
macro_rules! new_key {
    ($($t:ty => $k:ident),*) => {$( impl NewKey for $t { fn activityid_or_key_new(&mut self) { self.$k = Uuid::now_v7(); } } )*};
}
new_key!(Lead => leadid, Contact => contactid, Account => accountid, Campaign => campaignid, MarketingList => listid, CampaignActivity => activityid, Activity => activityid, Opportunity => opportunityid);

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

async fn create_h<R: Creatable>(
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
async fn patch_h<R: Entity>(
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

async fn update_any<R: Entity>(s: &AppState, rec: R) -> Result<R, ApiError> {
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

// ---------------------------------------------------------------------------------------
// Actions

async fn qualify_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(p): Body<crate::crm::lead::QualifyParams>,
) -> Result<Json<J>, ApiError> {
    let (lead, created) = s.store.qualify_lead(parse_id(&id)?, &p, Some(c.user), Utc::now()).await?;
    Ok(Json(json!({"lead": lead, "created": created})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DisqualifyBody {
    statuscode: Option<i32>,
    reason: Option<String>,
}

async fn disqualify_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<DisqualifyBody>,
) -> Result<Json<Lead>, ApiError> {
    Ok(Json(
        s.store.disqualify_lead(parse_id(&id)?, b.statuscode, b.reason.as_deref(), Some(c.user), Utc::now()).await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

async fn reactivate_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<Lead>, ApiError> {
    Ok(Json(s.store.reactivate_lead(parse_id(&id)?, Some(c.user), Utc::now()).await?))
}

async fn convert_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    Body(o): Body<crate::crm::response::ConvertOption>,
) -> Result<Json<J>, ApiError> {
    let mode = create_mode(raw.as_deref())?;
    use crate::crm::response::ConvertOption;
    // New lead and close are response work; linking to (or reactivating) an existing lead
    // writes a lead, and a new customer writes accounts, contacts and opportunities.
    let needs = match &o {
        ConvertOption::NewLead | ConvertOption::Close { .. } => None,
        ConvertOption::ExistingLead { .. } => Some(Access::Write(Area::Leads)),
        ConvertOption::NewCustomer { .. } => Some(Access::Write(Area::Sales)),
    };
    if let Some(a) = needs.filter(|a| !allowed(c.role, *a)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {:?} role may not write the records this option changes ({a:?})", c.role).to_lowercase(),
        ));
    }
    let (response, created) =
        s.store.convert_response(parse_id(&id)?, &o, None, Some(c.user), Utc::now(), mode).await?;
    Ok(Json(json!({"response": response, "created": created})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    statuscode: i32,
}

async fn campaign_status_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<StatusBody>,
) -> Result<Json<Campaign>, ApiError> {
    Ok(Json(s.store.set_campaign_status(parse_id(&id)?, b.statuscode, Some(c.user), Utc::now()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    /// Local start "YYYY-MM-DD HH:MM" in `timezone`, or an RFC 3339 instant; default now.
    start: Option<String>,
    timezone: Option<String>,
    subject: String,
    text: String,
    html: Option<String>,
    from: Option<String>,
    from_name: Option<String>,
    reply_to: Option<String>,
    rate_per_minute: Option<u32>,
    skip_responders_of: Option<Uuid>,
}

fn unprocessable(code: &str, m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, m)
}

async fn schedule_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<ScheduleBody>,
) -> Result<Json<J>, ApiError> {
    let id = parse_id(&id)?;
    let now = Utc::now();
    let zone: chrono_tz::Tz = match &b.timezone {
        Some(t) => t.parse().map_err(|_| {
            unprocessable(
                "bad_timezone",
                format!("'{}' is not an IANA time zone", t.chars().take(60).collect::<String>()),
            )
        })?,
        None => s.api.tz(),
    };
    let start_at = match &b.start {
        None => now,
        Some(raw) => match chrono::DateTime::parse_from_rfc3339(raw) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                let local = crate::crm::waves::parse_local(raw).ok_or_else(|| {
                    unprocessable("bad_start", "start: expected YYYY-MM-DD HH:MM (local) or an RFC 3339 instant")
                })?;
                crate::crm::waves::local_start(local, zone).map_err(|e| unprocessable("bad_start", e.to_string()))?
            }
        },
    };
    let from = b
        .from
        .or_else(|| s.smtp_from.clone())
        .ok_or_else(|| unprocessable("missing_field", "from is required when smtp.from is not set"))?;
    let sched = crate::store::waves::WaveSchedule {
        activity_id: id,
        start_at,
        timezone: zone.name().to_string(),
        subject: b.subject,
        text: b.text,
        html: b.html,
        from_address: from,
        from_name: b.from_name,
        reply_to: b.reply_to,
        rate_per_minute: b.rate_per_minute,
        skip_responders_of: b.skip_responders_of,
    };
    match crate::waves::schedule(&s.store, &sched, now).await {
        Ok(w) => Ok(Json(serde_json::to_value(w).map_err(internal)?)),
        Err(e) => match e.downcast::<crate::store::StoreError>() {
            Ok(se) => Err(se.into()),
            Err(other) => Err(unprocessable("invalid_wave", format!("{other:#}"))),
        },
    }
}

async fn wave_control(s: &AppState, id: &str, action: crate::crm::waves::WaveAction) -> Result<Json<J>, ApiError> {
    let w = s.store.control_wave(parse_id(id)?, action, Utc::now()).await?;
    Ok(Json(serde_json::to_value(w).map_err(internal)?))
}

async fn pause_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    wave_control(&s, &id, crate::crm::waves::WaveAction::Pause).await
}
async fn resume_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    wave_control(&s, &id, crate::crm::waves::WaveAction::Resume).await
}
async fn cancel_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    wave_control(&s, &id, crate::crm::waves::WaveAction::Cancel).await
}

async fn wave_status_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    Ok(Json(serde_json::to_value(s.store.wave_status(parse_id(&id)?).await?).map_err(internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSendBody {
    to: String,
    #[serde(default)]
    vars: serde_json::Map<String, J>,
}

async fn test_send_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<TestSendBody>,
) -> Result<Json<J>, ApiError> {
    let id = parse_id(&id)?;
    let rt = s.waves.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_relay",
            "this daemon has no SMTP relay configured ([smtp] host) or waves are disabled",
        )
    })?;
    crate::crm::EmailAddress::parse(&b.to).map_err(|e| unprocessable("invalid_address", format!("to: {e}")))?;
    s.store.wave(id).await?;
    rt.test_send(id, &b.to, b.vars)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "send_failed", format!("{e:#}")))?;
    Ok(Json(json!({"sent_to": b.to})))
}

async fn optouts_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    let items = s.store.list_optouts(parse_id(&id)?, Utc::now()).await?;
    Ok(Json(json!({"total": items.len(), "items": items})))
}

async fn members_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    let members = s.store.list_members(parse_id(&id)?, Utc::now()).await?;
    Ok(Json(json!({"items": members, "total": members.len()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersBody {
    members: Vec<Uuid>,
}

async fn add_members_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<MembersBody>,
) -> Result<Json<J>, ApiError> {
    if b.members.len() > 10_000 {
        return Err(unprocessable("too_many_members", "at most 10000 members per request"));
    }
    let added = s.store.add_list_members(parse_id(&id)?, &b.members, Utc::now()).await?;
    Ok(Json(json!({"added": added})))
}

async fn remove_members_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<MembersBody>,
) -> Result<Json<J>, ApiError> {
    let removed = s.store.remove_list_members(parse_id(&id)?, &b.members).await?;
    Ok(Json(json!({"removed": removed})))
}

async fn copy_static_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Response, ApiError> {
    let l = s.store.copy_dynamic_to_static(parse_id(&id)?, Uuid::now_v7(), Some(c.user), Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(l)).into_response())
}

async fn ops_h(s: &AppState, set: q::OpsSet, raw: Option<&str>) -> Result<Json<J>, ApiError> {
    let p = list_params(raw)?;
    if p.view.is_some() || p.sort.is_some() || p.group_by.is_some() || !p.extra.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "ops lists take page, limit and column filters only",
        ));
    }
    let page = s.store.ops_page(set, &p.filters, p.page, p.limit).await?.map_err(bad)?;
    Ok(Json(serde_json::to_value(page).map_err(internal)?))
}

macro_rules! ops_handler {
    ($($name:ident => $set:ident),*) => {$(
        async fn $name(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<J>, ApiError> { ops_h(&s, q::OpsSet::$set, raw.as_deref()).await }
    )*};
}
ops_handler!(inbound_h => InboundEvents, email_log_h => InboundEmailLog, quarantine_h => Quarantine, unmatched_h => UnmatchedSenders, calls_h => PbxCalls, suppression_h => Suppression, dups_h => DupCandidates, bounces_h => Bounces, mailboxes_h => Mailboxes);

async fn replay_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    let id = parse_id(&id)?;
    let events = s.store.quarantined_mail().await?;
    let ev = events.iter().find(|e| e.id == id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{id} is not a quarantined or failed mail event"))
    })?;
    let mailbox = ev.mailbox().unwrap_or("");
    let cfg = s.config.clone().ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "no_config", "replay needs the daemon's mailbox configuration")
    })?;
    let mb = cfg.mailboxes.iter().find(|m| m.name == mailbox).ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "unknown_mailbox", format!("mailbox '{mailbox}' is not configured"))
    })?;
    let rt = crate::ingest::imap::MailboxRuntime::new(&cfg, mb, s.store.clone(), "api")
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "mailbox_config", e.to_string()))?;
    let out = rt.replay(ev).await.map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_replayed", format!("{e:#}")))?;
    Ok(Json(json!({"status": out.status, "class": out.class, "reason": out.reason})))
}

async fn openapi_h(State(s): State<AppState>) -> Json<J> {
    let _ = s;
    Json(openapi())
}

// ---------------------------------------------------------------------------------------
// The route table

/// The body a route takes, for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub enum BodyDoc {
    None,
    /// The set's record (create/update).
    Record,
    Named(&'static str),
}

/// What a route answers with.
#[derive(Debug, Clone, Copy)]
pub enum ReplyDoc {
    Page,
    /// All of a set's records that belong to the path's record (no paging).
    List,
    Record,
    Object,
}

/// One route of the API.
pub struct RouteDef {
    pub method: Method,
    pub path: String,
    pub access: Access,
    pub summary: String,
    pub set: Option<(&'static str, &'static [crate::crm::entities::Col], &'static str)>,
    pub body: BodyDoc,
    pub reply: ReplyDoc,
    pub list: bool,
    pub status: u16,
    handler: MethodRouter<AppState>,
}

fn route(
    method: Method,
    path: impl Into<String>,
    access: Access,
    summary: impl Into<String>,
    handler: MethodRouter<AppState>,
) -> RouteDef {
    RouteDef {
        method,
        path: path.into(),
        access,
        summary: summary.into(),
        set: None,
        body: BodyDoc::None,
        reply: ReplyDoc::Object,
        list: false,
        status: 200,
        handler,
    }
}

fn entity_routes<R: Entity>(out: &mut Vec<RouteDef>) {
    use axum::routing::{get, patch};
    let base = format!("/api/v1/{}", R::SET);
    let set = Some((R::SET, R::COLS, R::TABLE));
    out.push(RouteDef {
        set,
        reply: ReplyDoc::Page,
        list: true,
        ..route(
            Method::GET,
            &base,
            Access::Read(R::AREA),
            format!("List {} (views: {})", R::SET, q::views(R::TABLE).join(", ")),
            get(list_h::<R>),
        )
    });
    out.push(RouteDef {
        set,
        reply: ReplyDoc::Record,
        ..route(
            Method::GET,
            format!("{base}/{{id}}"),
            Access::Read(R::AREA),
            format!("Get one of {}", R::SET),
            get(get_h::<R>),
        )
    });
    if R::TABLE != "bulkoperation" && R::TABLE != "campaignresponse" && R::TABLE != "systemuser" {
        out.push(RouteDef {
            set,
            body: BodyDoc::Record,
            reply: ReplyDoc::Record,
            ..route(
                Method::PATCH,
                format!("{base}/{{id}}"),
                Access::Write(R::AREA),
                format!("Update fields of one of {}", R::SET),
                patch(patch_h::<R>),
            )
        });
    }
}

fn create_route<R: Creatable>(out: &mut Vec<RouteDef>) {
    use axum::routing::post;
    let set = Some((R::SET, R::COLS, R::TABLE));
    let summary = if matches!(R::TABLE, "lead" | "contact" | "account") {
        format!("Create one of {} (duplicate rules run: 409 with candidates unless ?duplicates=allow)", R::SET)
    } else {
        format!("Create one of {}", R::SET)
    };
    out.push(RouteDef {
        set,
        body: BodyDoc::Record,
        reply: ReplyDoc::Record,
        status: 201,
        ..route(Method::POST, format!("/api/v1/{}", R::SET), Access::Write(R::AREA), summary, post(create_h::<R>))
    });
}

/// Every route of `/api/v1`.
pub fn table() -> Vec<RouteDef> {
    use axum::routing::{get, post};
    let mut t = Vec::new();
    entity_routes::<SystemUser>(&mut t);
    entity_routes::<Account>(&mut t);
    entity_routes::<Contact>(&mut t);
    entity_routes::<Lead>(&mut t);
    entity_routes::<Opportunity>(&mut t);
    entity_routes::<MarketingList>(&mut t);
    entity_routes::<Campaign>(&mut t);
    entity_routes::<CampaignActivity>(&mut t);
    entity_routes::<BulkOperation>(&mut t);
    entity_routes::<CampaignResponse>(&mut t);
    entity_routes::<Activity>(&mut t);
    create_route::<Account>(&mut t);
    create_route::<Contact>(&mut t);
    create_route::<Lead>(&mut t);
    create_route::<MarketingList>(&mut t);
    create_route::<Campaign>(&mut t);
    create_route::<CampaignActivity>(&mut t);
    create_route::<Activity>(&mut t);
    create_route::<Opportunity>(&mut t);
    let w = |a| Access::Write(a);
    let r = |a| Access::Read(a);
    use Area::*;
    t.push(RouteDef {
        body: BodyDoc::Named("QualifyParams"),
        ..route(
            Method::POST,
            "/api/v1/leads/{id}/qualify",
            w(Leads),
            "QualifyLead (§3.1): create/link account, contact, opportunity; lead → Qualified",
            post(qualify_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Disqualify"),
        reply: ReplyDoc::Record,
        set: Some(("leads", Lead::COLS, "lead")),
        ..route(
            Method::POST,
            "/api/v1/leads/{id}/disqualify",
            w(Leads),
            "Disqualify an open lead (§3.2)",
            post(disqualify_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        reply: ReplyDoc::Record,
        set: Some(("leads", Lead::COLS, "lead")),
        ..route(
            Method::POST,
            "/api/v1/leads/{id}/reactivate",
            w(Leads),
            "Reactivate a closed lead (§3.2)",
            post(reactivate_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("ConvertOption"),
        ..route(
            Method::POST,
            "/api/v1/campaignresponses/{id}/convert",
            w(Marketing),
            "Convert a campaign response (§3.3 a/b/c/d)",
            post(convert_h),
        )
    });
    t.push(RouteDef { body: BodyDoc::Named("CampaignStatus"), reply: ReplyDoc::Record, set: Some(("campaigns", Campaign::COLS, "campaign")), ..route(Method::POST, "/api/v1/campaigns/{id}/status", w(Marketing), "Change a campaign's status: 0 Proposed → 1 Ready To Launch → 2 Launched → 3 Completed; 4 Canceled; 2 ↔ 5 Suspended", post(campaign_status_h)) });
    t.push(RouteDef {
        body: BodyDoc::Named("Schedule"),
        ..route(
            Method::POST,
            "/api/v1/campaignactivities/{id}/schedule",
            w(Marketing),
            "Schedule the e-mail wave of a campaign activity (R-WV-1)",
            post(schedule_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        ..route(
            Method::POST,
            "/api/v1/campaignactivities/{id}/pause",
            w(Marketing),
            "Pause a wave (R-WV-5)",
            post(pause_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        ..route(
            Method::POST,
            "/api/v1/campaignactivities/{id}/resume",
            w(Marketing),
            "Resume a paused wave",
            post(resume_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        ..route(Method::POST, "/api/v1/campaignactivities/{id}/cancel", w(Marketing), "Cancel a wave", post(cancel_h))
    });
    t.push(RouteDef {
        body: BodyDoc::Named("TestSend"),
        ..route(
            Method::POST,
            "/api/v1/campaignactivities/{id}/test-send",
            w(Marketing),
            "Send the wave's message to one address, marked [TEST]; touches no counts",
            post(test_send_h),
        )
    });
    t.push(route(
        Method::GET,
        "/api/v1/campaignactivities/{id}/status",
        r(Marketing),
        "A wave's state and figures",
        get(wave_status_h),
    ));
    t.push(route(
        Method::GET,
        "/api/v1/lists/{id}/members",
        r(Marketing),
        "Members of a list (dynamic lists evaluated now)",
        get(members_h),
    ));
    t.push(route(
        Method::GET,
        "/api/v1/lists/{id}/optouts",
        r(Marketing),
        "Members no marketing e-mail reaches (R-OPT-1), with the reasons",
        get(optouts_h),
    ));
    t.push(RouteDef {
        body: BodyDoc::Named("Members"),
        ..route(
            Method::POST,
            "/api/v1/lists/{id}/members",
            w(Marketing),
            "Add members to a static, unlocked list",
            post(add_members_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Members"),
        ..route(
            Method::POST,
            "/api/v1/lists/{id}/members/remove",
            w(Marketing),
            "Remove members from a static, unlocked list",
            post(remove_members_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        reply: ReplyDoc::Record,
        set: Some(("lists", MarketingList::COLS, "list")),
        status: 201,
        ..route(
            Method::POST,
            "/api/v1/lists/{id}/copy-to-static",
            w(Marketing),
            "Copy a dynamic list's current members to a new static list",
            post(copy_static_h),
        )
    });
    for (path, summary, h) in [
        ("inbound-events", "Inbound events (mail and calls): idempotency and audit", get(inbound_h)),
        ("inbound-email-log", "Inbound e-mail log with each message's class and outcome", get(email_log_h)),
        ("quarantine", "Quarantined and failed inbound mail, and mail the loop guard held back", get(quarantine_h)),
        ("unmatched-senders", "Mail from senders that matched nobody and made no record", get(unmatched_h)),
        ("pbx-calls", "PBX calls and their processing state", get(calls_h)),
        ("suppression", "Suppressed addresses and numbers", get(suppression_h)),
        ("dup-candidates", "Ambiguous matches waiting for a person (R-DUP-3)", get(dups_h)),
        ("bounces", "Bounce counts per address with the last reason, status and diagnostic (R-EM-8)", get(bounces_h)),
        ("mailboxes", "Mailbox folders: connection state, checkpoint, lease and messages seen again", get(mailboxes_h)),
    ] {
        t.push(RouteDef {
            reply: ReplyDoc::Page,
            list: false,
            ..route(Method::GET, format!("/api/v1/ops/{path}"), r(Ops), summary, h)
        });
    }
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        ..route(
            Method::POST,
            "/api/v1/ops/quarantine/{id}/replay",
            w(Ops),
            "Process a quarantined message again",
            post(replay_h),
        )
    });
    work::routes(&mut t);
    t.push(route(Method::GET, "/api/v1/openapi.json", r(Meta), "This document", get(openapi_h)));
    t
}

/// The `/api/v1` router, every route behind the token check for its access.
pub fn routes(state: AppState) -> Router<AppState> {
    let mut router = Router::new();
    for d in table() {
        let layer = axum::middleware::from_fn_with_state((state.clone(), d.access), guard);
        router = router.route(&d.path, d.handler.route_layer(layer));
    }
    router
}

// ---------------------------------------------------------------------------------------
// OpenAPI

fn col_schema(ty: ColType) -> J {
    match ty {
        ColType::Text => json!({"type": "string", "nullable": true}),
        ColType::Uuid => json!({"type": "string", "format": "uuid", "nullable": true}),
        ColType::Int => json!({"type": "integer", "nullable": true}),
        ColType::Bool => json!({"type": "boolean", "nullable": true}),
        ColType::Money => json!({"type": "number", "nullable": true}),
        ColType::Instant => json!({"type": "string", "format": "date-time", "nullable": true}),
        ColType::Date => json!({"type": "string", "format": "date", "nullable": true}),
        ColType::Json => json!({"nullable": true}),
    }
}

fn record_schema(cols: &[crate::crm::entities::Col]) -> J {
    let props: serde_json::Map<String, J> = cols.iter().map(|c| (c.name.to_string(), col_schema(c.ty))).collect();
    json!({"type": "object", "properties": props})
}

fn writable_schema(cols: &[crate::crm::entities::Col], key: &str, table: &str, create: bool) -> J {
    let mut props: serde_json::Map<String, J> = cols
        .iter()
        .filter(|c| c.name != key && !SERVER_FIELDS.contains(&c.name) && !read_only(table, create).contains(&c.name))
        .map(|c| (c.name.to_string(), col_schema(c.ty)))
        .collect();
    let text = json!({"type": "string", "minLength": 1, "pattern": "\\S"});
    let required: &[&str] = match table {
        "lead" => &["subject", "lastname"],
        "contact" => &["lastname"],
        "account" => &["name"],
        "campaign" => &["name"],
        "list" => &["listname", "createdfromcode"],
        "campaignactivity" => &["regardingobjectid", "subject"],
        "activity" => &["activitytypecode"],
        "opportunity" => &["name", "customerid", "customeridtype"],
        _ => &[],
    };
    if create {
        for r in required {
            props.insert(r.to_string(), text.clone());
        }
    }
    match table {
        "list" if create => {
            props.insert("createdfromcode".into(), json!({"type": "integer", "enum": [1, 2, 4]}));
        }
        "activity" => {
            props.insert(
                "activitytypecode".into(),
                json!({"type": "string", "enum": ["task", "phonecall", "appointment", "letter", "fax"]}),
            );
        }
        "lead" => {
            props.insert("leadqualitycode".into(), json!({"type": "integer", "enum": [1, 2, 3]}));
        }
        "opportunity" => {
            if create {
                props.insert("customerid".into(), json!({"type": "string", "format": "uuid"}));
                props.insert("customeridtype".into(), json!({"type": "string", "enum": ["account", "contact"]}));
            }
            props.insert("salesstage".into(), json!({"type": "integer", "enum": [0, 1, 2, 3], "nullable": true}));
            props.insert(
                "closeprobability".into(),
                json!({"type": "integer", "minimum": 0, "maximum": 100, "nullable": true}),
            );
            props.insert("opportunityratingcode".into(), json!({"type": "integer", "enum": [1, 2, 3]}));
        }
        _ => {}
    }
    if props.contains_key("ownerid") {
        props.insert(
            "ownerid".into(),
            json!({"type": "string", "format": "uuid", "description": "default: the caller's user"}),
        );
    }
    let mut schema = json!({"type": "object", "properties": props, "additionalProperties": false});
    if create && !required.is_empty() {
        schema["required"] = json!(required);
    }
    if !create {
        schema["properties"]["versionnumber"] =
            json!({"type": "integer", "description": "optimistic concurrency: the version read"});
    }
    schema
}

fn named_body(name: &str) -> J {
    let uuid = json!({"type": "string", "format": "uuid"});
    let ostr = json!({"type": "string", "nullable": true});
    match name {
        "Empty" => json!({"type": "object", "additionalProperties": false}),
        "Disqualify" => {
            json!({"type": "object", "additionalProperties": false, "properties": {"statuscode": {"type": "integer", "enum": [4, 5, 6, 7], "nullable": true}, "reason": ostr}})
        }
        "QualifyParams" => json!({"type": "object", "additionalProperties": false,
            "required": ["create_account", "create_contact", "create_opportunity"],
            "properties": {"create_account": {"type": "boolean"}, "create_contact": {"type": "boolean"}, "create_opportunity": {"type": "boolean"},
                "opportunity_currency_id": ostr, "opportunity_customer": {"type": "object", "nullable": true, "required": ["kind", "id"], "properties": {"kind": {"type": "string", "enum": ["account", "contact"]}, "id": uuid}},
                "source_campaign_id": {"type": "string", "format": "uuid", "nullable": true}, "status": {"type": "integer", "nullable": true}}}),
        "ConvertOption" => json!({"oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["option"], "properties": {"option": {"type": "string", "enum": ["new_lead"]}}},
            {"type": "object", "additionalProperties": false, "required": ["option", "lead_id"], "properties": {"option": {"type": "string", "enum": ["existing_lead"]}, "lead_id": uuid, "reactivate": {"type": "boolean"}}},
            {"type": "object", "additionalProperties": false, "required": ["option", "create_account", "create_contact"], "properties": {"option": {"type": "string", "enum": ["new_customer"]}, "create_account": {"type": "boolean"}, "create_contact": {"type": "boolean"}, "create_opportunity": {"type": "boolean"}}},
            {"type": "object", "additionalProperties": false, "required": ["option"], "properties": {"option": {"type": "string", "enum": ["close"]}, "cancel": {"type": "boolean"}}}]}),
        "Schedule" => {
            json!({"type": "object", "additionalProperties": false, "required": ["subject", "text"], "properties": {
            "start": ostr, "timezone": ostr, "subject": {"type": "string"}, "text": {"type": "string"}, "html": ostr, "from": ostr, "from_name": ostr, "reply_to": ostr,
            "rate_per_minute": {"type": "integer", "minimum": 0, "nullable": true}, "skip_responders_of": {"type": "string", "format": "uuid", "nullable": true}}})
        }
        "CampaignStatus" => {
            json!({"type": "object", "additionalProperties": false, "required": ["statuscode"], "properties": {"statuscode": {"type": "integer", "enum": [0, 1, 2, 3, 4, 5]}}})
        }
        "TestSend" => {
            json!({"type": "object", "additionalProperties": false, "required": ["to"], "properties": {"to": {"type": "string"}, "vars": {"type": "object"}}})
        }
        "Members" => {
            json!({"type": "object", "additionalProperties": false, "required": ["members"], "properties": {"members": {"type": "array", "items": uuid}}})
        }
        other => work::named_body(other).unwrap_or_else(|| json!({})),
    }
}

/// The OpenAPI 3.0 document of `/api/v1`, built from the route table.
pub fn openapi() -> J {
    let mut paths = serde_json::Map::new();
    let error = json!({"$ref": "#/components/schemas/Error"});
    let all = table();
    let op_id = |d: &RouteDef| {
        format!(
            "{}_{}",
            d.method.as_str().to_lowercase(),
            d.path.trim_start_matches("/api/v1/").replace(['/', '-', '.'], "_").replace(['{', '}'], "")
        )
    };
    for d in &all {
        let mut op = serde_json::Map::new();
        op.insert("operationId".into(), json!(op_id(d)));
        op.insert("summary".into(), json!(d.summary));
        op.insert("security".into(), json!([{"bearer": []}]));
        let mut params = Vec::new();
        if d.path.contains("{id}") {
            params.push(
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}),
            );
        }
        let paged = matches!(d.reply, ReplyDoc::Page);
        if paged {
            params.push(json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}));
            params.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": q::MAX_LIMIT}}));
        }
        if d.list {
            let (_, cols, table) = d.set.expect("list routes have a set");
            let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
            let sorts: Vec<String> = names.iter().flat_map(|n| [n.to_string(), format!("-{n}")]).collect();
            params.push(json!({"name": "view", "in": "query", "schema": {"type": "string", "enum": q::views(table)}}));
            params.push(json!({"name": "sort", "in": "query", "schema": {"type": "string", "enum": sorts}}));
            params.push(json!({"name": "group_by", "in": "query", "schema": {"type": "string", "enum": names}}));
            params.push(json!({"name": "id", "in": "query", "description": "view by-regarding: the regarding record", "schema": {"type": "string", "format": "uuid"}}));
            params.push(json!({"name": "campaign", "in": "query", "description": "view by-campaign: the campaign", "schema": {"type": "string", "format": "uuid"}}));
            params.push(json!({"name": "all_states", "in": "query", "description": "view older-than-6-months: every state", "schema": {"type": "boolean"}}));
            params.push(json!({"name": "days", "in": "query", "description": "view creation-rate: days back", "schema": {"type": "integer", "minimum": 1, "maximum": 366}}));
        }
        if d.method == Method::POST && (matches!(d.body, BodyDoc::Record) || d.path.ends_with("/convert")) {
            params.push(
                json!({"name": "duplicates", "in": "query", "schema": {"type": "string", "enum": ["check", "allow"]}}),
            );
        }
        if !params.is_empty() {
            op.insert("parameters".into(), J::Array(params));
        }
        let body = match d.body {
            BodyDoc::None => None,
            BodyDoc::Record => {
                d.set.map(|(_, cols, table)| writable_schema(cols, &crate_key(table), table, d.method == Method::POST))
            }
            BodyDoc::Named(n) => Some(named_body(n)),
        };
        if let Some(b) = body {
            // A body with nothing required may be left out (an action with no options, a
            // PATCH that changes nothing): the server reads no body as `{}`.
            let required =
                b.get("required").and_then(J::as_array).is_some_and(|r| !r.is_empty()) || b.get("oneOf").is_some();
            op.insert(
                "requestBody".into(),
                json!({"required": required, "content": {"application/json": {"schema": b}}}),
            );
        }
        let ok = match (d.reply, d.set) {
            (ReplyDoc::Record, Some((_, cols, _))) => record_schema(cols),
            (ReplyDoc::Page, Some((_, cols, _))) => {
                json!({"type": "object", "properties": {"items": {"type": "array", "items": record_schema(cols)}, "total": {"type": "integer"}, "page": {"type": "integer"}, "limit": {"type": "integer"}, "groups": {"type": "array", "items": {"type": "object", "properties": {"key": {"nullable": true}, "label": {"type": "string", "nullable": true}, "count": {"type": "integer"}}}}, "totals": {"type": "object"}}})
            }
            (ReplyDoc::List, Some((_, cols, _))) => {
                json!({"type": "object", "required": ["items", "total"], "properties": {"items": {"type": "array", "items": record_schema(cols)}, "total": {"type": "integer"}}})
            }
            (ReplyDoc::Page, None) => {
                json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}, "total": {"type": "integer"}, "page": {"type": "integer"}, "limit": {"type": "integer"}}, "required": ["items", "total"]})
            }
            _ => json!({"type": "object"}),
        };
        let mut responses = serde_json::Map::new();
        let mut success = json!({"description": "OK", "content": {"application/json": {"schema": ok}}});
        // A created record's id feeds the routes on that record (OpenAPI links).
        if let (true, BodyDoc::Record, Some((set, _, table))) = (d.method == Method::POST, d.body, d.set) {
            let prefix = format!("/api/v1/{set}/{{id}}");
            let links: serde_json::Map<String, J> = all
                .iter()
                .filter(|o| o.path.starts_with(&prefix))
                .map(|o| (op_id(o), json!({"operationId": op_id(o), "parameters": {"id": format!("$response.body#/{}", crate_key(table))}})))
                .collect();
            success["links"] = J::Object(links);
        }
        responses.insert(d.status.to_string(), success);
        for (code, what) in [
            ("400", "Bad request"),
            ("401", "Missing or wrong token"),
            ("403", "The token's role may not do this"),
            ("404", "Not found"),
            ("409", "Conflicts with the record's state or a duplicate"),
            ("413", "Body too large"),
            ("422", "Refused by a rule"),
            ("502", "The relay refused the test message"),
            ("503", "Database unavailable"),
        ] {
            responses
                .insert(code.into(), json!({"description": what, "content": {"application/json": {"schema": error}}}));
        }
        op.insert("responses".into(), J::Object(responses));
        let entry = paths.entry(d.path.clone()).or_insert_with(|| json!({}));
        entry[d.method.as_str().to_lowercase()] = J::Object(op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "inflow admin API", "version": env!("CARGO_PKG_VERSION"), "description": "CRM entities, views (DOMAIN §7) and actions (§3) of the inflow daemon."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "candidates": {"type": "array", "items": {"type": "object"}}}}}}}
        }
    })
}

fn crate_key(table: &str) -> String {
    match table {
        "lead" => "leadid",
        "contact" => "contactid",
        "account" => "accountid",
        "list" => "listid",
        "campaign" => "campaignid",
        "opportunity" => "opportunityid",
        "systemuser" => "systemuserid",
        _ => "activityid",
    }
    .to_string()
}

/// Settings from the config, for `AppState`.
pub fn settings(cfg: &crate::config::Config) -> ApiSettings {
    const ACTIVITY_TABLE: [&str; 6] = ["task", "phonecall", "email", "appointment", "letter", "fax"];
    ApiSettings {
        enabled: cfg.api.enabled,
        tokens: cfg.api.tokens.clone(),
        tz: Some(cfg.tz()),
        stale_lead_days: cfg.api.stale_lead_days,
        overdue_kinds: cfg.alerts.kinds.iter().filter(|k| ACTIVITY_TABLE.contains(&k.as_str())).cloned().collect(),
    }
}

pub type SharedConfig = Arc<crate::config::Config>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Access::*;
        use Area::*;
        assert!(allowed(Role::Admin, Write(Ops)));
        assert!(allowed(Role::Viewer, Read(Sales)) && !allowed(Role::Viewer, Write(Marketing)));
        assert!(allowed(Role::Marketer, Write(Marketing)) && allowed(Role::Marketer, Read(Leads)));
        assert!(
            !allowed(Role::Marketer, Write(Leads))
                && !allowed(Role::Marketer, Read(Sales))
                && !allowed(Role::Marketer, Read(Ops))
        );
    }

    #[test]
    fn tokens_are_stored_as_sha256() {
        let t = new_token();
        assert!(t.starts_with("ifl_") && t.len() > 40);
        assert_ne!(t, new_token());
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_document_lists_every_route_once() {
        let doc = openapi();
        let mut n = 0;
        for d in table() {
            assert!(doc["paths"][&d.path][d.method.as_str().to_lowercase()].is_object(), "{} {}", d.method, d.path);
            n += 1;
        }
        let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, n);
    }
}
