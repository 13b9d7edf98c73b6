//! A contact's, an account's or an opportunity's page (issue 19 §3): its facts with names
//! and labels, its timeline (R-DEAL-1: the client's history of relations, deCard in seed
//! 004) and, for an opportunity, win / lose / reopen (R-OPP-1). Timelines link to the pages
//! of the records they mention.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::i18n::{self, Lang};
use super::pages::{failed, query_params};
use super::session::Signed;
use super::{frame, redirect, render};
use crate::crm::entities::{Account, Contact, Opportunity, Record};
use crate::crm::opportunity::{LoseParams, WinParams};
use crate::crm::{EntityKind, EntityRef, Money, labels};
use crate::http::AppState;
use crate::http::api::{Access, Area};
use crate::store::RecordExt;

/// How a fact of a record reads.
enum Fact {
    Text(&'static str),
    /// A lookup, by the `<col>_name` the store adds.
    Name(&'static str),
    Pick(&'static str),
    Money(&'static str),
    Instant(&'static str),
}

/// The facts each page shows: (word, field).
fn facts_of(kind: EntityKind) -> &'static [(&'static str, Fact)] {
    use Fact::*;
    match kind {
        EntityKind::Contact => &[
            ("email", Text("emailaddress1")),
            ("phone", Text("telephone1")),
            ("phone", Text("mobilephone")),
            ("company", Name("parentcustomerid")),
            ("owner", Name("ownerid")),
            ("state", Pick("statecode")),
            ("created", Instant("createdon")),
        ],
        EntityKind::Account => &[
            ("email", Text("emailaddress1")),
            ("phone", Text("telephone1")),
            ("city", Text("address1_city")),
            ("owner", Name("ownerid")),
            ("state", Pick("statecode")),
            ("created", Instant("createdon")),
        ],
        EntityKind::Campaign => &[
            ("status", Pick("statuscode")),
            ("type", Pick("typecode")),
            ("budget", Money("budgetedcost")),
            ("actual", Money("totalactualcost")),
            ("expected", Text("expectedresponse")),
            ("start", Text("actualstart")),
            ("end", Text("actualend")),
            ("owner", Name("ownerid")),
            ("created", Instant("createdon")),
        ],
        _ => &[
            ("customer", Name("customerid")),
            ("estimated_value", Money("estimatedvalue")),
            ("probability", Text("closeprobability")),
            ("stage", Pick("salesstage")),
            ("state", Pick("statecode")),
            ("status", Pick("statuscode")),
            ("actual_value", Money("actualvalue")),
            ("close_date", Text("actualclosedate")),
            ("campaign", Name("campaignid")),
            ("owner", Name("ownerid")),
            ("created", Instant("createdon")),
        ],
    }
}

/// The record type of a `/records/{set}` path: contacts, accounts or opportunities.
pub(super) fn record_kind(set: &str) -> Option<EntityKind> {
    EntityKind::from_set(set)
        .filter(|k| matches!(k, EntityKind::Contact | EntityKind::Account | EntityKind::Opportunity))
}

/// A page of the console for a record the timeline mentions, if it has one.
pub fn page_of(r: EntityRef) -> Option<String> {
    match r.kind {
        EntityKind::Lead => Some(format!("/leads/{}", r.id)),
        EntityKind::Contact | EntityKind::Account | EntityKind::Opportunity => {
            Some(format!("/records/{}/{}", r.kind.set(), r.id))
        }
        _ => None,
    }
}

/// A record's timeline, newest first, as the page shows it.
pub async fn timeline(s: &AppState, lang: Lang, root: EntityRef) -> crate::store::Result<Vec<J>> {
    let tz = s.api.tz();
    Ok(s.store
        .timeline(root)
        .await?
        .iter()
        .rev()
        .map(|i| {
            json!({
                "when": i18n::datetime(lang, i.when, tz),
                "kind": i18n::kind(lang, &i.kind),
                "subject": i.subject,
                "who": i.who_name,
                "state": i.state.as_deref().map(|st| i18n::label(lang, st)),
                // The due or closing time in the org's zone and the reader's language; any
                // other detail as the timeline words it.
                "detail": match (i.closed, i.due) {
                    (Some(t), _) => Some(format!(
                        "{} {}",
                        i.state.as_deref().map(|st| i18n::label(lang, st)).unwrap_or_default(),
                        i18n::datetime(lang, t, tz)
                    )),
                    (None, Some(t)) => Some(format!("{} {}", i18n::t(lang, "due"), i18n::datetime(lang, t, tz))),
                    _ => i.detail.clone(),
                },
                "direction": i.direction,
                // An activity links to its own page; anything else about another record of
                // the timeline (an account's contact, a lead's opportunity) to that record's.
                "link": match i.kind.parse::<EntityKind>() {
                    Ok(k) if k.is_plain_activity() => Some(format!("/activities/{}", i.id)),
                    _ => (i.about != root).then(|| page_of(i.about)).flatten(),
                },
            })
        })
        .collect())
}

fn text(v: &J) -> String {
    match v {
        J::Null => String::new(),
        J::String(v) => v.clone(),
        v => v.to_string(),
    }
}

/// A record's facts as (word, value) pairs in the language, the empty ones left out.
pub(super) fn facts(s: &AppState, lang: Lang, kind: EntityKind, rec: &J) -> Vec<J> {
    let (tz, cur) = (s.api.tz(), s.console.currency.as_str());
    let table = kind.table().0;
    facts_of(kind)
        .iter()
        .map(|(word, f)| {
            let v = match f {
                Fact::Text(k) => text(&rec[*k]),
                Fact::Name(k) => text(&rec[format!("{k}_name").as_str()]),
                Fact::Pick(k) => rec[*k]
                    .as_i64()
                    .and_then(|c| labels::picklist(table, k, c))
                    .map(|l| i18n::label(lang, l))
                    .unwrap_or_default(),
                Fact::Money(k) => rec[*k].as_f64().map(|m| i18n::money(lang, m, cur)).unwrap_or_default(),
                Fact::Instant(k) => rec[*k]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| i18n::datetime(lang, t.with_timezone(&Utc), tz))
                    .unwrap_or_default(),
            };
            json!([i18n::t(lang, word), v])
        })
        .filter(|f| f[1].as_str().is_some_and(|v| !v.is_empty()))
        .collect()
}

pub(super) async fn load<R: Record>(s: &AppState, id: Uuid) -> crate::store::Result<Option<J>> {
    let Some(r) = s.store.get::<R>(id).await? else { return Ok(None) };
    let mut j = vec![serde_json::to_value(&r).unwrap_or(J::Null)];
    s.store.add_lookup_names(R::TABLE, &mut j).await?;
    Ok(j.pop())
}

/// `GET /records/{contacts|accounts|opportunities}/{id}`
pub async fn show(
    who: Signed,
    State(s): State<AppState>,
    Path((set, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Sales)) {
        return r;
    }
    let lang = who.lang;
    let not_found = || who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found"));
    let Ok(id) = id.parse::<Uuid>() else { return not_found() };
    let (kind, loaded) = match set.as_str() {
        "contacts" => (EntityKind::Contact, load::<Contact>(&s, id).await),
        "accounts" => (EntityKind::Account, load::<Account>(&s, id).await),
        "opportunities" => (EntityKind::Opportunity, load::<Opportunity>(&s, id).await),
        _ => return not_found(),
    };
    let rec = match loaded {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => return failed(&who, e),
    };
    let events = match timeline(&s, lang, EntityRef::new(kind, id)).await {
        Ok(t) => t,
        Err(e) => return failed(&who, e),
    };
    let facts = facts(&s, lang, kind, &rec);
    // An account's people and deals, linked to their pages.
    let related = match kind {
        EntityKind::Account => match account_related(&s, lang, id).await {
            Ok(r) => r,
            Err(e) => return failed(&who, e),
        },
        _ => json!(null),
    };
    let str_of = |k: &str| text(&rec[k]);
    let name = match kind {
        EntityKind::Contact => format!("{} {}", str_of("firstname"), str_of("lastname")).trim().to_string(),
        _ => str_of("name"),
    };
    let params = query_params(raw);
    let mut m = frame(&who, if kind == EntityKind::Opportunity { "leads" } else { "customers" });
    m.insert(
        "record".into(),
        json!({
            "id": id,
            "set": set,
            "kind": i18n::kind(lang, kind.as_str()),
            "name": name,
            "facts": facts,
            "opportunity": kind == EntityKind::Opportunity,
            "open": rec["statecode"].as_i64() == Some(0),
        }),
    );
    m.insert("events".into(), json!(events));
    m.insert("related".into(), related);
    m.insert(
        "edit".into(),
        json!(
            editable(kind)
                .iter()
                .map(|(k, label, req, ty)| json!({"name": k, "label": i18n::t(lang, label), "required": req,
                    "type": ty, "value": text(&rec[*k])}))
                .collect::<Vec<_>>()
        ),
    );
    m.insert("version".into(), rec["versionnumber"].clone());
    m.insert("can_act".into(), json!(who.can(Access::Write(Area::Sales))));
    m.insert("new_activity".into(), super::activities::new_activity_form(&who, EntityRef::new(kind, id)));
    // An account's page adds a contact to it; an account's or a contact's opens a deal.
    let may_create = who.can(Access::Write(Area::Sales));
    m.insert(
        "new_contact".into(),
        match kind {
            EntityKind::Account if may_create => super::customers::fields_json(lang, EntityKind::Contact),
            _ => J::Null,
        },
    );
    m.insert(
        "new_deal".into(),
        match kind {
            EntityKind::Account | EntityKind::Contact if may_create => {
                super::customers::fields_json(lang, EntityKind::Opportunity)
            }
            _ => J::Null,
        },
    );
    m.insert(
        "done".into(),
        json!(params.get("done").map(|d| i18n::t(lang, &format!("done_{d}"))).filter(|t| *t != "?")),
    );
    render("record.html", J::Object(m), StatusCode::OK)
}

/// The fields a person fills in for a contact, an account or an open opportunity, on its
/// page and in the new-record forms: (field, label key, required, input type). `money` and
/// `percent` are number inputs whose text is read here (a decimal comma and spaces between
/// thousands are accepted).
pub(super) fn editable(kind: EntityKind) -> &'static [(&'static str, &'static str, bool, &'static str)] {
    match kind {
        EntityKind::Contact => &[
            ("firstname", "first_name", false, "text"),
            ("lastname", "last_name", true, "text"),
            ("jobtitle", "job_title", false, "text"),
            ("emailaddress1", "email", false, "email"),
            ("telephone1", "phone", false, "tel"),
            ("mobilephone", "mobile", false, "tel"),
        ],
        EntityKind::Account => &[
            ("name", "account_name", true, "text"),
            ("emailaddress1", "email", false, "email"),
            ("telephone1", "phone", false, "tel"),
            ("address1_city", "city", false, "text"),
        ],
        EntityKind::Opportunity => &[
            ("name", "topic", true, "text"),
            ("estimatedvalue", "estimated_value", false, "money"),
            ("closeprobability", "probability", false, "percent"),
            ("estimatedclosedate", "estimated_close", false, "date"),
            ("description", "description", false, "text"),
        ],
        _ => &[],
    }
}

/// A form field's text as the JSON value the record reads: numbers for `money` and
/// `percent` fields (`None` when the text is no such number), the text itself otherwise.
pub(super) fn field_value(ty: &str, text: &str) -> Option<J> {
    let number = || text.replace([' ', '\u{a0}'], "").replace(',', ".");
    match ty {
        "percent" => number().parse::<i64>().ok().map(J::from),
        // Read as the record reads it (two decimals, within the money range), so a bad amount
        // is the person's 422, not a record that cannot be decoded.
        "money" => serde_json::from_value::<crate::crm::Money>(J::from(number()))
            .ok()
            .and_then(|m| serde_json::to_value(m).ok()),
        _ => Some(J::from(text)),
    }
}

/// `POST /records/{contacts|accounts|opportunities}/{id}`: the record's edit form. It carries
/// the version it was filled from: a change someone made meanwhile is a 409, never overwritten.
pub async fn edit(
    who: Signed,
    State(s): State<AppState>,
    Path((set, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (f, id) = match who.posted(&body, Access::Write(Area::Sales), &id) {
        Ok(p) => (p.form, p.id),
        Err(r) => return *r,
    };
    let lang = who.lang;
    let Some(kind) = record_kind(&set) else { return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")) };
    let value = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if let Some((_, label, _, _)) = editable(kind).iter().find(|(k, _, req, _)| *req && value(k).is_none()) {
        let message = format!("{} {}", i18n::t(lang, label), i18n::t(lang, "required"));
        return who.error(StatusCode::UNPROCESSABLE_ENTITY, &message);
    }
    let mut fields = serde_json::Map::new();
    for (k, label, _, ty) in editable(kind) {
        let v = match value(k) {
            None => J::Null,
            Some(text) => match field_value(ty, &text) {
                Some(v) => v,
                None => {
                    let message = format!("{}: {}", i18n::t(lang, label), i18n::t(lang, "not_a_number"));
                    return who.error(StatusCode::UNPROCESSABLE_ENTITY, &message);
                }
            },
        };
        fields.insert(k.to_string(), v);
    }
    let version: i64 = value("versionnumber").and_then(|v| v.parse().ok()).unwrap_or(-1);
    let me = who.user;
    let saved = async {
        match kind {
            EntityKind::Contact => {
                s.store.update(&edited::<Contact>(&s, id, fields, version, me).await?).await.map(drop)
            }
            EntityKind::Account => {
                s.store.update(&edited::<Account>(&s, id, fields, version, me).await?).await.map(drop)
            }
            // A deal's change goes through its rule (R-OPP-1: open only, probability 0..100, a
            // history line for a new probability), as the API's PATCH does.
            _ => s.store.update_opportunity(&edited::<Opportunity>(&s, id, fields, version, me).await?).await.map(drop),
        }
    }
    .await;
    match saved {
        Ok(()) => redirect(&format!("/records/{set}/{id}?done=edited")),
        Err(e) => failed(&who, e),
    }
}

/// The record as it is now, with the form's fields set, at the version the form was filled
/// from.
async fn edited<R>(
    s: &AppState,
    id: Uuid,
    fields: serde_json::Map<String, J>,
    version: i64,
    me: Uuid,
) -> Result<R, crate::store::StoreError>
where
    R: Record + serde::Serialize + serde::de::DeserializeOwned,
{
    let current: R = s.store.load(id).await?;
    let mut j = serde_json::to_value(&current).map_err(crate::store::StoreError::decode)?;
    for (k, v) in fields {
        j[k] = v;
    }
    j["versionnumber"] = json!(version);
    j["modifiedby"] = json!(me);
    j["modifiedon"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    serde_json::from_value(j).map_err(crate::store::StoreError::decode)
}

/// The most contacts or opportunities an account's page lists.
const RELATED_SHOWN: i64 = 100;

/// An account's contacts (`parentcustomerid`) and opportunities (`customerid`), each with the
/// total, the first `RELATED_SHOWN` by name.
async fn account_related(s: &AppState, lang: Lang, id: Uuid) -> Result<J, crate::store::StoreError> {
    use crate::store::api as q;
    let tz = s.api.tz();
    let bad = |e: q::QueryError| crate::store::StoreError::Decode(e.message);
    let contacts = s
        .store
        .query_records::<Contact>(
            &[q::filter::<Contact>("parentcustomerid", &id.to_string(), tz).map_err(bad)?],
            Some(q::sort::<Contact>("lastname").map_err(bad)?),
            1,
            RELATED_SHOWN,
        )
        .await?;
    let deals = s
        .store
        .query_records::<Opportunity>(
            &[q::filter::<Opportunity>("customerid", &id.to_string(), tz).map_err(bad)?],
            Some(q::sort::<Opportunity>("-createdon").map_err(bad)?),
            1,
            RELATED_SHOWN,
        )
        .await?;
    let contact_rows: Vec<J> = contacts
        .items
        .iter()
        .map(|c| {
            json!({
                "name": format!("{} {}", c.firstname.clone().unwrap_or_default(), c.lastname).trim(),
                "link": page_of(EntityRef::new(EntityKind::Contact, c.contactid)),
                "email": c.emailaddress1.clone().unwrap_or_default(),
            })
        })
        .collect();
    let deal_rows: Vec<J> = deals
        .items
        .iter()
        .map(|o| {
            json!({
                "name": o.name,
                "link": page_of(EntityRef::new(EntityKind::Opportunity, o.opportunityid)),
                "state": labels::picklist("opportunity", "statecode", i64::from(o.statecode))
                    .map(|l| i18n::label(lang, l))
                    .unwrap_or_default(),
                "value": o.estimatedvalue.map(|m| i18n::money(lang, m.0 as f64 / 100.0,
                    &s.console.currency)).unwrap_or_default(),
            })
        })
        .collect();
    Ok(json!({
        "contacts": contact_rows, "contacts_total": contacts.total,
        "deals": deal_rows, "deals_total": deals.total,
    }))
}

/// `POST /records/opportunities/{id}/win|lose|reopen` (R-OPP-1), for those who write sales
/// records.
pub async fn opportunity_action(
    who: Signed,
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (f, id) = match who.posted(&body, Access::Write(Area::Sales), &id) {
        Ok(p) => (p.form, p.id),
        Err(r) => return *r,
    };
    let now = Utc::now();
    let today = now.with_timezone(&s.api.tz()).date_naive();
    let text = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let done = match action.as_str() {
        "win" => {
            let actualvalue = match text("actualvalue").map(|v| v.replace([' ', '\u{a0}'], "").replace(',', ".")) {
                Some(v) => match serde_json::from_value::<Money>(json!(v)) {
                    Ok(m) => Some(m),
                    Err(_) => return who.error(StatusCode::UNPROCESSABLE_ENTITY, i18n::t(who.lang, "bad_amount")),
                },
                None => None,
            };
            let p = WinParams { actualvalue, ..Default::default() };
            s.store.win_opportunity(id, &p, who.user, today, now).await.map(|_| "won")
        }
        "lose" => {
            let p = LoseParams {
                statuscode: text("status").and_then(|v| v.parse().ok()),
                reason: text("reason"),
                ..Default::default()
            };
            s.store.lose_opportunity(id, &p, who.user, today, now).await.map(|_| "lost")
        }
        "reopen" => s.store.reopen_opportunity(id, who.user, now).await.map(|_| "reopened"),
        _ => return who.error(StatusCode::NOT_FOUND, i18n::t(who.lang, "not_found")),
    };
    match done {
        Ok(d) => redirect(&format!("/records/opportunities/{id}?done={d}")),
        Err(e) => failed(&who, e),
    }
}
