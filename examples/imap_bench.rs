//! IMAP ingest benchmark (bench/imap.sh runs it): `bare` fetches a mailbox with async-imap
//! in the worker's batches and does nothing else; `inflow` runs the real daemon's worker
//! (fetch, parse, classify, dedup, commit, flag, checkpoint) on a fresh database until the
//! checkpoint reaches the last UID. Each prints messages/s and the process's peak RSS.
//!
//! imap_bench bare   PORT USER PASSWORD BATCH
//! imap_bench inflow PORT USER PASSWORD BATCH DATABASE_URL

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use inflow::crm::EntityKind;
use inflow::crm::entities::*;
use inflow::store::RecordExt;
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

async fn bare(port: u16, user: &str, password: &str, batch: usize) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let mut c = async_imap::Client::new(tcp);
    c.read_response().await?;
    let mut s = c.login(user, password).await.map_err(|(e, _)| e)?;
    s.select("INBOX").await?;
    // As the worker does: each response reduced as it arrives (see ingest/imap.rs).
    let mut uids: Vec<u32> = s
        .uid_fetch("1:*", "(UID RFC822.SIZE)")
        .await?
        .try_filter_map(|f| std::future::ready(Ok(f.uid)))
        .try_collect()
        .await?;
    uids.sort_unstable();
    let (mut n, mut bytes) = (0usize, 0usize);
    for chunk in uids.chunks(batch) {
        let set = inflow::ingest::imap::uid_set(chunk.iter().copied());
        let lens: Vec<usize> = s
            .uid_fetch(set, "(UID BODY.PEEK[])")
            .await?
            .try_filter_map(|f| std::future::ready(Ok(f.body().map(<[u8]>::len))))
            .try_collect()
            .await?;
        n += lens.len();
        bytes += lens.iter().sum::<usize>();
    }
    s.logout().await?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "bare fetch: {n} messages, {:.1} MB in {secs:.2} s = {:.0} msg/s; peak RSS {:.1} MB",
        bytes as f64 / 1e6,
        n as f64 / secs,
        peak_rss_mb()
    );
    Ok(())
}

async fn run_inflow(port: u16, user: &str, password: &str, batch: usize, url: &str) -> anyhow::Result<()> {
    let text = format!(
        "[database]\nurl = \"{url}\"\nmax_connections = 4\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[alerts]\n\
            enabled = false\n\n[org]\ntimezone = \"Europe/Moscow\"\n\n\
         [[mailboxes]]\nname = \"bench\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"plain\"\n\
         user = \"{user}\"\npassword = \"{password}\"\nowner = \"sales@crm.example.com\"\n\
         filter = 0\nauto_create = \"leads\"\nbatch_size = {batch}\nidle = false\npoll_interval_secs = 1\n\
         sender_hourly_limit = 1000000\n"
    );
    let cfg =
        inflow::config::Config::load(inflow::config::Source::Text { name: "bench", text: &text }, &Default::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Seed: the wave and the 1,000 outbound messages the replies and bounces refer to.
    let store = inflow::app::open_store(&cfg).await?;
    store.migrate().await?;
    let t = chrono::Utc::now();
    let user_rec = |email: &str| SystemUser {
        systemuserid: Uuid::new_v4(),
        lastname: email.into(),
        internalemailaddress: Some(email.into()),
        createdon: t,
        modifiedon: t,
        versionnumber: 1,
        ..Default::default()
    };
    let marketing = user_rec("marketing@crm.example.com");
    store.insert(&marketing).await?;
    let camp = Campaign {
        campaignid: Uuid::new_v4(),
        name: "Bench".into(),
        typecode: 1,
        transactioncurrencyid: "RUB".into(),
        ..Default::default()
    }
    .stamped(marketing.systemuserid, EntityKind::Systemuser, t, None);
    store.insert(&camp).await?;
    let wave = CampaignActivity {
        activityid: Uuid::new_v4(),
        regardingobjectid: camp.campaignid,
        subject: "Bench wave".into(),
        channeltypecode: Some(7),
        ..Default::default()
    }
    .stamped(marketing.systemuserid, EntityKind::Systemuser, t, None);
    store.create_campaign_activity(&wave).await?;
    for k in 0..1000 {
        let a = Activity {
            activityid: Uuid::new_v4(),
            activitytypecode: EntityKind::Email,
            regardingobjectid: Some(wave.activityid),
            regardingobjectidtype: Some(EntityKind::Campaignactivity),
            directioncode: Some(true),
            messageid: Some(format!("wave-bench.{k}@crm.example.com")),
            ..Default::default()
        }
        .stamped(marketing.systemuserid, EntityKind::Systemuser, t, None);
        store.insert(&a).await?;
    }
    store.insert(&user_rec("sales@crm.example.com")).await?;
    // How many messages there are (the bench mailbox is not changed by flagging).
    let last_uid = {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut c = async_imap::Client::new(tcp);
        c.read_response().await?;
        let mut s = c.login(user, password).await.map_err(|(e, _)| e)?;
        let mb = s.select("INBOX").await?;
        s.logout().await?;
        mb.uid_next.unwrap_or(1) - 1
    };
    let t0 = Instant::now();
    let running = inflow::app::start(cfg, tokio_util::sync::CancellationToken::new()).await?;
    loop {
        if store.mailbox_state("bench", "INBOX").await?.is_some_and(|s| s.last_uid >= last_uid as i64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
    let secs = t0.elapsed().as_secs_f64();
    let counts = store.mail_event_counts().await?;
    running.token.cancel();
    running.done.await??;
    let n: i64 = counts.iter().map(|c| c.2).sum();
    println!(
        "inflow ({:?}): {n} messages in {secs:.2} s = {:.0} msg/s; peak RSS {:.1} MB; events {:?}",
        store.engine(),
        n as f64 / secs,
        peak_rss_mb(),
        counts
    );
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=sqlx::query=debug, say, lists every statement (on stderr) to count them.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a: Vec<String> = std::env::args().collect();
    let port: u16 = a[2].parse()?;
    let batch: usize = a[5].parse()?;
    match a[1].as_str() {
        "bare" => bare(port, &a[3], &a[4], batch).await,
        "inflow" => run_inflow(port, &a[3], &a[4], batch, &a[6]).await,
        m => anyhow::bail!("unknown mode {m}"),
    }
}
