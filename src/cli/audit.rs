//! The audit of writes made from the command line (issue 22 item 6): the same `api_audit`
//! table the API and the console write to, so an admin reading `GET /api/v1/ops/audit` sees
//! every change to the customer base, whichever door it came through.

use clap::ArgMatches;

use crate::config::Config;

/// The commands that change nothing. Everything else is a write and is recorded: a verb
/// added later is audited until it is listed here, never silently left out.
const READS: &[&str] = &[
    "run",
    "backup",
    "check-config",
    "mail quarantine",
    "wave list",
    "wave status",
    "campaign list",
    "campaign lists",
    "list all",
    "list members",
    "line list",
    "user list",
    "token list",
    "oauth status",
];

/// The verb a command line names (`wave pause`), if it writes.
pub(super) fn write_verb(m: &ArgMatches) -> Option<String> {
    let mut words = Vec::new();
    let mut at = m;
    while let Some((name, sub)) = at.subcommand() {
        words.push(name);
        at = sub;
    }
    let verb = words.join(" ");
    (!verb.is_empty() && !READS.contains(&verb.as_str())).then_some(verb)
}

/// Who ran it: the person behind `sudo` when there is one, else the login.
fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Records a write that succeeded. The command has committed by now: a failure here loses the
/// audit line (and says so), never the write.
pub(super) async fn record(cfg: &Config, verb: &str) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w = crate::store::api::ApiWrite {
        // No CRM user: the operator at the shell, named in `token_name`.
        user: uuid::Uuid::nil(),
        role: "operator".into(),
        token_name: format!("cli:{}", operator()),
        method: "CLI".into(),
        route: verb.into(),
        path: args.join(" "),
        status: 0,
    };
    let recorded = store.record_api_write(&w, chrono::Utc::now()).await;
    store.close().await;
    Ok(recorded?)
}
