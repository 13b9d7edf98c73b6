//! The actions of DOMAIN §3 and the waves, lists and ops routes: one store operation each.

use super::*;

// Actions

pub(super) async fn qualify_h(
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
pub(super) struct DisqualifyBody {
    statuscode: Option<i32>,
    reason: Option<String>,
}

pub(super) async fn disqualify_h(
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
pub(super) struct Empty {}

pub(super) async fn reactivate_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<Lead>, ApiError> {
    Ok(Json(s.store.reactivate_lead(parse_id(&id)?, Some(c.user), Utc::now()).await?))
}

pub(super) async fn convert_h(
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
pub(super) struct StatusBody {
    statuscode: i32,
}

pub(super) async fn campaign_status_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(b): Body<StatusBody>,
) -> Result<Json<Campaign>, ApiError> {
    Ok(Json(s.store.set_campaign_status(parse_id(&id)?, b.statuscode, Some(c.user), Utc::now()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleBody {
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

/// A wave's start (local "YYYY-MM-DD HH:MM" in `timezone`, default the org's, or an RFC 3339
/// instant; default now), its zone, and its sender (default `smtp.from`).
pub(super) fn send_when_and_from(
    s: &AppState,
    start: Option<&str>,
    timezone: Option<&str>,
    from: Option<String>,
    now: chrono::DateTime<Utc>,
) -> Result<(chrono::DateTime<Utc>, chrono_tz::Tz, String), ApiError> {
    let zone: chrono_tz::Tz = match timezone {
        Some(t) => t.parse().map_err(|_| {
            unprocessable(
                "bad_timezone",
                format!("'{}' is not an IANA time zone", t.chars().take(60).collect::<String>()),
            )
        })?,
        None => s.api.tz(),
    };
    let start_at = match start {
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
    let from = from
        .or_else(|| s.smtp_from.clone())
        .ok_or_else(|| unprocessable("missing_field", "from is required when smtp.from is not set"))?;
    Ok((start_at, zone, from))
}

/// A wave error for the API: the store's own, else the checks' (templates, addresses).
pub(super) fn wave_error(e: anyhow::Error) -> ApiError {
    match e.downcast::<crate::store::StoreError>() {
        Ok(se) => se.into(),
        Err(other) => unprocessable("invalid_wave", format!("{other:#}")),
    }
}

pub(super) fn unprocessable(code: &str, m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, m)
}

pub(super) async fn schedule_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<ScheduleBody>,
) -> Result<Json<J>, ApiError> {
    let id = parse_id(&id)?;
    let now = Utc::now();
    let (start_at, zone, from) = send_when_and_from(&s, b.start.as_deref(), b.timezone.as_deref(), b.from, now)?;
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
    let w = crate::waves::schedule(&s.store, &sched, now).await.map_err(wave_error)?;
    Ok(Json(serde_json::to_value(w).map_err(internal)?))
}

pub(super) async fn wave_control(
    s: &AppState,
    id: &str,
    action: crate::crm::waves::WaveAction,
) -> Result<Json<J>, ApiError> {
    let w = s.store.control_wave(parse_id(id)?, action, Utc::now()).await?;
    Ok(Json(serde_json::to_value(w).map_err(internal)?))
}

pub(super) async fn pause_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    wave_control(&s, &id, crate::crm::waves::WaveAction::Pause).await
}
pub(super) async fn resume_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    wave_control(&s, &id, crate::crm::waves::WaveAction::Resume).await
}
pub(super) async fn cancel_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    wave_control(&s, &id, crate::crm::waves::WaveAction::Cancel).await
}

pub(super) async fn wave_status_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    Ok(Json(serde_json::to_value(s.store.wave_status(parse_id(&id)?).await?).map_err(internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestSendBody {
    to: String,
    #[serde(default)]
    vars: serde_json::Map<String, J>,
}

pub(super) async fn test_send_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<TestSendBody>,
) -> Result<Json<J>, ApiError> {
    test_send_wave(&s, parse_id(&id)?, &b.to, b.vars).await?;
    Ok(Json(json!({"sent_to": b.to})))
}

/// What the console's "new wave" form asks for.
pub struct NewWave {
    pub campaign: Uuid,
    pub owner: Uuid,
    /// The campaign activity's subject (None: the subject template).
    pub name: Option<String>,
    /// The subject template.
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub lists: Vec<Uuid>,
    /// Local "YYYY-MM-DD HH:MM" in the org's zone; None: now.
    pub start: Option<String>,
    pub rate_per_minute: Option<u32>,
}

/// A campaign's new e-mail wave in one step, as the CLI and the API do it in three: the
/// message is checked first (so a bad template leaves nothing behind), then an e-mail campaign
/// activity regarding the campaign targets `lists` (which must be the campaign's) and is
/// scheduled from `smtp.from`. Returns the activity (the wave's id).
pub async fn launch_wave(s: &AppState, w: NewWave) -> Result<Uuid, ApiError> {
    let now = Utc::now();
    if w.lists.is_empty() {
        return Err(unprocessable("missing_field", "choose at least one list to send to"));
    }
    let (start_at, zone, from) = send_when_and_from(s, w.start.as_deref(), None, None, now)?;
    let mut sched = crate::store::waves::WaveSchedule {
        activity_id: Uuid::nil(),
        start_at,
        timezone: zone.name().to_string(),
        subject: w.subject.clone(),
        text: w.text,
        html: w.html,
        from_address: from,
        from_name: None,
        reply_to: None,
        rate_per_minute: w.rate_per_minute,
        skip_responders_of: None,
    };
    crate::waves::check_schedule(&sched).map_err(wave_error)?;
    let a = crate::crm::entities::CampaignActivity {
        activityid: Uuid::now_v7(),
        regardingobjectid: w.campaign,
        subject: w.name.unwrap_or(w.subject),
        channeltypecode: Some(crate::crm::campaign::CHANNEL_EMAIL),
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(w.owner, crate::crm::EntityKind::Systemuser, now, Some(w.owner));
    let a = s.store.create_campaign_activity(&a).await?;
    s.store.set_wave_lists(a.activityid, &w.lists).await?;
    sched.activity_id = a.activityid;
    crate::waves::schedule(&s.store, &sched, now).await.map_err(wave_error)?;
    Ok(a.activityid)
}

/// Sends a wave's message, marked [TEST], to one address (the API's test send and the
/// console's); touches no counts.
pub async fn test_send_wave(
    s: &AppState,
    id: Uuid,
    to: &str,
    vars: serde_json::Map<String, J>,
) -> Result<(), ApiError> {
    let rt = s.waves.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_relay",
            "this daemon has no SMTP relay configured ([smtp] host) or waves are disabled",
        )
    })?;
    crate::crm::EmailAddress::parse(to).map_err(|e| unprocessable("invalid_address", format!("to: {e}")))?;
    s.store.wave(id).await?;
    rt.test_send(id, to, vars)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "send_failed", format!("{e:#}")))
}

pub(super) async fn optouts_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    let items = s.store.list_optouts(parse_id(&id)?, Utc::now()).await?;
    Ok(Json(json!({"total": items.len(), "items": items})))
}

pub(super) async fn members_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    let members = s.store.list_members(parse_id(&id)?, Utc::now()).await?;
    Ok(Json(json!({"items": members, "total": members.len()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MembersBody {
    members: Vec<Uuid>,
}

pub(super) async fn add_members_h(
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

pub(super) async fn remove_members_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<MembersBody>,
) -> Result<Json<J>, ApiError> {
    let removed = s.store.remove_list_members(parse_id(&id)?, &b.members).await?;
    Ok(Json(json!({"removed": removed})))
}

pub(super) async fn copy_static_h(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Response, ApiError> {
    let l = s.store.copy_dynamic_to_static(parse_id(&id)?, Uuid::now_v7(), Some(c.user), Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(l)).into_response())
}

pub(super) async fn ops_h(s: &AppState, set: q::OpsSet, raw: Option<&str>) -> Result<Json<J>, ApiError> {
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
        pub(super) async fn $name(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<J>,
            ApiError> { ops_h(&s, q::OpsSet::$set, raw.as_deref()).await }
    )*};
}
ops_handler!(inbound_h => InboundEvents, email_log_h => InboundEmailLog, quarantine_h => Quarantine,
    unmatched_h => UnmatchedSenders, calls_h => PbxCalls, suppression_h => Suppression, dups_h => DupCandidates,
        bounces_h => Bounces, mailboxes_h => Mailboxes, audit_h => Audit);

pub(super) async fn replay_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> Result<Json<J>, ApiError> {
    Ok(Json(replay_mail(&s, parse_id(&id)?).await?))
}

/// Processes a quarantined or failed message again with its mailbox's rules (the API's
/// replay and the console's): its new status, class and reason.
pub async fn replay_mail(s: &AppState, id: Uuid) -> Result<J, ApiError> {
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
    Ok(json!({"status": out.status, "class": out.class, "reason": out.reason}))
}

pub(super) async fn openapi_h(State(s): State<AppState>) -> Json<J> {
    let _ = s;
    Json(openapi())
}
