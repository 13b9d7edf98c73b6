//! The admin API, `/api/v1` (issue 7; views and actions of DOMAIN §7 and §3).
//!
//! One table (`table()`) lists every route with its method, path, the access it needs and
//! what the OpenAPI document says about it; the router, the bearer-token check and
//! `/api/v1/openapi.json` are all built from that table, so a route cannot exist without
//! being documented and guarded. Handlers parse the request into typed values, call one
//! store operation (one transaction), and map rule refusals to 409/422 with
//! `{"error": {"code", "message"}}`. No SQL here: filters and views are words the store
//! turns into conditions on columns it knows.
//!
//! This file holds the settings and the route table; beside it: `auth` (roles, tokens,
//! the guard), `extract` (bodies, ids, list parameters), `records` (the entity sets),
//! `actions` (§3 actions, waves, lists, ops), `work` (closing the loop, §4.9) and
//! `openapi` (the document).

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

mod actions;
mod auth;
mod extract;
mod lines;
mod openapi;
mod records;
mod work;

use crate::crm::EntityKind;
use crate::crm::entities::{
    Account, Activity, BulkOperation, Campaign, CampaignActivity, CampaignResponse, ColType, Contact, Lead,
    MarketingList, Opportunity, Record, SystemUser,
};
use crate::store::api::{self as q, QueryError, ViewCtx, ViewSpec};
use crate::store::{CreateMode, RecordExt};
use actions::*;
pub use actions::{NewWave, launch_wave, replay_mail, test_send_wave};
use auth::*;
pub use auth::{Access, Area, Caller, Role, allowed, new_token, resolve_token, token_hash};
use extract::*;
pub use extract::{ListParams, list_params};
pub use openapi::openapi;
use records::*;
pub use records::{Creatable, Entity};
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
    pub fn tz(&self) -> chrono_tz::Tz {
        self.tz.unwrap_or(chrono_tz::Europe::Moscow)
    }
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
    t.push(RouteDef {
        body: BodyDoc::Named("CampaignStatus"),
        reply: ReplyDoc::Record,
        set: Some(("campaigns", Campaign::COLS, "campaign")),
        ..route(
            Method::POST,
            "/api/v1/campaigns/{id}/status",
            w(Marketing),
            "Change a campaign's status: 0 Proposed → 1 Ready To Launch → 2 Launched → 3 Completed; 4 \
                Canceled; 2 ↔ 5 Suspended",
            post(campaign_status_h),
        )
    });
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
        reply: ReplyDoc::Page,
        list: false,
        ..route(
            Method::GET,
            "/api/v1/ops/audit",
            r(Audit),
            "Every successful write through the API, newest first: who (user, role, token), when, what (admins)",
            get(audit_h),
        )
    });
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
    lines::routes(&mut t);
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
