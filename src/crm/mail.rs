//! What one inbound e-mail makes in the CRM (DOMAIN §4.1, §4.3, §4.5): the e-mail activity
//! (R-EM-5), a campaign response on the wave it answers (R-RS-1..3), a lead or contact from
//! an unknown sender (R-EM-6), opt-out and suppression (R-OPT-3), bounce bookkeeping, or
//! nothing (R-EM-2 filter, internal sender, auto-reply, sender rate limit).
//! Pure: the store gathers the facts into a [`MailContext`] and applies the [`MailPlan`].

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use super::entities::{Activity, ActivityParty, CampaignResponse, Contact, Lead};
use super::inbound::{Automated, FailedRecipient, ParsedMail, is_unsubscribe_text, strip_reply_prefixes};
use super::matching::MatchOutcome;
use super::normalize::EmailAddress;
use super::response::{self, ConvertFacts, ConvertOption, ConvertPlan};
use super::status::EventStatus;
use super::text::take_chars;
use super::types::{EntityKind, EntityRef};

/// R-EM-6 (a).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Leads,
    Contacts,
}

/// A mailbox's settings, as the rules need them (config `[[mailboxes]]`).
#[derive(Debug, Clone)]
pub struct MailboxPolicy {
    pub name: String,
    pub owner: Uuid,
    /// R-EM-2: 0 all, 1 replies to CRM mail, 2 known parties, 3 any e-mail-enabled record.
    pub filter: u8,
    pub create: Create,
    /// R-RS-1.
    pub create_responses: bool,
    /// R-OPT-3 for keyword replies (the List-Unsubscribe mailto always counts).
    pub auto_unsubscribe: bool,
    /// R-RS-3 `interested_unknown_only` (true) or never convert (false).
    pub auto_convert: bool,
    pub lead_source: i32,
    /// Records a sender may cause per hour before further mail from it is skipped.
    pub sender_hourly_limit: i64,
    pub unsubscribe_keywords: Vec<String>,
    pub unsubscribe_mailto: Option<String>,
}

/// The outbound mail an inbound message correlates to (R-EM-3).
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub activity_id: Uuid,
    /// 2 XHeader, 3 InReplyTo, 4 TrackingToken.
    pub method: i32,
    pub regarding: Option<EntityRef>,
    /// Set when the outbound mail was a wave message.
    pub wave: Option<Wave>,
    /// Its subject (a reply that only repeats it says nothing about unsubscribing).
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wave {
    pub activity_id: Uuid,
    /// What its responses regard: the campaign, or the quick campaign's bulkoperation
    /// (R-QC-1, whose id the wave shares).
    pub regarding: EntityRef,
    pub owner: Uuid,
}

/// Facts the store gathered for one message.
#[derive(Debug, Clone)]
pub struct MailContext {
    /// The normalised From address (None: not a valid address, R-DUP-1).
    pub sender: Option<EmailAddress>,
    /// R-EM-4 step 1.
    pub internal_sender: bool,
    /// R-EM-4 steps 2–4.
    pub party: MatchOutcome,
    /// The matched party when it is a lead (R-EM-7, R-RS-3 b).
    pub party_lead: Option<Lead>,
    pub outbound: Option<Outbound>,
    /// R-RS-2: this responder already has a response on the wave.
    pub response_exists: bool,
    /// R-EM-6 (e).
    pub suppressed: bool,
    /// The mailto hit of our List-Unsubscribe address.
    pub mailto_unsubscribe: bool,
    /// Records this sender caused in the last hour.
    pub recent_from_sender: i64,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    /// Ids for the e-mail, a lead/contact, a response and a follow-up task.
    pub ids: [Uuid; 4],
}

/// Bounce bookkeeping the store applies: counters, suppression, the delivery marked failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BounceWrites {
    pub recipients: Vec<FailedRecipient>,
    /// The outbound e-mail that bounced, if we know it.
    pub delivery: Option<Uuid>,
    /// Correlated to mail we sent: only then may it suppress.
    pub ours: bool,
}

/// Everything one message writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MailWrites {
    pub email: Option<Activity>,
    pub parties: Vec<ActivityParty>,
    pub lead: Option<Lead>,
    /// R-RS-3 b: the existing lead a response was converted to, with its links filled in
    /// (`relatedobjectid`, `campaignid`), as the manual conversion (§3.3 b) leaves it.
    pub lead_update: Option<Lead>,
    pub contact: Option<Contact>,
    pub response: Option<CampaignResponse>,
    /// R-OPT-3: set donotsendmm + donotbulkemail on this party.
    pub opt_out: Option<EntityRef>,
    /// (address, reason) to add to suppression.
    pub suppress: Vec<(String, String)>,
    pub bounce: Option<BounceWrites>,
    /// R-EM-4: an ambiguous sender for the review queue.
    pub dup_candidates: Option<Vec<EntityRef>>,
    /// A follow-up task due now for someone who must hear of this message (R-EM-7: the owner
    /// of a disqualified lead that wrote; R-RS-3: the wave owner for a known customer's
    /// response). Being due, it reaches its owner through the overdue alerts (§4.7).
    pub task: Option<Activity>,
}

impl MailWrites {
    pub fn created(&self) -> Vec<EntityRef> {
        let mut v = Vec::new();
        if let Some(e) = &self.email {
            v.push(EntityRef::new(EntityKind::Email, e.activityid));
        }
        if let Some(l) = &self.lead {
            v.push(EntityRef::new(EntityKind::Lead, l.leadid));
        }
        if let Some(c) = &self.contact {
            v.push(EntityRef::new(EntityKind::Contact, c.contactid));
        }
        if let Some(r) = &self.response {
            v.push(EntityRef::new(EntityKind::Campaignresponse, r.activityid));
        }
        if let Some(t) = &self.task {
            v.push(EntityRef::new(EntityKind::Task, t.activityid));
        }
        v
    }
}

/// The decision for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct MailPlan {
    /// inquiry | reply | bounce | auto_reply | unsubscribe | internal | filtered | rate_limited
    pub class: &'static str,
    /// `Processed` or `Skipped`.
    pub status: EventStatus,
    pub reason: Option<String>,
    pub writes: MailWrites,
}

/// An open task due now, regarding `regarding`, for `owner` (see `MailWrites::task`).
fn follow_up(
    ctx: &MailContext,
    owner: Uuid,
    subject: String,
    regarding: Uuid,
    kind: EntityKind,
    about: EntityRef,
) -> Activity {
    Activity {
        activityid: ctx.ids[3],
        activitytypecode: EntityKind::Task,
        subject: Some(take_chars(&subject, 200).to_string()),
        description: Some(format!(
            "Created by inflow from an inbound e-mail about {} {}.",
            about.kind.as_str(),
            about.id
        )),
        regardingobjectid: Some(regarding),
        regardingobjectidtype: Some(kind),
        scheduledend: Some(ctx.now),
        prioritycode: Some(1),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, ctx.now, None)
}

fn skip(class: &'static str, reason: String) -> MailPlan {
    MailPlan { class, status: EventStatus::Skipped, reason: Some(reason), writes: MailWrites::default() }
}

/// Decides what a parsed message creates.
pub fn plan_mail(mail: &ParsedMail, ctx: &MailContext, policy: &MailboxPolicy) -> MailPlan {
    let t = ctx.now;
    let addr = ctx.sender.as_ref().map(|e| e.as_str().to_string());

    // Bounces are about our own mail: bookkeeping only, whatever the filter.
    // Only a bounce of mail we sent (correlated by our header or Message-ID) may suppress:
    // anyone can forge a bounce, and backscatter names strangers.
    if let Some(b) = &mail.bounce {
        let ours = ctx.outbound.is_some();
        let w = MailWrites {
            bounce: Some(BounceWrites {
                recipients: b.recipients.clone(),
                delivery: ctx.outbound.as_ref().map(|o| o.activity_id),
                ours,
            }),
            ..Default::default()
        };
        let who = b
            .recipients
            .iter()
            .map(|r| match &r.mailed_as {
                Some(m) => format!("{m} (delivered to {})", r.address),
                None => r.address.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let reason = if ours {
            format!("{} bounce for {who}", b.shape)
        } else {
            format!(
                "{} bounce for {who} of mail we did not send (no correlation): counted, nothing suppressed",
                b.shape
            )
        };
        return MailPlan { class: "bounce", status: EventStatus::Processed, reason: Some(reason), writes: w };
    }
    // A spam complaint (ARF) about our mail: stop mailing the complainer.
    // (Apple Mail's unsubscribe message to our List-Unsubscribe mailto is an unsubscribe.)
    if let Some(c) = mail.complaint.as_ref().filter(|c| !(ctx.mailto_unsubscribe && c.feedback_type == "opt-out")) {
        let mut w = MailWrites::default();
        let ours = ctx.outbound.is_some();
        if let Some(a) = c.address.as_deref().and_then(|a| EmailAddress::parse(a).ok()).filter(|_| ours) {
            w.suppress.push((a.as_str().to_string(), format!("complaint: ARF {} report", c.feedback_type)));
        }
        let reason = format!(
            "{} complaint about {}{}",
            c.feedback_type,
            c.address.as_deref().unwrap_or("an unnamed recipient"),
            if ours { "" } else { " about mail we did not send: recorded only" }
        );
        return MailPlan { class: "complaint", status: EventStatus::Processed, reason: Some(reason), writes: w };
    }
    if ctx.internal_sender {
        return skip("internal", "R-EM-4: the sender is a CRM user; nothing is created".into());
    }
    if let (Some(Automated::AutoReply(r)), false) = (&mail.automated, ctx.mailto_unsubscribe) {
        return MailPlan {
            class: "auto_reply",
            status: EventStatus::Processed,
            reason: Some(format!("auto-reply ({r}): recorded, never answered")),
            writes: MailWrites::default(),
        };
    }
    // A mail system's report naming no failure (a delivery or read receipt, a notice from a
    // mailer daemon): recorded, nothing created.
    if let (Some(Automated::Report(r)), false) = (&mail.automated, ctx.mailto_unsubscribe) {
        return MailPlan {
            class: "report",
            status: EventStatus::Processed,
            reason: Some(format!("report ({r}): recorded, nothing created")),
            writes: MailWrites::default(),
        };
    }
    if ctx.recent_from_sender >= policy.sender_hourly_limit {
        return skip(
            "rate_limited",
            format!(
                "{} records from {} in the last hour (limit {}): looks like a loop",
                ctx.recent_from_sender,
                addr.as_deref().unwrap_or("?"),
                policy.sender_hourly_limit
            ),
        );
    }
    let party = ctx.party.unique().filter(|p| p.kind.is_party());
    let wave = ctx.outbound.as_ref().and_then(|o| o.wave);

    // R-OPT-3: a mailto hit always counts; a keyword reply counts when it answers a wave.
    let keyword = wave.is_some()
        && is_unsubscribe_text(
            &mail.subject,
            ctx.outbound.as_ref().and_then(|o| o.subject.as_deref()),
            &mail.new_text,
            &policy.unsubscribe_keywords,
        );
    let unsubscribe = ctx.mailto_unsubscribe || keyword;
    let mut w = MailWrites::default();
    if unsubscribe && (ctx.mailto_unsubscribe || policy.auto_unsubscribe) {
        w.opt_out = party;
        if let Some(a) = &addr {
            w.suppress.push((
                a.clone(),
                if ctx.mailto_unsubscribe {
                    "unsubscribe: List-Unsubscribe mailto".into()
                } else {
                    "unsubscribe: reply keyword".into()
                },
            ));
        }
    }

    // R-EM-2 for mail that answers nothing of ours.
    if ctx.outbound.is_none() && !ctx.mailto_unsubscribe {
        let known = party.is_some();
        let pass = match policy.filter {
            0 => true,
            1 => false,
            _ => known,
        };
        if !pass {
            let why = match policy.filter {
                1 => "R-EM-2 filter 1: not a reply to CRM mail",
                2 => "R-EM-2 filter 2: not from a known lead, contact or account",
                _ => "R-EM-2 filter 3: not from an e-mail-enabled record",
            };
            return skip("filtered", why.into());
        }
    }

    // R-EM-6: a lead (or contact) from an unknown sender, never for a reply to a wave (that
    // goes through the response) or for machine mail, suppressed or unsubscribing senders.
    let automated = mail.automated.is_some();
    let may_create = ctx.party == MatchOutcome::None && !automated && !ctx.suppressed && !unsubscribe && addr.is_some();
    let (firstname, lastname) =
        super::person_name::split(mail.from.name.as_deref(), addr.as_deref().unwrap_or(&mail.from.address));
    let subject_line = {
        let s: String = take_chars(strip_reply_prefixes(&mail.subject), 300).to_string();
        if s.is_empty() { format!("E-mail from {}", addr.as_deref().unwrap_or(&mail.from.address)) } else { s }
    };
    if wave.is_none() && may_create {
        match policy.create {
            Create::Leads => {
                w.lead = Some(
                    Lead {
                        leadid: ctx.ids[1],
                        subject: subject_line.clone(),
                        firstname: firstname.clone(),
                        lastname: lastname.clone(),
                        emailaddress1: addr.clone(),
                        description: Some(take_chars(&mail.new_text, 2000).to_string())
                            .filter(|d: &String| !d.is_empty()),
                        leadsourcecode: Some(policy.lead_source),
                        leadqualitycode: 2,
                        ..Default::default()
                    }
                    .stamped(policy.owner, EntityKind::Systemuser, t, None),
                );
            }
            Create::Contacts => {
                w.contact = Some(
                    Contact {
                        contactid: ctx.ids[1],
                        firstname: firstname.clone(),
                        lastname: lastname.clone(),
                        emailaddress1: addr.clone(),
                        ..Default::default()
                    }
                    .stamped(policy.owner, EntityKind::Systemuser, t, None),
                );
            }
            Create::Nothing => {}
        }
    }
    let created_party = w
        .lead
        .as_ref()
        .map(|l| EntityRef::new(EntityKind::Lead, l.leadid))
        .or(w.contact.as_ref().map(|c| EntityRef::new(EntityKind::Contact, c.contactid)));

    // R-RS-1..3: the first reply per recipient per wave is a response.
    let mut notes = Vec::new();
    if let (Some(wv), Some(out)) = (wave, &ctx.outbound) {
        let single = !matches!(ctx.party, MatchOutcome::Ambiguous(_));
        if policy.create_responses && single && !ctx.response_exists {
            let code = if unsubscribe { 3 } else { 1 };
            let mut r = CampaignResponse {
                activityid: ctx.ids[2],
                subject: take_chars(&subject_line, 200).to_string(),
                regardingobjectid: wv.regarding.id,
                regardingobjectidtype: wv.regarding.kind,
                originatingactivityid: Some(out.activity_id),
                originatingactivityidtype: Some(EntityKind::Email),
                campaignactivityid: Some(wv.activity_id),
                customerid: party.map(|p| p.id),
                customeridtype: party.map(|p| p.kind),
                firstname: if party.is_none() { firstname.clone() } else { None },
                lastname: if party.is_none() { Some(lastname.clone()) } else { None },
                emailaddress: addr.clone(),
                responsecode: code,
                channeltypecode: Some(1),
                receivedon: Some(mail.date.unwrap_or(t).with_timezone(&ctx.tz).date_naive()),
                description: Some(take_chars(&mail.new_text, 2000).to_string()).filter(|d: &String| !d.is_empty()),
                ..Default::default()
            }
            .stamped(wv.owner, EntityKind::Systemuser, t, None);
            // R-RS-3 interested_unknown_only: code 1 from an unknown responder → a) new lead;
            // from an Open lead → b) that lead; contacts and accounts stay Open for sales.
            if policy.auto_convert && code == 1 {
                fn facts<'a>(lead: Option<&'a Lead>, ctx: &MailContext, policy: &MailboxPolicy) -> ConvertFacts<'a> {
                    ConvertFacts {
                        existing_lead: lead,
                        new_lead_id: ctx.ids[1],
                        leadsourcecode: Some(policy.lead_source),
                        now: ctx.now,
                        actor: None,
                    }
                }
                if ctx.party == MatchOutcome::None && addr.is_some() && !ctx.suppressed {
                    if let Ok(ConvertPlan::NewLead { mut lead, response }) =
                        response::plan_convert(&r, &ConvertOption::NewLead, &facts(None, ctx, policy))
                    {
                        lead.description = r.description.clone();
                        w.lead = Some(lead);
                        r = response;
                    }
                } else if let Some(l) = ctx.party_lead.as_ref().filter(|l| l.statecode == 0) {
                    if let Ok(ConvertPlan::ExistingLead { lead, response }) = response::plan_convert(
                        &r,
                        &ConvertOption::ExistingLead { lead_id: l.leadid, reactivate: false },
                        &facts(Some(l), ctx, policy),
                    ) {
                        if (lead.relatedobjectid, lead.campaignid) != (l.relatedobjectid, l.campaignid) {
                            w.lead_update = Some(lead);
                        }
                        r = response;
                    }
                } else if let Some(p) = party.filter(|p| matches!(p.kind, EntityKind::Contact | EntityKind::Account)) {
                    notes.push(
                        "R-RS-3: the responder is a known customer; the response stays open for the wave owner."
                            .to_string(),
                    );
                    w.task = Some(follow_up(
                        ctx,
                        wv.owner,
                        format!("Campaign response from {} to follow up", addr.as_deref().unwrap_or("a customer")),
                        r.activityid,
                        EntityKind::Campaignresponse,
                        p,
                    ));
                }
            }
            w.response = Some(r);
        } else if ctx.response_exists {
            notes.push("R-RS-2: a later reply from this recipient; stored as an e-mail on the wave.".to_string());
        }
    }
    let party_after = party.or(created_party).or(w.lead.as_ref().map(|l| EntityRef::new(EntityKind::Lead, l.leadid)));
    if let MatchOutcome::Ambiguous(c) = &ctx.party {
        w.dup_candidates = Some(c.clone());
        notes.push(format!("R-EM-4: the sender matches {} records; not linked (see dup candidates).", c.len()));
    }
    if let Some(l) = ctx.party_lead.as_ref().filter(|l| l.statecode == 2) {
        notes.push(format!("R-EM-7: from disqualified lead {}; the lead is not reopened.", l.leadid));
        if w.task.is_none() {
            w.task = Some(follow_up(
                ctx,
                l.ownerid,
                format!("Disqualified lead {} wrote again", addr.as_deref().unwrap_or(&l.lastname)),
                l.leadid,
                EntityKind::Lead,
                EntityRef::new(EntityKind::Lead, l.leadid),
            ));
        }
    }

    // R-EM-5: the e-mail activity.
    let regarding = ctx.outbound.as_ref().and_then(|o| o.regarding).or(party_after);
    let mut description = take_chars(&mail.text, 64 * 1024).to_string();
    if !notes.is_empty() {
        description = format!("{}\n\n[inflow] {}", description, notes.join(" "));
    }
    let mut email = Activity {
        activityid: ctx.ids[0],
        activitytypecode: EntityKind::Email,
        subject: Some(if mail.subject.is_empty() {
            subject_line.clone()
        } else {
            take_chars(&mail.subject, 200).to_string()
        }),
        description: Some(description),
        regardingobjectid: regarding.map(|r| r.id),
        regardingobjectidtype: regarding.map(|r| r.kind),
        directioncode: Some(false),
        messageid: mail.message_id.clone(),
        inreplyto: mail.in_reply_to.clone(),
        trackingtoken: None,
        correlationmethod: ctx.outbound.as_ref().map(|o| o.method),
        sender: addr.clone().or(Some(mail.from.address.clone())),
        torecipients: Some(mail.recipients.join(";")).filter(|s| !s.is_empty()),
        parentactivityid: ctx.outbound.as_ref().map(|o| o.activity_id),
        actualend: mail.date,
        senton: mail.date,
        ..Default::default()
    }
    .stamped(policy.owner, EntityKind::Systemuser, t, None);
    email.statecode = 1;
    email.statuscode = 4;
    w.parties = vec![
        ActivityParty {
            participationtypemask: 1,
            party: party_after,
            addressused: addr.clone().or(Some(mail.from.address.clone())),
        },
        ActivityParty {
            participationtypemask: 2,
            party: Some(EntityRef::new(EntityKind::Systemuser, policy.owner)),
            addressused: mail.recipients.first().cloned(),
        },
    ];
    w.email = Some(email);
    let class = if unsubscribe {
        "unsubscribe"
    } else if ctx.outbound.is_some() {
        "reply"
    } else {
        "inquiry"
    };
    let reason = match (&mail.automated, &w.lead, &w.contact) {
        (Some(Automated::Bulk(r)), _, _) if ctx.party == MatchOutcome::None => {
            Some(format!("R-EM-6 (d): {r}; no lead"))
        }
        (_, None, None) if ctx.party == MatchOutcome::None && ctx.suppressed => {
            Some("R-EM-6 (e): the sender is suppressed; no lead".into())
        }
        _ => None,
    };
    MailPlan { class, status: EventStatus::Processed, reason, writes: w }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::bounce::{Reason, Severity};
    use crate::crm::inbound::{Bounce, Complaint, Sender};
    use chrono::TimeZone;

    /// A message as the parser delivers it (`ingest::mail` has its own tests against the
    /// fixture files these stand for; the rules here take the parsed value).
    fn mail(name: Option<&str>, address: &str, subject: &str, text: &str) -> ParsedMail {
        ParsedMail {
            key: format!("<{address}/{subject}>"),
            message_id: None,
            from: Sender { name: name.map(str::to_string), address: address.into() },
            subject: subject.into(),
            date: None,
            in_reply_to: None,
            correlation: Default::default(),
            recipients: vec!["sales@crm.example.com".into()],
            text: format!("{text}\n\n> quoted original"),
            new_text: text.into(),
            automated: None,
            bounce: None,
            complaint: None,
            attachments: 0,
        }
    }

    /// The fixtures of `fixtures/mail/` as parsed values.
    fn fixture(name: &str) -> ParsedMail {
        match name {
            "inquiry-koi8r.eml" => mail(
                Some("Иван Петров"),
                "ivan.petrov@zavod.example",
                "Запрос цены на оборудование",
                "Прошу выслать прайс на станки.",
            ),
            "inquiry-plain.eml" => mail(
                Some("Anna Smirnova"),
                "Anna.Smirnova@Client.Example",
                "Price list request",
                "Hello, please send me your price list for 2027.\nAnna",
            ),
            "newsletter-bulk.eml" => ParsedMail {
                automated: Some(Automated::Bulk("Precedence: bulk".into())),
                ..mail(Some("Weekly Digest"), "digest@lists.vendor.example", "This week in widgets", "News.")
            },
            "reply-to-wave.eml" => mail(
                Some("Maria Ivanova"),
                "maria@client.example",
                "RE: November news [CRM:W1R2TOKEN]",
                "Interesting, please call me.",
            ),
            "unsubscribe-reply-ru.eml" => {
                mail(Some("Maria Ivanova"), "maria@client.example", "Re: November news", "Отписаться")
            }
            "unsubscribe-mailto.eml" => mail(
                Some("Petr"),
                "petr@client.example",
                "unsubscribe",
                "This message was sent by the List-Unsubscribe link of your mail client.",
            ),
            "complaint-arf.eml" => ParsedMail {
                complaint: Some(Complaint {
                    feedback_type: "abuse".into(),
                    address: Some("angry@mail.example".into()),
                    original_message_id: Some("wave-1.rcpt-9@crm.example.com".into()),
                    original_activity: None,
                }),
                ..mail(None, "abuse@fbl.mail.example", "FW: November news", "This is an email abuse report.")
            },
            "bounce-postfix-dsn.eml" => ParsedMail {
                bounce: Some(Bounce {
                    shape: "rfc3464",
                    recipients: vec![FailedRecipient {
                        address: "nobody@client.example".into(),
                        mailed_as: None,
                        reason: Reason::UserUnknown,
                        severity: Severity::Hard,
                        status: Some("5.1.1".into()),
                        reply_code: Some("550".into()),
                        diagnostic: Some(
                            "550 5.1.1 <nobody@client.example>: Recipient address rejected: User unknown".into(),
                        ),
                    }],
                    original_message_id: Some("wave-1.rcpt-1@crm.example.com".into()),
                    original_activity: None,
                }),
                ..mail(
                    Some("Mail Delivery System"),
                    "MAILER-DAEMON@mx.crm.example.com",
                    "Undelivered Mail Returned to Sender",
                    "I'm sorry to have to inform you …",
                )
            },
            "autoreply-rfc3834.eml" => ParsedMail {
                automated: Some(Automated::AutoReply("Auto-Submitted: auto-replied".into())),
                ..mail(
                    Some("Boris"),
                    "boris@client.example",
                    "Auto: November news",
                    "I am out of the office until December 7.",
                )
            },
            other => panic!("no parsed form of {other}"),
        }
    }

    fn policy(filter: u8, create: Create) -> MailboxPolicy {
        MailboxPolicy {
            name: "sales".into(),
            owner: Uuid::from_u128(1),
            filter,
            create,
            create_responses: true,
            auto_unsubscribe: true,
            auto_convert: true,
            lead_source: 100_000_000,
            sender_hourly_limit: 20,
            unsubscribe_keywords: ["unsubscribe", "stop", "отписаться"].map(String::from).to_vec(),
            unsubscribe_mailto: Some("unsubscribe@news.crm.example.com".into()),
        }
    }

    fn ctx(mail: &ParsedMail) -> MailContext {
        MailContext {
            sender: EmailAddress::parse(&mail.from.address).ok(),
            internal_sender: false,
            party: MatchOutcome::None,
            party_lead: None,
            outbound: None,
            response_exists: false,
            suppressed: false,
            mailto_unsubscribe: false,
            recent_from_sender: 0,
            tz: chrono_tz::Europe::Moscow,
            now: Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap(),
            ids: [Uuid::from_u128(10), Uuid::from_u128(11), Uuid::from_u128(12), Uuid::from_u128(13)],
        }
    }

    fn wave_outbound() -> Outbound {
        let wave = Wave {
            activity_id: Uuid::from_u128(50),
            regarding: EntityRef::new(EntityKind::Campaign, Uuid::from_u128(51)),
            owner: Uuid::from_u128(3),
        };
        Outbound {
            activity_id: Uuid::from_u128(60),
            method: 3,
            regarding: Some(EntityRef::new(EntityKind::Campaignactivity, wave.activity_id)),
            wave: Some(wave),
            subject: Some("November news".into()),
        }
    }

    #[test]
    fn r_em_6_unknown_sender_becomes_a_lead_with_the_field_mapping() {
        let m = fixture("inquiry-koi8r.eml");
        let p = plan_mail(&m, &ctx(&m), &policy(0, Create::Leads));
        assert_eq!((p.class, p.status), ("inquiry", EventStatus::Processed));
        let lead = p.writes.lead.expect("lead");
        assert_eq!(lead.subject, "Запрос цены на оборудование");
        assert_eq!((lead.firstname.as_deref(), lead.lastname.as_str()), (Some("Иван"), "Петров"));
        assert_eq!(lead.emailaddress1.as_deref(), Some("ivan.petrov@zavod.example"));
        assert_eq!(
            (lead.leadqualitycode, lead.leadsourcecode, lead.ownerid),
            (2, Some(100_000_000), Uuid::from_u128(1))
        );
        let e = p.writes.email.expect("email");
        assert_eq!((e.statecode, e.statuscode, e.directioncode), (1, 4, Some(false)));
        assert_eq!(e.regardingobjectid, Some(lead.leadid));
    }

    #[test]
    fn r_em_6_no_lead_for_machine_mail_suppressed_or_ambiguous_senders() {
        let m = fixture("newsletter-bulk.eml");
        let p = plan_mail(&m, &ctx(&m), &policy(0, Create::Leads));
        assert!(p.writes.lead.is_none());
        assert!(p.reason.unwrap().contains("R-EM-6 (d)"));
        let m = fixture("inquiry-plain.eml");
        let mut c = ctx(&m);
        c.suppressed = true;
        assert!(plan_mail(&m, &c, &policy(0, Create::Leads)).writes.lead.is_none());
        let mut c = ctx(&m);
        c.party = MatchOutcome::Ambiguous(vec![
            EntityRef::new(EntityKind::Contact, Uuid::from_u128(7)),
            EntityRef::new(EntityKind::Contact, Uuid::from_u128(8)),
        ]);
        let p = plan_mail(&m, &c, &policy(0, Create::Leads));
        assert!(p.writes.lead.is_none() && p.writes.dup_candidates.is_some());
        assert_eq!(p.writes.email.unwrap().regardingobjectid, None);
    }

    #[test]
    fn r_em_2_filters() {
        let m = fixture("inquiry-plain.eml");
        assert_eq!(plan_mail(&m, &ctx(&m), &policy(1, Create::Leads)).status, EventStatus::Skipped);
        assert_eq!(plan_mail(&m, &ctx(&m), &policy(2, Create::Leads)).status, EventStatus::Skipped);
        let mut c = ctx(&m);
        c.party = MatchOutcome::Unique(EntityRef::new(EntityKind::Contact, Uuid::from_u128(7)));
        let p = plan_mail(&m, &c, &policy(2, Create::Leads));
        assert_eq!(p.status, EventStatus::Processed);
        assert!(p.writes.lead.is_none(), "R-EM-7: known sender, no lead");
        assert_eq!(p.writes.email.unwrap().regardingobjectid, Some(Uuid::from_u128(7)));
        assert!(p.writes.task.is_none());
        // R-EM-7: a disqualified lead writes: no reopening, its owner gets a task.
        let lead = Lead {
            leadid: Uuid::from_u128(8),
            lastname: "Gone".into(),
            statecode: 2,
            statuscode: 4,
            ownerid: Uuid::from_u128(5),
            ..Default::default()
        };
        let mut c = ctx(&m);
        c.party = MatchOutcome::Unique(EntityRef::new(EntityKind::Lead, lead.leadid));
        c.party_lead = Some(lead);
        let p = plan_mail(&m, &c, &policy(0, Create::Leads));
        assert!(p.writes.lead.is_none());
        let t = p.writes.task.expect("owner told");
        assert_eq!((t.ownerid, t.regardingobjectid), (Uuid::from_u128(5), Some(Uuid::from_u128(8))));
    }

    #[test]
    fn r_qc_1_a_reply_to_a_quick_campaign_regards_its_bulkoperation() {
        let m = fixture("reply-to-wave.eml");
        let mut c = ctx(&m);
        let mut out = wave_outbound();
        let quick = Uuid::from_u128(52);
        out.regarding = Some(EntityRef::new(EntityKind::Bulkoperation, quick));
        out.wave = Some(Wave {
            activity_id: quick,
            regarding: EntityRef::new(EntityKind::Bulkoperation, quick),
            owner: Uuid::from_u128(3),
        });
        c.outbound = Some(out);
        let p = plan_mail(&m, &c, &policy(1, Create::Nothing));
        let r = p.writes.response.clone().expect("a response to the quick campaign");
        assert_eq!(
            (r.regardingobjectid, r.regardingobjectidtype, r.campaignactivityid),
            (quick, EntityKind::Bulkoperation, Some(quick))
        );
        let lead = p.writes.lead.expect("an interested stranger still becomes a lead");
        assert_eq!(lead.campaignid, None, "a quick campaign is no campaign");
    }

    #[test]
    fn r_rs_1_to_3_reply_to_a_wave() {
        let m = fixture("reply-to-wave.eml");
        let mut c = ctx(&m);
        c.outbound = Some(wave_outbound());
        // Unknown responder, interested → response converted to a new lead (R-RS-3 a).
        let p = plan_mail(&m, &c, &policy(1, Create::Nothing));
        assert_eq!(p.class, "reply");
        let r = p.writes.response.clone().expect("response");
        assert_eq!(
            (r.regardingobjectid, r.campaignactivityid, r.originatingactivityid),
            (Uuid::from_u128(51), Some(Uuid::from_u128(50)), Some(Uuid::from_u128(60)))
        );
        assert_eq!((r.responsecode, r.channeltypecode, r.statecode, r.ownerid), (1, Some(1), 1, Uuid::from_u128(3)));
        let lead = p.writes.lead.expect("converted lead");
        assert_eq!(r.customerid, Some(lead.leadid));
        assert_eq!(p.writes.email.unwrap().regardingobjectid, Some(Uuid::from_u128(50)));
        // An open lead: the response converts to it (R-RS-3 b) and the lead gets its links.
        let open_lead =
            Lead { leadid: Uuid::from_u128(9), subject: "S".into(), lastname: "L".into(), ..Default::default() }
                .stamped(Uuid::from_u128(3), EntityKind::Systemuser, c.now, None);
        c.party = MatchOutcome::Unique(EntityRef::new(EntityKind::Lead, open_lead.leadid));
        c.party_lead = Some(open_lead.clone());
        let p = plan_mail(&m, &c, &policy(1, Create::Nothing));
        let r = p.writes.response.clone().expect("response");
        assert_eq!((r.statecode, r.customerid), (1, Some(open_lead.leadid)));
        let l = p.writes.lead_update.expect("the lead's links");
        assert_eq!((l.relatedobjectid, l.campaignid), (Some(r.activityid), Some(Uuid::from_u128(51))));
        c.party_lead = None;
        // A known contact: the response stays open.
        c.party = MatchOutcome::Unique(EntityRef::new(EntityKind::Contact, Uuid::from_u128(7)));
        let p = plan_mail(&m, &c, &policy(1, Create::Nothing));
        let r = p.writes.response.unwrap();
        assert_eq!((r.statecode, r.customerid), (0, Some(Uuid::from_u128(7))));
        assert!(p.writes.lead.is_none());
        let t = p.writes.task.expect("R-RS-3: the wave owner is told");
        assert_eq!(
            (t.ownerid, t.regardingobjectid, t.statecode, t.scheduledend),
            (Uuid::from_u128(3), Some(r.activityid), 0, Some(c.now))
        );
        // R-RS-2: a second reply makes no response.
        c.response_exists = true;
        let p = plan_mail(&m, &c, &policy(1, Create::Nothing));
        assert!(p.writes.response.is_none());
        assert!(p.writes.email.is_some());
    }

    #[test]
    fn r_opt_3_unsubscribe_reply_and_mailto() {
        let m = fixture("unsubscribe-reply-ru.eml");
        let mut c = ctx(&m);
        c.outbound = Some(wave_outbound());
        c.party = MatchOutcome::Unique(EntityRef::new(EntityKind::Contact, Uuid::from_u128(7)));
        let p = plan_mail(&m, &c, &policy(1, Create::Nothing));
        assert_eq!(p.class, "unsubscribe");
        assert_eq!(p.writes.opt_out, Some(EntityRef::new(EntityKind::Contact, Uuid::from_u128(7))));
        assert_eq!(p.writes.suppress[0].0, "maria@client.example");
        let r = p.writes.response.unwrap();
        assert_eq!((r.responsecode, r.statecode), (3, 0), "code 3, never converted");
        // auto_unsubscribe off: still a code-3 response, no flags.
        let mut pol = policy(1, Create::Nothing);
        pol.auto_unsubscribe = false;
        let p = plan_mail(&m, &c, &pol);
        assert!(p.writes.opt_out.is_none() && p.writes.suppress.is_empty());
        assert_eq!(p.writes.response.unwrap().responsecode, 3);
        // The mailto hit counts without correlation, even in a replies-only mailbox.
        let m = fixture("unsubscribe-mailto.eml");
        let mut c = ctx(&m);
        c.mailto_unsubscribe = true;
        let p = plan_mail(&m, &c, &policy(1, Create::Leads));
        assert_eq!((p.class, p.status), ("unsubscribe", EventStatus::Processed));
        assert_eq!(p.writes.suppress[0].0, "petr@client.example");
        assert!(p.writes.lead.is_none());
    }

    #[test]
    fn complaints_suppress_the_complainer() {
        let m = fixture("complaint-arf.eml");
        assert!(
            plan_mail(&m, &ctx(&m), &policy(0, Create::Leads)).writes.suppress.is_empty(),
            "a complaint about mail we did not send suppresses nothing"
        );
        let mut c = ctx(&m);
        c.outbound = Some(wave_outbound());
        let p = plan_mail(&m, &c, &policy(0, Create::Leads));
        assert_eq!((p.class, p.status), ("complaint", EventStatus::Processed));
        assert_eq!(
            p.writes.suppress,
            vec![("angry@mail.example".to_string(), "complaint: ARF abuse report".to_string())]
        );
        assert!(p.writes.lead.is_none() && p.writes.email.is_none());
    }

    #[test]
    fn bounces_auto_replies_internal_and_loops_create_nothing() {
        let m = fixture("bounce-postfix-dsn.eml");
        let p = plan_mail(&m, &ctx(&m), &policy(1, Create::Leads));
        assert_eq!(p.class, "bounce");
        let b = p.writes.bounce.unwrap();
        assert_eq!(b.recipients[0].address, "nobody@client.example");
        assert!(!b.ours, "uncorrelated: counted, never suppressing");
        let mut c = ctx(&m);
        c.outbound = Some(wave_outbound());
        assert!(plan_mail(&m, &c, &policy(1, Create::Leads)).writes.bounce.unwrap().ours);
        assert!(p.writes.email.is_none());
        let m = fixture("autoreply-rfc3834.eml");
        let mut c = ctx(&m);
        c.outbound = Some(wave_outbound());
        let p = plan_mail(&m, &c, &policy(0, Create::Leads));
        assert_eq!(p.class, "auto_reply");
        assert_eq!(p.writes, MailWrites::default(), "no response, no lead, no e-mail");
        let m = fixture("inquiry-plain.eml");
        let mut c = ctx(&m);
        c.internal_sender = true;
        assert_eq!(plan_mail(&m, &c, &policy(0, Create::Leads)).class, "internal");
        let mut c = ctx(&m);
        c.recent_from_sender = 20;
        let p = plan_mail(&m, &c, &policy(0, Create::Leads));
        assert_eq!((p.class, p.status), ("rate_limited", EventStatus::Skipped));
    }
}
