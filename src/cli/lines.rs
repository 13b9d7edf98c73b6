//! `inflow line …`: phone lines as data (DOMAIN §2.13) from the console, the same store
//! calls as `/api/v1/pbx-lines`.

use clap::Subcommand;
use uuid::Uuid;

use super::open;
use crate::config::Config;
use crate::crm::calls::PbxLine;

#[derive(Debug, Subcommand)]
pub enum LineCommand {
    /// Every line: number, owner, campaign, leads.
    List,
    /// Add a line; prints its id. In effect for the next call.
    Add {
        /// The number dialled, any format.
        did: String,
        /// Owner of its calls, callbacks and leads (user id or internal e-mail).
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: Option<String>,
        /// Calls to it respond to this campaign's current phone campaign activity…
        #[arg(long)]
        campaign: Option<Uuid>,
        /// …or to this campaign activity.
        #[arg(long)]
        activity: Option<Uuid>,
        /// Unknown callers answered long enough become leads.
        #[arg(long)]
        create_leads: bool,
        #[arg(long)]
        min_answered_seconds: Option<i64>,
        #[arg(long)]
        lead_subject: Option<String>,
    },
    /// Point a line at another campaign (or none) or owner.
    Set {
        line: Uuid,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        campaign: Option<Uuid>,
        #[arg(long)]
        activity: Option<Uuid>,
        /// Clear the campaign and campaign activity.
        #[arg(long)]
        no_campaign: bool,
    },
    /// Remove a line.
    Remove { line: Uuid },
}

pub async fn line_command(cfg: &Config, cmd: LineCommand) -> anyhow::Result<()> {
    let store = open(cfg).await?;
    let now = chrono::Utc::now();
    match cmd {
        LineCommand::List => {
            for l in store.pbx_lines().await? {
                let target = match (l.campaignactivityid, l.campaignid) {
                    (Some(a), _) => format!("activity {a}"),
                    (None, Some(c)) => format!("campaign {c}"),
                    (None, None) => "-".into(),
                };
                println!(
                    "{}\t{}\t{}\t{target}\tleads {}{}",
                    l.pbx_lineid,
                    l.did,
                    l.owner,
                    if l.create_leads { "yes" } else { "no" },
                    if l.from_config { "\t(config)" } else { "" }
                );
            }
        }
        LineCommand::Add { did, owner, name, campaign, activity, create_leads, min_answered_seconds, lead_subject } => {
            let l = store
                .create_pbx_line(PbxLine {
                    pbx_lineid: Uuid::now_v7(),
                    did,
                    name,
                    owner,
                    campaignactivityid: activity,
                    campaignid: campaign,
                    create_leads,
                    min_answered_seconds,
                    lead_subject,
                    from_config: false,
                    createdon: now,
                    modifiedon: now,
                })
                .await?;
            println!("{}\t{}", l.pbx_lineid, l.did);
        }
        LineCommand::Set { line, owner, campaign, activity, no_campaign } => {
            let mut l = store.pbx_line(line).await?;
            if let Some(o) = owner {
                l.owner = o;
            }
            if no_campaign || campaign.is_some() || activity.is_some() {
                l.campaignid = campaign;
                l.campaignactivityid = activity;
            }
            l.modifiedon = now;
            let l = store.update_pbx_line(l).await?;
            println!("{}\t{}", l.pbx_lineid, l.did);
        }
        LineCommand::Remove { line } => {
            store.delete_pbx_line(line).await?;
            println!("removed {line}");
        }
    }
    store.close().await;
    Ok(())
}
