//! The only place with SQL. One interface over SQLite (embedded default) and PostgreSQL
//! (several daemons on one database).
//!
//! SQL is written once, portable, with `$n` placeholders (SQLite accepts `$NNN` too; the
//! multi-row inserts of `records::insert_values` write `?` on SQLite, where binding named
//! parameters costs n²) and portable column types: ids TEXT, instants BIGINT epoch ms, dates
//! TEXT, money BIGINT minor units, booleans BOOLEAN. Statements go through a tiny value layer
//! (`Value`, `Row`) so that each query exists once and runs on either engine; per-engine SQL
//! exists only where the dialects differ (`match` on `Engine` beside the statement;
//! docs/architecture.md §3 lists each place). How writers take turns on SQLite's single writer
//! is `gate`. Callers get typed results and `StoreError`.

mod alerts;
pub mod api;
mod backup;
pub mod console;
mod criteria;
mod db;
mod deals;
mod gate;
pub use gate::WriteGate;
pub use rollup::{FULL_ROLLUP_EVERY, ROLLUP_EVERY};
mod lines;
mod mail;
mod marketing;
mod merge;
mod names;
mod oauth;
pub use oauth::OAuthGrant;
mod ops;
mod pbx;
mod quick;
mod records;
mod rollup;
mod rules;
mod timeline;
pub mod waves;
mod work;

pub use alerts::DigestRow;
pub use backup::Backup;
pub use criteria::compile_members_query;
pub use db::{Db, Engine, Exec, Row, Tx, Value};
pub use mail::{BounceRules, LeaseFence, MailInput, MailOutcome, MailboxState, SOURCE as MAIL_SOURCE};
pub use merge::MergeOutcome;
pub use ops::{DupCandidate, InboundEvent, InboundOutcome, NotificationClaim, Suppression};
pub use pbx::{CallApply, PBX_CALL_QUEUE, PbxCall, PbxCallUpdate, PbxEventRow};
pub use quick::RunOutcome;
pub use records::{ListPage, RecordExt};
pub use rules::{CreateMode, ImportDuplicates, ImportReport};

use crate::config::DatabaseConfig;
use crate::crm::{EmailRules, RuleError};

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A domain rule refused the operation.
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// Someone else changed the record first (optimistic concurrency on versionnumber).
    #[error("{kind} {id} was changed concurrently; reload and retry")]
    Conflict { kind: &'static str, id: String },
    #[error("stored data could not be read: {0}")]
    Decode(String),
    #[error("database unreachable: {0}")]
    Unavailable(String),
    /// A lease this write needed is held by someone else now (issue 22: a lease fences).
    #[error("the lease on {0} is no longer ours")]
    LeaseLost(String),
    /// Another worker wrote one of this transaction's keys after it read them: the work is
    /// undone, to be planned again from what is there now (issue 22: never pass silently).
    #[error("{0}: another worker recorded it first")]
    Overtaken(String),
    #[error("migration failed: {0}")]
    Migrate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database's schema is older than this binary: run `inflow migrate`.
    #[error("schema at version {applied}, this binary needs {latest}")]
    SchemaBehind { applied: i64, latest: i64 },
    /// A row of an import could not be written (what the store said, and on which line).
    #[error("line {line}: {source}")]
    AtLine {
        line: u64,
        #[source]
        source: Box<StoreError>,
    },
    /// The operation does not apply here (e.g. an online copy of a PostgreSQL database).
    #[error("{0}")]
    Unsupported(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn decode(e: impl std::fmt::Display) -> Self {
        StoreError::Decode(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Rows per multi-row INSERT. SQLite looks bound parameters up by name with a linear scan
/// (`$N` placeholders are named), so a statement's binding cost grows with the square of
/// its parameter count: measured on 15,000 claims, 50 rows per statement took 0.36 s,
/// 500 took 1.2 s and 2,000 took 4.3 s.
pub(crate) const ROWS_PER_STATEMENT: usize = 50;

/// What the store needs to normalise addresses (R-DUP-1/2) when it indexes records.
#[derive(Debug, Clone)]
pub struct Normalizer {
    pub email_rules: EmailRules,
    pub default_region: String,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer { email_rules: EmailRules::default(), default_region: "RU".into() }
    }
}

/// The store: a pool on one engine plus the normalisation settings.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    pub norm: Normalizer,
    /// Configured custom `leadsourcecode` values (R-LD-4).
    pub custom_lead_sources: Vec<i32>,
    pub default_currency: String,
    /// How writers take turns on SQLite's single writer (shared by every clone).
    pub gate: std::sync::Arc<WriteGate>,
}

impl Store {
    /// Connects (creating the SQLite file if needed). Does not migrate.
    pub async fn connect(cfg: &DatabaseConfig, norm: Normalizer) -> Result<Store> {
        let db = Db::connect(cfg).await?;
        let gate = std::sync::Arc::new(WriteGate::new(db.engine()));
        Ok(Store {
            db,
            norm,
            custom_lead_sources: vec![100_000_000, 100_000_001],
            default_currency: "RUB".into(),
            gate,
        })
    }

    pub fn engine(&self) -> Engine {
        self.db.engine()
    }

    /// Applies inflow's migrations and the apalis queue migrations.
    pub async fn migrate(&self) -> Result<()> {
        self.db.migrate().await
    }

    /// `/readyz`: the database answers and every migration this binary knows is applied.
    pub async fn readiness(&self) -> Result<()> {
        self.db.readiness().await
    }

    pub async fn close(&self) {
        self.db.close().await
    }
}
