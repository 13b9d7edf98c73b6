//! The store suite: every body runs on SQLite and on PostgreSQL (`both_engines!`).

use chrono::Duration;
use inflow::crm::entities::*;
use inflow::crm::lead::QualifyParams;
use inflow::crm::matching::MatchOutcome;
use inflow::crm::response::ConvertOption;
use inflow::crm::status::EventStatus;
use inflow::crm::{EntityKind, EntityRef, Money};
use inflow::store::Exec as _;
use inflow::store::{
    CreateMode, InboundEvent, InboundOutcome, NotificationClaim, RecordExt, Store, StoreError, Suppression,
};
use serde_json::json;
use uuid::Uuid;

use crate::both_engines;
use crate::helpers::now;

async fn user(store: &Store, last: &str, email: &str, manager: Option<Uuid>) -> SystemUser {
    let id = crate::helpers::add_user(store, "", last, email, manager, None).await;
    store.load(id).await.unwrap()
}

fn lead(owner: Uuid, subject: &str, email: Option<&str>, company: Option<&str>) -> Lead {
    let t = now();
    Lead {
        leadid: Uuid::new_v4(),
        subject: subject.into(),
        firstname: Some("Ivan".into()),
        lastname: "Petrov".into(),
        companyname: company.map(str::to_string),
        emailaddress1: email.map(str::to_string),
        leadqualitycode: 2,
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None)
}

fn contact(owner: Uuid, last: &str, email: Option<&str>, phone: Option<&str>) -> Contact {
    let t = now();
    Contact {
        contactid: Uuid::new_v4(),
        lastname: last.into(),
        emailaddress1: email.map(str::to_string),
        telephone1: phone.map(str::to_string),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None)
}

fn account(owner: Uuid, name: &str, email: Option<&str>) -> Account {
    let t = now();
    Account {
        accountid: Uuid::new_v4(),
        name: name.into(),
        emailaddress1: email.map(str::to_string),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None)
}

fn campaign(owner: Uuid, name: &str) -> Campaign {
    let t = now();
    let mut c = Campaign {
        campaignid: Uuid::new_v4(),
        name: name.into(),
        typecode: 1,
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None);
    c.statuscode = 2; // Launched
    c
}

fn list(owner: Uuid, name: &str, code: i32, query: Option<serde_json::Value>) -> MarketingList {
    let t = now();
    MarketingList {
        listid: Uuid::new_v4(),
        listname: name.into(),
        createdfromcode: code,
        isdynamic: query.is_some(),
        query,
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None)
}

fn rule_code(e: StoreError) -> String {
    match e {
        StoreError::Rule(r) => r.code.to_string(),
        other => panic!("expected a rule error, got {other}"),
    }
}

both_engines!(migrations_are_idempotent_and_ready, |store: Store| async move {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.readiness().await.unwrap();
});

both_engines!(every_record_type_round_trips, |store: Store| async move {
    let u = user(&store, "Smirnova", "a.smirnova@example.com", None).await;
    assert_eq!(store.load::<SystemUser>(u.systemuserid).await.unwrap(), u);
    let mut l = lead(u.systemuserid, "Need 40 licences", Some("ivan@romashka.ru"), Some("ООО Ромашка"));
    l.revenue = Some(Money(123_456_789));
    l.estimatedclosedate = Some(chrono::NaiveDate::from_ymd_opt(2027, 3, 31).unwrap());
    l.description = Some("Многострочное\nописание ✓".into());
    store.insert(&l).await.unwrap();
    assert_eq!(store.load::<Lead>(l.leadid).await.unwrap(), l);
    let a = account(u.systemuserid, "Ромашка", None);
    store.insert(&a).await.unwrap();
    assert_eq!(store.load::<Account>(a.accountid).await.unwrap(), a);
    let c = contact(u.systemuserid, "Sidorova", None, Some("+7 495 111-22-33"));
    store.insert(&c).await.unwrap();
    assert_eq!(store.load::<Contact>(c.contactid).await.unwrap(), c);
    let ml = list(u.systemuserid, "Dyn", 4, Some(json!({"field": "industrycode", "op": "eq", "value": 16})));
    store.insert(&ml).await.unwrap();
    assert_eq!(store.load::<MarketingList>(ml.listid).await.unwrap(), ml);
    let t = now();
    let act = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Task,
        subject: Some("Call back".into()),
        scheduledend: Some(t + Duration::hours(2)),
        regardingobjectid: Some(l.leadid),
        regardingobjectidtype: Some(EntityKind::Lead),
        directioncode: Some(true),
        ownerid: u.systemuserid,
        statecode: 0,
        statuscode: 2,
        createdon: t,
        modifiedon: t,
        versionnumber: 1,
        ..Default::default()
    };
    store.insert(&act).await.unwrap();
    assert_eq!(store.load::<Activity>(act.activityid).await.unwrap(), act);
    assert!(store.get::<Lead>(Uuid::new_v4()).await.unwrap().is_none());
    let page = store.list::<Lead>(10, 0).await.unwrap();
    assert_eq!((page.total, page.items.len()), (1, 1));
});

/// A phone call regarding `lead`, owned by `owner`, made (and last changed) at `when`.
async fn call_about(store: &Store, owner: Uuid, lead: Uuid, when: chrono::DateTime<chrono::Utc>) -> Activity {
    let call = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Phonecall,
        regardingobjectid: Some(lead),
        regardingobjectidtype: Some(EntityKind::Lead),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, when, None);
    store.insert(&call).await.unwrap();
    call
}

/// The lead's `lastactivityon`, which the `stale` view reads (migrations 0018 and 0020).
async fn touched(store: &Store, lead: Uuid) -> Option<i64> {
    let mut db = store.db.clone();
    let r = db.fetch_one("SELECT lastactivityon FROM lead WHERE leadid = $1", vec![lead.into()]).await.unwrap();
    r.get("lastactivityon").unwrap()
}

async fn stale_leads(store: &Store, now: chrono::DateTime<chrono::Utc>) -> Vec<Uuid> {
    use inflow::store::api::{ViewCtx, ViewSpec, view};
    let params = Default::default();
    let ctx =
        ViewCtx { me: Uuid::nil(), overdue_kinds: &[], now, tz: chrono_tz::UTC, stale_lead_days: 30, params: &params };
    let ViewSpec::Rows { conds, sort } = view("lead", "stale", &ctx).unwrap() else { panic!("stale lists rows") };
    let mut ids: Vec<Uuid> =
        store.query_records::<Lead>(&conds, sort, 1, 200).await.unwrap().items.iter().map(|l| l.leadid).collect();
    ids.sort();
    ids
}

/// What the `stale` view reads is up to date: on SQLite always (its triggers), on PostgreSQL
/// once the roll-up has run (migration 0020). The activities of these tests are stamped in
/// the past, before the roll-up's checkpoint, so it is a full one (as a daemon's first is).
async fn rolled_up(store: &Store) {
    store.roll_up_lead_activity(now(), true).await.unwrap();
}

// R-LD-5: the `stale` view: a lead is stale while nothing happened with it lately: an activity
// regarding it or naming it as a party was created, changed state, or was moved to it (on
// PostgreSQL, where a roll-up reads `modifiedon`: was created or changed).
both_engines!(r_ld_5_activity_events_keep_a_lead_from_going_stale, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let t = now();
    let sqlite = store.engine() == inflow::store::Engine::Sqlite;
    let old = |subject: &str| Lead { createdon: t - Duration::days(60), ..lead(u.systemuserid, subject, None, None) };
    let (quiet, called, mailed) = (old("quiet"), old("called"), old("mailed"));
    for l in [&quiet, &called, &mailed] {
        store.insert(l).await.unwrap();
    }
    let mut all = vec![quiet.leadid, called.leadid, mailed.leadid];
    all.sort();
    rolled_up(&store).await;
    assert_eq!(stale_leads(&store, t).await, all, "nothing happened with any of them");
    // A call regarding one, made yesterday.
    let call = call_about(&store, u.systemuserid, called.leadid, t - Duration::days(1)).await;
    rolled_up(&store).await;
    assert_eq!(touched(&store, called.leadid).await, Some(call.modifiedon.timestamp_millis()));
    // An e-mail drafted 40 days ago naming one as its recipient (a party, not the regarding).
    let mail = Activity { activityid: Uuid::new_v4(), activitytypecode: EntityKind::Email, ..Default::default() }
        .stamped(u.systemuserid, EntityKind::Systemuser, t - Duration::days(40), None);
    store.insert(&mail).await.unwrap();
    let mut db = store.db.clone();
    db.execute(
        "INSERT INTO activityparty (activityid, participationtypemask, partyid, partyidtype, addressused) \
         VALUES ($1, 2, $2, 'lead', 'mailed@example.com')",
        vec![mail.activityid.into(), mailed.leadid.into()],
    )
    .await
    .unwrap();
    rolled_up(&store).await;
    assert_eq!(touched(&store, mailed.leadid).await, Some(mail.modifiedon.timestamp_millis()));
    let mut expected = vec![quiet.leadid, mailed.leadid];
    expected.sort();
    assert_eq!(stale_leads(&store, t).await, expected, "a call yesterday; a draft 40 days ago");
    // Editing the old draft's text is no activity with the lead on SQLite (PostgreSQL's
    // roll-up sees a change); sending it is on both.
    let mut edited = store.load::<Activity>(mail.activityid).await.unwrap();
    edited.description = Some("typo fixed".into());
    edited.modifiedon = t - Duration::hours(2);
    let edited = store.update(&edited).await.unwrap();
    rolled_up(&store).await;
    let after_edit = if sqlite { mail.modifiedon } else { t - Duration::hours(2) };
    assert_eq!(touched(&store, mailed.leadid).await, Some(after_edit.timestamp_millis()));
    let mut sent = edited.clone();
    (sent.statecode, sent.statuscode, sent.modifiedon) = (1, 3, t - Duration::hours(1));
    store.update(&sent).await.unwrap();
    rolled_up(&store).await;
    assert_eq!(touched(&store, mailed.leadid).await, Some((t - Duration::hours(1)).timestamp_millis()));
    assert_eq!(stale_leads(&store, t).await, vec![quiet.leadid]);
    // The call moved to the quiet lead (a merge, say) counts for it too; the lead it left
    // keeps the fact that the call happened with it.
    let mut moved = store.load::<Activity>(call.activityid).await.unwrap();
    moved.regardingobjectid = Some(quiet.leadid);
    store.update(&moved).await.unwrap();
    rolled_up(&store).await;
    assert_eq!(touched(&store, quiet.leadid).await, Some(call.modifiedon.timestamp_millis()));
    assert_eq!(stale_leads(&store, t).await, Vec::<Uuid>::new());
});

// R-LD-5 on PostgreSQL: the roll-up reads from its checkpoint, so what happens now reaches
// the view at the next roll-up (each daemon runs one a minute), and a second roll-up finds
// nothing new. SQLite's triggers keep the column at once.
both_engines!(r_ld_5_a_call_now_reaches_the_stale_view_by_the_next_roll_up, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let t = now();
    let lead = Lead { createdon: t - Duration::days(60), ..lead(u.systemuserid, "old lead", None, None) };
    store.insert(&lead).await.unwrap();
    assert_eq!(stale_leads(&store, t).await, vec![lead.leadid]);
    call_about(&store, u.systemuserid, lead.leadid, t).await;
    let pg = store.engine() == inflow::store::Engine::Postgres;
    assert_eq!(store.roll_up_lead_activity(t, false).await.unwrap(), u64::from(pg), "the one lead the call touched");
    assert_eq!(touched(&store, lead.leadid).await, Some(t.timestamp_millis()));
    assert_eq!(stale_leads(&store, t).await, Vec::<Uuid>::new());
    assert_eq!(store.roll_up_lead_activity(t + Duration::minutes(1), false).await.unwrap(), 0, "nothing new");
});

// R-LD-5 with R-DUP-5: merging a lead into another moves its activities without changing
// them; the survivor has had them all along, so what it read as its last activity is the
// later of the two (PostgreSQL's roll-up would not see the move: it reads `modifiedon`).
both_engines!(r_ld_5_a_merged_lead_brings_its_last_activity, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let t = now();
    let old = |subject: &str| Lead { createdon: t - Duration::days(60), ..lead(u.systemuserid, subject, None, None) };
    let (keep, other) = (old("keep"), old("other"));
    for l in [&keep, &other] {
        store.insert(l).await.unwrap();
    }
    let call = call_about(&store, u.systemuserid, other.leadid, t - Duration::days(2)).await;
    rolled_up(&store).await;
    let cand = Uuid::new_v4();
    let refs = serde_json::json!([{"kind": "lead", "id": keep.leadid}, {"kind": "lead", "id": other.leadid}]);
    let mut db = store.db.clone();
    db.execute(
        "INSERT INTO dup_candidate (id, rule, subject_type, subject_value, source_ref, candidates, status, created_at) \
         VALUES ($1, 'R-DUP-1', 'email', 'x@example.com', '', $2, 'open', $3)",
        vec![cand.into(), refs.to_string().into(), t.into()],
    )
    .await
    .unwrap();
    store.merge_dup_candidate(cand, keep.leadid, None, Some(u.systemuserid), t).await.unwrap();
    assert_eq!(touched(&store, keep.leadid).await, Some(call.modifiedon.timestamp_millis()));
    assert!(!stale_leads(&store, t).await.contains(&keep.leadid));
});

// R-EM-8: soft bounces of mail we sent suppress the address once they reach the limit (this
// one included: the count comes back from the upsert that records it); not before.
both_engines!(r_em_8_soft_bounces_suppress_at_the_limit, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let sent = Activity {
        activityid: Uuid::new_v4(),
        activitytypecode: EntityKind::Email,
        directioncode: Some(true),
        messageid: Some("out-1@crm.example.com".into()),
        ..Default::default()
    }
    .stamped(u.systemuserid, EntityKind::Systemuser, now(), None);
    store.insert(&sent).await.unwrap();
    let soft = |n: u32| {
        format!(
            "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.client.example (Mail Delivery System)\r\n\
             To: news@crm.example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
             Date: Mon, 7 Dec 2026 10:0{n}:00 +0300\r\nMessage-Id: <soft-{n}@mx.client.example>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
             --B\r\nContent-Type: text/plain\r\n\r\nMailbox full.\r\n\r\n\
             --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.client.example\r\n\r\n\
             Final-Recipient: rfc822; full@client.example\r\nAction: failed\r\nStatus: 4.2.2\r\n\
             Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n\r\n\
             --B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <out-1@crm.example.com>\r\n\
             From: news@crm.example.com\r\nTo: full@client.example\r\nSubject: News\r\n\r\n--B--\r\n"
        )
        .into_bytes()
    };
    let policy = sales_policy(u.systemuserid);
    for n in 1..=3 {
        let out = store
            .ingest_mail(
                &[mail_input(&soft(n))],
                &policy,
                inflow::store::BounceRules { soft_limit: 3 },
                chrono_tz::UTC,
                now(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(out[0].class.as_deref(), Some("bounce"), "{out:?}");
        let sup = store.suppression("full@client.example").await.unwrap();
        if n < 3 {
            assert!(sup.is_none(), "{n} soft bounces: {sup:?}");
        } else {
            assert_eq!(sup.expect("suppressed at the third").reason, "bounce: 3 soft bounces, last mailboxfull 4.2.2");
        }
    }
});

/// R-LD-5 on PostgreSQL: a roll-up that meets a lead a writer holds gives up within its lock
/// timeout instead of waiting on the writer, changes nothing and keeps its checkpoint; the
/// next one, once the writer is done, folds the activity in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_up_gives_way_to_a_writer_holding_a_lead() {
    crate::helpers::with_store("postgres", |store: Store| async move {
        let u = user(&store, "Owner", "owner@example.com", None).await;
        let t = now();
        let lead = Lead { createdon: t - Duration::days(60), ..lead(u.systemuserid, "held", None, None) };
        store.insert(&lead).await.unwrap();
        call_about(&store, u.systemuserid, lead.leadid, t).await;
        let checkpoint = |store: Store| async move {
            let mut db = store.db.clone();
            let r = db.fetch_one("SELECT upto FROM rollup_checkpoint", vec![]).await.unwrap();
            r.get::<i64>("upto").unwrap()
        };
        let before = checkpoint(store.clone()).await;
        let mut writer = store.db.begin().await.unwrap();
        writer.execute("UPDATE lead SET jobtitle = 'held' WHERE leadid = $1", vec![lead.leadid.into()]).await.unwrap();
        let later = t + Duration::minutes(1);
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_secs(10), store.roll_up_lead_activity(later, false))
                .await
                .expect("the roll-up gives up instead of waiting for the writer");
        assert!(gave_up.is_err(), "{gave_up:?}");
        writer.commit().await.unwrap();
        assert_eq!(touched(&store, lead.leadid).await, None, "nothing changed");
        assert_eq!(checkpoint(store.clone()).await, before, "the checkpoint stays");
        assert_eq!(store.roll_up_lead_activity(later, false).await.unwrap(), 1);
        assert_eq!(touched(&store, lead.leadid).await, Some(t.timestamp_millis()));
    })
    .await;
}

/// Issue 23: a large e-mail body is stored with lz4 on PostgreSQL (migration 0019), not pglz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_lz4_on_postgres() {
    crate::helpers::with_store("postgres", |store: Store| async move {
        let u = user(&store, "Owner", "owner@example.com", None).await;
        // Compressible and over the 2 KB at which PostgreSQL starts compressing a row.
        let body: String = (0..400).map(|i| format!("Строка письма {i}. ")).collect();
        let mail = Activity {
            activityid: Uuid::new_v4(),
            activitytypecode: EntityKind::Email,
            description: Some(body.clone()),
            ..Default::default()
        }
        .stamped(u.systemuserid, EntityKind::Systemuser, now(), None);
        store.insert(&mail).await.unwrap();
        let mut db = store.db.clone();
        let r = db
            .fetch_one(
                "SELECT pg_column_compression(description) AS c, description FROM activity WHERE activityid = $1",
                vec![mail.activityid.into()],
            )
            .await
            .unwrap();
        assert_eq!(r.get::<Option<String>>("c").unwrap().as_deref(), Some("lz4"));
        assert_eq!(r.get::<String>("description").unwrap(), body, "read back whole");
    })
    .await;
}

both_engines!(optimistic_concurrency_on_versionnumber, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let l = lead(u.systemuserid, "Topic", None, None);
    store.insert(&l).await.unwrap();
    let mut first = l.clone();
    first.statuscode = 2;
    let stored = store.update(&first).await.unwrap();
    assert_eq!(stored.versionnumber, 2);
    // A writer holding the old version loses.
    let mut stale = l.clone();
    stale.subject = "Other".into();
    assert!(matches!(store.update(&stale).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.load::<Lead>(l.leadid).await.unwrap().subject, "Topic");
});

both_engines!(r_ld_1_and_r_dup_4_on_manual_create, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let mut bad = lead(u.systemuserid, "Topic", None, None);
    bad.lastname = "".into();
    assert_eq!(rule_code(store.create_lead(&bad, CreateMode::CheckDuplicates).await.unwrap_err()), "required_field");
    let first = lead(u.systemuserid, "Topic", Some("Ivan@Romashka.ru"), None);
    store.create_lead(&first, CreateMode::CheckDuplicates).await.unwrap();
    // Same address in another case and a display-name form: R-DUP-1 makes it the same.
    let second = lead(u.systemuserid, "Again", Some("IVAN@romashka.RU"), None);
    match store.create_lead(&second, CreateMode::CheckDuplicates).await.unwrap_err() {
        StoreError::Rule(r) => {
            assert_eq!((r.rule, r.code), ("R-DUP-4", "duplicate_found"));
            assert_eq!(r.candidates, vec![EntityRef::new(EntityKind::Lead, first.leadid)]);
        }
        other => panic!("{other}"),
    }
    store.create_lead(&second, CreateMode::IgnoreDuplicates).await.unwrap();
    // Lead ↔ Contact same e-mail.
    let c = contact(u.systemuserid, "Known", Some("known@example.com"), None);
    store.create_contact(&c, CreateMode::CheckDuplicates).await.unwrap();
    let third = lead(u.systemuserid, "T", Some("known@example.com"), None);
    assert_eq!(rule_code(store.create_lead(&third, CreateMode::CheckDuplicates).await.unwrap_err()), "duplicate_found");
    // Accounts with the same normalised name.
    store.create_account(&account(u.systemuserid, "ООО «Ромашка»", None), CreateMode::CheckDuplicates).await.unwrap();
    let dup = account(u.systemuserid, "Ромашка  ООО", None);
    assert_eq!(
        rule_code(store.create_account(&dup, CreateMode::CheckDuplicates).await.unwrap_err()),
        "duplicate_found"
    );
});

both_engines!(s3_1_qualify_creates_then_links_existing, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let l1 = lead(u.systemuserid, "40 licences", Some("ivan@romashka.ru"), Some("ООО Ромашка"));
    store.create_lead(&l1, CreateMode::CheckDuplicates).await.unwrap();
    let all =
        QualifyParams { create_account: true, create_contact: true, create_opportunity: true, ..Default::default() };
    let (q, created) = store.qualify_lead(l1.leadid, &all, Some(u.systemuserid), now()).await.unwrap();
    assert_eq!((q.statecode, q.statuscode), (1, 3));
    assert_eq!(created.len(), 3);
    let acc: Account = store.load(q.parentaccountid.unwrap()).await.unwrap();
    assert_eq!(acc.name, "ООО Ромашка");
    assert_eq!(acc.originatingleadid, Some(l1.leadid));
    let opp: Opportunity = store.load(q.qualifyingopportunityid.unwrap()).await.unwrap();
    assert_eq!(opp.customerid, Some(acc.accountid));
    assert_eq!(opp.originatingleadid, Some(l1.leadid));

    // A second lead from the same company and person links the existing records (§3.1).
    let l2 = lead(u.systemuserid, "More licences", Some("ivan@romashka.ru"), Some("Romashka")).clone();
    let mut l2 = l2;
    l2.companyname = Some("ромашка ооо".into());
    store.create_lead(&l2, CreateMode::IgnoreDuplicates).await.unwrap();
    let (q2, created2) = store.qualify_lead(l2.leadid, &all, None, now()).await.unwrap();
    assert_eq!(q2.parentaccountid, q.parentaccountid);
    assert_eq!(q2.parentcontactid, q.parentcontactid);
    assert_eq!(
        created2.iter().filter(|r| r.kind != EntityKind::Opportunity).count(),
        0,
        "no duplicate account/contact"
    );
    assert_eq!(store.list::<Account>(50, 0).await.unwrap().total, 1);
    assert_eq!(store.list::<Contact>(50, 0).await.unwrap().total, 1);

    // Qualifying again needs a reactivate first.
    assert_eq!(rule_code(store.qualify_lead(l2.leadid, &all, None, now()).await.unwrap_err()), "lead_not_open");
    // A lead with an opportunity cannot be disqualified, even after reactivate.
    store.reactivate_lead(l2.leadid, None, now()).await.unwrap();
    assert_eq!(
        rule_code(store.disqualify_lead(l2.leadid, Some(5), None, None, now()).await.unwrap_err()),
        "lead_has_opportunity"
    );
});

both_engines!(s3_1_qualify_refuses_ambiguous_duplicates, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let a1 = account(u.systemuserid, "Vector", Some("info@vector.ru"));
    let a2 = account(u.systemuserid, "Vector LLC", None);
    store.insert(&a1).await.unwrap();
    store.insert(&a2).await.unwrap();
    let l = lead(u.systemuserid, "Deal", Some("info@vector.ru"), Some("Vector"));
    store.create_lead(&l, CreateMode::IgnoreDuplicates).await.unwrap();
    let p = QualifyParams { create_account: true, ..Default::default() };
    match store.qualify_lead(l.leadid, &p, None, now()).await.unwrap_err() {
        StoreError::Rule(r) => {
            assert_eq!(r.code, "ambiguous_duplicate");
            assert_eq!(r.candidates.len(), 2);
        }
        other => panic!("{other}"),
    }
    // Nothing was written: the lead is still open and no account was added.
    assert_eq!(store.load::<Lead>(l.leadid).await.unwrap().statecode, 0);
    assert_eq!(store.list::<Account>(10, 0).await.unwrap().total, 2);
    // Linking one explicitly resolves it.
    let mut linked = store.load::<Lead>(l.leadid).await.unwrap();
    linked.parentaccountid = Some(a2.accountid);
    store.update_lead(&linked).await.unwrap();
    let (q, _) = store.qualify_lead(l.leadid, &p, None, now()).await.unwrap();
    assert_eq!(q.parentaccountid, Some(a2.accountid));
});

both_engines!(s3_2_disqualify_and_reactivate, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let l = lead(u.systemuserid, "Topic", None, None);
    store.create_lead(&l, CreateMode::CheckDuplicates).await.unwrap();
    let d = store.disqualify_lead(l.leadid, Some(6), Some("Бюджет урезан"), Some(u.systemuserid), now()).await.unwrap();
    assert_eq!((d.statecode, d.statuscode), (2, 6));
    assert_eq!(d.qualificationcomments.as_deref(), Some("Бюджет урезан"));
    assert_eq!(
        rule_code(store.disqualify_lead(l.leadid, Some(6), None, None, now()).await.unwrap_err()),
        "lead_not_open"
    );
    // R-LD-2: a closed lead is read-only.
    let mut edit = d.clone();
    edit.subject = "changed".into();
    assert_eq!(rule_code(store.update_lead(&edit).await.unwrap_err()), "lead_closed");
    let r = store.reactivate_lead(l.leadid, None, now()).await.unwrap();
    assert_eq!((r.statecode, r.statuscode), (0, 1));
    assert_eq!(
        rule_code(store.disqualify_lead(l.leadid, Some(3), None, None, now()).await.unwrap_err()),
        "invalid_status"
    );
});

both_engines!(r_dup_2_and_3_party_matching, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let c = contact(u.systemuserid, "Caller", None, Some("8 (495) 123-45-67"));
    store.insert(&c).await.unwrap();
    for form in ["+7 495 1234567", "74951234567", "4951234567", "tel:+74951234567"] {
        assert_eq!(
            store.match_party(None, Some(form)).await.unwrap(),
            MatchOutcome::Unique(EntityRef::new(EntityKind::Contact, c.contactid)),
            "{form}"
        );
    }
    // An e-mail match on a lead beats a phone match on the contact (R-DUP-3 order).
    let mut l = lead(u.systemuserid, "T", Some("caller@example.com"), None);
    l.telephone1 = Some("+74951234567".into());
    store.insert(&l).await.unwrap();
    assert_eq!(
        store.match_party(Some("Caller@Example.com"), Some("84951234567")).await.unwrap().unique().unwrap().kind,
        EntityKind::Lead
    );
    // Two contacts sharing a number: ambiguous, queued for review once, never linked.
    let c2 = contact(u.systemuserid, "Colleague", None, Some("+7 (495) 123-45-67"));
    store.insert(&c2).await.unwrap();
    let m = store.match_or_queue(None, Some("84951234567"), "pbx:call-1", now()).await.unwrap();
    assert!(matches!(m, MatchOutcome::Ambiguous(ref v) if v.len() == 2), "{m:?}");
    store.match_or_queue(None, Some("84951234567"), "pbx:call-1", now()).await.unwrap();
    let open = store.dup_candidates("open").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].subject_value, "+74951234567");
    // Short numbers and unparsable numbers never match.
    assert_eq!(store.match_party(None, Some("101")).await.unwrap(), MatchOutcome::None);
    // Updating a record re-indexes it: the old number no longer matches.
    let mut moved = store.load::<Contact>(c2.contactid).await.unwrap();
    moved.telephone1 = Some("+7 812 000-00-00".into());
    store.update(&moved).await.unwrap();
    assert!(matches!(store.match_party(None, Some("84951234567")).await.unwrap(), MatchOutcome::Unique(_)));
});

both_engines!(s3_3_convert_responses, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let camp = campaign(u.systemuserid, "Autumn");
    store.insert(&camp).await.unwrap();
    let resp = |last: Option<&str>, email: &str| {
        let t = now();
        CampaignResponse {
            activityid: Uuid::new_v4(),
            subject: "Re: Autumn offer".into(),
            regardingobjectid: camp.campaignid,
            regardingobjectidtype: EntityKind::Campaign,
            lastname: last.map(str::to_string),
            emailaddress: Some(email.into()),
            companyname: Some("Vector".into()),
            responsecode: 1,
            statecode: 0,
            statuscode: 1,
            ownerid: u.systemuserid,
            createdon: t,
            modifiedon: t,
            versionnumber: 1,
            ..Default::default()
        }
    };
    // a) new lead
    let r1 = resp(Some("Orlova"), "orlova@vector.ru");
    store.insert(&r1).await.unwrap();
    let (closed, created) = store
        .convert_response(
            r1.activityid,
            &ConvertOption::NewLead,
            Some(100_000_000),
            None,
            now(),
            inflow::store::CreateMode::CheckDuplicates,
        )
        .await
        .unwrap();
    assert_eq!((closed.statecode, closed.statuscode), (1, 2));
    let new_lead: Lead = store.load(created[0].id).await.unwrap();
    assert_eq!(new_lead.campaignid, Some(camp.campaignid));
    assert_eq!(new_lead.relatedobjectid, Some(r1.activityid));
    assert_eq!(closed.customerid, Some(new_lead.leadid));
    // R-RS-4: a closed response converts no more.
    assert_eq!(
        rule_code(
            store
                .convert_response(
                    r1.activityid,
                    &ConvertOption::NewLead,
                    None,
                    None,
                    now(),
                    inflow::store::CreateMode::CheckDuplicates
                )
                .await
                .unwrap_err()
        ),
        "response_not_open"
    );
    // b) existing closed lead needs reactivate
    store.disqualify_lead(new_lead.leadid, None, None, None, now()).await.unwrap();
    let r2 = resp(None, "orlova@vector.ru");
    store.insert(&r2).await.unwrap();
    let opt = ConvertOption::ExistingLead { lead_id: new_lead.leadid, reactivate: false };
    assert_eq!(
        rule_code(
            store
                .convert_response(r2.activityid, &opt, None, None, now(), inflow::store::CreateMode::CheckDuplicates)
                .await
                .unwrap_err()
        ),
        "lead_closed"
    );
    let opt = ConvertOption::ExistingLead { lead_id: new_lead.leadid, reactivate: true };
    store
        .convert_response(r2.activityid, &opt, None, None, now(), inflow::store::CreateMode::CheckDuplicates)
        .await
        .unwrap();
    assert_eq!(store.load::<Lead>(new_lead.leadid).await.unwrap().statecode, 0);
    // c) new customer: dedupe links an existing contact instead of creating one
    let known = contact(u.systemuserid, "Belova", Some("belova@vector.ru"), None);
    store.insert(&known).await.unwrap();
    let r3 = resp(Some("Belova"), "belova@vector.ru");
    store.insert(&r3).await.unwrap();
    let opt = ConvertOption::NewCustomer { create_account: true, create_contact: true, create_opportunity: true };
    let (closed3, created3) = store
        .convert_response(r3.activityid, &opt, None, None, now(), inflow::store::CreateMode::CheckDuplicates)
        .await
        .unwrap();
    assert_eq!(closed3.customeridtype, Some(EntityKind::Account));
    assert!(created3.iter().any(|r| r.kind == EntityKind::Account));
    assert!(!created3.iter().any(|r| r.kind == EntityKind::Contact), "existing contact is linked, not duplicated");
    assert!(created3.iter().any(|r| r.kind == EntityKind::Opportunity));
    // §3.3 c qualifies a lead that is never stored: nothing points at it.
    for r in &created3 {
        let lead_ref = match r.kind {
            EntityKind::Account => store.load::<Account>(r.id).await.unwrap().originatingleadid,
            EntityKind::Opportunity => store.load::<Opportunity>(r.id).await.unwrap().originatingleadid,
            _ => None,
        };
        assert_eq!(lead_ref, None, "{r:?} points at an unsaved lead");
    }
    // R-LD-3: a new lead from a response runs the duplicate rules: Belova is a contact.
    let r5 = resp(Some("Belova"), "Belova@Vector.ru");
    store.insert(&r5).await.unwrap();
    let dup = store
        .convert_response(
            r5.activityid,
            &ConvertOption::NewLead,
            None,
            None,
            now(),
            inflow::store::CreateMode::CheckDuplicates,
        )
        .await
        .unwrap_err();
    assert_eq!(rule_code(dup), "duplicate_found");
    let (_, made) = store
        .convert_response(
            r5.activityid,
            &ConvertOption::NewLead,
            None,
            None,
            now(),
            inflow::store::CreateMode::IgnoreDuplicates,
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 1, "created when asked to");
    // d) cancel
    let r4 = resp(None, "x@vector.ru");
    store.insert(&r4).await.unwrap();
    let (c4, _) = store
        .convert_response(
            r4.activityid,
            &ConvertOption::Close { cancel: true },
            None,
            None,
            now(),
            inflow::store::CreateMode::CheckDuplicates,
        )
        .await
        .unwrap();
    assert_eq!((c4.statecode, c4.statuscode), (2, 3));
});

both_engines!(r_wv_6_cost_rollup, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let mut camp = campaign(u.systemuserid, "Expo");
    camp.budgetedcost = Some(Money(100_000_00));
    store.insert(&camp).await.unwrap();
    let act = |subject: &str, cost: i64| {
        let t = now();
        CampaignActivity {
            activityid: Uuid::new_v4(),
            regardingobjectid: camp.campaignid,
            subject: subject.into(),
            channeltypecode: Some(7),
            actualcost: Some(Money(cost)),
            donotsendonoptout: true,
            ignoreinactivelistmembers: true,
            ownerid: u.systemuserid,
            statecode: 0,
            statuscode: 1,
            createdon: t,
            modifiedon: t,
            versionnumber: 1,
            ..Default::default()
        }
    };
    let a1 = act("Wave 1", 30_000_00);
    store.create_campaign_activity(&a1).await.unwrap();
    store.create_campaign_activity(&act("Print", 45_000_50)).await.unwrap();
    let c = store.load::<Campaign>(camp.campaignid).await.unwrap();
    assert_eq!(c.totalcampaignactivityactualcost, Some(Money(75_000_50)));
    let c = store.set_campaign_othercost(camp.campaignid, Some(Money(10_000_00)), now()).await.unwrap();
    assert_eq!(c.totalactualcost, Some(Money(85_000_50)));
    let c = store.set_campaign_activity_cost(a1.activityid, Some(Money(50_000_00)), now()).await.unwrap();
    assert_eq!(
        (c.totalcampaignactivityactualcost, c.totalactualcost),
        (Some(Money(95_000_50)), Some(Money(105_000_50)))
    );
    assert!(inflow::crm::campaign::over_budget(&c));
});

both_engines!(lists_static_dynamic_and_snapshot, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let mut fin = lead(u.systemuserid, "Bank deal", None, None);
    fin.industrycode = Some(16);
    fin.revenue = Some(Money(2_000_000_00));
    let mut small = lead(u.systemuserid, "Small bank", None, None);
    small.industrycode = Some(16);
    small.revenue = Some(Money(500_000_00));
    let mut other = lead(u.systemuserid, "Consulting", None, None);
    other.industrycode = Some(7);
    other.revenue = Some(Money(9_000_000_00));
    for l in [&fin, &small, &other] {
        store.insert(l).await.unwrap();
    }
    // SEED 001's filter as a dynamic list: industry = Financial AND revenue > 1,000,000.
    let dynl = list(
        u.systemuserid,
        "Financial, big",
        4,
        Some(json!({"all": [
            {"field": "industrycode", "op": "eq", "value": 16},
            {"field": "revenue", "op": "gt", "value": 1000000}
        ]})),
    );
    store.insert(&dynl).await.unwrap();
    assert_eq!(
        store.list_members(dynl.listid, now()).await.unwrap(),
        vec![EntityRef::new(EntityKind::Lead, fin.leadid)]
    );
    // Membership follows the data at use time.
    let mut grown = store.load::<Lead>(small.leadid).await.unwrap();
    grown.revenue = Some(Money(1_500_000_00));
    store.update(&grown).await.unwrap();
    assert_eq!(store.list_members(dynl.listid, now()).await.unwrap().len(), 2);
    // SQL-looking text is data.
    let inj =
        list(u.systemuserid, "inj", 4, Some(json!({"field": "subject", "op": "contains", "value": "' OR 1=1 --"})));
    store.insert(&inj).await.unwrap();
    assert!(store.list_members(inj.listid, now()).await.unwrap().is_empty());
    let pct = list(u.systemuserid, "pct", 4, Some(json!({"field": "subject", "op": "begins_with", "value": "bank"})));
    store.insert(&pct).await.unwrap();
    assert_eq!(
        store.list_members(pct.listid, now()).await.unwrap(),
        vec![EntityRef::new(EntityKind::Lead, fin.leadid)],
        "case-insensitive prefix"
    );
    // An unknown field in a stored query is a clear rule error at use time.
    let broken = list(u.systemuserid, "broken", 4, Some(json!({"field": "password", "op": "eq", "value": "x"})));
    store.insert(&broken).await.unwrap();
    match store.list_members(broken.listid, now()).await.unwrap_err() {
        StoreError::Rule(r) => {
            assert!(r.message.contains("password") && r.message.contains("query.field"), "{}", r.message)
        }
        other => panic!("{other}"),
    }
    // Snapshot: locked static copy.
    let snap = store.copy_dynamic_to_static(dynl.listid, Uuid::new_v4(), None, now()).await.unwrap();
    assert!(snap.lockstatus && !snap.isdynamic);
    assert_eq!(snap.membercount, Some(2));
    assert_eq!(store.list_members(snap.listid, now()).await.unwrap().len(), 2);
    assert_eq!(
        rule_code(store.add_list_members(snap.listid, &[other.leadid], now()).await.unwrap_err()),
        "list_locked"
    );
    // Static list: member type must match createdfromcode; duplicates are no-ops.
    let stat = list(u.systemuserid, "Expo visitors", 4, None);
    store.insert(&stat).await.unwrap();
    assert_eq!(store.add_list_members(stat.listid, &[fin.leadid, other.leadid, fin.leadid], now()).await.unwrap(), 2);
    let c = contact(u.systemuserid, "NotALead", None, None);
    store.insert(&c).await.unwrap();
    assert_eq!(
        rule_code(store.add_list_members(stat.listid, &[c.contactid], now()).await.unwrap_err()),
        "member_type_mismatch"
    );
    assert_eq!(store.load::<MarketingList>(stat.listid).await.unwrap().membercount, Some(2));
    assert_eq!(store.remove_list_members(stat.listid, &[other.leadid]).await.unwrap(), 1);
    assert_eq!(rule_code(store.add_list_members(dynl.listid, &[fin.leadid], now()).await.unwrap_err()), "list_dynamic");
});

both_engines!(wave_lists_must_belong_to_the_campaign, |store: Store| async move {
    let u = user(&store, "Owner", "owner@example.com", None).await;
    let camp = campaign(u.systemuserid, "C");
    store.insert(&camp).await.unwrap();
    let l1 = list(u.systemuserid, "In campaign", 2, None);
    let l2 = list(u.systemuserid, "Elsewhere", 2, None);
    store.insert(&l1).await.unwrap();
    store.insert(&l2).await.unwrap();
    store.add_campaign_lists(camp.campaignid, &[l1.listid]).await.unwrap();
    let t = now();
    let wave = CampaignActivity {
        activityid: Uuid::new_v4(),
        regardingobjectid: camp.campaignid,
        subject: "Wave".into(),
        channeltypecode: Some(7),
        ownerid: u.systemuserid,
        statuscode: 1,
        createdon: t,
        modifiedon: t,
        versionnumber: 1,
        ..Default::default()
    };
    store.create_campaign_activity(&wave).await.unwrap();
    store.set_wave_lists(wave.activityid, &[l1.listid]).await.unwrap();
    assert_eq!(
        rule_code(store.set_wave_lists(wave.activityid, &[l2.listid]).await.unwrap_err()),
        "list_not_in_campaign"
    );
});

both_engines!(daemon_tables_are_idempotent, |store: Store| async move {
    let t = now();
    let ev = InboundEvent {
        id: Uuid::new_v4(),
        source: "imap:sales".into(),
        external_id: "<abc@example.com>".into(),
        received_at: t,
        status: EventStatus::Pending,
        reason: None,
        result: None,
        raw: Some(b"From: a@b.c\r\n\r\nhello\xff".to_vec()),
        raw_location: None,
        processed_at: None,
    };
    assert_eq!(store.record_inbound(&ev).await.unwrap(), InboundOutcome::New);
    store.finish_inbound(ev.id, "processed", None, Some(&json!({"created": ["lead:1"]})), t).await.unwrap();
    let again = InboundEvent { id: Uuid::new_v4(), ..ev.clone() };
    match store.record_inbound(&again).await.unwrap() {
        InboundOutcome::Duplicate(existing) => {
            assert_eq!(existing.id, ev.id);
            assert_eq!(existing.status, EventStatus::Processed);
            assert_eq!(existing.raw, ev.raw, "raw bytes kept exactly");
            assert_eq!(existing.result, Some(json!({"created": ["lead:1"]})));
        }
        other => panic!("{other:?}"),
    }
    // Suppression: first reason wins.
    let s = Suppression {
        address: "x@example.com".into(),
        kind: "email".into(),
        reason: "hard_bounce".into(),
        source: "imap:news".into(),
        detail: Some("550 5.1.1".into()),
        created_on: t,
    };
    assert!(store.suppress(&s).await.unwrap());
    assert!(!store.suppress(&Suppression { reason: "unsubscribe".into(), ..s.clone() }).await.unwrap());
    assert_eq!(store.suppression("x@example.com").await.unwrap().unwrap().reason, "hard_bounce");
    assert!(store.suppression("y@example.com").await.unwrap().is_none());
    // notification_log: one per (activity, level, due date); a new due date is a new slot.
    let claim = NotificationClaim {
        activityid: Uuid::new_v4(),
        activitytype: EntityKind::Task,
        level: 0,
        scheduledend: t,
        ownerid: Uuid::new_v4(),
        recipient: "o@example.com".into(),
        recipient_userid: None,
        digest_id: None,
        item: None,
        created_at: t,
    };
    assert!(store.claim_notification(&claim).await.unwrap());
    assert!(!store.claim_notification(&claim).await.unwrap());
    assert!(store.claim_notification(&NotificationClaim { level: 1, ..claim.clone() }).await.unwrap());
    assert!(
        store
            .claim_notification(&NotificationClaim { scheduledend: t + Duration::days(1), ..claim.clone() })
            .await
            .unwrap()
    );
    assert!(
        store.claim_notification(&NotificationClaim { ownerid: Uuid::new_v4(), ..claim.clone() }).await.unwrap(),
        "a new owner restarts the escalation"
    );
});

both_engines!(job_queue_idempotency_keys_on_both_engines, |store: Store| async move {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ping {
        n: u32,
    }
    let q = inflow::jobs::JobQueue::<Ping>::new(&store.db, "test-ping");
    q.push(Ping { n: 1 }, "ping:1", 3).await.unwrap();
    q.push(Ping { n: 1 }, "ping:1", 3)
        .await
        .expect("a second push with the same key is 'already queued', not an error");
    assert_eq!(store.queued_jobs("test-ping").await.unwrap(), 1);
    q.push(Ping { n: 2 }, "ping:2", 3).await.unwrap();
    assert_eq!(store.queued_jobs("test-ping").await.unwrap(), 2);
    // The depth gauge counts what is still to run: a finished job and one out of attempts
    // stay in the table but are not queued; a failed one with attempts left is.
    use inflow::store::Exec;
    let table = if store.engine() == inflow::store::Engine::Sqlite { "Jobs" } else { "apalis.jobs" };
    let mut db = store.db.clone();
    db.execute(
        &format!("UPDATE {table} SET status = 'Done' WHERE job_type = 'test-ping' AND idempotency_key = 'ping:1'"),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(store.queued_jobs("test-ping").await.unwrap(), 1);
    db.execute(
        &format!(
            "UPDATE {table} SET status = 'Failed', attempts = 1 WHERE job_type = 'test-ping' AND \
        idempotency_key = 'ping:2'"
        ),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(store.queued_jobs("test-ping").await.unwrap(), 1, "failed with attempts left");
    db.execute(
        &format!(
            "UPDATE {table} SET attempts = max_attempts WHERE job_type = 'test-ping' AND idempotency_key = 'ping:2'"
        ),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(store.queued_jobs("test-ping").await.unwrap(), 0);
});

both_engines!(pbx_group_commit_counts_each_event_once, |store: Store| async move {
    use inflow::store::PbxEventRow;
    let ev = |call: &str, id: &str, fin: bool| PbxEventRow {
        call_id: call.into(),
        event_id: id.into(),
        facts: "{}".into(),
        is_final: fin,
    };
    let a = [ev("c1", "c1:start", false), ev("c1", "c1:end", true)];
    let b = [ev("c1", "c1:end", true), ev("c2", "c2:end", true)]; // c1:end twice in one batch
    let out = store
        .record_pbx_events(&[("generic", "generic", &a, "raw-a"), ("generic", "generic", &b, "raw-b")], now())
        .await
        .unwrap();
    let flags: Vec<Vec<(bool, i64, bool)>> =
        out.iter().map(|r| r.iter().map(|u| (u.new_event, u.version, u.is_final)).collect()).collect();
    assert_eq!(flags, vec![vec![(true, 2, true), (true, 2, true)], vec![(false, 2, true), (true, 1, true)]]);
    // A later batch: a redelivery changes nothing; a new event bumps the version and reopens.
    let c = [ev("c1", "c1:start", false), ev("c1", "c1:recording", false)];
    let out = store.record_pbx_events(&[("generic", "generic", &c, "raw-c")], now()).await.unwrap();
    assert_eq!(out[0].iter().map(|u| (u.new_event, u.version)).collect::<Vec<_>>(), vec![(false, 3), (true, 3)]);
    assert_eq!(store.pbx_call_facts("generic", "c1").await.unwrap().len(), 3);
    // The same event id from another provider is another event.
    let out =
        store.record_pbx_events(&[("zadarma", "zadarma", &[ev("c1", "c1:start", false)], "raw")], now()).await.unwrap();
    assert!(out[0][0].new_event);
});

fn sales_policy(owner: Uuid) -> inflow::crm::mail::MailboxPolicy {
    inflow::crm::mail::MailboxPolicy {
        name: "sales".into(),
        owner,
        filter: 0,
        create: inflow::crm::mail::Create::Leads,
        create_responses: true,
        auto_unsubscribe: true,
        auto_convert: true,
        lead_source: 100_000_000,
        sender_hourly_limit: 1000,
        unsubscribe_keywords: vec![],
        unsubscribe_mailto: None,
    }
}

fn mail_input(raw: &[u8]) -> inflow::store::MailInput {
    inflow::store::MailInput {
        parsed: inflow::ingest::mail::parse(raw, 1 << 20),
        raw: Some(raw.to_vec()),
        location: "imap://sales/INBOX;UIDVALIDITY=1/;UID=1".into(),
        raw_key: "k".into(),
    }
}

async fn count_rows(store: &Store, sql: &str) -> i64 {
    use inflow::store::Exec;
    store.db.clone().fetch_one(sql, vec![]).await.unwrap().get::<i64>("n").unwrap()
}

/// Polls until `n` of the store's sessions wait on a lock (PostgreSQL), or fails at 20 s.
async fn until_waiting_on_locks(store: &Store, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count_rows(store, "SELECT COUNT(*) AS n FROM pg_locks WHERE NOT granted").await < n {
        assert!(std::time::Instant::now() < deadline, "{n} sessions never waited on a lock");
        tokio::task::yield_now().await;
    }
}

// Issue 22: the same message arriving in two mailboxes at once (PostgreSQL, two workers) is
// recorded once. Both workers read the message before either commits; the first to take
// the sender's lock writes it, and the other must find it seen under that lock rather than
// plan it a second time (the seen keys used to be read before the locks: a second e-mail
// activity, and the second event insert skipped without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_in_two_mailboxes_at_once_is_recorded_once() {
    use inflow::store::{BounceRules, Exec};
    crate::helpers::with_store("postgres", |store: Store| async move {
        let owner = user(&store, "Sales", "sales@example.com", None).await;
        let raw = b"From: Anna <anna@client.example>\r\nTo: sales@example.com, info@example.com\r\n\
            Subject: Price list\r\nMessage-ID: <twice-1@client.example>\r\n\
            Date: Mon, 7 Dec 2026 09:00:00 +0300\r\n\r\nPlease send the price list.\r\n"
            .to_vec();
        let tz = chrono_tz::Europe::Moscow;
        // Hold the sender's lock (the one the ingest takes) so that both workers are inside
        // their transactions, past reading, before either may write.
        let mut gate = store.db.begin().await.unwrap();
        gate.fetch_all(
            "SELECT CAST(pg_advisory_xact_lock(hashtextextended('anna@client.example', 7)) AS TEXT) \
            AS l",
            vec![],
        )
        .await
        .unwrap();
        let worker = |mailbox: &'static str| {
            let (store, raw) = (store.clone(), raw.clone());
            let policy = inflow::crm::mail::MailboxPolicy { name: mailbox.into(), ..sales_policy(owner.systemuserid) };
            tokio::spawn(async move {
                store
                    .ingest_mail(&[mail_input(&raw)], &policy, BounceRules { soft_limit: 3 }, tz, now(), None)
                    .await
                    .unwrap()
            })
        };
        let (sales, info) = (worker("sales"), worker("info"));
        until_waiting_on_locks(&store, 2).await;
        gate.commit().await.unwrap();
        let mut statuses = vec![sales.await.unwrap()[0].status, info.await.unwrap()[0].status];
        statuses.sort();
        assert_eq!(statuses, [EventStatus::Processed, EventStatus::Duplicate]);
        assert_eq!(count_rows(&store, "SELECT COUNT(*) AS n FROM inbound_event").await, 1);
        assert_eq!(count_rows(&store, "SELECT COUNT(*) AS n FROM lead").await, 1);
        assert_eq!(count_rows(&store, "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email'").await, 1);

        // A message no sender lock orders (no sender address): another worker's event row,
        // not yet committed when this batch read the seen keys, must undo the batch (a short
        // insert count), not let it pass as written.
        let raw = b"From: undisclosed\r\nTo: sales@example.com\r\nSubject: Hello\r\n\
            Message-ID: <twice-2@client.example>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0300\r\n\r\nHello.\r\n"
            .to_vec();
        let input = mail_input(&raw);
        let key = input.parsed.as_ref().unwrap().key.clone();
        let mut other = store.db.begin().await.unwrap();
        other
            .execute(
                "INSERT INTO inbound_event (id, source, external_id, received_at, status) VALUES ($1, 'imap', \
                    $2, $3, 'processed')",
                vec![Uuid::new_v4().into(), key.into(), now().into()],
            )
            .await
            .unwrap();
        let late = {
            let store = store.clone();
            let policy = sales_policy(owner.systemuserid);
            tokio::spawn(async move {
                store.ingest_mail(&[input], &policy, BounceRules { soft_limit: 3 }, tz, now(), None).await
            })
        };
        until_waiting_on_locks(&store, 1).await; // the event insert waits on the other's row
        other.commit().await.unwrap();
        // The batch was undone and its message tried again alone, which found it recorded.
        let late = late.await.unwrap().unwrap();
        assert_eq!(late[0].status, EventStatus::Duplicate, "{late:?}");
        assert_eq!(count_rows(&store, "SELECT COUNT(*) AS n FROM inbound_event WHERE status = 'processed'").await, 2);
        assert_eq!(count_rows(&store, "SELECT COUNT(*) AS n FROM activity WHERE activitytypecode = 'email'").await, 1);
    })
    .await;
}

// Issue 22: a mailbox lease fences. A holder whose lease was taken over while it was paused
// writes nothing of its batch (no event, no lead), and says so; the new holder writes it once.
both_engines!(a_lost_lease_fences_the_batch, |store: Store| async move {
    use inflow::store::{BounceRules, Exec, LeaseFence};
    let owner = user(&store, "Sales", "sales@example.com", None).await;
    let t0 = now();
    let lease = Duration::seconds(60);
    assert!(store.acquire_mailbox_lease("sales", "INBOX", "host:1:aaaa", lease, t0).await.unwrap());
    // The holder stalls past its lease; another daemon takes the mailbox over.
    let later = t0 + Duration::seconds(61);
    assert!(store.acquire_mailbox_lease("sales", "INBOX", "host:2:bbbb", lease, later).await.unwrap());
    let raw = b"From: Anna <anna@client.example>\r\nTo: sales@example.com\r\nSubject: Price list\r\n\
        Message-ID: <fence-1@client.example>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0300\r\n\r\n\
        Please send the price list.\r\n"
        .to_vec();
    let input = || mail_input(&raw);
    let policy = sales_policy(owner.systemuserid);
    let fence = |holder: &str| LeaseFence { mailbox: "sales".into(), folder: "INBOX".into(), holder: holder.into() };
    let tz = chrono_tz::Europe::Moscow;
    let stale = store
        .ingest_mail(&[input()], &policy, BounceRules { soft_limit: 3 }, tz, later, Some(&fence("host:1:aaaa")))
        .await;
    assert!(matches!(stale, Err(StoreError::LeaseLost(_))), "{stale:?}");
    let count = |table: &'static str| {
        let store = store.clone();
        async move {
            store
                .db
                .clone()
                .fetch_one(&format!("SELECT COUNT(*) AS n FROM {table}"), vec![])
                .await
                .unwrap()
                .get::<i64>("n")
                .unwrap()
        }
    };
    assert_eq!((count("inbound_event").await, count("lead").await), (0, 0), "the old holder wrote nothing");
    let fresh = store
        .ingest_mail(&[input()], &policy, BounceRules { soft_limit: 3 }, tz, later, Some(&fence("host:2:bbbb")))
        .await
        .unwrap();
    assert_eq!(fresh[0].status, EventStatus::Processed, "{fresh:?}");
    assert_eq!((count("inbound_event").await, count("lead").await), (1, 1));
});
