//! Leads as people work them (issue 19 §3): the DOMAIN §7 views as tabs with a source filter
//! and paging, and a lead's page with its details, its timeline (R-DEAL-1) and the actions
//! qualify (§3.1), disqualify and reactivate (§3.2). The same store operations as the API.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::i18n::{self, Lang};
use super::pages::{failed, query_params, view_conds, view_ctx};
use super::session::Signed;
use super::{frame, redirect, render};
use crate::crm::entities::Lead;
use crate::crm::lead::QualifyParams;
use crate::crm::{EntityKind, EntityRef, labels};
use crate::http::AppState;
use crate::http::api::{Access, Area};
use crate::store::RecordExt;
use crate::store::api::{self as q, Sort};

/// The views offered as tabs, in order.
const TABS: [&str; 8] =
    ["my-open", "open", "opened-this-week", "opened-last-week", "stale", "qualified", "disqualified", "all"];
const PAGE: i64 = 50;

fn pick(lang: Lang, table: &str, col: &str, code: Option<i64>) -> String {
    code.and_then(|c| labels::picklist(table, col, c)).map(|l| i18n::label(lang, l)).unwrap_or_default()
}

/// `GET /leads?view=…&source=…&page=…`
pub async fn list(who: Signed, State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Leads)) {
        return r;
    }
    let lang = who.lang;
    let params = query_params(raw);
    let view = params.get("view").map(String::as_str).filter(|v| TABS.contains(v)).unwrap_or("my-open");
    let page: i64 = params.get("page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let now = Utc::now();
    let empty = BTreeMap::new();
    let c = view_ctx(&s, &who, now, &empty);
    let (mut conds, sort) = view_conds("lead", view, &c);
    let source = params.get("source").and_then(|v| v.parse::<i64>().ok());
    if let Some(src) = source {
        match q::filter::<Lead>("leadsourcecode", &src.to_string(), s.api.tz()) {
            Ok(f) => conds.push(f),
            Err(_) => return who.error(StatusCode::BAD_REQUEST, i18n::t(lang, "not_found")),
        }
    }
    let sort = sort.or(Some(Sort { col: "createdon", desc: true }));
    let result = s.store.query_records::<Lead>(&conds, sort, page, PAGE).await;
    let leads = match result {
        Ok(p) => p,
        Err(e) => return failed(&who, e),
    };
    let mut rows: Vec<J> = leads.items.iter().map(|l| serde_json::to_value(l).unwrap_or(J::Null)).collect();
    if let Err(e) = s.store.add_lookup_names("lead", &mut rows).await {
        return failed(&who, e);
    }
    let tz = s.api.tz();
    let items: Vec<J> = leads
        .items
        .iter()
        .zip(&rows)
        .map(|(l, j)| {
            json!({
                "id": l.leadid,
                "name": format!("{}{}", l.firstname.as_deref().map(|f| format!("{f} ")).unwrap_or_default(),
                    l.lastname),
                "subject": l.subject,
                "company": l.companyname,
                "source": pick(lang, "lead", "leadsourcecode", l.leadsourcecode.map(i64::from)),
                "status": pick(lang, "lead", "statuscode", Some(i64::from(l.statuscode))),
                "owner": j.get("ownerid_name").and_then(J::as_str).unwrap_or_default(),
                "created": i18n::datetime(lang, l.createdon, tz),
            })
        })
        .collect();
    // The standard sources, then the org's own (`org.custom_lead_sources`), named by their
    // label where inflow knows one and by their number where it does not.
    let sources = source_options(lang, &s);
    let pages = (leads.total + PAGE - 1) / PAGE;
    let mut m = frame(&who, "leads");
    m.insert(
        "tabs".into(),
        json!(
            TABS.iter().map(|t| json!({"view": t, "label": i18n::t(lang, &format!("view_{t}"))})).collect::<Vec<_>>()
        ),
    );
    m.insert("view".into(), json!(view));
    m.insert("source".into(), json!(source));
    m.insert("sources".into(), json!(sources));
    m.insert("items".into(), json!(items));
    m.insert("total".into(), json!(leads.total));
    m.insert("page".into(), json!(page));
    m.insert("pages".into(), json!(pages));
    m.insert("can_create".into(), json!(who.can(Access::Write(Area::Leads))));
    render("leads.html", J::Object(m), StatusCode::OK)
}

/// `GET /leads/{id}`: the lead, its timeline and its actions.
pub async fn show(who: Signed, State(s): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Leads)) {
        return r;
    }
    let lang = who.lang;
    let Ok(id) = id.parse::<Uuid>() else { return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")) };
    let lead = match crate::store::RecordExt::get::<Lead>(&s.store, id).await {
        Ok(Some(l)) => l,
        Ok(None) => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
        Err(e) => return failed(&who, e),
    };
    let mut j = vec![serde_json::to_value(&lead).unwrap_or(J::Null)];
    if let Err(e) = s.store.add_lookup_names("lead", &mut j).await {
        return failed(&who, e);
    }
    let events = match super::records::timeline(&s, lang, EntityRef::new(EntityKind::Lead, id)).await {
        Ok(t) => t,
        Err(e) => return failed(&who, e),
    };
    let tz = s.api.tz();
    let name = format!("{}{}", lead.firstname.as_deref().map(|f| format!("{f} ")).unwrap_or_default(), lead.lastname);
    let field = |k: &str| j[0].get(k).and_then(J::as_str).unwrap_or_default().to_string();
    let facts = vec![
        (i18n::t(lang, "subject"), lead.subject.clone()),
        (i18n::t(lang, "company"), lead.companyname.clone().unwrap_or_default()),
        (i18n::t(lang, "email"), lead.emailaddress1.clone().unwrap_or_default()),
        (i18n::t(lang, "phone"), lead.telephone1.clone().or(lead.mobilephone.clone()).unwrap_or_default()),
        (i18n::t(lang, "source"), pick(lang, "lead", "leadsourcecode", lead.leadsourcecode.map(i64::from))),
        (i18n::t(lang, "campaign"), field("campaignid_name")),
        (i18n::t(lang, "owner"), field("ownerid_name")),
        (i18n::t(lang, "state"), pick(lang, "lead", "statecode", Some(i64::from(lead.statecode)))),
        (i18n::t(lang, "status"), pick(lang, "lead", "statuscode", Some(i64::from(lead.statuscode)))),
        (i18n::t(lang, "created"), i18n::datetime(lang, lead.createdon, tz)),
    ];
    let params = query_params(raw);
    let mut m = frame(&who, "leads");
    m.insert(
        "lead".into(),
        json!({
            "id": id,
            "name": name,
            "open": lead.statecode == 0,
            // §3.1: an account needs the lead's company name.
            "has_company": lead.companyname.as_deref().is_some_and(|c| !c.trim().is_empty()),
            "version": lead.versionnumber,
            "facts": facts.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        }),
    );
    m.insert("events".into(), json!(events));
    m.insert("can_act".into(), json!(who.can(Access::Write(Area::Leads))));
    m.insert("new_activity".into(), super::activities::new_activity_form(&who, EntityRef::new(EntityKind::Lead, id)));
    // The edit form, filled with the lead as it is.
    m.insert(
        "form".into(),
        json!({
            "subject": lead.subject,
            "firstname": lead.firstname,
            "lastname": lead.lastname,
            "companyname": lead.companyname,
            "emailaddress1": lead.emailaddress1,
            "telephone1": lead.telephone1,
            "leadsourcecode": lead.leadsourcecode.map(|c| c.to_string()),
        }),
    );
    m.insert("sources".into(), json!(source_options(lang, &s)));
    m.insert(
        "done".into(),
        json!(params.get("done").map(|d| i18n::t(lang, &format!("done_{d}"))).filter(|t| *t != "?")),
    );
    m.insert(
        "disqualify_reasons".into(),
        json!(
            (4..=7).map(|c| json!({"code": c, "label": pick(lang, "lead", "statuscode", Some(c))})).collect::<Vec<_>>()
        ),
    );
    render("lead.html", J::Object(m), StatusCode::OK)
}

/// The fields the new-lead and edit forms carry (`new_lead_form.html`); an empty one is none.
fn from_form(lead: &mut Lead, f: &BTreeMap<String, String>) {
    let field = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    lead.subject = field("subject").unwrap_or_default();
    lead.firstname = field("firstname");
    lead.lastname = field("lastname").unwrap_or_default();
    lead.companyname = field("companyname");
    lead.emailaddress1 = field("emailaddress1");
    lead.telephone1 = field("telephone1");
    lead.leadsourcecode = field("leadsourcecode").and_then(|v| v.parse().ok());
}

/// A lead's own fields from the edit form, through the lead's rules (R-LD-1 …).
async fn edit_lead(
    s: &AppState,
    id: Uuid,
    f: &BTreeMap<String, String>,
    me: Uuid,
    now: chrono::DateTime<Utc>,
) -> Result<Lead, crate::store::StoreError> {
    let mut lead: Lead = s.store.load(id).await?;
    from_form(&mut lead, f);
    // The version the form showed: a change made since is a conflict.
    lead.versionnumber = f.get("versionnumber").and_then(|v| v.trim().parse().ok()).unwrap_or(-1);
    lead.modifiedby = Some(me);
    lead.modifiedon = now;
    s.store.update_lead(&lead).await
}

/// The lead sources offered in the filter and the new-lead form: Dynamics' ten and the org's own.
fn source_options(lang: Lang, s: &AppState) -> Vec<J> {
    (1..=10)
        .chain(s.store.custom_lead_sources.iter().map(|c| i64::from(*c)))
        .map(|code| {
            let label = Some(pick(lang, "lead", "leadsourcecode", Some(code))).filter(|l| !l.is_empty());
            json!({"code": code, "label": label.unwrap_or_else(|| format!("№ {code}"))})
        })
        .collect()
}

/// `POST /leads/new`: a lead typed in by a person (a call that did not come through the PBX,
/// a business card). The API's own checks run (R-LD-1, R-LD-4, R-DUP-*): a likely duplicate is
/// named with a link, and "create it anyway" (`duplicates=allow`) creates it.
pub async fn create(who: Signed, State(s): State<AppState>, body: Bytes) -> Response {
    use crate::http::api::Creatable as _;
    let f = super::session::form(&body);
    if let Some(r) = who.form_refusal(&f).or_else(|| who.refusal(Access::Write(Area::Leads))) {
        return r;
    }
    let lang = who.lang;
    let mut lead = Lead::default();
    from_form(&mut lead, &f);
    let mode = match f.get("duplicates").map(String::as_str) {
        Some("allow") => crate::store::CreateMode::IgnoreDuplicates,
        _ => crate::store::CreateMode::CheckDuplicates,
    };
    let created = match lead.prepare(who.user, who.user, Utc::now(), &s) {
        Ok(l) => Lead::create(&s, l, mode).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(l) => redirect(&format!("/leads/{}?done=created", l.leadid)),
        Err(e) => {
            let mut m = frame(&who, "leads");
            m.insert("message".into(), json!(e.message));
            m.insert(
                "duplicates".into(),
                json!(e.candidates.iter().map(|c| super::records::page_of(*c)).collect::<Vec<_>>()),
            );
            m.insert("form".into(), json!(f));
            m.insert("sources".into(), json!(source_options(lang, &s)));
            render("new_lead.html", J::Object(m), e.status)
        }
    }
}

/// `POST /leads/{id}/qualify|disqualify|reactivate|edit`. An edit carries the version the
/// form was filled from: a lead someone changed meanwhile is refused (409), not overwritten.
pub async fn act(
    who: Signed,
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (f, id) = match who.posted(&body, Access::Write(Area::Leads), &id) {
        Ok(p) => (p.form, p.id),
        Err(r) => return *r,
    };
    let lang = who.lang;
    let now = Utc::now();
    let on = |k: &str| f.get(k).is_some_and(|v| v == "on" || v == "true");
    let done = match action.as_str() {
        "qualify" => {
            let p = QualifyParams {
                create_account: on("account"),
                create_contact: on("contact"),
                create_opportunity: on("opportunity"),
                ..Default::default()
            };
            s.store.qualify_lead(id, &p, Some(who.user), now).await.map(|_| "qualified")
        }
        "disqualify" => {
            let status = f.get("status").and_then(|v| v.parse::<i32>().ok());
            let reason = f.get("reason").map(|r| r.trim()).filter(|r| !r.is_empty());
            s.store.disqualify_lead(id, status, reason, Some(who.user), now).await.map(|_| "disqualified")
        }
        "reactivate" => s.store.reactivate_lead(id, Some(who.user), now).await.map(|_| "reactivated"),
        "edit" => edit_lead(&s, id, &f, who.user, now).await.map(|_| "edited"),
        _ => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
    };
    match done {
        Ok(d) => redirect(&format!("/leads/{id}?done={d}")),
        Err(e) => failed(&who, e),
    }
}
