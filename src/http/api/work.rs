//! Routes that close the loop (issue 18, DOMAIN §4.9): the marketer's links between lists,
//! campaigns and campaign activities; complete, cancel and reopen of activities (R-ACT-1);
//! win, lose, reopen and the Act of opportunities (R-OPP-1). Each handler parses the body,
//! calls one store operation and answers with the record as stored.

use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::routing::post;
use axum::{Extension, Json};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::{Access, Area, Body, BodyDoc, Caller, Empty, ReplyDoc, Role, RouteDef, parse_id, route, unprocessable};
use crate::crm::entities::{Activity, MarketingList, Opportunity, Record};
use crate::crm::opportunity::{LoseParams, WinParams};
use crate::crm::work::{Actor, CloseAction, CloseParams};
use crate::crm::{EntityKind, EntityRef};
use crate::http::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListsBody {
    lists: Vec<Uuid>,
}

fn lists_reply(lists: Vec<MarketingList>) -> Json<J> {
    Json(json!({"total": lists.len(), "items": lists}))
}

fn check_count(b: &ListsBody) -> Result<(), ApiError> {
    if b.lists.is_empty() || b.lists.len() > 100 {
        return Err(unprocessable("bad_lists", "lists: 1 to 100 list ids"));
    }
    Ok(())
}

async fn campaign_lists_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    Ok(lists_reply(s.store.campaign_lists(parse_id(&id)?).await?))
}

async fn wave_lists_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    Ok(lists_reply(s.store.wave_lists(parse_id(&id)?).await?))
}

/// Handlers that change the lists linked to a record, each through one store operation.
macro_rules! list_change_handlers {
    ($($name:ident => $op:ident),*) => {$(
        async fn $name(State(s): State<AppState>, Path(id): Path<String>,
            Body(b): Body<ListsBody>) -> Result<Json<J>, ApiError> {
            check_count(&b)?;
            Ok(lists_reply(s.store.$op(parse_id(&id)?, &b.lists).await?))
        }
    )*};
}
list_change_handlers!(
    add_campaign_lists_h => add_campaign_lists,
    remove_campaign_lists_h => remove_campaign_lists,
    add_wave_lists_h => set_wave_lists,
    remove_wave_lists_h => remove_wave_lists
);

fn actor(c: &Caller) -> Actor {
    Actor { user: c.user, admin: c.role == Role::Admin }
}

async fn close_h(
    s: &AppState,
    c: &Caller,
    id: &str,
    action: CloseAction,
    p: CloseParams,
) -> Result<Json<Activity>, ApiError> {
    Ok(Json(s.store.close_activity(parse_id(id)?, action, &p, actor(c), Utc::now(), s.api.tz()).await?))
}

async fn complete_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(p): Body<CloseParams>,
) -> Result<Json<Activity>, ApiError> {
    close_h(&s, &c, &id, CloseAction::Complete, p).await
}

async fn cancel_activity_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(p): Body<CloseParams>,
) -> Result<Json<Activity>, ApiError> {
    close_h(&s, &c, &id, CloseAction::Cancel, p).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: Option<String>,
}

async fn reopen_activity_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<NoteBody>,
) -> Result<Json<Activity>, ApiError> {
    close_h(&s, &c, &id, CloseAction::Reopen, CloseParams { note: b.note, ..Default::default() }).await
}

fn today(s: &AppState) -> NaiveDate {
    Utc::now().with_timezone(&s.api.tz()).date_naive()
}

async fn win_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(p): Body<WinParams>,
) -> Result<Json<Opportunity>, ApiError> {
    Ok(Json(s.store.win_opportunity(parse_id(&id)?, &p, c.user, today(&s), Utc::now()).await?))
}

async fn lose_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(p): Body<LoseParams>,
) -> Result<Json<Opportunity>, ApiError> {
    Ok(Json(s.store.lose_opportunity(parse_id(&id)?, &p, c.user, today(&s), Utc::now()).await?))
}

async fn reopen_opportunity_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<Opportunity>, ApiError> {
    Ok(Json(s.store.reopen_opportunity(parse_id(&id)?, c.user, Utc::now()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    /// The Act's date; null withdraws it. Default: today in the org time zone.
    #[serde(default, deserialize_with = "given")]
    deal_closed_on: Option<Option<NaiveDate>>,
}

/// A field that is present: `Some(None)` for null, so null and absent differ.
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<NaiveDate>>, D::Error> {
    Option::<NaiveDate>::deserialize(d).map(Some)
}

async fn close_deal_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<ActBody>,
) -> Result<Json<Opportunity>, ApiError> {
    let on = b.deal_closed_on.unwrap_or(Some(today(&s)));
    Ok(Json(s.store.close_deal(parse_id(&id)?, on, c.user, Utc::now()).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    page: Option<i64>,
    limit: Option<i64>,
}

/// R-DEAL-1: a client's history, oldest first, paged.
async fn timeline_h(s: &AppState, kind: EntityKind, id: &str, raw: Option<&str>) -> Result<Json<J>, ApiError> {
    let q: PageQuery = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "bad_query", e.to_string()))?;
    let bad = |m: &str| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "bad_pagination", m.to_string());
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(50);
    if !(1..=1_000_000).contains(&page) {
        return Err(bad("page: an integer from 1 to 1000000"));
    }
    if !(1..=crate::store::api::MAX_LIMIT).contains(&limit) {
        return Err(bad("limit: an integer from 1 to 200"));
    }
    let items = s.store.timeline(EntityRef::new(kind, parse_id(id)?)).await?;
    let total = items.len();
    let start = usize::try_from((page - 1) * limit).unwrap_or(usize::MAX).min(total);
    let end = start.saturating_add(limit as usize).min(total);
    Ok(Json(json!({"items": &items[start..end], "total": total, "page": page, "limit": limit})))
}

macro_rules! timeline_handlers {
    ($($name:ident => $kind:ident),*) => {$(
        async fn $name(State(s): State<AppState>, Path(id): Path<String>,
            RawQuery(raw): RawQuery) -> Result<Json<J>, ApiError> {
            timeline_h(&s, EntityKind::$kind, &id, raw.as_deref()).await
        }
    )*};
}
timeline_handlers!(opportunity_timeline_h => Opportunity, account_timeline_h => Account,
    contact_timeline_h => Contact, lead_timeline_h => Lead);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    survivor: Uuid,
    /// Default: every other candidate of the survivor's type.
    merge: Option<Vec<Uuid>>,
}

async fn merge_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<MergeBody>,
) -> Result<Json<J>, ApiError> {
    let out =
        s.store.merge_dup_candidate(parse_id(&id)?, b.survivor, b.merge.as_deref(), Some(c.user), Utc::now()).await?;
    Ok(Json(json!(out)))
}

async fn dismiss_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    s.store.dismiss_dup_candidate(parse_id(&id)?, Utc::now()).await?;
    Ok(Json(json!({"status": "ignored"})))
}

async fn quick_campaign_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(p): Body<crate::crm::quick::QuickParams>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let now = Utc::now();
    // E-mail goes through the wave sender: its message is checked as a wave's is.
    let kind = crate::crm::quick::check_params(&p).map_err(crate::store::StoreError::from)?;
    let mail = if kind == crate::crm::EntityKind::Email {
        let (start_at, zone, from) =
            super::actions::send_when_and_from(&s, p.start.as_deref(), p.timezone.as_deref(), p.from.clone(), now)?;
        Some(crate::waves::quick_campaign_message(&p, start_at, zone, from).map_err(super::actions::wave_error)?)
    } else {
        None
    };
    let out = s.store.quick_campaign(parse_id(&id)?, &p, mail.as_ref(), c.user, now, s.api.tz()).await?;
    Ok((axum::http::StatusCode::CREATED, Json(json!(out))).into_response())
}

async fn distribute_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let out = s.store.distribute_campaign_activity(parse_id(&id)?, c.user, Utc::now(), s.api.tz()).await?;
    Ok((axum::http::StatusCode::CREATED, Json(json!(out))).into_response())
}

/// The request bodies of these routes, for the OpenAPI document.
pub(super) fn named_body(name: &str) -> Option<J> {
    let uuid = json!({"type": "string", "format": "uuid"});
    let ostr = json!({"type": "string", "nullable": true, "maxLength": 2000});
    let odate = json!({"type": "string", "format": "date", "nullable": true});
    Some(match name {
        "Lists" => {
            json!({"type": "object", "additionalProperties": false, "required": ["lists"],
                "properties": {"lists": {"type": "array", "minItems": 1, "maxItems": 100, "items": uuid}}})
        }
        "Close" => json!({"type": "object", "additionalProperties": false, "properties": {
            "note": ostr, "statuscode": {"type": "integer", "nullable": true, "description": "a status of the \
                target state other than its default"},
            "outcome": {"type": "string", "enum": ["made", "received", "voicemail"], "nullable": true,
                "description": "phone calls being completed only"}}}),
        "Note" => json!({"type": "object", "additionalProperties": false, "properties": {"note": ostr}}),
        "Win" => {
            json!({"type": "object", "additionalProperties": false, "properties": {"actualvalue": {"type": "number",
                "nullable": true, "minimum": 0, "maximum": 1e12}, "actualclosedate": odate, "description": ostr}})
        }
        "Lose" => {
            json!({"type": "object", "additionalProperties": false, "properties": {"statuscode": {"type": "integer",
                "enum": [4, 5], "nullable": true}, "reason": ostr, "actualclosedate": odate}})
        }
        "Merge" => {
            json!({"type": "object", "additionalProperties": false, "required": ["survivor"],
                "properties": {"survivor": uuid, "merge": {"type": "array", "items": uuid, "nullable": true,
                    "maxItems": 20}}})
        }
        "QuickCampaign" => {
            json!({"type": "object", "additionalProperties": false, "required": ["activity", "subject"], "properties": {
            "activity": {"type": "string", "enum": ["phonecall", "task", "letter", "email"]},
                "subject": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
            "description": {"type": "string", "nullable": true, "description": "for email, the text body \
                template (required)"},
            "due": {"type": "string", "format": "date-time", "nullable": true, "description": "not for \
                email"}, "ownerid": {"type": "string", "format": "uuid", "nullable": true},
            "ignore_inactive": {"type": "boolean", "nullable": true},
            "html": {"type": "string", "nullable": true, "description": "email only, as a wave's \
                schedule"}, "from": {"type": "string", "nullable": true, "description": "email only"},
            "from_name": {"type": "string", "nullable": true, "description": "email \
                only"}, "reply_to": {"type": "string", "nullable": true, "description": "email only"},
            "start": {"type": "string", "nullable": true, "description": "email only: local YYYY-MM-DD HH:MM \
                in timezone, or RFC 3339; default now"},
            "timezone": {"type": "string", "nullable": true, "description": "email \
                only"}, "rate_per_minute": {"type": "integer", "minimum": 0, "nullable": true,
                    "description": "email only"}}})
        }
        "Act" => json!({"type": "object", "additionalProperties": false, "properties": {"deal_closed_on": odate}}),
        _ => return None,
    })
}

/// The routes of this module.
pub(super) fn routes(t: &mut Vec<RouteDef>) {
    use axum::routing::get;
    let lists_set = Some(("lists", MarketingList::COLS, "list"));
    let activity = Some(("activities", Activity::COLS, "activity"));
    let opportunity = Some(("opportunities", Opportunity::COLS, "opportunity"));
    let w = Access::Write(Area::Marketing);
    let r = Access::Read(Area::Marketing);
    for (base, what) in [
        ("campaigns", "a campaign (campaignitem, §2.7)"),
        ("campaignactivities", "a campaign activity: its target lists, a subset of its campaign's (§2.8)"),
    ] {
        let (get_h, add_h, remove_h) = if base == "campaigns" {
            (get(campaign_lists_h), post(add_campaign_lists_h), post(remove_campaign_lists_h))
        } else {
            (get(wave_lists_h), post(add_wave_lists_h), post(remove_wave_lists_h))
        };
        t.push(RouteDef {
            set: lists_set,
            reply: ReplyDoc::List,
            ..route(
                Method::GET,
                format!("/api/v1/{base}/{{id}}/lists"),
                r,
                format!("The marketing lists of {what}"),
                get_h,
            )
        });
        t.push(RouteDef {
            set: lists_set,
            reply: ReplyDoc::List,
            body: BodyDoc::Named("Lists"),
            ..route(
                Method::POST,
                format!("/api/v1/{base}/{{id}}/lists"),
                w,
                format!("Link marketing lists to {what}"),
                add_h,
            )
        });
        t.push(RouteDef {
            set: lists_set,
            reply: ReplyDoc::List,
            body: BodyDoc::Named("Lists"),
            ..route(
                Method::POST,
                format!("/api/v1/{base}/{{id}}/lists/remove"),
                w,
                format!("Unlink marketing lists from {what}"),
                remove_h,
            )
        });
    }
    let own = Access::OwnWork;
    t.push(RouteDef {
        set: activity,
        reply: ReplyDoc::Record,
        body: BodyDoc::Named("Close"),
        ..route(
            Method::POST,
            "/api/v1/activities/{id}/complete",
            own,
            "Complete an open activity (R-ACT-1): its owner, a manager above the owner, or an admin; stops its alerts",
            post(complete_h),
        )
    });
    t.push(RouteDef {
        set: activity,
        reply: ReplyDoc::Record,
        body: BodyDoc::Named("Close"),
        ..route(
            Method::POST,
            "/api/v1/activities/{id}/cancel",
            own,
            "Cancel an open activity (R-ACT-1); stops its alerts",
            post(cancel_activity_h),
        )
    });
    t.push(RouteDef {
        set: activity,
        reply: ReplyDoc::Record,
        body: BodyDoc::Named("Note"),
        ..route(
            Method::POST,
            "/api/v1/activities/{id}/reopen",
            Access::Write(Area::Ops),
            "Reopen a completed or canceled activity (admin; escalation restarts at level 0)",
            post(reopen_activity_h),
        )
    });
    let sales = Access::Write(Area::Sales);
    t.push(RouteDef {
        set: opportunity,
        reply: ReplyDoc::Record,
        body: BodyDoc::Named("Win"),
        ..route(
            Method::POST,
            "/api/v1/opportunities/{id}/win",
            sales,
            "Win an open opportunity (R-OPP-1): state Won, actual value and date, an opportunityclose activity",
            post(win_h),
        )
    });
    t.push(RouteDef {
        set: opportunity,
        reply: ReplyDoc::Record,
        body: BodyDoc::Named("Lose"),
        ..route(
            Method::POST,
            "/api/v1/opportunities/{id}/lose",
            sales,
            "Lose an open opportunity (R-OPP-1): 4 Canceled or 5 Out-Sold, with a reason",
            post(lose_h),
        )
    });
    t.push(RouteDef {
        set: opportunity,
        reply: ReplyDoc::Record,
        body: BodyDoc::Named("Empty"),
        ..route(
            Method::POST,
            "/api/v1/opportunities/{id}/reopen",
            sales,
            "Reopen a won or lost opportunity (R-OPP-1)",
            post(reopen_opportunity_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("QuickCampaign"),
        status: 201,
        ..route(
            Method::POST,
            "/api/v1/lists/{id}/quick-campaign",
            w,
            "Quick campaign (R-QC-1): one phone call, task or letter per member of the list, counted in a new \
                bulkoperation with exclusions by reason; or one e-mail per member, sent by the wave sender \
                from start (see /quick-campaigns/{id}/status)",
            post(quick_campaign_h),
        )
    });
    // An e-mail quick campaign's wave, under its bulkoperation's id.
    t.push(route(
        Method::GET,
        "/api/v1/quick-campaigns/{id}/status",
        Access::Read(Area::Marketing),
        "An e-mail quick campaign's wave: state, members, exclusions by reason, sent, failed, bounced, responded",
        get(super::actions::wave_status_h),
    ));
    for (action, doc, h) in [
        ("pause", "Pause an e-mail quick campaign's wave", post(super::actions::pause_h)),
        ("resume", "Resume a paused e-mail quick campaign's wave", post(super::actions::resume_h)),
        ("cancel", "Cancel an e-mail quick campaign's wave: nothing more is sent", post(super::actions::cancel_h)),
    ] {
        t.push(RouteDef {
            body: BodyDoc::Named("Empty"),
            ..route(Method::POST, format!("/api/v1/quick-campaigns/{{id}}/{action}"), w, doc, h)
        });
    }
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        status: 201,
        ..route(
            Method::POST,
            "/api/v1/campaignactivities/{id}/distribute",
            w,
            "Distribute a phone, letter, fax or appointment campaign activity (R-QC-2): one open activity per \
                member of its target lists (a call list for Phone); again, only new members",
            post(distribute_h),
        )
    });
    let ops = Access::Write(Area::Ops);
    t.push(RouteDef {
        body: BodyDoc::Named("Merge"),
        ..route(
            Method::POST,
            "/api/v1/ops/dup-candidates/{id}/merge",
            ops,
            "Merge a duplicate candidate's records into the survivor (R-DUP-5): its activities, responses, \
            list memberships, deals and numbers follow; the others are deactivated",
            post(merge_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("Empty"),
        ..route(
            Method::POST,
            "/api/v1/ops/dup-candidates/{id}/dismiss",
            ops,
            "Dismiss a duplicate candidate (R-DUP-5): never proposed again for these records",
            post(dismiss_h),
        )
    });
    for (set, area, h) in [
        ("opportunities", Area::Sales, get(opportunity_timeline_h)),
        ("accounts", Area::Sales, get(account_timeline_h)),
        ("contacts", Area::Sales, get(contact_timeline_h)),
        ("leads", Area::Leads, get(lead_timeline_h)),
    ] {
        let summary = "The history of relations with the client (R-DEAL-1), oldest first: how the lead came, \
            mail in and out, calls with recordings, tasks and their completion, responses, stage changes, \
            win/lose, the Act; an account's includes its contacts and deals";
        t.push(RouteDef {
            reply: ReplyDoc::Page,
            ..route(Method::GET, format!("/api/v1/{set}/{{id}}/timeline"), Access::Read(area), summary, h)
        });
    }
    t.push(RouteDef {
        set: opportunity,
        reply: ReplyDoc::Record,
        body: BodyDoc::Named("Act"),
        ..route(
            Method::POST,
            "/api/v1/opportunities/{id}/close-deal",
            sales,
            "Sign the Act of a won deal (deal_closed_on, deCard §6); null withdraws it",
            post(close_deal_h),
        )
    });
}
