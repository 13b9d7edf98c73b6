//! The marketer's links (§2.7 campaignitem, §2.8 campaignactivityitem): which marketing
//! lists a campaign works and which of them each campaign activity targets. Each change is
//! one transaction, checked by `crm::campaign`.

use uuid::Uuid;

use super::db::{Exec, Tx};
use super::records::{from_row, load};
use super::{Result, Store};
use crate::crm::campaign;
use crate::crm::entities::{Campaign, CampaignActivity, MarketingList, Record};

fn list_cols() -> String {
    MarketingList::COLS.iter().map(|c| format!("l.{}", c.name)).collect::<Vec<_>>().join(", ")
}

async fn linked_lists(
    ex: &mut impl Exec,
    link_table: &str,
    owner_col: &str,
    owner: Uuid,
) -> Result<Vec<MarketingList>> {
    let sql = format!(
        "SELECT {} FROM {link_table} i JOIN list l ON l.listid = i.listid WHERE i.{owner_col} = $1 ORDER BY \
            l.listname, l.listid",
        list_cols()
    );
    ex.fetch_all(&sql, vec![owner.into()]).await?.iter().map(from_row).collect()
}

async fn campaign_list_ids(ex: &mut impl Exec, campaign_id: Uuid) -> Result<Vec<Uuid>> {
    ex.fetch_all("SELECT listid FROM campaignitem WHERE campaignid = $1", vec![campaign_id.into()])
        .await?
        .iter()
        .map(|r| r.get("listid"))
        .collect()
}

async fn load_lists(tx: &mut Tx, ids: &[Uuid]) -> Result<Vec<MarketingList>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(load::<MarketingList>(tx, *id).await?);
    }
    Ok(out)
}

/// Whether a campaign activity's wave has left `scheduled` (its member set is frozen).
async fn wave_started(ex: &mut impl Exec, activity: Uuid) -> Result<bool> {
    let row = ex.fetch_optional("SELECT state FROM wave WHERE activityid = $1", vec![activity.into()]).await?;
    Ok(match row {
        Some(r) => r.get::<String>("state")? != "scheduled",
        None => false,
    })
}

impl Store {
    /// The lists linked to a campaign.
    pub async fn campaign_lists(&self, campaign_id: Uuid) -> Result<Vec<MarketingList>> {
        let mut db = self.db.clone();
        load::<Campaign>(&mut db, campaign_id).await?;
        linked_lists(&mut db, "campaignitem", "campaignid", campaign_id).await
    }

    /// Links lists to a campaign (campaignitem); linking one twice changes nothing.
    /// Returns the campaign's lists after the change.
    #[tracing::instrument(level = "debug", skip_all, fields(%campaign_id))]
    pub async fn add_campaign_lists(&self, campaign_id: Uuid, lists: &[Uuid]) -> Result<Vec<MarketingList>> {
        let mut tx = self.db.begin().await?;
        let c: Campaign = load(&mut tx, campaign_id).await?;
        let found = load_lists(&mut tx, lists).await?;
        campaign::check_link_lists(&c, &found)?;
        for l in lists {
            tx.execute(
                "INSERT INTO campaignitem (campaignid, listid) VALUES ($1, $2) ON CONFLICT (campaignid, \
                listid) DO NOTHING",
                vec![campaign_id.into(), (*l).into()],
            )
            .await?;
        }
        let out = linked_lists(&mut tx, "campaignitem", "campaignid", campaign_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Unlinks lists from a campaign; a list one of its activities targets stays (§2.8).
    pub async fn remove_campaign_lists(&self, campaign_id: Uuid, lists: &[Uuid]) -> Result<Vec<MarketingList>> {
        let mut tx = self.db.begin().await?;
        load::<Campaign>(&mut tx, campaign_id).await?;
        for l in load_lists(&mut tx, lists).await? {
            let used: Vec<Uuid> = tx
                .fetch_all(
                    "SELECT i.campaignactivityid FROM campaignactivityitem i JOIN campaignactivity a ON \
                        a.activityid = i.campaignactivityid WHERE a.regardingobjectid = $1 AND i.listid = $2",
                    vec![campaign_id.into(), l.listid.into()],
                )
                .await?
                .iter()
                .map(|r| r.get("campaignactivityid"))
                .collect::<Result<_>>()?;
            campaign::check_unlink_list(&l, &used)?;
            tx.execute(
                "DELETE FROM campaignitem WHERE campaignid = $1 AND listid = $2",
                vec![campaign_id.into(), l.listid.into()],
            )
            .await?;
        }
        let out = linked_lists(&mut tx, "campaignitem", "campaignid", campaign_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The target lists of a campaign activity.
    pub async fn wave_lists(&self, activity_id: Uuid) -> Result<Vec<MarketingList>> {
        let mut db = self.db.clone();
        load::<CampaignActivity>(&mut db, activity_id).await?;
        linked_lists(&mut db, "campaignactivityitem", "campaignactivityid", activity_id).await
    }

    /// Adds target lists to a campaign activity (campaignactivityitem): [DESIGN] they must
    /// be campaign lists, and the wave must not have started. Returns its lists after.
    #[tracing::instrument(level = "debug", skip_all, fields(%activity_id))]
    pub async fn set_wave_lists(&self, activity_id: Uuid, lists: &[Uuid]) -> Result<Vec<MarketingList>> {
        let mut tx = self.db.begin().await?;
        let a: CampaignActivity = load(&mut tx, activity_id).await?;
        let found = load_lists(&mut tx, lists).await?;
        let linked = campaign_list_ids(&mut tx, a.regardingobjectid).await?;
        let started = wave_started(&mut tx, activity_id).await?;
        campaign::check_target_lists(&a, started, &found, &linked)?;
        for l in lists {
            tx.execute(
                "INSERT INTO campaignactivityitem (campaignactivityid, listid) VALUES ($1, $2) ON \
                CONFLICT (campaignactivityid, listid) DO NOTHING",
                vec![activity_id.into(), (*l).into()],
            )
            .await?;
        }
        let out = linked_lists(&mut tx, "campaignactivityitem", "campaignactivityid", activity_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Removes target lists from a campaign activity whose wave has not started.
    pub async fn remove_wave_lists(&self, activity_id: Uuid, lists: &[Uuid]) -> Result<Vec<MarketingList>> {
        let mut tx = self.db.begin().await?;
        let a: CampaignActivity = load(&mut tx, activity_id).await?;
        load_lists(&mut tx, lists).await?;
        let started = wave_started(&mut tx, activity_id).await?;
        campaign::check_target_lists(&a, started, &[], &[])?;
        for l in lists {
            tx.execute(
                "DELETE FROM campaignactivityitem WHERE campaignactivityid = $1 AND listid = $2",
                vec![activity_id.into(), (*l).into()],
            )
            .await?;
        }
        let out = linked_lists(&mut tx, "campaignactivityitem", "campaignactivityid", activity_id).await?;
        tx.commit().await?;
        Ok(out)
    }
}
