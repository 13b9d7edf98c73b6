//! An activity's page (issue 19 §3, R-ACT-1/2): its facts with names and labels, the record
//! it regards (linked), complete / cancel, and an edit form to reword, reschedule or hand
//! it over; and the form on a lead's, contact's, account's or opportunity's page that
//! creates a task, phone call or appointment regarding it.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::i18n::{self, Lang};
use super::pages::{failed, query_params};
use super::records::page_of;
use super::session::Signed;
use super::{frame, redirect, render};
use crate::crm::entities::{Activity, SystemUser};
use crate::crm::work::Actor;
use crate::crm::{EntityKind, EntityRef};
use crate::http::AppState;
use crate::http::api::{Access, Area, Creatable, Role};
use crate::store::RecordExt;
use crate::store::api as q;

/// The kinds a person creates from a record's page (e-mails are sent by the daemon; letters
/// and faxes are rare enough for the API).
pub const NEW_KINDS: [EntityKind; 3] = [EntityKind::Task, EntityKind::Phonecall, EntityKind::Appointment];

/// The choices of the new-activity form, in the language.
pub fn kind_options(lang: Lang) -> Vec<J> {
    NEW_KINDS.iter().map(|k| json!({"value": k.as_str(), "label": i18n::kind(lang, k.as_str())})).collect()
}

/// What a record's page needs for its new-activity form: nothing for those who may not
/// create one.
pub fn new_activity_form(who: &Signed, regarding: EntityRef) -> J {
    if !who.can(Access::Write(Area::Sales)) {
        return J::Null;
    }
    json!({"set": regarding.kind.set(), "id": regarding.id, "kinds": kind_options(who.lang)})
}

/// A `datetime-local` input's value for an instant, in the org time zone.
fn local_input(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string()
}

/// A `datetime-local` input's text as an instant, read in the org time zone. A time the
/// clocks skip (a spring-forward gap) is read as the hour after it.
fn from_local_input(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest())
        .map(|t| t.with_timezone(&Utc))
}

/// The people an activity can be handed to: enabled users by name.
async fn owners(s: &AppState) -> crate::store::Result<Vec<J>> {
    let bad = |e: q::QueryError| crate::store::StoreError::Decode(e.message);
    let tz = s.api.tz();
    let users = s
        .store
        .query_records::<SystemUser>(
            &[q::filter::<SystemUser>("isdisabled", "false", tz).map_err(bad)?],
            Some(q::sort::<SystemUser>("fullname").map_err(bad)?),
            1,
            q::MAX_LIMIT,
        )
        .await?;
    Ok(users.items.iter().map(|u| json!({"id": u.systemuserid, "name": u.fullname})).collect())
}

/// `GET /activities/{id}`: for those who read sales records, and for the activity's owner.
pub async fn show(who: Signed, State(s): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let lang = who.lang;
    let not_found = || who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found"));
    let Ok(id) = id.parse::<Uuid>() else { return not_found() };
    let a = match s.store.get::<Activity>(id).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(),
        Err(e) => return failed(&who, e),
    };
    if a.ownerid != who.user
        && let Some(r) = who.refusal(Access::Read(Area::Sales))
    {
        return r;
    }
    let mut j = vec![serde_json::to_value(&a).unwrap_or(J::Null)];
    if let Err(e) = s.store.add_lookup_names("activity", &mut j).await {
        return failed(&who, e);
    }
    let j = j.pop().unwrap_or(J::Null);
    let tz = s.api.tz();
    let name = |k: &str| j[format!("{k}_name").as_str()].as_str().unwrap_or_default().to_string();
    let when = |t: Option<DateTime<Utc>>| t.map(|t| i18n::datetime(lang, t, tz)).unwrap_or_default();
    // The state as the activity's own kind names it (§2.11: Open, Completed, Canceled, Scheduled).
    let state = crate::crm::state::model(a.activitytypecode)
        .iter()
        .find(|d| d.code == a.statecode)
        .map(|d| i18n::label(lang, d.name))
        .unwrap_or_default();
    let direction = match a.directioncode {
        Some(true) => i18n::t(lang, "outgoing"),
        Some(false) => i18n::t(lang, "incoming"),
        None => "",
    };
    let facts: Vec<J> = [
        ("type", i18n::kind(lang, a.activitytypecode.as_str())),
        ("due", when(a.scheduledend)),
        ("owner", name("ownerid")),
        ("state", state),
        ("direction", direction.to_string()),
        ("phone", a.phonenumber.clone().unwrap_or_default()),
        ("finished", when(a.actualend)),
        ("created", when(Some(a.createdon))),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| json!([i18n::t(lang, k), v]))
    .collect();
    let regarding = a.regardingobjectid.map(|rid| {
        let kind = a.regardingobjectidtype.unwrap_or(EntityKind::Lead);
        json!({"name": name("regardingobjectid"), "link": page_of(EntityRef::new(kind, rid)),
            "kind": i18n::kind(lang, kind.as_str())})
    });
    let open = a.statecode == 0;
    let may_change = open && (who.role == Role::Admin || a.ownerid == who.user);
    let owner_list = if may_change {
        match owners(&s).await {
            Ok(o) => o,
            Err(e) => return failed(&who, e),
        }
    } else {
        Vec::new()
    };
    let params = query_params(raw);
    let mut m = frame(&who, "work");
    m.insert(
        "activity".into(),
        json!({
            "id": a.activityid,
            "subject": a.subject.clone().unwrap_or_default(),
            "kind": i18n::kind(lang, a.activitytypecode.as_str()),
            "facts": facts,
            "regarding": regarding,
            "description": a.description.clone().unwrap_or_default(),
            "open": open,
            "due_input": a.scheduledend.map(|t| local_input(t, tz)).unwrap_or_default(),
            "owner": a.ownerid,
            "version": a.versionnumber,
        }),
    );
    m.insert("may_change".into(), json!(may_change));
    m.insert("owners".into(), json!(owner_list));
    m.insert(
        "done".into(),
        json!(params.get("done").map(|d| i18n::t(lang, &format!("done_{d}"))).filter(|t| *t != "?")),
    );
    render("activity.html", J::Object(m), StatusCode::OK)
}

/// The form's subject (required) and due time (optional, read in the org's zone); the 422
/// page that says which is wrong.
fn subject_and_due(
    who: &Signed,
    f: &std::collections::BTreeMap<String, String>,
    tz: Tz,
) -> Result<(String, Option<DateTime<Utc>>), Box<Response>> {
    let lang = who.lang;
    let text = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let Some(subject) = text("subject") else {
        let message = format!("{} {}", i18n::t(lang, "subject"), i18n::t(lang, "required"));
        return Err(Box::new(who.error(StatusCode::UNPROCESSABLE_ENTITY, &message)));
    };
    match text("due").map(|d| from_local_input(&d, tz)) {
        None => Ok((subject, None)),
        Some(Some(t)) => Ok((subject, Some(t))),
        Some(None) => Err(Box::new(who.error(StatusCode::UNPROCESSABLE_ENTITY, i18n::t(lang, "bad_date")))),
    }
}

/// `POST /activities/{id}`: the edit form (subject, due, description, owner). R-ACT-1's
/// people may change it (its owner, a manager above, an admin); R-ACT-2: a new owner or due
/// date restarts the escalation. It carries the version it was filled from: a change made
/// meanwhile is a 409, never overwritten.
pub async fn edit(who: Signed, State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let (f, id) = match who.posted(&body, Access::OwnWork, &id) {
        Ok(p) => (p.form, p.id),
        Err(r) => return *r,
    };
    let lang = who.lang;
    let text = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let (subject, due) = match subject_and_due(&who, &f, s.api.tz()) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut a: Activity = match s.store.get::<Activity>(id).await {
        Ok(Some(a)) => a,
        Ok(None) => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
        Err(e) => return failed(&who, e),
    };
    if let Some(owner) = text("owner") {
        match owner.parse::<Uuid>() {
            Ok(o) => a.ownerid = o,
            Err(_) => return who.error(StatusCode::UNPROCESSABLE_ENTITY, i18n::t(lang, "not_found")),
        }
    }
    a.subject = Some(subject);
    a.scheduledend = due;
    a.description = text("description");
    a.versionnumber = text("versionnumber").and_then(|v| v.parse().ok()).unwrap_or(-1);
    a.modifiedby = Some(who.user);
    a.modifiedon = Utc::now();
    let actor = Actor { user: who.user, admin: who.role == Role::Admin };
    match s.store.update_activity_as(&a, actor).await {
        Ok(_) => redirect(&format!("/activities/{id}?done=edited")),
        Err(e) => failed(&who, e),
    }
}

/// `POST /activities`: a task, phone call or appointment regarding the record whose page
/// the form is on (`regarding_set`, `regarding_id`), owned by the person who creates it,
/// for those who write sales records (as the API's `POST /activities`).
pub async fn create(who: Signed, State(s): State<AppState>, body: Bytes) -> Response {
    let f = super::session::form(&body);
    if let Some(r) = who.form_refusal(&f).or_else(|| who.refusal(Access::Write(Area::Sales))) {
        return r;
    }
    let lang = who.lang;
    let text = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    // A lead's, a contact's, an account's or an opportunity's page carries the form.
    let regarding = text("regarding_id").and_then(|id| id.parse::<Uuid>().ok()).and_then(|id| {
        let kind = text("regarding_set").and_then(|set| EntityKind::from_set(&set)).filter(|k| {
            matches!(k, EntityKind::Lead | EntityKind::Contact | EntityKind::Account | EntityKind::Opportunity)
        })?;
        Some(EntityRef::new(kind, id))
    });
    let Some(regarding) = regarding else { return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")) };
    let Some(kind) = text("type").and_then(|t| NEW_KINDS.into_iter().find(|k| k.as_str() == t)) else {
        return who.error(StatusCode::UNPROCESSABLE_ENTITY, i18n::t(lang, "not_found"));
    };
    let (subject, due) = match subject_and_due(&who, &f, s.api.tz()) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    // The record must exist: an activity regarding nothing would vanish from every page.
    let exists = match regarding.kind {
        EntityKind::Lead => s.store.get::<crate::crm::entities::Lead>(regarding.id).await.map(|r| r.is_some()),
        EntityKind::Contact => s.store.get::<crate::crm::entities::Contact>(regarding.id).await.map(|r| r.is_some()),
        EntityKind::Account => s.store.get::<crate::crm::entities::Account>(regarding.id).await.map(|r| r.is_some()),
        _ => s.store.get::<crate::crm::entities::Opportunity>(regarding.id).await.map(|r| r.is_some()),
    };
    match exists {
        Ok(true) => {}
        Ok(false) => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
        Err(e) => return failed(&who, e),
    }
    let a = Activity {
        activitytypecode: kind,
        subject: Some(subject),
        description: text("description"),
        regardingobjectid: Some(regarding.id),
        regardingobjectidtype: Some(regarding.kind),
        scheduledend: due,
        // A call someone plans to make is outgoing.
        directioncode: (kind == EntityKind::Phonecall).then_some(true),
        ..Default::default()
    };
    let created = match a.prepare(who.user, who.user, Utc::now(), &s) {
        Ok(a) => Activity::create(&s, a, crate::store::CreateMode::IgnoreDuplicates).await,
        Err(e) => Err(e),
    };
    let back = page_of(regarding).unwrap_or_else(|| "/work".into());
    match created {
        Ok(_) => redirect(&format!("{back}?done=activity_created")),
        Err(e) => who.error(e.status, &e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_are_read_in_the_org_zone() {
        let tz: Tz = "Europe/Moscow".parse().unwrap();
        let t = from_local_input("2026-12-08T14:30", tz).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 12, 8, 11, 30, 0).unwrap());
        assert_eq!(local_input(t, tz), "2026-12-08T14:30");
        assert_eq!(from_local_input("08.12.2026", tz), None);
        // 02:30 does not exist in Berlin on 2026-03-29: read as the hour after.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            from_local_input("2026-03-29T02:30", berlin).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap()
        );
    }
}
