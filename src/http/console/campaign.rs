//! One campaign's page (issue 19 §3): its facts, its figures (targeted, sent, responses,
//! leads, deals won — the API's campaign performance), the response rate of each of its
//! e-mail waves against the campaign's expected rate (R-WV-7), its marketing lists and its
//! waves with links to their pages.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::chart::{self, Series};
use super::i18n;
use super::pages::{ChartView, failed};
use super::records::{facts, load};
use super::session::Signed;
use super::{frame, redirect, render};
use crate::crm::EntityKind;
use crate::crm::entities::Campaign;
use crate::crm::{campaign, labels};
use crate::http::AppState;
use crate::http::api::{Access, Area};

/// `GET /campaigns/{id}`
pub async fn show(who: Signed, State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Marketing)) {
        return r;
    }
    let lang = who.lang;
    let Ok(id) = id.parse::<Uuid>() else { return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")) };
    let rec = match load::<Campaign>(&s, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
        Err(e) => return failed(&who, e),
    };
    let data = async {
        let perf = s.store.campaign_performance().await?;
        let lists = s.store.campaign_lists(id).await?;
        let mut waves = Vec::new();
        for w in s.store.waves().await?.into_iter().filter(|w| w.campaign_id == Some(id)) {
            waves.push(s.store.wave_status(w.activity_id).await?);
        }
        Ok::<_, crate::store::StoreError>((perf, lists, waves))
    };
    let (perf, lists, waves) = match data.await {
        Ok(d) => d,
        Err(e) => return failed(&who, e),
    };
    let tz = s.api.tz();
    let mine =
        perf.iter().find(|c| c["campaignid"].as_str() == Some(id.to_string().as_str())).cloned().unwrap_or(J::Null);
    let figures: Vec<J> = [
        ("targeted", "targeted"),
        ("sent", "sent"),
        ("failed", "failed"),
        ("responses", "responses"),
        ("leads", "leads"),
        ("opportunities", "opportunities"),
        ("won", "won"),
    ]
    .iter()
    .map(|(word, k)| json!([i18n::t(lang, word), mine[*k].to_string()]))
    .collect();
    // R-WV-7: each wave's response rate against the campaign's expected rate.
    let expected = rec["expectedresponse"].as_f64();
    let cats: Vec<String> = waves.iter().map(|w| w.wave.subject_line.clone()).collect();
    let (r, e) = (i18n::t(lang, "responses"), i18n::t(lang, "expected"));
    let series = [
        Series { name: format!("{r}, %"), values: waves.iter().map(|w| w.response_rate.unwrap_or(0.0)).collect() },
        Series { name: format!("{e}, %"), values: waves.iter().map(|_| expected.unwrap_or(0.0)).collect() },
    ];
    let title = i18n::t(lang, "response_per_wave").to_string();
    let pct = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_else(|| "—".into());
    let chart = ChartView {
        id: "wave-response".into(),
        svg: chart::bars("wave-response", &title, &cats, &series),
        title,
        columns: vec![
            i18n::t(lang, "wave").into(),
            i18n::t(lang, "sent").into(),
            i18n::t(lang, "responded").into(),
            format!("{r}, %"),
            format!("{e}, %"),
        ],
        rows: waves
            .iter()
            .map(|w| {
                vec![
                    w.wave.subject_line.clone(),
                    w.sent.to_string(),
                    w.responded.to_string(),
                    pct(w.response_rate),
                    pct(expected),
                ]
            })
            .collect(),
        empty: waves.is_empty(),
        links: Vec::new(),
    };
    let lists: Vec<J> = lists
        .iter()
        .map(|l| {
            json!({
                "id": l.listid,
                "name": l.listname,
                "members": labels::picklist("list", "createdfromcode",
                    i64::from(l.createdfromcode)).map(|x| i18n::label(lang, x)),
                "dynamic": l.isdynamic,
                "count": l.membercount,
            })
        })
        .collect();
    let wave_rows: Vec<J> = waves
        .iter()
        .map(|w| {
            json!({
                "id": w.wave.activity_id,
                "subject": w.wave.subject_line,
                "state": i18n::t(lang, w.wave.state.as_str()),
                "start": i18n::datetime(lang, w.wave.schedule.start_at, tz),
                "targeted": w.wave.targeted,
            })
        })
        .collect();
    // The status changes allowed from here ([DESIGN] §2.7), as buttons.
    let status = rec["statuscode"].as_i64().unwrap_or_default() as i32;
    let moves: Vec<J> =
        [campaign::READY_TO_LAUNCH, campaign::LAUNCHED, campaign::SUSPENDED, campaign::COMPLETED, campaign::CANCELED]
            .iter()
            .filter(|to| **to != status && campaign::check_status_change(status, **to).is_ok())
            .map(|to| {
                let label = labels::picklist("campaign", "statuscode", i64::from(*to)).map(|x| i18n::label(lang, x));
                json!({"to": to, "label": label})
            })
            .collect();
    let mut m = frame(&who, "campaigns");
    m.insert(
        "campaign".into(),
        json!({
            "id": id,
            "name": rec["name"],
            "facts": facts(&s, lang, EntityKind::Campaign, &rec),
            "figures": figures,
            "moves": moves,
            // R-WV-1: waves go out for a campaign that is ready or launched.
            "can_send": matches!(status, campaign::READY_TO_LAUNCH | campaign::LAUNCHED),
        }),
    );
    m.insert("chart".into(), json!(chart));
    m.insert("lists".into(), json!(lists));
    m.insert("waves".into(), json!(wave_rows));
    render("campaign.html", J::Object(m), StatusCode::OK)
}

/// How many members a page of a list shows (`?page=N` for the next ones).
const MEMBERS_SHOWN: usize = 200;

/// `GET /lists/{id}`: a marketing list, its members (dynamic lists evaluated now) and the
/// members no marketing e-mail reaches, with why (R-OPT-1).
pub async fn list(
    who: Signed,
    State(s): State<AppState>,
    Path(id): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    if let Some(r) = who.refusal(Access::Read(Area::Marketing)) {
        return r;
    }
    let lang = who.lang;
    let Ok(id) = id.parse::<Uuid>() else { return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")) };
    let page: usize = super::pages::query_params(raw).get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let data = async {
        let Some(l) = load::<crate::crm::entities::MarketingList>(&s, id).await? else { return Ok(None) };
        let now = chrono::Utc::now();
        let members = s.store.list_members(id, now).await?;
        let optouts = s.store.list_optouts(id, now).await?;
        // Names for this page's members and the opted-out ones only (a list may be large).
        let mut named: Vec<crate::crm::EntityRef> =
            members.iter().skip((page - 1) * MEMBERS_SHOWN).take(MEMBERS_SHOWN).copied().collect();
        let kind = members.first().map(|m| m.kind);
        named.extend(optouts.iter().take(MEMBERS_SHOWN).filter_map(|o| {
            let id = o["id"].as_str().and_then(|v| v.parse().ok())?;
            Some(crate::crm::EntityRef::new(kind?, id))
        }));
        let names = s.store.names(&named).await?;
        Ok::<_, crate::store::StoreError>(Some((l, members, optouts, names)))
    };
    let (l, members, optouts, names) = match data.await {
        Ok(Some(d)) => d,
        Ok(None) => return who.error(StatusCode::NOT_FOUND, i18n::t(lang, "not_found")),
        Err(e) => return failed(&who, e),
    };
    let name_of = |id: &Uuid| names.get(id).cloned().unwrap_or_default();
    let rows: Vec<J> = members
        .iter()
        .skip((page - 1) * MEMBERS_SHOWN)
        .take(MEMBERS_SHOWN)
        .map(|m| {
            json!({"name": name_of(&m.id), "kind": i18n::kind(lang, m.kind.as_str()),
            "link": super::records::page_of(*m)})
        })
        .collect();
    // The first of those no marketing e-mail reaches, with how many there are in all.
    let out: Vec<J> = optouts
        .iter()
        .take(MEMBERS_SHOWN)
        .map(|o| {
            let id: Uuid = o["id"].as_str().and_then(|v| v.parse().ok()).unwrap_or_default();
            let reasons: Vec<String> = o["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(J::as_str)
                .map(|r| i18n::optout_reason(lang, r))
                .collect();
            json!({"name": name_of(&id), "reasons": reasons.join("; ")})
        })
        .collect();
    let mut m = frame(&who, "campaigns");
    m.insert(
        "list".into(),
        json!({
            "name": l["listname"],
            "members_kind": l["createdfromcode"].as_i64().and_then(|c| labels::picklist("list", "createdfromcode",
                c)).map(|x| i18n::label(lang, x)),
            "dynamic": l["isdynamic"].as_bool() == Some(true),
            "total": members.len(),
            "shown": rows.len(),
        }),
    );
    m.insert("page".into(), json!(page));
    m.insert("pages".into(), json!(members.len().div_ceil(MEMBERS_SHOWN)));
    m.insert("members".into(), json!(rows));
    m.insert("optouts_total".into(), json!(optouts.len()));
    m.insert("optouts".into(), json!(out));
    render("list.html", J::Object(m), StatusCode::OK)
}

/// `POST /campaigns/{id}/waves`: a new e-mail wave from the campaign page's form — subject and
/// text templates, the campaign's lists to send to, a start (empty: now) and a rate — for
/// marketers and admins. The wave's page follows.
pub async fn new_wave(who: Signed, State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let (f, campaign) = match who.posted(&body, Access::Write(Area::Marketing), &id) {
        Ok(p) => (p.form, p.id),
        Err(r) => return *r,
    };
    let lang = who.lang;
    // Several boxes share the name "list".
    let lists: Vec<Uuid> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "list")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let field = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let (Some(subject), Some(text)) = (field("subject"), field("text")) else {
        return who.error(StatusCode::UNPROCESSABLE_ENTITY, i18n::t(lang, "wave_needs_text"));
    };
    let rate = match field("rate").map(|r| r.parse::<u32>()) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => return who.error(StatusCode::UNPROCESSABLE_ENTITY, i18n::t(lang, "wave_bad_rate")),
    };
    let w = crate::http::api::NewWave {
        campaign,
        owner: who.user,
        name: field("name"),
        subject,
        // Browsers send text areas with CRLF line ends.
        text: text.replace("\r\n", "\n"),
        html: field("html"),
        lists,
        // <input type="datetime-local"> sends "YYYY-MM-DDTHH:MM".
        start: field("start").map(|v| v.replacen('T', " ", 1)),
        rate_per_minute: rate,
    };
    match crate::http::api::launch_wave(&s, w).await {
        Ok(wave) => redirect(&format!("/waves/{wave}")),
        Err(e) => who.error(e.status, &e.message),
    }
}

/// `POST /campaigns/{id}/status`: a status change the page offers ([DESIGN] §2.7).
pub async fn set_status(who: Signed, State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let (f, campaign) = match who.posted(&body, Access::Write(Area::Marketing), &id) {
        Ok(p) => (p.form, p.id),
        Err(r) => return *r,
    };
    let Some(to) = f.get("to").and_then(|t| t.parse::<i32>().ok()) else {
        return who.error(StatusCode::UNPROCESSABLE_ENTITY, i18n::t(who.lang, "not_found"));
    };
    match s.store.set_campaign_status(campaign, to, Some(who.user), chrono::Utc::now()).await {
        Ok(_) => redirect(&format!("/campaigns/{campaign}")),
        Err(e) => failed(&who, e),
    }
}
