//! Overdue benchmark (bench/overdue.sh runs it): 1,000,000 open activities, 10,000 of them
//! overdue, across 500 owners and 50 managers. Prints the time of the overdue scan query,
//! of a whole scan (query + directory + rules + claims + enqueueing the digests), and the
//! query plan. Usage: overdue_bench DATABASE_URL
//!
//! The scan claims and enqueues only when it could send: with a relay configured and inside
//! working hours. So the bench names a relay (the scan never connects to it; the digest jobs,
//! which would, do not run here) and sets working hours to the whole week, and it refuses to
//! print a figure when nothing was claimed: an earlier version had no relay and timed an
//! empty step (issue 23).

use std::time::Instant;

use chrono::{Duration, Utc};
use inflow::alerts::AlertsRuntime;
use inflow::config::{Config, Source};
use inflow::crm::EntityKind;
use inflow::store::{Exec, Value};
use uuid::Uuid;

const OVERDUE: usize = 10_000;
const OWNERS: usize = 500;
const MANAGERS: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args().nth(1).expect("usage: overdue_bench DATABASE_URL");
    // OVERDUE_BENCH_ACTIVITIES shrinks the data set for a quick look (default 1,000,000).
    let activities: usize =
        std::env::var("OVERDUE_BENCH_ACTIVITIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000).max(OVERDUE);
    let text = format!(
        "[database]\nurl = \"{url}\"\n[org]\ntimezone = \"Europe/Moscow\"\n[alerts]\n\
            working_hours = \"00:00-24:00\"\n\
            working_days = [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"]\n\
            kinds = [\"task\", \"phonecall\", \"campaignactivity\"]\n\
            [smtp]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"plain\"\nfrom = \"alerts@bench.example\"\n"
    );
    let cfg = Config::load(Source::Text { name: "bench", text: &text }, &Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = inflow::app::open_store(&cfg).await?;
    store.migrate().await?;
    let now = Utc::now();
    let ms = now.timestamp_millis();

    // Users: 50 managers, 500 owners (10 per manager).
    let managers: Vec<Uuid> = (0..MANAGERS).map(|_| Uuid::new_v4()).collect();
    let owners: Vec<Uuid> = (0..OWNERS).map(|_| Uuid::new_v4()).collect();
    let mut tx = store.db.begin().await?;
    for (i, id) in managers.iter().chain(owners.iter()).enumerate() {
        let manager: Option<Uuid> = if i < MANAGERS { None } else { Some(managers[(i - MANAGERS) % MANAGERS]) };
        tx.execute(
            "INSERT INTO systemuser (systemuserid, lastname, internalemailaddress, parentsystemuserid, \
                createdon, modifiedon) VALUES ($1, $2, $3, $4, $5, $5)",
            vec![
                (*id).into(),
                format!("User {i}").into(),
                format!("u{i}@bench.example").into(),
                manager.into(),
                ms.into(),
            ],
        )
        .await?;
    }
    tx.commit().await?;

    // Activities: every 100th is overdue (due 1..48 h ago, half past the escalation delay);
    // the rest are due in the future. Owners round-robin.
    let t = Instant::now();
    let mut tx = store.db.begin().await?;
    let cols =
        "(activityid, activitytypecode, subject, ownerid, statecode, statuscode, scheduledend, createdon, modifiedon)";
    for chunk_start in (0..activities).step_by(500) {
        let mut sql = format!("INSERT INTO activity {cols} VALUES ");
        let mut args: Vec<Value> = Vec::with_capacity(500 * 6);
        for (j, i) in (chunk_start..(chunk_start + 500).min(activities)).enumerate() {
            let due = if i % (activities / OVERDUE) == 0 {
                now - Duration::minutes(60 + (i / 100 % 48) as i64 * 60)
            } else {
                now + Duration::hours(1 + (i % 2000) as i64)
            };
            let kind = if i % 3 == 0 { EntityKind::Phonecall } else { EntityKind::Task };
            // Overdue ones spread over all owners (every 100th activity, owner by its rank).
            let owner = if i % (activities / OVERDUE) == 0 {
                owners[(i / (activities / OVERDUE)) % OWNERS]
            } else {
                owners[i % OWNERS]
            };
            let b = j * 6;
            sql.push_str(&format!(
                "{}(${}, ${}, ${}, ${}, 0, {}, ${}, ${}, ${})",
                if j > 0 { ", " } else { "" },
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                if kind == EntityKind::Task { 2 } else { 1 },
                b + 5,
                b + 6,
                b + 6
            ));
            args.extend([
                Uuid::new_v4().into(),
                kind.into(),
                format!("Activity {i}").into(),
                owner.into(),
                due.into(),
                ms.into(),
            ]);
        }
        tx.execute(&sql, args).await?;
    }
    tx.commit().await?;
    if store.engine() == inflow::store::Engine::Postgres {
        store.db.clone().execute("ANALYZE activity", vec![]).await?;
    } else {
        store.db.clone().execute("ANALYZE", vec![]).await?;
    }
    println!("loaded {activities} activities ({OVERDUE} overdue) in {:.1} s", t.elapsed().as_secs_f64());

    let rt = AlertsRuntime::from_config(&cfg, store.clone())?;
    let t = Instant::now();
    let items = store.overdue_items(now, cfg.tz(), &rt.kinds, 100_000).await?;
    let scan_query = t.elapsed();
    let t = Instant::now();
    let report = rt.scan(now).await?;
    let whole = t.elapsed();
    anyhow::ensure!(
        report.claimed > 0 && report.digests > 0,
        "the scan claimed {} notifications and enqueued {} digests (no relay: {}, outside working hours: {}): \
         it timed nothing",
        report.claimed,
        report.digests,
        report.no_relay,
        report.quiet
    );
    println!("query plan:");
    for line in store.explain_overdue(now).await? {
        println!("  {line}");
    }
    println!(
        "RESULT engine={:?} overdue_found={} scan_query_ms={:.1} scan_and_enqueue_ms={:.1} (query {:.1} + \
            rules {:.1} + claims {:.1} + enqueue {:.1}) notifications_claimed={} digests_enqueued={}",
        store.engine(),
        items.len(),
        scan_query.as_secs_f64() * 1000.0,
        whole.as_secs_f64() * 1000.0,
        report.query_ms,
        report.rules_ms,
        report.claim_ms,
        report.enqueue_ms,
        report.claimed,
        report.digests
    );
    store.close().await;
    Ok(())
}
