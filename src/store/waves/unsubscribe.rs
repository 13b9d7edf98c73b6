//! The unsubscribe link of wave mail (R-OPT-3): the delivery it names, and the opt-out it
//! makes, once.

use super::*;

impl Store {
    /// The recipient and wave of a delivery (the unsubscribe page).
    pub async fn delivery_address(&self, id: Uuid) -> Result<Option<(String, Uuid)>> {
        let r = self
            .db
            .clone()
            .fetch_optional("SELECT written, wave_id FROM wave_delivery WHERE id = $1", vec![id.into()])
            .await?;
        r.map(|r| Ok((r.get("written")?, r.get("wave_id")?))).transpose()
    }

    /// R-OPT-3 through the unsubscribe link: opt-out flags on the member (`donotsendmm`,
    /// `donotbulkemail`), the address suppressed, a campaign response with code 3 on the
    /// wave. Once per delivery (an inbound_event keyed by the delivery id).
    pub async fn unsubscribe_delivery(
        &self,
        id: Uuid,
        via: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UnsubscribeOutcome>> {
        let mut tx = self.db.begin().await?;
        let Some(d) = tx
            .fetch_optional(
                "SELECT wave_id, address, written, member_id, member_type FROM wave_delivery WHERE id = $1",
                vec![id.into()],
            )
            .await?
        else {
            return Ok(None);
        };
        let (wave_id, address, written): (Uuid, String, String) =
            (d.get("wave_id")?, d.get("address")?, d.get("written")?);
        let member = crate::crm::EntityRef::new(d.get("member_type")?, d.get("member_id")?);
        let ev = ops::InboundEvent {
            id: Uuid::new_v4(),
            source: "unsubscribe".into(),
            external_id: id.to_string(),
            received_at: now,
            status: crate::crm::status::EventStatus::Processed,
            reason: Some(via.into()),
            result: None,
            raw: None,
            raw_location: None,
            processed_at: Some(now),
        };
        if let ops::InboundOutcome::Duplicate(_) = ops::record_inbound(&mut tx, &ev).await? {
            return Ok(Some(UnsubscribeOutcome::AlreadyDone { address: written }));
        }
        let (table, key, _) = member_table(member.kind);
        tx.execute(
            &format!(
                "UPDATE {table} SET donotsendmm = TRUE, donotbulkemail = TRUE, modifiedon = $2, \
                versionnumber = versionnumber + 1 WHERE {key} = $1"
            ),
            vec![member.id.into(), now.into()],
        )
        .await?;
        ops::suppress(
            &mut tx,
            &Suppression {
                address: address.clone(),
                kind: "email".into(),
                reason: "unsubscribe".into(),
                source: via.into(),
                detail: Some(format!("delivery {id}")),
                created_on: now,
            },
        )
        .await?;
        let wave = wave_in(&mut tx, wave_id).await?;
        let tz: Tz = wave.schedule.timezone.parse().unwrap_or(chrono_tz::UTC);
        let resp = CampaignResponse {
            activityid: Uuid::new_v4(),
            subject: format!("Unsubscribe: {}", wave.subject_line).chars().take(200).collect(),
            regardingobjectid: wave.responses_regard().id,
            regardingobjectidtype: wave.responses_regard().kind,
            originatingactivityid: Some(id),
            originatingactivityidtype: Some(EntityKind::Email),
            campaignactivityid: Some(wave_id),
            customerid: Some(member.id),
            customeridtype: Some(member.kind),
            emailaddress: Some(written.clone()),
            responsecode: 3,
            channeltypecode: Some(1),
            receivedon: Some(now.with_timezone(&tz).date_naive()),
            ..Default::default()
        }
        .stamped(wave.owner, EntityKind::Systemuser, now, None);
        insert(&mut tx, self, &resp).await?;
        tx.commit().await?;
        Ok(Some(UnsubscribeOutcome::Done { address: written }))
    }
}
