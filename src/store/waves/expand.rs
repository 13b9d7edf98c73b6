//! Wave expansion (R-WV-2/3/4): the members of the target lists with their facts, the
//! exclusions, and the delivery rows written at the start in chunks under an expansion
//! lease, resumed by another daemon if this one dies.

use super::*;

/// Reads the facts of one list's members (R-WV-2): a static list through `listmember`, a
/// dynamic one through its criteria evaluated now, in one query either way.
pub(super) async fn list_member_facts(ex: &mut impl Exec, list_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Member>> {
    let l: MarketingList = load(ex, list_id).await?;
    let kind = crate::crm::criteria::member_kind(l.createdfromcode)
        .ok_or_else(|| StoreError::Decode("bad createdfromcode".into()))?;
    let (table, key, extra) = member_table(kind);
    let cols = format!(
        "t.{key} AS id, t.statecode, t.emailaddress1, t.emailaddress2, t.emailaddress3, t.donotemail, \
            t.donotbulkemail, t.donotsendmm, t.lastusedincampaign, t.address1_city, {extra}"
    );
    let (sql, args) = if l.isdynamic {
        let doc = l.query.clone().unwrap_or(serde_json::Value::Null);
        let criteria = crate::crm::criteria::parse(kind, &doc)?;
        let (members_sql, args) = super::super::criteria::compile_members_query(&criteria, ex.engine(), now);
        (
            format!(
                "SELECT {cols} FROM {table} t WHERE t.{key} IN (SELECT id FROM ({members_sql}) m) ORDER BY t.{key}"
            ),
            args,
        )
    } else {
        // A join the planner answers with the primary key even before the new rows are
        // analysed (an IN subquery here took 30 s on PostgreSQL right after a bulk import).
        (
            format!(
                "SELECT {cols} FROM listmember lm JOIN {table} t ON t.{key} = lm.entityid WHERE lm.listid = $1 \
                    ORDER BY t.{key}"
            ),
            vec![Value::from(list_id)],
        )
    };
    // Streamed: each row becomes a compact member as it arrives (a list of 20,000 read as
    // rows first held ~4 KB per member at the peak).
    ex.fetch_map(&sql, args, |r| member_from_row(kind, &r)).await
}

pub(super) fn member_from_row(kind: EntityKind, r: &super::super::db::Row) -> Result<Member> {
    let mut vars = serde_json::Map::new();
    let (first, last): (Option<String>, Option<String>) = (r.get("firstname")?, r.get("lastname")?);
    let full = [first.clone(), last.clone()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    text_var(&mut vars, "first_name", first);
    text_var(&mut vars, "last_name", last);
    text_var(&mut vars, "full_name", Some(full));
    text_var(&mut vars, "company", r.get("company")?);
    text_var(&mut vars, "job_title", r.get("jobtitle")?);
    text_var(&mut vars, "city", r.get("address1_city")?);
    Ok(Member {
        kind,
        id: r.get("id")?,
        statecode: r.get("statecode")?,
        emails: [r.get("emailaddress1")?, r.get("emailaddress2")?, r.get("emailaddress3")?],
        donotemail: r.get("donotemail")?,
        donotbulkemail: r.get("donotbulkemail")?,
        donotsendmm: r.get("donotsendmm")?,
        lastusedincampaign: r.get("lastusedincampaign")?,
        vars,
    })
}

/// The personalisation of frozen recipients, read again (a resumed expansion).
pub(super) async fn frozen_recipients(
    ex: &mut impl Exec,
    frozen: Vec<(EntityKind, Uuid, String, String)>,
) -> Result<Vec<crate::crm::waves::Recipient>> {
    let mut vars: HashMap<Uuid, serde_json::Map<String, serde_json::Value>> = HashMap::new();
    let mut by_kind: BTreeMap<EntityKind, Vec<Uuid>> = BTreeMap::new();
    for (k, id, _, _) in &frozen {
        by_kind.entry(*k).or_default().push(*id);
    }
    for (kind, ids) in by_kind {
        let (table, key, extra) = member_table(kind);
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT t.{key} AS id, t.statecode, t.emailaddress1, t.emailaddress2, t.emailaddress3, \
                    t.donotemail, t.donotbulkemail, t.donotsendmm, t.lastusedincampaign, t.address1_city, {extra} \
                 FROM {table} t WHERE t.{key} IN ({})",
                in_list(1, chunk.len())
            );
            for r in ex.fetch_all(&sql, chunk.iter().map(|i| Value::from(*i)).collect()).await? {
                let m = member_from_row(kind, &r)?;
                vars.insert(m.id, m.vars);
            }
        }
    }
    Ok(frozen
        .into_iter()
        .map(|(kind, id, address, written)| crate::crm::waves::Recipient {
            kind,
            id,
            address,
            written,
            vars: vars.remove(&id).unwrap_or_default(),
        })
        .collect())
}

impl Store {
    /// The `optouts` view of a list (R-OPT-1): members no marketing e-mail reaches, and why.
    pub async fn list_optouts(&self, list_id: Uuid, now: DateTime<Utc>) -> Result<Vec<serde_json::Value>> {
        let mut db = self.db.clone();
        let members = list_member_facts(&mut db, list_id, now).await?;
        let rules = self.norm.email_rules.clone();
        let normalize = |e: &str| EmailAddress::parse_with(e, &rules).ok().map(|a| a.as_str().to_string());
        let all: Vec<String> = members
            .iter()
            .flat_map(|m| m.emails.iter().flatten())
            .filter_map(|e| normalize(e))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let suppressed = suppressed_among(&mut db, &all).await?;
        Ok(members
            .iter()
            .filter_map(|m| {
                let why = crate::crm::waves::optout_reasons(m, normalize, &suppressed);
                (!why.is_empty()).then(|| serde_json::json!({"kind": m.kind, "id": m.id, "reasons": why}))
            })
            .collect())
    }
}

/// Which of `addresses` are suppressed.
pub(super) async fn suppressed_among(ex: &mut impl Exec, addresses: &[String]) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for chunk in addresses.chunks(400) {
        let sql = format!("SELECT address FROM suppression WHERE address IN ({})", in_list(1, chunk.len()));
        for r in ex.fetch_all(&sql, chunk.iter().map(|a| a.clone().into()).collect()).await? {
            out.insert(r.get("address")?);
        }
    }
    Ok(out)
}

/// A tracking token in Dynamics' shape (`CRM:` + letters/digits), unique per message: the
/// time-ordered id without its version and variant digits (48 time bits, 72 random), so
/// tokens of one wave also sit together in their index.
pub(super) fn token_for(id: Uuid) -> String {
    let h = id.simple().to_string().to_uppercase();
    format!("CRM:{}{}{}", &h[..12], &h[13..16], &h[17..])
}

impl Store {
    /// Starts every scheduled wave whose time has come: each in its own transaction, so
    /// two daemons racing start it once (the conditional state change decides).
    pub async fn start_due_waves(&self, now: DateTime<Utc>, opts: &ExpandOptions<'_>) -> Result<Vec<StartOutcome>> {
        let due = self
            .db
            .clone()
            .fetch_all(
                "SELECT activityid FROM wave WHERE state = 'scheduled' AND start_at <= $1 ORDER BY start_at",
                vec![now.into()],
            )
            .await?;
        let mut out = Vec::new();
        for r in due {
            let id: Uuid = r.get("activityid")?;
            match self.start_wave(id, now, opts).await {
                Ok(Some(o)) => out.push(o),
                Ok(None) => {}
                Err(e) => out.push(self.wave_failed(id, e, now).await?),
            }
        }
        Ok(out)
    }

    /// One wave's start or expansion failed: a rule or data error (a template that does not
    /// render, criteria that no longer parse) aborts that wave; anything else is left for
    /// the next scan. Either way the other waves go on.
    pub(super) async fn wave_failed(&self, id: Uuid, e: StoreError, now: DateTime<Utc>) -> Result<StartOutcome> {
        match e {
            StoreError::Rule(_) | StoreError::Decode(_) | StoreError::NotFound { .. } => {
                let reason = e.to_string();
                tracing::error!(wave = %id, error = %reason, "wave cannot be expanded; aborted");
                self.abort_wave(id, &reason, now).await?;
                Ok(StartOutcome::Aborted { wave: id, reason })
            }
            other => {
                tracing::warn!(wave = %id, error = %other, "wave expansion failed; retried at the next scan");
                Ok(StartOutcome::Aborted { wave: id, reason: format!("transient: {other}") })
            }
        }
    }

    /// R-WV-2 / R-WV-3: the member set of a wave evaluated at `now`.
    pub(super) async fn plan_wave(
        &self,
        tx: &mut impl Exec,
        wave: &WaveRow,
        ca: Option<&CampaignActivity>,
        now: DateTime<Utc>,
        opts: &ExpandOptions<'_>,
    ) -> Result<crate::crm::waves::Expansion> {
        let lists = tx.fetch_all(&format!("{WAVE_LISTS} ORDER BY listid"), vec![wave.activity_id.into()]).await?;
        let mut members = Vec::new();
        for l in lists {
            members.extend(list_member_facts(tx, l.get("listid")?, now).await?);
        }
        let rules = self.norm.email_rules.clone();
        let normalize = |e: &str| EmailAddress::parse_with(e, &rules).ok().map(|a| a.as_str().to_string());
        let all_addresses: Vec<String> = members
            .iter()
            .flat_map(|m| m.emails.iter().flatten())
            .filter_map(|e| normalize(e))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let suppressed = suppressed_among(tx, &all_addresses).await?;
        let mut responded = HashSet::new();
        if let Some(prev) = wave.schedule.skip_responders_of {
            for r in tx
                .fetch_all(
                    "SELECT customerid, emailaddress FROM campaignresponse WHERE campaignactivityid = $1",
                    vec![prev.into()],
                )
                .await?
            {
                if let Some(c) = r.get::<Option<String>>("customerid")? {
                    responded.insert(c);
                }
                if let Some(e) = r.get::<Option<String>>("emailaddress")?.and_then(|e| normalize(&e)) {
                    responded.insert(e);
                }
            }
        }
        // A quick campaign (no campaign activity) honours every opt-out and skips inactive
        // members (R-QC-1, R-OPT-1).
        let settings = ExpandSettings {
            skip_opted_out: ca.is_none_or(|ca| ca.donotsendonoptout) || !opts.allow_optout_override,
            ignore_inactive: ca.is_none_or(|ca| ca.ignoreinactivelistmembers),
            exclude_days: ca.and_then(|ca| ca.excludeifcontactedinxdays),
            today: now.with_timezone(&opts.tz).date_naive(),
        };
        Ok(plan_recipients(members, &settings, normalize, &suppressed, &responded))
    }

    /// R-WV-4: delivery rows (Message-ID, token, personalised subject) for recipients.
    pub(super) fn delivery_rows(
        wave: &WaveRow,
        recipients: &[crate::crm::waves::Recipient],
        now: DateTime<Utc>,
        opts: &ExpandOptions<'_>,
    ) -> Result<Vec<Vec<Value>>> {
        let mut rows = Vec::with_capacity(recipients.len());
        for r in recipients {
            // Time-ordered ids: a wave's rows sit together in the B-trees, so claiming and
            // recording a batch rewrites a few pages rather than one page per message.
            let did = Uuid::now_v7();
            let message_id = format!("{}@{}", did.simple(), opts.message_id_domain);
            let token = token_for(did);
            let subject: String = (opts.subject)(wave, &r.vars)
                .map_err(|e| {
                    RuleError::new("R-WV-4", "template_error", format!("the subject cannot be rendered: {e}"))
                })?
                .chars()
                .take(200)
                .collect();
            let mut vars = r.vars.clone();
            vars.insert("email".into(), serde_json::Value::String(r.written.clone()));
            rows.push(vec![
                did.into(),
                wave.activity_id.into(),
                r.address.clone().into(),
                r.written.clone().into(),
                r.id.into(),
                r.kind.into(),
                message_id.into(),
                token.into(),
                serde_json::Value::Object(vars).to_string().into(),
                subject.into(),
                "pending".into(),
                0i32.into(),
                now.into(),
            ]);
        }
        Ok(rows)
    }

    pub(super) async fn insert_deliveries(tx: &mut Tx, rows: &[Vec<Value>]) -> Result<()> {
        insert_rows(
            tx,
            "wave_delivery (id, wave_id, address, written, member_id, member_type, message_id, token, vars, \
                subject, state, attempts, next_attempt_at)",
            rows,
            " ON CONFLICT (wave_id, address) DO NOTHING",
        )
        .await?;
        Ok(())
    }

    /// Writes `chunks` of a wave's recipients, one transaction each, while the wave is still
    /// sending or paused (a cancel stops it); the last one marks the wave expanded. Each
    /// transaction renews the expansion lease, so another daemon resumes only a dead one.
    pub(super) async fn expand_chunks(
        &self,
        wave: &WaveRow,
        chunks: &[&[crate::crm::waves::Recipient]],
        first_index: usize,
        now: DateTime<Utc>,
        opts: &ExpandOptions<'_>,
    ) -> Result<bool> {
        for (i, chunk) in chunks.iter().enumerate() {
            let rows = Self::delivery_rows(wave, chunk, now, opts)?;
            let last = i + 1 == chunks.len();
            // The sender's other writers take the same turn (`WriteGate`), so on SQLite they
            // queue here instead of sleeping in SQLite's busy handler.
            let _turn = self.gate.turn().await;
            let mut tx = self.db.begin().await?;
            let n = tx
                .execute(
                    "UPDATE wave SET expand_until = $2, expanded = $3, updated_at = $4, frozen = CASE WHEN $3 \
                        THEN NULL ELSE frozen END \
                     WHERE activityid = $1 AND expanded = FALSE AND state IN ('sending', 'paused')",
                    vec![wave.activity_id.into(), (Utc::now() + opts.lease).into(), last.into(), now.into()],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            Self::insert_deliveries(&mut tx, &rows).await?;
            tx.commit().await?;
            (opts.after_chunk)(first_index + i + 1);
        }
        Ok(true)
    }

    /// R-WV-2..4: freezes the member set of one wave (targeted, excluded by reason, the
    /// run) in one transaction with its first `opts.chunk` deliveries; the rest follow in
    /// transactions of that size, so a big list neither holds the write lock for long nor
    /// waits to start sending.
    pub(super) async fn start_wave(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        opts: &ExpandOptions<'_>,
    ) -> Result<Option<StartOutcome>> {
        // Read first, outside the write lock (a big list takes a while): the wave, R-WV-1
        // and the member set, evaluated now.
        let mut db = self.db.clone();
        let wave = wave_in(&mut db, id).await?;
        if wave.state != WaveState::Scheduled {
            return Ok(None);
        }
        let ca: Option<CampaignActivity> = match wave.campaign_id {
            Some(_) => Some(load(&mut db, id).await?),
            None => None,
        };
        let today = now.with_timezone(&opts.tz).date_naive();
        let checked = match &ca {
            Some(ca) => self.check_preconditions(&mut db, ca).await,
            None => self.check_quick_preconditions(&mut db, &wave).await,
        };
        if let Err(e) = checked {
            let reason = e.to_string();
            self.abort_wave(id, &reason, now).await?;
            return Ok(Some(StartOutcome::Aborted { wave: id, reason }));
        }
        let plan = self.plan_wave(&mut db, &wave, ca.as_ref(), now, opts).await?;
        let turn = self.gate.turn().await;
        let mut tx = self.db.begin().await?;
        // The conditional state change decides which daemon starts the wave.
        let n = tx
            .execute(
                "UPDATE wave SET state = 'sending', started_at = $2, updated_at = $2 WHERE \
            activityid = $1 AND state = 'scheduled'",
                vec![id.into(), now.into()],
            )
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let run_id = match wave.campaign_id {
            Some(_) => {
                let mut ca: CampaignActivity = load(&mut tx, id).await?;
                // The run (R-WV-5): bulkoperation 4 Distribute, In Progress.
                let run = BulkOperation {
                    activityid: Uuid::new_v4(),
                    operationtypecode: 4,
                    createdrecordtypecode: Some(4),
                    regardingobjectid: id,
                    regardingobjectidtype: EntityKind::Campaignactivity,
                    subject: Some(ca.subject.clone()),
                    targetmemberscount: Some(plan.targeted as i32),
                    successcount: Some(0),
                    failurecount: Some(0),
                    ..Default::default()
                }
                .stamped(wave.owner, EntityKind::Systemuser, now, None);
                let run = BulkOperation { statuscode: 2, ..run };
                insert(&mut tx, self, &run).await?;
                // R-WV-5: the campaign activity is In Progress from its actual start.
                ca.statuscode = 0;
                ca.actualstart = Some(today);
                ca.modifiedon = now;
                super::super::records::update(&mut tx, self, &ca).await?;
                run.activityid
            }
            None => {
                // A quick campaign (R-QC-1) is its own run: In Progress, with its members.
                tx.execute(
                    "UPDATE bulkoperation SET statuscode = 2, targetmemberscount = $2, successcount = 0, \
                        failurecount = 0, excluded = $3, \
                     modifiedon = $4, versionnumber = versionnumber + 1 WHERE activityid = $1",
                    vec![
                        id.into(),
                        (plan.targeted as i32).into(),
                        serde_json::to_string(&plan.excluded).map_err(StoreError::decode)?.into(),
                        now.into(),
                    ],
                )
                .await?;
                id
            }
        };
        let chunks: Vec<&[crate::crm::waves::Recipient]> = plan.recipients.chunks(opts.chunk.max(1)).collect();
        let first = chunks.first().copied().unwrap_or(&[]);
        Self::insert_deliveries(&mut tx, &Self::delivery_rows(&wave, first, now, opts)?).await?;
        let excluded: BTreeMap<&str, usize> = plan.excluded.clone();
        tx.execute(
            "UPDATE wave SET bulkoperationid = $2, targeted = $3, excluded = $4, updated_at = $5, expand_until \
                = $6, expanded = $7, frozen = $8 WHERE activityid = $1",
            vec![
                id.into(),
                run_id.into(),
                (plan.targeted as i64).into(),
                serde_json::to_string(&excluded).map_err(StoreError::decode)?.into(),
                now.into(),
                (Utc::now() + opts.lease).into(),
                (chunks.len() <= 1).into(),
                if chunks.len() > 1 {
                    // Who and where only (the personalisation is read again on a resume).
                    let who: Vec<(EntityKind, Uuid, &str, &str)> = plan
                        .recipients
                        .iter()
                        .map(|r| (r.kind, r.id, r.address.as_str(), r.written.as_str()))
                        .collect();
                    Some(serde_json::to_string(&who).map_err(StoreError::decode)?)
                } else {
                    None
                }
                .into(),
            ],
        )
        .await?;
        tx.commit().await?;
        drop(turn);
        if chunks.len() > 1 {
            (opts.after_chunk)(1);
            if let Err(e) = self.expand_chunks(&wave, &chunks[1..], 1, now, opts).await {
                self.wave_failed(id, e, now).await?;
            }
        }
        Ok(Some(StartOutcome::Started { wave: id, recipients: plan.recipients.len() }))
    }

    /// Finishes expansions whose daemon died (their lease ended) from the member set frozen
    /// at the start; only the missing deliveries are added (one per address, as ever).
    pub async fn resume_expansions(&self, now: DateTime<Utc>, opts: &ExpandOptions<'_>) -> Result<Vec<Uuid>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT activityid FROM wave WHERE state IN ('sending', 'paused') AND expanded = FALSE \
                AND expand_until < $1",
                vec![now.into()],
            )
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: Uuid = r.get("activityid")?;
            let mut tx = self.db.begin().await?;
            let n = tx
                .execute(
                    "UPDATE wave SET expand_until = $3 WHERE activityid = $1 AND expanded = FALSE AND \
                        expand_until < $2 AND state IN ('sending', 'paused')",
                    vec![id.into(), now.into(), (Utc::now() + opts.lease).into()],
                )
                .await?;
            if n == 0 {
                continue;
            }
            tx.commit().await?;
            // The lease is ours: plan outside the write lock.
            let mut db = self.db.clone();
            let planned = async {
                let wave = wave_in(&mut db, id).await?;
                // The member set frozen at the start; re-evaluated only if none was kept.
                let frozen: Option<String> = db
                    .fetch_one("SELECT frozen FROM wave WHERE activityid = $1", vec![id.into()])
                    .await?
                    .get("frozen")?;
                let plan = match frozen {
                    Some(f) => crate::crm::waves::Expansion {
                        recipients: frozen_recipients(&mut db, serde_json::from_str(&f).map_err(StoreError::decode)?)
                            .await?,
                        ..Default::default()
                    },
                    None => {
                        let ca: Option<CampaignActivity> = match wave.campaign_id {
                            Some(_) => Some(load(&mut db, id).await?),
                            None => None,
                        };
                        self.plan_wave(&mut db, &wave, ca.as_ref(), now, opts).await?
                    }
                };
                Ok::<_, StoreError>((wave, plan))
            };
            let (wave, plan) = match planned.await {
                Ok(p) => p,
                Err(e) => {
                    self.wave_failed(id, e, now).await?;
                    continue;
                }
            };
            let chunks: Vec<&[crate::crm::waves::Recipient]> = plan.recipients.chunks(opts.chunk.max(1)).collect();
            if chunks.is_empty() {
                self.db
                    .clone()
                    .execute("UPDATE wave SET expanded = TRUE WHERE activityid = $1", vec![id.into()])
                    .await?;
            } else if let Err(e) = self.expand_chunks(&wave, &chunks, 0, now, opts).await {
                self.wave_failed(id, e, now).await?;
            }
            out.push(id);
        }
        Ok(out)
    }
}
