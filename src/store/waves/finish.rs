//! Completing waves (R-WV-5): a wave ends when nothing is pending or in flight; the run's
//! books, the campaign activity's status and the members' `lastusedincampaign`.

use super::*;

impl Store {
    /// Completes every sending wave with nothing left to try (R-WV-5): bulkoperation
    /// 4 Completed with its counts, the campaign activity 6 Completed (still Open) with
    /// `actualend`, `lastusedincampaign` on contacted members, `lastusedon` on the lists.
    pub async fn finish_waves(&self, now: DateTime<Utc>, tz: Tz) -> Result<Vec<Uuid>> {
        self.sweep_deliveries(now).await?;
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT w.activityid FROM wave w WHERE w.state = 'sending' AND w.expanded = TRUE AND NOT \
                    EXISTS (SELECT 1 FROM wave_delivery d WHERE d.wave_id = w.activityid AND d.state IN \
                    ('pending', 'sending'))",
                vec![],
            )
            .await?;
        let today = now.with_timezone(&tz).date_naive();
        let mut done = Vec::new();
        for r in rows {
            let id: Uuid = r.get("activityid")?;
            let mut tx = self.db.begin().await?;
            let n = tx
                .execute(
                    "UPDATE wave SET state = 'completed', finished_at = $2, updated_at = $2 WHERE activityid = \
                        $1 AND state = 'sending' AND expanded = TRUE \
                     AND NOT EXISTS (SELECT 1 FROM wave_delivery d WHERE d.wave_id = $1 AND d.state IN \
                     ('pending', 'sending'))",
                    vec![id.into(), now.into()],
                )
                .await?;
            if n == 0 {
                continue;
            }
            self.close_run(&mut tx, id, 1, 4, now).await?;
            // A quick campaign's wave (R-QC-1) has no campaign activity; its run is itself.
            if let Some(mut ca) = super::super::records::get::<CampaignActivity>(&mut tx, id).await? {
                ca.statuscode = 6;
                ca.actualend = Some(today);
                ca.modifiedon = now;
                super::super::records::update(&mut tx, self, &ca).await?;
            }
            for kind in [EntityKind::Contact, EntityKind::Lead, EntityKind::Account] {
                let (table, key) = kind.table();
                tx.execute(
                    &format!(
                        "UPDATE {table} SET lastusedincampaign = $3 WHERE {key} IN (SELECT member_id FROM \
                        wave_delivery WHERE wave_id = $1 AND state = 'sent' AND member_type = $2)"
                    ),
                    vec![id.into(), kind.into(), today.into()],
                )
                .await?;
            }
            tx.execute(
                &format!("UPDATE list SET lastusedon = $2 WHERE listid IN ({WAVE_LISTS})"),
                vec![id.into(), today.into()],
            )
            .await?;
            tx.commit().await?;
            done.push(id);
        }
        Ok(done)
    }

    /// Deliveries that must not wait any longer: those of canceled or aborted waves (left
    /// pending by a late outcome, or claimed by a daemon that died), and pending ones whose
    /// address was suppressed after the expansion (a bounce or an unsubscribe meanwhile:
    /// R-OPT-1 holds until the send).
    pub(super) async fn sweep_deliveries(&self, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        const ENDED: &str = "wave_id IN (SELECT activityid FROM wave WHERE state IN ('canceled', 'aborted')) \
            AND (state = 'pending' OR (state = 'sending' AND claimed_until < $1))";
        const SUPPRESSED: &str = "state = 'pending' AND address IN (SELECT address FROM suppression) AND \
            wave_id IN (SELECT activityid FROM wave WHERE state IN ('sending', 'paused'))";
        let cancel_emails = |cond: &str| {
            format!(
                "UPDATE activity SET statecode = 2, statuscode = 5, modifiedon = $1 WHERE activityid IN \
                    (SELECT id FROM wave_delivery WHERE {cond})"
            )
        };
        let cancel = |cond: &str, reason: &str| {
            format!(
                "UPDATE wave_delivery SET state = 'canceled', reason = '{reason}', claimed_by = NULL, \
                    claimed_until = NULL WHERE {cond}"
            )
        };
        tx.execute(&cancel_emails(ENDED), vec![now.into()]).await?;
        tx.execute(&cancel(ENDED, "wave_ended"), vec![now.into()]).await?;
        tx.execute(&cancel_emails(SUPPRESSED), vec![now.into()]).await?;
        tx.execute(&cancel(SUPPRESSED, "suppressed"), vec![]).await?;
        tx.commit().await
    }

    /// Sets the run's final state with its counts.
    pub(super) async fn close_run(
        &self,
        tx: &mut Tx,
        wave: Uuid,
        statecode: i32,
        statuscode: i32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let c = tx
            .fetch_one(
                "SELECT SUM(CASE WHEN state = 'sent' THEN 1 ELSE 0 END) AS ok, SUM(CASE WHEN state = 'failed' \
                    THEN 1 ELSE 0 END) AS bad FROM wave_delivery WHERE wave_id = $1",
                vec![wave.into()],
            )
            .await?;
        let (ok, bad): (Option<i64>, Option<i64>) = (c.get("ok")?, c.get("bad")?);
        tx.execute(
            "UPDATE bulkoperation SET statecode = $2, statuscode = $3, successcount = $4, failurecount = $5, \
                modifiedon = $6, versionnumber = versionnumber + 1 \
             WHERE activityid = (SELECT bulkoperationid FROM wave WHERE activityid = $1)",
            vec![
                wave.into(),
                statecode.into(),
                statuscode.into(),
                ok.unwrap_or(0).into(),
                bad.unwrap_or(0).into(),
                now.into(),
            ],
        )
        .await?;
        Ok(())
    }
}
