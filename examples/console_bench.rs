//! Console page benchmark (bench/console.sh runs it; issue 19 §5): 100,000 leads, 1,000,000
//! activities regarding them, 50 campaigns and 50 users (and 10,000 accounts with 50,000
//! contacts for the customer pages) in a fresh database, then the app on
//! port 0 and each page requested through HTTP with a signed-in session cookie. Prints, per
//! page, the median and the slowest of the timed requests (target: every page < 100 ms).
//! Usage: console_bench DATABASE_URL   (CONSOLE_BENCH_LEADS / _ACTIVITIES shrink the data)

use std::time::Instant;

use chrono::{Duration, Utc};
use inflow::config::{Config, Source};
use inflow::crm::EntityKind;
use inflow::store::{Exec, Value};
use uuid::Uuid;

const USERS: usize = 50;
const CAMPAIGNS: usize = 50;
const ROUNDS: usize = 15;

/// Inserts rows in multi-row statements of `per` rows, in one transaction.
async fn load(
    store: &inflow::store::Store,
    table: &str,
    cols: &[&str],
    n: usize,
    mut row: impl FnMut(usize) -> Vec<Value>,
) -> anyhow::Result<()> {
    let per = 800 / cols.len().max(1) * 10 / 10;
    let mut tx = store.db.begin().await?;
    for start in (0..n).step_by(per) {
        let end = (start + per).min(n);
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
        let mut args = Vec::with_capacity((end - start) * cols.len());
        for (j, i) in (start..end).enumerate() {
            let ph: Vec<String> = (0..cols.len()).map(|c| format!("${}", j * cols.len() + c + 1)).collect();
            sql.push_str(&format!("{}({})", if j > 0 { ", " } else { "" }, ph.join(", ")));
            args.extend(row(i));
        }
        tx.execute(&sql, args).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).expect("usage: console_bench DATABASE_URL");
    let env_n = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (leads, activities) = (env_n("CONSOLE_BENCH_LEADS", 100_000), env_n("CONSOLE_BENCH_ACTIVITIES", 1_000_000));
    let text = format!(
        "[database]\nurl = \"{url}\"\nmax_connections = 8\n[http]\nlisten = \"127.0.0.1:0\"\n[org]\n\
            timezone = \"Europe/Moscow\"\nlocale = \"en\"\n[alerts]\nenabled = false\n"
    );
    let cfg = Config::load(Source::Text { name: "bench", text: &text }, &Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = inflow::app::open_store(&cfg).await?;
    // Timed: on a reused database this is how long a new migration takes on this much data.
    let started = std::time::Instant::now();
    store.migrate().await?;
    println!("migrations applied in {:.2} s", started.elapsed().as_secs_f64());
    let now = Utc::now();
    // CONSOLE_BENCH_REUSE=1 on a database this program filled before: only the pages are
    // timed (for trying an index or a query again without loading the data anew).
    let reuse = std::env::var_os("CONSOLE_BENCH_REUSE").is_some()
        && store.db.clone().fetch_one("SELECT COUNT(*) AS n FROM lead", vec![]).await?.get::<i64>("n")? > 0;
    let (me, some_lead) = if reuse {
        let me: Uuid = store
            .db
            .clone()
            .fetch_one("SELECT systemuserid FROM systemuser WHERE lastname = 'User 0'", vec![])
            .await?
            .get("systemuserid")?;
        let lead: Uuid = store
            .db
            .clone()
            .fetch_one("SELECT leadid FROM lead ORDER BY leadid LIMIT 1", vec![])
            .await?
            .get("leadid")?;
        (me, lead)
    } else {
        seed(&store, leads, activities, now).await?
    };
    timed_pages(&cfg, &store, me, some_lead, now).await?;
    store.close().await;
    Ok(())
}

/// Fills the database; returns the user the session acts as and a lead to open.
async fn seed(
    store: &inflow::store::Store,
    leads: usize,
    activities: usize,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<(Uuid, Uuid)> {
    let store = store.clone();
    let ms = now.timestamp_millis();
    let t = Instant::now();

    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
    load(
        &store,
        "systemuser",
        &["systemuserid", "lastname", "fullname", "internalemailaddress", "createdon", "modifiedon"],
        USERS,
        |i| {
            vec![
                users[i].into(),
                format!("User {i}").into(),
                format!("Пользователь {i}").into(),
                format!("u{i}@bench.example").into(),
                ms.into(),
                ms.into(),
            ]
        },
    )
    .await?;
    let campaigns: Vec<Uuid> = (0..CAMPAIGNS).map(|_| Uuid::new_v4()).collect();
    load(
        &store,
        "campaign",
        &[
            "campaignid",
            "name",
            "transactioncurrencyid",
            "budgetedcost",
            "totalactualcost",
            "expectedresponse",
            "ownerid",
            "createdon",
            "modifiedon",
        ],
        CAMPAIGNS,
        |i| {
            vec![
                campaigns[i].into(),
                format!("Кампания {i}").into(),
                "RUB".into(),
                Value::from(((i as i64) + 1) * 10_000_000),
                Value::from((i as i64) * 9_000_000),
                Value::from(5i64),
                users[i % USERS].into(),
                ms.into(),
                ms.into(),
            ]
        },
    )
    .await?;
    // Leads over the last 120 days: sources 1..10 and the two custom ones, a campaign for a
    // third of them, states open / qualified / disqualified.
    let lead_ids: Vec<Uuid> = (0..leads).map(|_| Uuid::new_v4()).collect();
    let sources = [1i64, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100_000_000, 100_000_001];
    load(
        &store,
        "lead",
        &[
            "leadid",
            "subject",
            "lastname",
            "leadsourcecode",
            "campaignid",
            "ownerid",
            "statecode",
            "statuscode",
            "createdon",
            "modifiedon",
        ],
        leads,
        |i| {
            let created = (now - Duration::minutes((i as i64 * 7919) % (120 * 24 * 60))).timestamp_millis();
            let state = [0i64, 0, 0, 1, 2][i % 5];
            let campaign: Option<Uuid> = (i % 3 == 0).then(|| campaigns[i % CAMPAIGNS]);
            vec![
                lead_ids[i].into(),
                format!("Интерес {i}").into(),
                format!("Фамилия{i}").into(),
                Value::from(sources[i % sources.len()]),
                campaign.into(),
                users[i % USERS].into(),
                Value::from(state),
                Value::from([1i64, 1, 1, 3, 4][i % 5]),
                created.into(),
                created.into(),
            ]
        },
    )
    .await?;
    // Activities regarding the leads: tasks and calls, owners round-robin; a third open, and
    // of the open ones a tenth overdue (due up to 30 days ago), the rest due within 60 days.
    load(
        &store,
        "activity",
        &[
            "activityid",
            "activitytypecode",
            "subject",
            "regardingobjectid",
            "regardingobjectidtype",
            "ownerid",
            "statecode",
            "statuscode",
            "scheduledend",
            "createdon",
            "modifiedon",
        ],
        activities,
        |i| {
            let kind = if i % 3 == 0 { EntityKind::Phonecall } else { EntityKind::Task };
            let open = (i / USERS).is_multiple_of(3);
            let spread = (i as i64 * 104_729) % (30 * 24 * 60);
            let due = if (i / USERS).is_multiple_of(30) {
                now - Duration::minutes(spread + 1)
            } else {
                now + Duration::minutes(2 * spread + 1)
            };
            // Made over the last 120 days, touched since.
            let made = (now - Duration::minutes((i as i64 * 7_919) % (120 * 24 * 60))).timestamp_millis();
            vec![
                Uuid::new_v4().into(),
                kind.into(),
                format!("Дело {i}").into(),
                lead_ids[i % leads].into(),
                "lead".into(),
                users[i % USERS].into(),
                Value::from(if open { 0i64 } else { 1 }),
                Value::from(if open { 1i64 } else { 2 }),
                due.into(),
                made.into(),
                made.into(),
            ]
        },
    )
    .await?;
    // Customers: accounts, and contacts of them (a fifth with no company).
    let (n_accounts, n_contacts) = (leads / 10, leads / 2);
    let account_ids: Vec<Uuid> = (0..n_accounts).map(|_| Uuid::new_v4()).collect();
    load(
        &store,
        "account",
        &["accountid", "name", "address1_city", "ownerid", "createdon", "modifiedon"],
        n_accounts,
        |i| {
            vec![
                account_ids[i].into(),
                format!("ООО Компания {i}").into(),
                ["Москва", "Тверь", "Казань"][i % 3].into(),
                users[i % USERS].into(),
                ms.into(),
                ms.into(),
            ]
        },
    )
    .await?;
    load(
        &store,
        "contact",
        &[
            "contactid",
            "firstname",
            "lastname",
            "emailaddress1",
            "parentcustomerid",
            "parentcustomeridtype",
            "ownerid",
            "createdon",
            "modifiedon",
        ],
        n_contacts,
        |i| {
            let company: Option<Uuid> = (i % 5 != 0).then(|| account_ids[i % n_accounts.max(1)]);
            vec![
                Uuid::new_v4().into(),
                "Иван".into(),
                format!("Клиентов{i}").into(),
                format!("c{i}@client.example").into(),
                company.into(),
                company.map(|_| "account").into(),
                users[i % USERS].into(),
                ms.into(),
                ms.into(),
            ]
        },
    )
    .await?;
    // The fill went around the daemon: PostgreSQL's roll-up of when each lead last had an
    // activity (the `stale` view) reads it all once, as it keeps up with a daemon's writes.
    let rolled = Instant::now();
    let moved = store.roll_up_lead_activity(now, true).await?;
    if store.engine() == inflow::store::Engine::Postgres {
        println!("roll-up of {moved} leads in {:.2} s", rolled.elapsed().as_secs_f64());
    }
    // The steady state of a database in use: statistics, and on PostgreSQL a vacuumed table
    // (autovacuum's work; index-only scans need it), on SQLite the WAL folded back.
    if store.engine() == inflow::store::Engine::Postgres {
        store.db.clone().execute("VACUUM ANALYZE", vec![]).await?;
    } else {
        store.db.clone().execute("ANALYZE", vec![]).await?;
        store.db.clone().execute("PRAGMA wal_checkpoint(TRUNCATE)", vec![]).await?;
    }
    println!(
        "loaded {leads} leads, {activities} activities, {CAMPAIGNS} campaigns, {USERS} users in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok((users[0], lead_ids[leads / 2]))
}

async fn timed_pages(
    cfg: &Config,
    store: &inflow::store::Store,
    me: Uuid,
    some_lead: Uuid,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let running = inflow::app::start(cfg.clone(), tokio_util::sync::CancellationToken::new()).await?;
    let base = format!("http://{}", running.addr);
    // A signed-in admin session (as sign-in would store it), new each run (a reused database
    // keeps the sessions of earlier runs).
    let session = format!("bench-session-{}", Uuid::new_v4());
    store
        .start_console_session(
            &inflow::http::api::token_hash(&session),
            me,
            "admin",
            "bench-csrf",
            now,
            now + Duration::hours(1),
        )
        .await?;
    let some_activity: Uuid = store
        .db
        .clone()
        .fetch_one("SELECT activityid FROM activity WHERE regardingobjectid = $1", vec![some_lead.into()])
        .await?
        .get("activityid")?;
    let http = reqwest::Client::new();
    let pages = [
        "/".to_string(),
        "/?days=90".into(),
        "/work".into(),
        "/leads".into(),
        "/leads?view=open".into(),
        "/leads?view=open&source=8&page=20".into(),
        "/leads?view=stale".into(),
        "/leads?view=opened-this-week".into(),
        format!("/leads/{some_lead}"),
        "/campaigns".into(),
        "/records/accounts".into(),
        "/records/accounts?q=ООО%20Компания%2099&page=2".into(),
        "/records/contacts".into(),
        "/records/contacts?q=клиентов123".into(),
        format!("/activities/{some_activity}"),
    ];
    // Every page once, untimed: the first reads of a page's data from disk (and into each
    // pooled connection's cache) are not what people wait for on a running system.
    for p in &pages {
        http.get(format!("{base}{p}"))
            .header("cookie", format!("inflow_session={session}"))
            .send()
            .await?
            .bytes()
            .await?;
    }
    for p in &pages {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let r = http.get(format!("{base}{p}")).header("cookie", format!("inflow_session={session}")).send().await?;
            let status = r.status();
            bytes = r.bytes().await?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status.is_success(), "{p}: {status}");
        }
        times.sort_by(f64::total_cmp);
        println!(
            "PAGE engine={:?} path={p} median_ms={:.1} max_ms={:.1} bytes={bytes}",
            store.engine(),
            times[ROUNDS / 2],
            times[ROUNDS - 1]
        );
    }
    running.token.cancel();
    running.done.await??;
    Ok(())
}
