//! The marketer's and the salesperson's verbs (issue 18): campaigns and their lists,
//! marketing lists and their members, finishing tasks and calls, closing deals. Each goes
//! straight to the database through the same store operations (and rules) as the API; the
//! running daemon sees the change at its next poll.

use chrono::{NaiveDate, Utc};
use clap::Subcommand;
use uuid::Uuid;

use super::{find_user, open};
use crate::config::Config;
use crate::crm::entities::{Activity, Campaign, CampaignActivity, MarketingList, Opportunity};
use crate::crm::{EntityKind, Money};
use crate::store::{RecordExt, Store};

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign (status Proposed); prints its id.
    Create {
        #[arg(long)]
        name: String,
        /// Owner: a user id or internal e-mail.
        #[arg(long)]
        owner: String,
        /// Budget allocated (budgetedcost), e.g. 150000.00.
        #[arg(long)]
        budget: Option<Money>,
        /// Expected response, percent.
        #[arg(long)]
        expected_response: Option<i32>,
        /// 1 Advertisement, 2 Direct Marketing, 3 Event, 4 Co-branding, 5 Other.
        #[arg(long, default_value_t = 2)]
        typecode: i32,
    },
    /// Campaigns with status and linked lists.
    List,
    /// Change the status: proposed, ready, launched, completed, canceled, suspended (or 0..5).
    Status { campaign: Uuid, status: String },
    /// The campaign's marketing lists.
    Lists { campaign: Uuid },
    /// Link marketing lists to the campaign.
    AddList {
        campaign: Uuid,
        #[arg(required = true)]
        lists: Vec<Uuid>,
    },
    /// Unlink marketing lists (not while a campaign activity targets them).
    RemoveList {
        campaign: Uuid,
        #[arg(required = true)]
        lists: Vec<Uuid>,
    },
    /// Add a campaign activity (a wave, or a planning step with cost); prints its id.
    Activity {
        campaign: Uuid,
        #[arg(long)]
        subject: String,
        /// email, phone, letter, appointment, fax or other.
        #[arg(long, default_value = "email")]
        channel: String,
        /// Owner (default: the campaign's owner).
        #[arg(long)]
        owner: Option<String>,
        /// Due date (scheduledend), YYYY-MM-DD.
        #[arg(long)]
        due: Option<NaiveDate>,
        #[arg(long)]
        budget: Option<Money>,
    },
    /// Set target lists of a campaign activity (they must be the campaign's lists).
    Target {
        activity: Uuid,
        #[arg(required = true)]
        lists: Vec<Uuid>,
    },
    /// Remove target lists from a campaign activity whose wave has not started.
    Untarget {
        activity: Uuid,
        #[arg(required = true)]
        lists: Vec<Uuid>,
    },
    /// Distribute a phone, letter, fax or appointment campaign activity: one open activity
    /// per member of its target lists (a call list for phone), owned by the member's owner.
    Distribute { activity: Uuid },
}

#[derive(Debug, Subcommand)]
// Parsed once per command line: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ListCommand {
    /// Create a marketing list; prints its id. With --query it is dynamic.
    Create {
        #[arg(long)]
        name: String,
        /// Member type: account, contact or lead.
        #[arg(long)]
        members: String,
        #[arg(long)]
        owner: String,
        /// Dynamic list criteria (JSON, see README), e.g. '{"all":[{"field":"leadsourcecode","op":"eq","value":3}]}'.
        #[arg(long)]
        query: Option<String>,
    },
    /// Marketing lists with member type, kind and count.
    All,
    /// Members of a list (a dynamic list evaluated now).
    Members { list: Uuid },
    /// Add members to a static, unlocked list.
    Add {
        list: Uuid,
        #[arg(required = true)]
        members: Vec<Uuid>,
    },
    /// Remove members from a static, unlocked list.
    Remove {
        list: Uuid,
        #[arg(required = true)]
        members: Vec<Uuid>,
    },
    /// Copy a dynamic list's current members into a new locked static list; prints its id.
    CopyToStatic { list: Uuid },
    /// Quick campaign: one phone call, task, letter or e-mail per member; prints the run's id
    /// and counts (an e-mail's come when its wave starts: `inflow wave list`).
    QuickCampaign {
        list: Uuid,
        /// phonecall, task, letter or email.
        #[arg(long)]
        activity: String,
        /// The activities' subject; for email the subject template.
        #[arg(long)]
        subject: String,
        #[arg(long)]
        description: Option<String>,
        /// Due, "YYYY-MM-DD HH:MM" in org.timezone.
        #[arg(long)]
        due: Option<String>,
        /// Owner of every activity (default: each member's owner); for email, of the e-mails.
        #[arg(long)]
        owner: Option<String>,
        /// Who runs it (id or e-mail); owns the activities of members whose owner is disabled.
        #[arg(long)]
        by: String,
        /// Email: the text body template (instead of --description).
        #[arg(long)]
        text_file: Option<std::path::PathBuf>,
        /// Email: the HTML body template.
        #[arg(long)]
        html_file: Option<std::path::PathBuf>,
        /// Email: the sender (default smtp.from).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        from_name: Option<String>,
        #[arg(long)]
        reply_to: Option<String>,
        /// Email: when to send, "YYYY-MM-DD HH:MM" in org.timezone (default now).
        #[arg(long)]
        start: Option<String>,
        /// Email: messages per minute.
        #[arg(long)]
        rate: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Complete an open activity (task, phone call, …); its alerts stop.
    Complete {
        activity: Uuid,
        #[arg(long)]
        note: Option<String>,
        /// Phone calls: made, received or voicemail.
        #[arg(long)]
        outcome: Option<String>,
        /// Who completes it (id or e-mail; default: on behalf of its owner).
        #[arg(long)]
        by: Option<String>,
    },
    /// Cancel an open activity; its alerts stop.
    Cancel {
        activity: Uuid,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
    /// Reopen a completed or canceled activity; escalation starts again at level 0.
    Reopen {
        activity: Uuid,
        #[arg(long)]
        note: Option<String>,
    },
    /// Give an open activity to another user (its escalation restarts for them).
    Assign { activity: Uuid, user: String },
}

#[derive(Debug, Subcommand)]
pub enum OpportunityCommand {
    /// Create an opportunity for an account or a contact; prints its id.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, conflicts_with = "contact", required_unless_present = "contact")]
        account: Option<Uuid>,
        #[arg(long)]
        contact: Option<Uuid>,
        #[arg(long)]
        owner: String,
        /// Estimated revenue.
        #[arg(long)]
        value: Option<Money>,
        /// Sales stage 0 Qualify, 1 Develop, 2 Propose, 3 Close.
        #[arg(long)]
        stage: Option<i32>,
        #[arg(long)]
        probability: Option<i32>,
    },
    /// Mark an open opportunity won (default value: the estimate; date: today).
    Win {
        opportunity: Uuid,
        #[arg(long)]
        value: Option<Money>,
        #[arg(long)]
        date: Option<NaiveDate>,
    },
    /// Mark an open opportunity lost: canceled, or --out-sold.
    Lose {
        opportunity: Uuid,
        #[arg(long)]
        out_sold: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reopen a won or lost opportunity.
    Reopen { opportunity: Uuid },
    /// Sign the Act of a won deal (deal_closed_on; default today).
    CloseDeal {
        opportunity: Uuid,
        #[arg(long)]
        date: Option<NaiveDate>,
    },
}

/// A campaign status by name or number.
fn campaign_status(s: &str) -> anyhow::Result<i32> {
    use crate::crm::campaign::*;
    Ok(match s.to_ascii_lowercase().as_str() {
        "proposed" | "0" => PROPOSED,
        "ready" | "ready-to-launch" | "1" => READY_TO_LAUNCH,
        "launched" | "launch" | "2" => LAUNCHED,
        "completed" | "3" => COMPLETED,
        "canceled" | "cancelled" | "4" => CANCELED,
        "suspended" | "5" => SUSPENDED,
        other => anyhow::bail!("status '{other}': proposed, ready, launched, completed, canceled or suspended"),
    })
}

/// A campaign activity channel (§2.8 channeltypecode) by name.
fn channel(s: &str) -> anyhow::Result<i32> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "phone" => 1,
        "appointment" => 2,
        "letter" => 3,
        "fax" => 5,
        "email" | "e-mail" => 7,
        "other" => 9,
        other => anyhow::bail!("channel '{other}': email, phone, letter, appointment, fax or other"),
    })
}

fn print_lists(lists: &[MarketingList]) {
    if lists.is_empty() {
        println!("no lists");
    }
    for l in lists {
        let kind = crate::crm::criteria::member_kind(l.createdfromcode).map(|k| k.as_str()).unwrap_or("?");
        println!(
            "{}\t{}\t{kind}\t{}\tmembers {}",
            l.listid,
            l.listname,
            if l.isdynamic { "dynamic" } else { "static" },
            l.membercount.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
        );
    }
}

fn print_run(r: &crate::store::RunOutcome) {
    let b = &r.bulkoperation;
    println!("{}", b.activityid);
    let excluded: Vec<String> = r.excluded.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "members {}  created {}  excluded: {}",
        b.targetmemberscount.unwrap_or(0),
        r.created,
        if excluded.is_empty() { "none".into() } else { excluded.join(", ") }
    );
}

pub async fn campaign_command(cfg: &Config, cmd: CampaignCommand) -> anyhow::Result<()> {
    let store = open(cfg).await?;
    let now = Utc::now();
    match cmd {
        CampaignCommand::Create { name, owner, budget, expected_response, typecode } => {
            let owner = find_user(&store, &owner).await?;
            let c = Campaign {
                campaignid: Uuid::now_v7(),
                name,
                typecode,
                budgetedcost: budget,
                expectedresponse: expected_response,
                transactioncurrencyid: store.default_currency.clone(),
                totalcampaignactivityactualcost: Some(Money::ZERO),
                totalactualcost: Some(Money::ZERO),
                ..Default::default()
            }
            .stamped(owner, EntityKind::Systemuser, now, None);
            crate::crm::error::require("name", Some(&c.name), "§2.7")?;
            store.insert(&c).await?;
            println!("{}", c.campaignid);
        }
        CampaignCommand::List => {
            let page = store.query_records::<Campaign>(&[], None, 1, crate::store::api::MAX_LIMIT).await?;
            for c in page.items {
                let lists = store.campaign_lists(c.campaignid).await?;
                println!("{}\t{}\tstatus {}\tlists {}", c.campaignid, c.name, c.statuscode, lists.len());
            }
        }
        CampaignCommand::Status { campaign, status } => {
            let c = store.set_campaign_status(campaign, campaign_status(&status)?, None, now).await?;
            println!("campaign {} status {}", c.campaignid, c.statuscode);
        }
        CampaignCommand::Lists { campaign } => print_lists(&store.campaign_lists(campaign).await?),
        CampaignCommand::AddList { campaign, lists } => print_lists(&store.add_campaign_lists(campaign, &lists).await?),
        CampaignCommand::RemoveList { campaign, lists } => {
            print_lists(&store.remove_campaign_lists(campaign, &lists).await?)
        }
        CampaignCommand::Activity { campaign, subject, channel: ch, owner, due, budget } => {
            let c: Campaign = store.load(campaign).await?;
            let owner = match owner {
                Some(o) => find_user(&store, &o).await?,
                None => c.ownerid,
            };
            let a = CampaignActivity {
                activityid: Uuid::now_v7(),
                regardingobjectid: campaign,
                subject,
                channeltypecode: Some(channel(&ch)?),
                scheduledend: due,
                budgetedcost: budget,
                donotsendonoptout: true,
                ignoreinactivelistmembers: true,
                ..Default::default()
            }
            .stamped(owner, EntityKind::Systemuser, now, None);
            let a = store.create_campaign_activity(&a).await?;
            println!("{}", a.activityid);
        }
        CampaignCommand::Target { activity, lists } => print_lists(&store.set_wave_lists(activity, &lists).await?),
        CampaignCommand::Untarget { activity, lists } => print_lists(&store.remove_wave_lists(activity, &lists).await?),
        CampaignCommand::Distribute { activity } => {
            let owner = store.load::<CampaignActivity>(activity).await?.ownerid;
            print_run(&store.distribute_campaign_activity(activity, owner, now, cfg.tz()).await?);
        }
    }
    store.close().await;
    Ok(())
}

pub async fn list_command(cfg: &Config, cmd: ListCommand) -> anyhow::Result<()> {
    let store = open(cfg).await?;
    let now = Utc::now();
    match cmd {
        ListCommand::Create { name, members, owner, query } => {
            let code = match members.to_ascii_lowercase().as_str() {
                "account" | "accounts" => 1,
                "contact" | "contacts" => 2,
                "lead" | "leads" => 4,
                other => anyhow::bail!("--members '{other}': account, contact or lead"),
            };
            let query = match query {
                Some(q) => {
                    let doc: serde_json::Value =
                        serde_json::from_str(&q).map_err(|e| anyhow::anyhow!("--query is not JSON: {e}"))?;
                    let kind = crate::crm::criteria::member_kind(code).expect("1, 2 or 4");
                    crate::crm::criteria::parse(kind, &doc)?;
                    Some(doc)
                }
                None => None,
            };
            let owner = find_user(&store, &owner).await?;
            let l = MarketingList {
                listid: Uuid::now_v7(),
                listname: name,
                createdfromcode: code,
                isdynamic: query.is_some(),
                query,
                donotsendonoptout: true,
                ignoreinactivelistmembers: true,
                ..Default::default()
            }
            .stamped(owner, EntityKind::Systemuser, now, None);
            crate::crm::error::require("name", Some(&l.listname), "§2.6")?;
            store.insert(&l).await?;
            println!("{}", l.listid);
        }
        ListCommand::All => {
            let page = store.query_records::<MarketingList>(&[], None, 1, crate::store::api::MAX_LIMIT).await?;
            print_lists(&page.items);
        }
        ListCommand::Members { list } => {
            for m in store.list_members(list, now).await? {
                println!("{}\t{}", m.kind.as_str(), m.id);
            }
        }
        ListCommand::Add { list, members } => println!("added {}", store.add_list_members(list, &members, now).await?),
        ListCommand::Remove { list, members } => {
            println!("removed {}", store.remove_list_members(list, &members).await?)
        }
        ListCommand::CopyToStatic { list } => {
            println!("{}", store.copy_dynamic_to_static(list, Uuid::now_v7(), None, now).await?.listid)
        }
        ListCommand::QuickCampaign {
            list,
            activity,
            subject,
            description,
            due,
            owner,
            by,
            text_file,
            html_file,
            from,
            from_name,
            reply_to,
            start,
            rate,
        } => {
            let local = |flag: &str, d: &str| -> anyhow::Result<chrono::DateTime<Utc>> {
                let local = crate::crm::waves::parse_local(d)
                    .ok_or_else(|| anyhow::anyhow!("--{flag} '{d}': expected YYYY-MM-DD HH:MM"))?;
                Ok(crate::crm::waves::local_start(local, cfg.tz())?)
            };
            let due = due.map(|d| local("due", &d)).transpose()?;
            let ownerid = match owner {
                Some(o) => Some(find_user(&store, &o).await?),
                None => None,
            };
            let by = find_user(&store, &by).await?;
            let read = |p: &std::path::PathBuf| {
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            };
            let description = match &text_file {
                Some(f) => Some(read(f)?),
                None => description,
            };
            let html = html_file.as_ref().map(read).transpose()?;
            let p = crate::crm::quick::QuickParams {
                activity,
                subject,
                description,
                due,
                ownerid,
                html,
                from,
                from_name,
                reply_to,
                start,
                rate_per_minute: rate,
                ..Default::default()
            };
            let kind = crate::crm::quick::check_params(&p)?;
            // E-mail goes through the wave sender, its message checked as a wave's is.
            let mail = if kind == EntityKind::Email {
                let start_at = p.start.as_deref().map(|d| local("start", d)).transpose()?.unwrap_or(now);
                let from = p
                    .from
                    .clone()
                    .or(cfg.smtp.from.clone())
                    .ok_or_else(|| anyhow::anyhow!("--from is required when smtp.from is not set"))?;
                Some(crate::waves::quick_campaign_message(&p, start_at, cfg.tz(), from)?)
            } else {
                None
            };
            let run = store.quick_campaign(list, &p, mail.as_ref(), by, now, cfg.tz()).await?;
            match &run.wave {
                Some(w) => println!(
                    "{}\nwave scheduled for {} ({})",
                    run.bulkoperation.activityid,
                    w.schedule.start_at.to_rfc3339(),
                    w.schedule.timezone
                ),
                None => print_run(&run),
            }
        }
    }
    store.close().await;
    Ok(())
}

/// The actor of a task command: the named user, or the owner (an operator at the console
/// acts for them), with an admin's reach.
async fn task_actor(store: &Store, activity: Uuid, by: Option<String>) -> anyhow::Result<crate::crm::work::Actor> {
    let user = match by {
        Some(b) => find_user(store, &b).await?,
        None => store.load::<Activity>(activity).await?.ownerid,
    };
    Ok(crate::crm::work::Actor { user, admin: true })
}

pub async fn task_command(cfg: &Config, cmd: TaskCommand) -> anyhow::Result<()> {
    use crate::crm::work::{CloseAction, CloseParams};
    let store = open(cfg).await?;
    let now = Utc::now();
    let tz = cfg.tz();
    let a = match cmd {
        TaskCommand::Complete { activity, note, outcome, by } => {
            let actor = task_actor(&store, activity, by).await?;
            store
                .close_activity(
                    activity,
                    CloseAction::Complete,
                    &CloseParams { note, outcome, statuscode: None },
                    actor,
                    now,
                    tz,
                )
                .await?
        }
        TaskCommand::Cancel { activity, note, by } => {
            let actor = task_actor(&store, activity, by).await?;
            store
                .close_activity(
                    activity,
                    CloseAction::Cancel,
                    &CloseParams { note, ..Default::default() },
                    actor,
                    now,
                    tz,
                )
                .await?
        }
        TaskCommand::Reopen { activity, note } => {
            let actor = task_actor(&store, activity, None).await?;
            store
                .close_activity(
                    activity,
                    CloseAction::Reopen,
                    &CloseParams { note, ..Default::default() },
                    actor,
                    now,
                    tz,
                )
                .await?
        }
        TaskCommand::Assign { activity, user } => {
            let mut a: Activity = store.load(activity).await?;
            a.ownerid = find_user(&store, &user).await?;
            a.modifiedon = now;
            store.update_activity(&a).await?
        }
    };
    let state = crate::crm::state::model(a.activitytypecode)
        .iter()
        .find(|d| d.code == a.statecode)
        .map(|d| d.name)
        .unwrap_or("?");
    println!(
        "{} {}: {state} (status {}), owner {}",
        a.activitytypecode.as_str(),
        a.activityid,
        a.statuscode,
        a.ownerid
    );
    store.close().await;
    Ok(())
}

pub async fn opportunity_command(cfg: &Config, cmd: OpportunityCommand) -> anyhow::Result<()> {
    use crate::crm::opportunity::{LoseParams, WinParams};
    let store = open(cfg).await?;
    let now = Utc::now();
    let today = now.with_timezone(&cfg.tz()).date_naive();
    let o = match cmd {
        OpportunityCommand::Create { name, account, contact, owner, value, stage, probability } => {
            let owner = find_user(&store, &owner).await?;
            let (id, kind) = match (account, contact) {
                (Some(a), _) => (a, EntityKind::Account),
                (None, Some(c)) => (c, EntityKind::Contact),
                (None, None) => anyhow::bail!("--account or --contact is required"),
            };
            let o = Opportunity {
                opportunityid: Uuid::now_v7(),
                name,
                customerid: Some(id),
                customeridtype: Some(kind),
                estimatedvalue: value,
                salesstage: stage,
                closeprobability: probability,
                opportunityratingcode: 2,
                transactioncurrencyid: Some(store.default_currency.clone()),
                ..Default::default()
            }
            .stamped(owner, EntityKind::Systemuser, now, None);
            store.create_opportunity(&o).await?
        }
        OpportunityCommand::Win { opportunity, value, date } => {
            let owner = store.load::<Opportunity>(opportunity).await?.ownerid;
            store
                .win_opportunity(
                    opportunity,
                    &WinParams { actualvalue: value, actualclosedate: date, description: None },
                    owner,
                    today,
                    now,
                )
                .await?
        }
        OpportunityCommand::Lose { opportunity, out_sold, reason } => {
            let owner = store.load::<Opportunity>(opportunity).await?.ownerid;
            store
                .lose_opportunity(
                    opportunity,
                    &LoseParams { statuscode: Some(if out_sold { 5 } else { 4 }), reason, actualclosedate: None },
                    owner,
                    today,
                    now,
                )
                .await?
        }
        OpportunityCommand::Reopen { opportunity } => {
            let owner = store.load::<Opportunity>(opportunity).await?.ownerid;
            store.reopen_opportunity(opportunity, owner, now).await?
        }
        OpportunityCommand::CloseDeal { opportunity, date } => {
            let owner = store.load::<Opportunity>(opportunity).await?.ownerid;
            store.close_deal(opportunity, Some(date.unwrap_or(today)), owner, now).await?
        }
    };
    let state = ["Open", "Won", "Lost"].get(o.statecode as usize).copied().unwrap_or("?");
    println!("{}\t{}\t{state} (status {})", o.opportunityid, o.name, o.statuscode);
    store.close().await;
    Ok(())
}
