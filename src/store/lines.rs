//! Phone lines as data (DOMAIN §2.13 `pbx_line`): the lines the API and CLI manage, the
//! seed from `[[pbx.lines]]`, and the lookups call processing makes (a line by number, a
//! campaign's current phone campaign activity). SQL only; the rule is `crm::calls::check_line`.

use chrono::NaiveDate;
use uuid::Uuid;

use super::db::{Exec, Row, Value};
use super::{Result, Store, StoreError};
use crate::crm::RuleError;
use crate::crm::calls::{PbxLine, check_line};
use crate::crm::entities::{Campaign, CampaignActivity};

const COLS: &str = "pbx_lineid, did, name, owner, campaignactivityid, campaignid, create_leads, min_answered_seconds, \
    lead_subject, from_config, createdon, modifiedon";

fn from_row(r: &Row) -> Result<PbxLine> {
    Ok(PbxLine {
        pbx_lineid: r.get("pbx_lineid")?,
        did: r.get("did")?,
        name: r.get("name")?,
        owner: r.get("owner")?,
        campaignactivityid: r.get("campaignactivityid")?,
        campaignid: r.get("campaignid")?,
        create_leads: r.get("create_leads")?,
        min_answered_seconds: r.get("min_answered_seconds")?,
        lead_subject: r.get("lead_subject")?,
        from_config: r.get("from_config")?,
        createdon: r.get("createdon")?,
        modifiedon: r.get("modifiedon")?,
    })
}

fn values(l: &PbxLine) -> Vec<Value> {
    vec![
        l.pbx_lineid.into(),
        l.did.clone().into(),
        l.name.clone().into(),
        l.owner.clone().into(),
        l.campaignactivityid.into(),
        l.campaignid.into(),
        l.create_leads.into(),
        l.min_answered_seconds.into(),
        l.lead_subject.clone().into(),
        l.from_config.into(),
        l.createdon.into(),
        l.modifiedon.into(),
    ]
}

impl Store {
    /// A line as entered, checked: the number in E.164 (org region), §2.13, an enabled
    /// owner, and the wave or campaign it names existing.
    async fn checked_line(&self, ex: &mut impl Exec, mut l: PbxLine) -> Result<PbxLine> {
        l.did = self.phone_key(Some(&l.did)).ok_or_else(|| {
            RuleError::new(
                "R-PBX-4",
                "invalid_did",
                format!("'{}' is not a phone number", l.did.chars().take(40).collect::<String>()),
            )
        })?;
        check_line(&l)?;
        if self.resolve_user(&l.owner).await?.is_none() {
            return Err(RuleError::new(
                "R-PBX-4",
                "unknown_owner",
                format!("owner '{}' is not an enabled user", l.owner),
            )
            .into());
        }
        if let Some(a) = l.campaignactivityid {
            super::records::get::<CampaignActivity>(ex, a).await?.ok_or_else(|| {
                RuleError::new("R-PBX-4", "unknown_campaign_activity", format!("no campaign activity {a}"))
            })?;
        }
        if let Some(c) = l.campaignid {
            super::records::get::<Campaign>(ex, c)
                .await?
                .ok_or_else(|| RuleError::new("R-PBX-4", "unknown_campaign", format!("no campaign {c}")))?;
        }
        Ok(l)
    }

    /// `[[pbx.lines]]` on start: each configured number is inserted or brought up to date
    /// (the config is the truth for its own numbers); lines made through the API stay.
    pub async fn seed_pbx_lines(&self, lines: &[PbxLine]) -> Result<()> {
        let mut tx = self.db.begin().await?;
        for l in lines {
            let did = match self.phone_key(Some(&l.did)) {
                Some(d) => d,
                None => {
                    tracing::warn!(did = %l.did, "a [[pbx.lines]] number is not a phone number; skipped");
                    continue;
                }
            };
            let l = PbxLine { did, from_config: true, ..l.clone() };
            tx.execute(
                &format!(
                    "INSERT INTO pbx_line ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (did) DO UPDATE SET owner = excluded.owner, campaignactivityid = \
                     excluded.campaignactivityid, \
                     campaignid = excluded.campaignid, create_leads = excluded.create_leads, \
                     min_answered_seconds = excluded.min_answered_seconds, lead_subject = excluded.lead_subject, \
                     from_config = TRUE, modifiedon = excluded.modifiedon"
                ),
                values(&l),
            )
            .await?;
        }
        tx.commit().await
    }

    pub async fn pbx_lines(&self) -> Result<Vec<PbxLine>> {
        let rows = self.db.clone().fetch_all(&format!("SELECT {COLS} FROM pbx_line ORDER BY did"), vec![]).await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn pbx_line(&self, id: Uuid) -> Result<PbxLine> {
        self.db
            .clone()
            .fetch_optional(&format!("SELECT {COLS} FROM pbx_line WHERE pbx_lineid = $1"), vec![id.into()])
            .await?
            .map(|r| from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound { kind: "pbx_line", id: id.to_string() })
    }

    /// The line a call to `did` (E.164) came in on.
    pub async fn pbx_line_by_did(&self, did: &str) -> Result<Option<PbxLine>> {
        self.db
            .clone()
            .fetch_optional(&format!("SELECT {COLS} FROM pbx_line WHERE did = $1"), vec![did.into()])
            .await?
            .map(|r| from_row(&r))
            .transpose()
    }

    pub async fn create_pbx_line(&self, l: PbxLine) -> Result<PbxLine> {
        let mut tx = self.db.begin().await?;
        let l = self.checked_line(&mut tx, l).await?;
        if tx.fetch_optional("SELECT 1 AS x FROM pbx_line WHERE did = $1", vec![l.did.clone().into()]).await?.is_some()
        {
            return Err(RuleError::conflict("R-PBX-4", "line_exists", format!("{} is already a line", l.did)).into());
        }
        tx.execute(
            &format!("INSERT INTO pbx_line ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
            values(&l),
        )
        .await?;
        tx.commit().await?;
        Ok(l)
    }

    pub async fn update_pbx_line(&self, l: PbxLine) -> Result<PbxLine> {
        let mut tx = self.db.begin().await?;
        let l = self.checked_line(&mut tx, l).await?;
        if tx
            .fetch_optional(
                "SELECT 1 AS x FROM pbx_line WHERE did = $1 AND pbx_lineid <> $2",
                vec![l.did.clone().into(), l.pbx_lineid.into()],
            )
            .await?
            .is_some()
        {
            return Err(RuleError::conflict("R-PBX-4", "line_exists", format!("{} is already a line", l.did)).into());
        }
        let n = tx
            .execute(
                "UPDATE pbx_line SET did = $2, name = $3, owner = $4, campaignactivityid = $5, campaignid = \
                    $6, create_leads = $7, \
                 min_answered_seconds = $8, lead_subject = $9, modifiedon = $12 WHERE pbx_lineid = $1",
                values(&l),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "pbx_line", id: l.pbx_lineid.to_string() });
        }
        tx.commit().await?;
        Ok(l)
    }

    pub async fn delete_pbx_line(&self, id: Uuid) -> Result<()> {
        let n = self.db.clone().execute("DELETE FROM pbx_line WHERE pbx_lineid = $1", vec![id.into()]).await?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "pbx_line", id: id.to_string() });
        }
        Ok(())
    }

    /// R-PBX-4 for a line that names a campaign: its open phone campaign activity running
    /// `today` (the latest started, if several), else its latest open phone one.
    pub async fn current_phone_activity(&self, campaign: Uuid, today: NaiveDate) -> Result<Option<Uuid>> {
        let rows = self
            .db
            .clone()
            .fetch_all(
                "SELECT activityid, scheduledstart, scheduledend FROM campaignactivity \
                 WHERE regardingobjectid = $1 AND statecode = 0 AND channeltypecode = 1 ORDER BY createdon",
                vec![campaign.into()],
            )
            .await?;
        let mut running = None;
        let mut latest = None;
        for r in rows {
            let id: Uuid = r.get("activityid")?;
            let (start, end): (Option<NaiveDate>, Option<NaiveDate>) =
                (r.get("scheduledstart")?, r.get("scheduledend")?);
            if start.is_none_or(|s| s <= today) && end.is_none_or(|e| e >= today) {
                running = Some(id);
            }
            latest = Some(id);
        }
        Ok(running.or(latest))
    }
}
