//! Online backups of the embedded SQLite database (issue 22): `VACUUM INTO` copies one read
//! snapshot — every transaction committed before it began, none after — while the daemon
//! goes on writing (WAL lets readers and the writer work at once). The copy is compacted
//! and self-contained (no -wal file to carry along). PostgreSQL has its own tools (README).

use std::path::Path;

use super::db::{Db, Engine, Exec};
use super::{Result, Store, StoreError};

/// What a backup wrote.
#[derive(Debug)]
pub struct Backup {
    pub bytes: u64,
    /// `PRAGMA integrity_check` of the copy: "ok" when sound.
    pub integrity: String,
}

impl Store {
    /// Writes a consistent copy of this SQLite database to `path` (which must not exist yet),
    /// then opens the copy and checks it.
    pub async fn backup_into(&self, path: &Path) -> Result<Backup> {
        if self.db.engine() != Engine::Sqlite {
            return Err(StoreError::Unsupported("an online copy is made of SQLite databases only".into()));
        }
        if path.exists() {
            return Err(StoreError::Unsupported(format!("{} exists already: name a new file", path.display())));
        }
        let target = path.to_string_lossy().to_string();
        self.db.clone().execute("VACUUM INTO $1", vec![target.into()]).await?;
        let copy = Db::connect(&crate::config::DatabaseConfig {
            url: format!("sqlite://{}", path.display()),
            max_connections: 1,
            ..Default::default()
        })
        .await?;
        let integrity = copy.clone().fetch_one("PRAGMA integrity_check", vec![]).await;
        copy.close().await;
        let integrity: String = integrity?.get("integrity_check")?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default();
        Ok(Backup { bytes, integrity })
    }
}
