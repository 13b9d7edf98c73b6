//! Wave sender benchmark (bench/waves.sh runs it): seeds N contacts on one static list of a
//! launched campaign, schedules a wave with a ~10 KB personalised text template and no rate
//! limit, runs the real wave sender against an SMTP server on loopback until the wave is
//! completed, and prints messages/s (start to completed, expansion included), the expansion
//! time and the process's peak RSS.
//!
//! wave_bench PORT N CONCURRENCY DATABASE_URL

use std::time::{Duration, Instant};

use inflow::crm::EntityKind;
use inflow::crm::entities::*;
use inflow::store::{Exec, RecordExt, Value};
use uuid::Uuid;

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

/// About 10 KB once rendered: a newsletter with the reader's name and company in it.
fn template() -> String {
    let para = "Dear {{ first_name | default(\"colleague\") }}, our November catalogue for {{ company | \
        default(\"your company\") }} is out. \
                It lists the new industrial pumps, the spare parts we keep in stock in Kazan and Moscow, \
                delivery terms, and the discounts \
                for orders placed before the end of the year. Reply to this message and your account manager \
                will call you back.\n\n";
    let mut t = String::from("Hello {{ first_name | default(\"colleague\") }},\n\n");
    while t.len() < 10_000 {
        t.push_str(para);
    }
    t.push_str("Unsubscribe: {{ unsubscribe_url }}\n");
    t
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, n, conc, url] = &args[..] else { anyhow::bail!("usage: wave_bench PORT N CONCURRENCY DATABASE_URL") };
    let (port, n, conc): (u16, usize, u32) = (port.parse()?, n.parse()?, conc.parse()?);
    let text = format!(
        "[database]\nurl = \"{url}\"\nmax_connections = 4\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[alerts]\n\
            enabled = false\n\n[org]\ntimezone = \"Europe/Moscow\"\npublic_base_url = \"https://crm.example.com\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"plain\"\nfrom = \"news@example.com\"\n\
         pool_size = {conc}\n\n\
         [waves]\nbatch_size = 500\npoll_interval_ms = 50\nunsubscribe_mailto = \"unsubscribe@example.com\"\n"
    );
    let cfg =
        inflow::config::Config::load(inflow::config::Source::Text { name: "bench", text: &text }, &Default::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = inflow::app::open_store(&cfg).await?;
    store.migrate().await?;
    let t = chrono::Utc::now();
    let owner = Uuid::new_v4();
    store
        .insert(&SystemUser {
            systemuserid: owner,
            lastname: "Marketing".into(),
            internalemailaddress: Some("marketing@example.com".into()),
            createdon: t,
            modifiedon: t,
            versionnumber: 1,
            ..Default::default()
        })
        .await?;
    let mut camp = Campaign {
        campaignid: Uuid::new_v4(),
        name: "Bench".into(),
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None);
    camp.statuscode = inflow::crm::campaign::LAUNCHED;
    store.insert(&camp).await?;
    let list =
        MarketingList { listid: Uuid::new_v4(), listname: "Bench".into(), createdfromcode: 2, ..Default::default() }
            .stamped(owner, EntityKind::Systemuser, t, None);
    store.insert(&list).await?;
    // Seeding is not measured: contacts and list members in one transaction.
    let mut tx = store.db.begin().await?;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    for (ci, chunk) in ids.chunks(50).enumerate() {
        let mut c_sql = Vec::new();
        let mut c_args: Vec<Value> = Vec::new();
        let mut m_sql = Vec::new();
        let mut m_args: Vec<Value> = Vec::new();
        for (i, id) in chunk.iter().enumerate() {
            let k = ci * 50 + i;
            let b = c_args.len();
            c_sql.push(format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7));
            c_args.extend([
                (*id).into(),
                format!("Reader{k}").into(),
                "Bench".into(),
                format!("reader{k}@bench{}.example", k % 97).into(),
                owner.into(),
                t.into(),
                t.into(),
            ]);
            let b = m_args.len();
            m_sql.push(format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
            m_args.extend([list.listid.into(), (*id).into(), "contact".into(), t.into()]);
        }
        tx.execute(
            &format!(
                "INSERT INTO contact (contactid, firstname, lastname, emailaddress1, ownerid, \
            createdon, modifiedon) VALUES {}",
                c_sql.join(", ")
            ),
            c_args,
        )
        .await?;
        tx.execute(
            &format!("INSERT INTO listmember (listid, entityid, entitytype, createdon) VALUES {}", m_sql.join(", ")),
            m_args,
        )
        .await?;
    }
    tx.commit().await?;
    let wave = CampaignActivity {
        activityid: Uuid::new_v4(),
        regardingobjectid: camp.campaignid,
        subject: "Bench wave".into(),
        channeltypecode: Some(7),
        donotsendonoptout: true,
        ignoreinactivelistmembers: true,
        ..Default::default()
    }
    .stamped(owner, EntityKind::Systemuser, t, None);
    store.create_campaign_activity(&wave).await?;
    store.add_campaign_lists(camp.campaignid, &[list.listid]).await?;
    store.set_wave_lists(wave.activityid, &[list.listid]).await?;
    let sched = inflow::store::waves::WaveSchedule {
        activity_id: wave.activityid,
        start_at: chrono::Utc::now(),
        timezone: "Europe/Moscow".into(),
        subject: "{{ first_name | default(\"colleague\") }}, the November catalogue".into(),
        text: template(),
        html: None,
        from_address: "news@example.com".into(),
        from_name: Some("Bench News".into()),
        reply_to: None,
        rate_per_minute: None,
        skip_responders_of: None,
    };
    inflow::waves::schedule(&store, &sched, chrono::Utc::now()).await?;

    let relay = inflow::waves::Relay::from_config(&cfg, &store)?.expect("smtp host set");
    let signer = inflow::waves::link_signer(&cfg, &store).await?;
    let rt = std::sync::Arc::new(inflow::waves::WaveRuntime::new(
        store.clone(),
        relay,
        inflow::waves::WaveSettings::from_config(&cfg)?,
        "bench",
        signer,
    ));
    let token = tokio_util::sync::CancellationToken::new();
    let t0 = Instant::now();
    let task = tokio::spawn(rt.clone().run(token.clone()));
    let mut expanded = None;
    loop {
        let w = store.wave(wave.activityid).await?;
        if expanded.is_none() && w.targeted.is_some() {
            expanded = Some(t0.elapsed());
        }
        if w.state.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // completion poll of the benchmark
    }
    let secs = t0.elapsed().as_secs_f64();
    token.cancel();
    task.await?;
    let st = store.wave_status(wave.activityid).await?;
    let exp = expanded.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    println!(
        "inflow wave: {} sent, {} failed in {secs:.2} s = {:.0} msg/s (expansion {exp:.2} s, sending alone \
            {:.0} msg/s); peak RSS {:.1} MB",
        st.sent,
        st.failed,
        st.sent as f64 / secs,
        st.sent as f64 / (secs - exp).max(1e-9),
        peak_rss_mb()
    );
    store.close().await;
    Ok(())
}
