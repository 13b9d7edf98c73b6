//! Job queues (apalis 1.0) on the same database as the CRM tables.
//!
//! Queue names are explicit (the apalis default is the Rust type path, which breaks on a
//! rename). Pushing with an idempotency key that is already queued is "already queued" on
//! both engines: apalis-sqlite drops the duplicate itself, apalis-postgres reports a unique
//! violation on `idx_jobs_idempotency_key`, which `JobQueue::push` treats as success.

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use serde::{Serialize, de::DeserializeOwned};

use crate::store::Db;

/// Default durable attempts of a job (apalis' own default is 25).
pub const DEFAULT_MAX_ATTEMPTS: usize = 10;

/// A queue of `T` on whichever engine the store uses.
pub enum JobQueue<T> {
    Sqlite(SqliteStorage<T>),
    Postgres(PostgresStorage<T>),
}

impl<T> Clone for JobQueue<T> {
    fn clone(&self) -> Self {
        match self {
            JobQueue::Sqlite(s) => JobQueue::Sqlite(s.clone()),
            JobQueue::Postgres(p) => JobQueue::Postgres(p.clone()),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static> JobQueue<T> {
    /// The queue `name` on `db`.
    pub fn new(db: &Db, name: &str) -> Self {
        match db {
            Db::Sqlite(p) => {
                JobQueue::Sqlite(SqliteStorage::new(p).with_config(apalis_sqlite::Config::default().queue(name)))
            }
            Db::Postgres(p) => {
                JobQueue::Postgres(PostgresStorage::new(p).with_config(apalis_postgres::Config::default().queue(name)))
            }
        }
    }

    /// Enqueues `job` once per `key`: a key that is already queued is a success, not a
    /// second job.
    pub async fn push(&self, job: T, key: &str, max_attempts: usize) -> Result<(), BoxDynError> {
        let task = TaskBuilder::new(job).idempotency_key(key).max_attempts(max_attempts).build();
        let res = match self.clone() {
            JobQueue::Sqlite(mut s) => s.push_task(task).await.map_err(BoxDynError::from),
            JobQueue::Postgres(mut p) => p.push_task(task).await.map_err(BoxDynError::from),
        };
        match res {
            Err(e) if !is_duplicate_key(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

fn is_duplicate_key(e: &BoxDynError) -> bool {
    let text = format!("{e:?}");
    text.contains("idx_jobs_idempotency_key") || text.contains("23505")
}
