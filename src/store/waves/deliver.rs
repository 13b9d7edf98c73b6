//! The exactly-once core of the wave sender: claiming due deliveries under a lease and the
//! relay's rate, recording SMTP outcomes (one group commit per batch), and handing claims
//! back. A delivery row exists before its SMTP attempt; a claim commits before the send.

use super::*;

impl Store {
    /// Claims up to `want` due deliveries of sending waves for `holder` until `now + lease`,
    /// within the relay's rate (`relay_rate` per minute, shared by every daemon) and each
    /// wave's own rate, unless the relay is backing off.
    pub async fn claim_deliveries(
        &self,
        holder: &str,
        relay: &str,
        relay_rate: Option<u32>,
        want: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Claim> {
        let mut tx = self.db.begin().await?;
        let engine = tx.engine();
        tx.execute(
            "INSERT INTO smtp_relay (relay, updated_at) VALUES ($1, $2) ON CONFLICT (relay) DO NOTHING",
            vec![relay.into(), now.into()],
        )
        .await?;
        // The relay's row is locked only when its rate is charged below; without a rate it
        // is only read (its back-off), so daemons do not queue on it.
        let lock = if engine == Engine::Postgres && relay_rate.is_some() { " FOR UPDATE" } else { "" };
        let r = tx
            .fetch_one(
                &format!("SELECT tat, throttled_until FROM smtp_relay WHERE relay = $1{lock}"),
                vec![relay.into()],
            )
            .await?;
        let (relay_tat, throttled_until): (i64, i64) = (r.get("tat")?, r.get("throttled_until")?);
        let now_ms = now.timestamp_millis();
        if throttled_until > now_ms {
            return Ok(Claim {
                items: vec![],
                wait: Some(std::time::Duration::from_millis((throttled_until - now_ms) as u64)),
            });
        }
        let mut budget = want;
        let mut wait: Option<i64> = None;
        if let Some(rate) = relay_rate {
            let (g, _, w) = gcra_take(relay_tat, now_ms, rate, want);
            budget = g;
            if g == 0 {
                wait = Some(w);
            }
        }
        // Read without a row lock: an expansion chunk holds the wave's row for its whole
        // transaction, and claims must not wait for it. Only a wave with a rate of its own is
        // locked (below), to charge its GCRA state.
        let waves = tx
            .fetch_all(
                &format!(
                    "SELECT w.activityid, w.rate_per_minute, w.tat, w.from_address, COALESCE(ca.ownerid, \
                        q.ownerid) AS ownerid, ca.activityid AS ca_id \
                     FROM {WAVE_FROM} WHERE w.state = 'sending' ORDER BY w.start_at, w.activityid"
                ),
                vec![],
            )
            .await?;
        let mut items = Vec::new();
        let mut used_total = 0usize;
        for w in waves {
            if budget == 0 {
                break;
            }
            let wid: Uuid = w.get("activityid")?;
            let (rate, mut wtat): (Option<i64>, i64) = (w.get("rate_per_minute")?, w.get("tat")?);
            if rate.is_some() && engine == Engine::Postgres {
                match tx
                    .fetch_optional(
                        "SELECT tat FROM wave WHERE activityid = $1 AND state = 'sending' FOR UPDATE",
                        vec![wid.into()],
                    )
                    .await?
                {
                    Some(r) => wtat = r.get("tat")?,
                    None => continue,
                }
            }
            let mut allow = budget;
            if let Some(rate) = rate {
                let (g, _, ww) = gcra_take(wtat, now_ms, rate as u32, budget);
                allow = g;
                if g == 0 {
                    wait = Some(wait.map_or(ww, |x| x.min(ww)));
                    continue;
                }
            }
            // Two index range scans (due pending rows; claims whose lease ended) rather than
            // one OR, which SQLite answers by scanning every delivery of the wave.
            let cols = "d.id, d.address, d.written, d.member_id, d.member_type, d.message_id, d.token, d.vars, \
                d.subject, d.attempts, d.has_activity";
            let lock = lock_rows(engine).replace("UPDATE", "UPDATE OF d");
            let mut rows = tx
                .fetch_all(
                    &format!(
                        "SELECT {cols} FROM wave_delivery d WHERE d.wave_id = $1 AND d.state = 'sending' \
                        AND d.claimed_until < $2 LIMIT $3{lock}"
                    ),
                    vec![wid.into(), now.into(), (allow as i64).into()],
                )
                .await?;
            if rows.len() < allow {
                rows.extend(
                    tx.fetch_all(
                        &format!(
                            "SELECT {cols} FROM wave_delivery d WHERE d.wave_id = $1 AND d.state = 'pending' \
                                AND d.next_attempt_at <= $2 \
                             ORDER BY d.next_attempt_at LIMIT $3{lock}"
                        ),
                        vec![wid.into(), now.into(), ((allow - rows.len()) as i64).into()],
                    )
                    .await?,
                );
            }
            if rows.is_empty() {
                continue;
            }
            let (from_address, owner): (String, Uuid) = (w.get("from_address")?, w.get("ownerid")?);
            // The e-mails regard the campaign activity, or the quick campaign (R-QC-1).
            let regarding_kind = match w.get::<Option<Uuid>>("ca_id")? {
                Some(_) => EntityKind::Campaignactivity,
                None => EntityKind::Bulkoperation,
            };
            let mut ids = Vec::with_capacity(rows.len());
            let mut fresh = Vec::new();
            let mut parties = Vec::new();
            for r in &rows {
                let vars: String = r.get("vars")?;
                let vars = match serde_json::from_str::<serde_json::Value>(&vars).map_err(StoreError::decode)? {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                };
                let id: Uuid = r.get("id")?;
                ids.push(id);
                let (written, subject): (String, String) = (r.get("written")?, r.get("subject")?);
                let member = crate::crm::EntityRef::new(r.get("member_type")?, r.get("member_id")?);
                if !r.get::<bool>("has_activity")? {
                    // R-WV-4: the outbound e-mail activity, regarding the wave, 7 Sending
                    // (state 1 Completed, DOMAIN §5; a failure moves it back to 0 Open). As
                    // no indexed column changes when it is marked Sent, PostgreSQL can
                    // update it in place (HOT).
                    fresh.push(vec![
                        id.into(),
                        EntityKind::Email.into(),
                        subject.clone().into(),
                        wid.into(),
                        regarding_kind.into(),
                        true.into(),
                        r.get::<String>("message_id")?.into(),
                        r.get::<String>("token")?.into(),
                        from_address.clone().into(),
                        written.clone().into(),
                        0i32.into(),
                        owner.into(),
                        EntityKind::Systemuser.into(),
                        1i32.into(),
                        7i32.into(),
                        now.into(),
                        now.into(),
                        1i64.into(),
                    ]);
                    parties.push(vec![
                        id.into(),
                        2i32.into(),
                        member.id.into(),
                        member.kind.into(),
                        written.clone().into(),
                    ]);
                }
                items.push(ClaimedDelivery {
                    id,
                    wave_id: wid,
                    address: r.get("address")?,
                    written,
                    member,
                    message_id: r.get("message_id")?,
                    token: r.get("token")?,
                    vars,
                    attempts: r.get("attempts")?,
                    subject,
                    claimed_until: now + lease,
                });
            }
            if let Some(rate) = rate {
                let (_, tat, _) = gcra_take(wtat, now_ms, rate as u32, ids.len());
                tx.execute("UPDATE wave SET tat = $2 WHERE activityid = $1", vec![wid.into(), tat.into()]).await?;
            }
            insert_rows(
                &mut tx,
                "activity (activityid, activitytypecode, subject, regardingobjectid, regardingobjectidtype, \
                    directioncode, messageid, trackingtoken, sender, torecipients, \
                 deliveryattempts, ownerid, owneridtype, statecode, statuscode, createdon, modifiedon, versionnumber)",
                &fresh,
                " ON CONFLICT (activityid) DO NOTHING",
            )
            .await?;
            insert_rows(
                &mut tx,
                "activityparty (activityid, participationtypemask, partyid, partyidtype, addressused)",
                &parties,
                "",
            )
            .await?;
            let again: Vec<Uuid> = rows
                .iter()
                .zip(&ids)
                .filter(|(r, _)| r.get::<bool>("has_activity").unwrap_or(true))
                .map(|(_, i)| *i)
                .collect();
            for (set, ids) in id_sets(engine, 3, &ids) {
                let mut args: Vec<Value> = vec![holder.into(), (now + lease).into()];
                args.extend(ids);
                tx.execute(
                    &format!(
                        "UPDATE wave_delivery SET state = 'sending', claimed_by = $1, \
                    claimed_until = $2, has_activity = TRUE WHERE id {set}"
                    ),
                    args,
                )
                .await?;
            }
            // R-WV-4: 7 Sending again for retries and taken-over claims.
            for (set, ids) in id_sets(engine, 1, &again) {
                tx.execute(&format!("UPDATE activity SET statuscode = 7 WHERE activityid {set}"), ids).await?;
            }
            budget -= ids.len();
            used_total += ids.len();
        }
        if let Some(rate) = relay_rate {
            // Only what was used is charged to the relay.
            let (_, tat, _) = gcra_take(relay_tat, now_ms, rate, used_total);
            if tat != relay_tat {
                tx.execute(
                    "UPDATE smtp_relay SET tat = $2, updated_at = $3 WHERE relay = $1",
                    vec![relay.into(), tat.into(), now.into()],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(Claim { items, wait: wait.map(|w| std::time::Duration::from_millis(w.max(1) as u64)) })
    }

    /// Records SMTP outcomes in one transaction. A throttle (`throttle = Some(base)`) backs
    /// the whole relay off, doubling while throttles repeat; a success resets that.
    pub async fn record_deliveries(
        &self,
        results: &[DeliveryResult],
        holder: &str,
        relay: &str,
        throttle: Option<(Duration, String)>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let sent: Vec<Uuid> = results.iter().filter(|r| r.outcome == DeliveryOutcome::Sent).map(|r| r.id).collect();
        for (set, ids) in id_sets(tx.engine(), 2, &sent) {
            let mut args: Vec<Value> = vec![now.into()];
            args.extend(ids);
            tx.execute(
                &format!(
                    "UPDATE wave_delivery SET state = 'sent', attempts = attempts + 1, sent_at = $1, \
                    claimed_by = NULL, claimed_until = NULL, reason = NULL WHERE id {set} AND state IN \
                    ('sending', 'pending')"
                ),
                args.clone(),
            )
            .await?;
            // R-WV-4: 3 Sent (state 1 Completed).
            tx.execute(
                &format!(
                    "UPDATE activity SET statecode = 1, statuscode = 3, senton = $1, actualend = $1, \
                    deliveryattempts = COALESCE(deliveryattempts, 0) + 1, modifiedon = $1, versionnumber = \
                    versionnumber + 1 WHERE activityid {set}"
                ),
                args,
            )
            .await?;
        }
        let mut abort: Vec<(Uuid, String)> = Vec::new();
        for r in results {
            match &r.outcome {
                DeliveryOutcome::Sent => {}
                DeliveryOutcome::Retry { at, detail } => {
                    // Only while this holder still has the claim (a replayed group commit or
                    // a lease another daemon took over changes nothing).
                    let n = tx
                        .execute(
                            "UPDATE wave_delivery SET state = 'pending', attempts = attempts + 1, \
                                next_attempt_at = $2, reason = 'retry', detail = $3, claimed_by = NULL, \
                                claimed_until = NULL \
                             WHERE id = $1 AND state = 'sending' AND claimed_by = $4",
                            vec![r.id.into(), (*at).into(), detail.clone().into(), holder.into()],
                        )
                        .await?;
                    if n > 0 {
                        tx.execute(
                            "UPDATE activity SET statuscode = 6, deliveryattempts = \
                            COALESCE(deliveryattempts, 0) + 1 WHERE activityid = $1",
                            vec![r.id.into()],
                        )
                        .await?;
                    }
                }
                DeliveryOutcome::Failed { reason, detail, suppress } => {
                    let n = tx
                        .execute(
                            "UPDATE wave_delivery SET state = 'failed', attempts = attempts + 1, reason = $2, \
                                detail = $3, claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND state = \
                                'sending' AND claimed_by = $4",
                            vec![r.id.into(), reason.clone().into(), detail.clone().into(), holder.into()],
                        )
                        .await?;
                    if n == 0 {
                        continue;
                    }
                    // R-WV-4: 8 Failed, statecode back to 0 Open, attempts counted.
                    tx.execute(
                        "UPDATE activity SET statecode = 0, statuscode = 8, deliveryattempts = \
                            COALESCE(deliveryattempts, 0) + 1, modifiedon = $2, versionnumber = versionnumber \
                            + 1 WHERE activityid = $1",
                        vec![r.id.into(), now.into()],
                    )
                    .await?;
                    if *suppress {
                        ops::suppress(
                            &mut tx,
                            &Suppression {
                                address: r.address.clone(),
                                kind: "email".into(),
                                reason: "smtp_rejected".into(),
                                source: "wave".into(),
                                detail: Some(detail.clone()),
                                created_on: now,
                            },
                        )
                        .await?;
                    }
                }
                DeliveryOutcome::Released { at } => {
                    let n = tx
                        .execute(
                            "UPDATE wave_delivery SET state = 'pending', next_attempt_at = $2, claimed_by = \
                                NULL, claimed_until = NULL WHERE id = $1 AND state = 'sending' AND claimed_by = $3",
                            vec![r.id.into(), (*at).into(), holder.into()],
                        )
                        .await?;
                    if n > 0 {
                        tx.execute(
                            "UPDATE activity SET statuscode = 6 WHERE activityid = $1 AND statuscode = 7",
                            vec![r.id.into()],
                        )
                        .await?;
                    }
                }
                DeliveryOutcome::AbortWave { detail } => {
                    tx.execute(
                        "UPDATE wave_delivery SET state = 'pending', claimed_by = NULL, claimed_until = \
                        NULL WHERE id = $1 AND state = 'sending' AND claimed_by = \
                        $2",
                        vec![r.id.into(), holder.into()],
                    )
                    .await?;
                    if !abort.iter().any(|(w, _)| *w == r.wave_id) {
                        abort.push((r.wave_id, detail.clone()));
                    }
                }
            }
        }
        if let Some((base, reply)) = throttle {
            let r = tx.fetch_one("SELECT throttle_streak FROM smtp_relay WHERE relay = $1", vec![relay.into()]).await?;
            let streak: i32 = r.get("throttle_streak")?;
            let wait = crate::crm::waves::retry_delay(
                base.to_std().unwrap_or_default(),
                streak as u32 + 1,
                std::time::Duration::from_secs(600),
            );
            let until = now + Duration::from_std(wait).unwrap_or_default();
            tx.execute(
                "UPDATE smtp_relay SET throttled_until = $2, throttle_streak = throttle_streak + 1, last_reply \
                    = $3, updated_at = $4 WHERE relay = $1",
                vec![relay.into(), until.into(), reply.into(), now.into()],
            )
            .await?;
        } else if !sent.is_empty() {
            tx.execute(
                "UPDATE smtp_relay SET throttle_streak = 0 WHERE relay = $1 AND throttle_streak <> 0",
                vec![relay.into()],
            )
            .await?;
        }
        tx.commit().await?;
        // After the commit: a failure here must not make the caller replay the outcomes.
        for (w, detail) in abort {
            if let Err(e) = self.abort_wave(w, &detail, now).await {
                tracing::warn!(wave = %w, error = %e, "could not abort the wave; its sender stays refused and \
                    the next outcome retries");
            }
        }
        Ok(())
    }

    /// The holders of claims still in flight (state `sending`), for finding a dead one.
    pub async fn claim_holders(&self) -> Result<Vec<String>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT DISTINCT claimed_by FROM wave_delivery WHERE state = 'sending' AND claimed_by IS NOT NULL",
                vec![],
            )
            .await?;
        rows.iter().map(|r| r.get("claimed_by")).collect()
    }

    /// Hands back this holder's claims (shutdown): pending again, no attempt counted.
    pub async fn release_claims(&self, holder: &str, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE activity SET statuscode = 6 WHERE statuscode = 7 AND activityid IN (SELECT id FROM \
                wave_delivery WHERE claimed_by = $1 AND state = 'sending')",
            vec![holder.into()],
        )
        .await?;
        let n = tx
            .execute(
                "UPDATE wave_delivery SET state = 'pending', next_attempt_at = $2, claimed_by = NULL, \
                claimed_until = NULL WHERE claimed_by = $1 AND state = 'sending'",
                vec![holder.into(), now.into()],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Lets the relays try again at once (a new sign-in of the relay: the back-off its refused
    /// sign-ins built up no longer applies). The last reply stays for the record.
    pub async fn clear_relay_backoff(&self, now: DateTime<Utc>) -> Result<u64> {
        self.db
            .clone()
            .execute(
                "UPDATE smtp_relay SET throttled_until = 0, throttle_streak = 0, updated_at = $1 WHERE \
                    throttled_until > 0",
                vec![now.into()],
            )
            .await
    }
}
