//! Customers as people find and add them (issue 19 §3): accounts and contacts listed by name
//! with a "name begins with" search (Dynamics' quick find) and paging, a new account or
//! contact checked for duplicates (R-DUP-*), and a new opportunity for an account or a
//! contact from its page (R-OPP-1). The same store operations as the API.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::i18n::{self, Lang};
use super::pages::{failed, query_params};
use super::records::{editable, field_value, page_of, record_kind};
use super::session::Signed;
use super::{frame, redirect, render};
use crate::crm::entities::{Account, Contact, Opportunity};
use crate::crm::{EntityKind, EntityRef};
use crate::http::AppState;
use crate::http::api::{Access, Area, Creatable};
use crate::store::CreateMode;
use crate::store::api::{Cond, Sort};

const PAGE: i64 = 50;

/// The list's "name begins with" search, as the API's `<field>_begins` filter.
fn search<R: crate::crm::entities::Record>(field: &str, q: &str) -> crate::store::Result<Cond> {
    crate::store::api::filter::<R>(&format!("{field}_begins"), q, chrono_tz::UTC)
        .map_err(|e| crate::store::StoreError::Decode(e.message))
}

/// A new record's form: the fields its page edits (`records::editable`), with their labels in
/// the language, as a template shows them.
pub fn fields_json(lang: Lang, kind: EntityKind) -> J {
    json!(
        editable(kind)
            .iter()
            .map(|(k, label, req, ty)| json!({"name": k, "label": i18n::t(lang, label), "required": req, "type": ty}))
            .collect::<Vec<_>>()
    )
}

/// `GET /records/{accounts|contacts}?q=…&page=…`
pub async fn list(
    who: Signed,
    State(s): State<AppState>,
    Path(set): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Sales)) {
        return r;
    }
    let lang = who.lang;
    let kind = match record_kind(&set) {
        Some(k @ (EntityKind::Contact | EntityKind::Account)) => k,
        _ => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
    };
    let params = query_params(raw);
    let q = params.get("q").map(|q| q.trim().to_string()).filter(|q| !q.is_empty());
    let page: i64 = params.get("page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    match list_page(&s, &who, kind, q.as_deref(), page).await {
        Ok(mut m) => {
            m.insert("form".into(), J::Null);
            render("customers.html", J::Object(m), StatusCode::OK)
        }
        Err(e) => failed(&who, e),
    }
}

async fn list_page(
    s: &AppState,
    who: &Signed,
    kind: EntityKind,
    q: Option<&str>,
    page: i64,
) -> crate::store::Result<serde_json::Map<String, J>> {
    let lang = who.lang;
    let (items, total) = match kind {
        EntityKind::Contact => {
            let conds: Vec<Cond> = q.map(|q| search::<Contact>("lastname", q)).transpose()?.into_iter().collect();
            let found = s
                .store
                .query_records::<Contact>(&conds, Some(Sort { col: "lastname", desc: false }), page, PAGE)
                .await?;
            let mut rows: Vec<J> = found.items.iter().map(|c| serde_json::to_value(c).unwrap_or(J::Null)).collect();
            s.store.add_lookup_names("contact", &mut rows).await?;
            let items: Vec<J> = found
                .items
                .iter()
                .zip(&rows)
                .map(|(c, j)| {
                    let company = c.parentcustomerid.map(|id| {
                        let kind = c.parentcustomeridtype.unwrap_or(EntityKind::Account);
                        json!({"name": j["parentcustomerid_name"], "link": page_of(EntityRef::new(kind, id))})
                    });
                    json!({
                        "name": format!("{} {}", c.firstname.clone().unwrap_or_default(), c.lastname).trim(),
                        "link": page_of(EntityRef::new(EntityKind::Contact, c.contactid)),
                        "company": company,
                        "email": c.emailaddress1.clone().unwrap_or_default(),
                        "phone": c.telephone1.clone().or_else(|| c.mobilephone.clone()).unwrap_or_default(),
                        "owner": j["ownerid_name"],
                    })
                })
                .collect();
            (items, found.total)
        }
        _ => {
            let conds: Vec<Cond> = q.map(|q| search::<Account>("name", q)).transpose()?.into_iter().collect();
            let found =
                s.store.query_records::<Account>(&conds, Some(Sort { col: "name", desc: false }), page, PAGE).await?;
            let mut rows: Vec<J> = found.items.iter().map(|a| serde_json::to_value(a).unwrap_or(J::Null)).collect();
            s.store.add_lookup_names("account", &mut rows).await?;
            let items: Vec<J> = found
                .items
                .iter()
                .zip(&rows)
                .map(|(a, j)| {
                    json!({
                        "name": a.name,
                        "link": page_of(EntityRef::new(EntityKind::Account, a.accountid)),
                        "city": a.address1_city.clone().unwrap_or_default(),
                        "email": a.emailaddress1.clone().unwrap_or_default(),
                        "phone": a.telephone1.clone().unwrap_or_default(),
                        "owner": j["ownerid_name"],
                    })
                })
                .collect();
            (items, found.total)
        }
    };
    let mut m = frame(who, "customers");
    m.insert("set".into(), json!(kind.set()));
    m.insert("contacts".into(), json!(kind == EntityKind::Contact));
    m.insert("q".into(), json!(q));
    // The search as the pager's links carry it.
    let search_param =
        q.map(|q| format!("{}&", serde_urlencoded::to_string([("q", q)]).unwrap_or_default())).unwrap_or_default();
    m.insert("search_param".into(), json!(search_param));
    m.insert("items".into(), json!(items));
    m.insert("total".into(), json!(total));
    m.insert("page".into(), json!(page));
    m.insert("pages".into(), json!((total + PAGE - 1) / PAGE));
    m.insert("fields".into(), fields_json(lang, kind));
    m.insert("can_create".into(), json!(who.can(Access::Write(Area::Sales))));
    Ok(m)
}

/// The record the form describes: each field read as the record reads it (numbers for money,
/// ISO dates), the others left at their defaults. `Err` names the field that is missing or
/// not a number.
fn from_form<R>(kind: EntityKind, lang: Lang, f: &std::collections::BTreeMap<String, String>) -> Result<R, String>
where
    R: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut j = serde_json::to_value(R::default()).map_err(|e| e.to_string())?;
    for (k, label, req, ty) in editable(kind) {
        match f.get(*k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None if *req => return Err(format!("{} {}", i18n::t(lang, label), i18n::t(lang, "required"))),
            None => {}
            Some(v) if *ty == "date" && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_err() => {
                return Err(i18n::t(lang, "bad_date").to_string());
            }
            // Amounts and percentages read as on the record's page (a decimal comma, spaces).
            Some(v) => match field_value(ty, v) {
                Some(x) => j[*k] = x,
                None => return Err(format!("{}: {}", i18n::t(lang, label), i18n::t(lang, "not_a_number"))),
            },
        }
    }
    serde_json::from_value(j).map_err(|e| e.to_string())
}

/// A reference the form carries in `<prefix>_set` / `<prefix>_id` (the account a contact
/// joins, the customer of an opportunity).
fn form_ref(f: &std::collections::BTreeMap<String, String>, prefix: &str) -> Option<EntityRef> {
    let id = f.get(&format!("{prefix}_id"))?.trim().parse::<Uuid>().ok()?;
    let kind = EntityKind::from_set(f.get(&format!("{prefix}_set"))?)
        .filter(|k| matches!(k, EntityKind::Account | EntityKind::Contact))?;
    Some(EntityRef::new(kind, id))
}

/// `POST /records/{accounts|contacts|opportunities}`: a new record, for those who write sales
/// records. A contact may join an account (`parent_set`/`parent_id`, from the account's page);
/// an opportunity names its customer (`customer_set`/`customer_id`, from the customer's page).
/// A possible duplicate is shown with a link, and the form again with "create it anyway".
pub async fn create(who: Signed, State(s): State<AppState>, Path(set): Path<String>, body: Bytes) -> Response {
    let f = super::session::form(&body);
    if let Some(r) = who.form_refusal(&f).or_else(|| who.refusal(Access::Write(Area::Sales))) {
        return r;
    }
    let lang = who.lang;
    let Some(kind) = record_kind(&set) else { return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")) };
    let mode = match f.get("duplicates").map(String::as_str) {
        Some("allow" | "on") => CreateMode::IgnoreDuplicates,
        _ => CreateMode::CheckDuplicates,
    };
    let now = Utc::now();
    let unprocessable = |m: String| who.error(StatusCode::UNPROCESSABLE_ENTITY, &m);
    let created: Result<EntityRef, crate::http::ApiError> = match kind {
        EntityKind::Contact => {
            let mut c: Contact = match from_form(kind, lang, &f) {
                Ok(c) => c,
                Err(m) => return unprocessable(m),
            };
            if let Some(parent) = form_ref(&f, "parent").filter(|p| p.kind == EntityKind::Account) {
                match crate::store::RecordExt::get::<Account>(&s.store, parent.id).await {
                    Ok(Some(_)) => (c.parentcustomerid, c.parentcustomeridtype) = (Some(parent.id), Some(parent.kind)),
                    Ok(None) => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
                    Err(e) => return failed(&who, e),
                }
            }
            match c.prepare(who.user, who.user, now, &s) {
                Ok(c) => Contact::create(&s, c, mode).await.map(|c| EntityRef::new(kind, c.contactid)),
                Err(e) => Err(e),
            }
        }
        EntityKind::Account => {
            let a: Account = match from_form(kind, lang, &f) {
                Ok(a) => a,
                Err(m) => return unprocessable(m),
            };
            match a.prepare(who.user, who.user, now, &s) {
                Ok(a) => Account::create(&s, a, mode).await.map(|a| EntityRef::new(kind, a.accountid)),
                Err(e) => Err(e),
            }
        }
        _ => {
            let mut o: Opportunity = match from_form(kind, lang, &f) {
                Ok(o) => o,
                Err(m) => return unprocessable(m),
            };
            let Some(customer) = form_ref(&f, "customer") else {
                return unprocessable(format!("{} {}", i18n::t(lang, "customer"), i18n::t(lang, "required")));
            };
            (o.customerid, o.customeridtype) = (Some(customer.id), Some(customer.kind));
            match o.prepare(who.user, who.user, now, &s) {
                Ok(o) => Opportunity::create(&s, o, mode).await.map(|o| EntityRef::new(kind, o.opportunityid)),
                Err(e) => Err(e),
            }
        }
    };
    match created {
        Ok(r) => redirect(&format!("{}?done=created", page_of(r).unwrap_or_else(|| "/".into()))),
        Err(e) if !e.candidates.is_empty() && kind != EntityKind::Opportunity => {
            // The list page again, with the form as it was filled, the possible duplicates
            // and the choice to create it anyway.
            match list_page(&s, &who, kind, None, 1).await {
                Ok(mut m) => {
                    m.insert("form".into(), json!(f));
                    m.insert("message".into(), json!(e.message));
                    m.insert("duplicates".into(), json!(e.candidates.iter().map(|c| page_of(*c)).collect::<Vec<_>>()));
                    render("customers.html", J::Object(m), e.status)
                }
                Err(e) => failed(&who, e),
            }
        }
        Err(e) => who.error(e.status, &e.message),
    }
}
