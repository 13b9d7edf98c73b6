//! Pools, transactions and the value layer shared by both engines.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Column, PgPool, Postgres, Row as _, Sqlite, SqlitePool, TypeInfo, ValueRef};

use super::{Result, StoreError};
use crate::config::DatabaseConfig;
use crate::crm::status::{CallStatus, CandidateStatus, EventStatus, NotificationStatus};

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A bind parameter or a column value. Parameters carry their type even when NULL, because
/// PostgreSQL types every parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A NULL read from a row (untyped). Never bind it: use the typed `None`s.
    Null,
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    /// A whole column bound as one PostgreSQL array (`UNNEST` inserts); SQLite refuses it.
    Array(Array),
}

/// One typed column of values for a PostgreSQL array parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Array {
    /// The column `values` as one array, typed by its first typed value (a typed `None`
    /// counts); `None` when the column mixes types or has only untyped NULLs.
    pub fn column<'a>(values: impl Iterator<Item = &'a Value> + Clone) -> Option<Array> {
        let mut out = match values.clone().find(|v| !matches!(v, Value::Null))? {
            Value::Int(_) => Array::Int(Vec::new()),
            Value::Real(_) => Array::Real(Vec::new()),
            Value::Text(_) => Array::Text(Vec::new()),
            Value::Bool(_) => Array::Bool(Vec::new()),
            Value::Bytes(_) => Array::Bytes(Vec::new()),
            Value::Null | Value::Array(_) => return None,
        };
        for v in values {
            match (&mut out, v) {
                (Array::Int(a), Value::Int(x)) => a.push(*x),
                (Array::Real(a), Value::Real(x)) => a.push(*x),
                (Array::Text(a), Value::Text(x)) => a.push(x.clone()),
                (Array::Bool(a), Value::Bool(x)) => a.push(*x),
                (Array::Bytes(a), Value::Bytes(x)) => a.push(x.clone()),
                (a, Value::Null) => a.push_null(),
                _ => return None,
            }
        }
        Some(out)
    }

    fn push_null(&mut self) {
        match self {
            Array::Int(a) => a.push(None),
            Array::Real(a) => a.push(None),
            Array::Text(a) => a.push(None),
            Array::Bool(a) => a.push(None),
            Array::Bytes(a) => a.push(None),
        }
    }

    /// The PostgreSQL array type to cast the parameter to.
    pub fn pg_type(&self) -> &'static str {
        match self {
            Array::Int(_) => "int8[]",
            Array::Real(_) => "float8[]",
            Array::Text(_) => "text[]",
            Array::Bool(_) => "bool[]",
            Array::Bytes(_) => "bytea[]",
        }
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(
            self,
            Value::Null
                | Value::Int(None)
                | Value::Real(None)
                | Value::Text(None)
                | Value::Bool(None)
                | Value::Bytes(None)
        )
    }
}

/// Text is NUL-free on both engines: PostgreSQL refuses a NUL in text (a quoted-printable
/// body can decode to one) where SQLite would store it, so one engine would keep a message
/// the other fails on for good.
fn nul_free(s: String) -> String {
    if s.contains('\0') { s.replace('\0', "") } else { s }
}

macro_rules! value_from {
    ($($t:ty => $v:ident $(via $conv:expr)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::$v(Some(value_from!(@conv x $(, $conv)?)))
            }
        }
        impl From<Option<$t>> for Value {
            fn from(x: Option<$t>) -> Value {
                Value::$v(x.map(|x| value_from!(@conv x $(, $conv)?)))
            }
        }
    )*};
    (@conv $x:ident) => { $x.into() };
    (@conv $x:ident, $conv:expr) => { ($conv)($x) };
}
value_from! {
    i64 => Int, i32 => Int, bool => Bool, f64 => Real, String => Text via nul_free, Vec<u8> => Bytes,
    &str => Text via |s: &str| nul_free(s.to_string()),
    uuid::Uuid => Text via |u: uuid::Uuid| u.to_string(),
    chrono::DateTime<chrono::Utc> => Int via |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis(),
    chrono::NaiveDate => Text via |d: chrono::NaiveDate| d.to_string(),
    crate::crm::Money => Int via |m: crate::crm::Money| m.minor(),
    crate::crm::EntityKind => Text via |k: crate::crm::EntityKind| k.as_str().to_string(),
    EventStatus => Text via |s: EventStatus| s.as_str().to_string(),
    CallStatus => Text via |s: CallStatus| s.as_str().to_string(),
    NotificationStatus => Text via |s: NotificationStatus| s.as_str().to_string(),
    CandidateStatus => Text via |s: CandidateStatus| s.as_str().to_string(),
}

/// Reads a typed value out of a `Value`.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        if v.is_null() { Ok(None) } else { T::from_value(v).map(Some) }
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(Some(i)) => Ok(*i),
            Value::Bool(Some(b)) => Ok(*b as i64),
            other => Err(format!("expected an integer, got {other:?}")),
        }
    }
}
impl FromValue for i32 {
    fn from_value(v: &Value) -> Result<Self, String> {
        i64::from_value(v).and_then(|i| i32::try_from(i).map_err(|e| e.to_string()))
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(Some(b)) => Ok(*b),
            Value::Int(Some(i)) => Ok(*i != 0),
            other => Err(format!("expected a boolean, got {other:?}")),
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Real(Some(f)) => Ok(*f),
            Value::Int(Some(i)) => Ok(*i as f64),
            other => Err(format!("expected a number, got {other:?}")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(Some(s)) => Ok(s.clone()),
            other => Err(format!("expected text, got {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bytes(Some(b)) => Ok(b.clone()),
            Value::Text(Some(s)) => Ok(s.clone().into_bytes()),
            other => Err(format!("expected bytes, got {other:?}")),
        }
    }
}
impl FromValue for uuid::Uuid {
    fn from_value(v: &Value) -> Result<Self, String> {
        String::from_value(v)?.parse().map_err(|e: uuid::Error| e.to_string())
    }
}
impl FromValue for chrono::DateTime<chrono::Utc> {
    fn from_value(v: &Value) -> Result<Self, String> {
        let ms = i64::from_value(v)?;
        chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("{ms} is not a valid instant"))
    }
}
impl FromValue for chrono::NaiveDate {
    fn from_value(v: &Value) -> Result<Self, String> {
        String::from_value(v)?.parse().map_err(|e: chrono::ParseError| e.to_string())
    }
}
impl FromValue for crate::crm::Money {
    fn from_value(v: &Value) -> Result<Self, String> {
        i64::from_value(v).map(crate::crm::Money)
    }
}

/// Types stored by name (`as_str` on the way in, `FromStr` on the way out).
macro_rules! from_stored_name {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                String::from_value(v)?.parse()
            }
        }
    )*};
}
from_stored_name!(crate::crm::EntityKind, EventStatus, CallStatus, NotificationStatus, CandidateStatus);

/// A result row: column names and values, engine-neutral.
#[derive(Debug, Clone)]
pub struct Row {
    cols: Arc<[String]>,
    vals: Vec<Value>,
}

impl Row {
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.cols.iter().position(|c| c == name).map(|i| &self.vals[i])
    }

    /// The typed value of column `name`.
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T> {
        let v = self.value(name).ok_or_else(|| StoreError::Decode(format!("no column {name}")))?;
        T::from_value(v).map_err(|e| StoreError::Decode(format!("column {name}: {e}")))
    }

    /// The typed value of column `i`.
    pub fn at<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.vals.get(i).ok_or_else(|| StoreError::Decode(format!("no column #{i}")))?;
        T::from_value(v).map_err(|e| StoreError::Decode(format!("column #{i}: {e}")))
    }

    pub fn columns(&self) -> &[String] {
        &self.cols
    }
}

/// The column names of a result set, read once from its first row and shared by all rows.
fn column_names(r: &impl sqlx::Row) -> Arc<[String]> {
    r.columns().iter().map(|c| c.name().to_string()).collect()
}

/// Converts a result set row by row as it streams in (the column names are allocated once,
/// and the driver's rows are never all held beside ours); `f` maps each row as it arrives
/// (and may drop it).
async fn collect_rows<R: sqlx::Row, T>(
    mut rows: impl futures::Stream<Item = std::result::Result<R, sqlx::Error>> + Unpin,
    conv: fn(&R, &Arc<[String]>) -> Result<Row>,
    mut f: impl FnMut(Row) -> Result<T>,
) -> Result<Vec<T>> {
    use futures::TryStreamExt;
    let mut cols: Option<Arc<[String]>> = None;
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await? {
        let c = cols.get_or_insert_with(|| column_names(&r));
        out.push(f(conv(&r, c)?)?);
    }
    Ok(out)
}

fn sqlite_row(r: &sqlx::sqlite::SqliteRow, cols: &Arc<[String]>) -> Result<Row> {
    let mut vals = Vec::with_capacity(cols.len());
    for i in 0..cols.len() {
        let raw = r.try_get_raw(i)?;
        if raw.is_null() {
            vals.push(Value::Null);
            continue;
        }
        let ty = raw.type_info();
        let ty = ty.name();
        let is = |names: &[&str]| names.iter().any(|n| ty.eq_ignore_ascii_case(n));
        let v = if is(&["INTEGER", "BIGINT", "INT", "INT8", "BOOLEAN", "BOOL", "NUMERIC"]) {
            Value::Int(Some(r.try_get_unchecked::<i64, _>(i)?))
        } else if is(&["REAL", "FLOAT", "DOUBLE"]) {
            Value::Real(Some(r.try_get_unchecked::<f64, _>(i)?))
        } else if is(&["BLOB"]) {
            Value::Bytes(Some(r.try_get_unchecked::<Vec<u8>, _>(i)?))
        } else {
            Value::Text(Some(r.try_get_unchecked::<String, _>(i)?))
        };
        vals.push(v);
    }
    Ok(Row { cols: cols.clone(), vals })
}

fn pg_row(r: &sqlx::postgres::PgRow, cols: &Arc<[String]>) -> Result<Row> {
    let mut vals = Vec::with_capacity(cols.len());
    for i in 0..cols.len() {
        let raw = r.try_get_raw(i)?;
        if raw.is_null() {
            vals.push(Value::Null);
            continue;
        }
        let v = match raw.type_info().name() {
            "INT8" => Value::Int(Some(r.try_get::<i64, _>(i)?)),
            "INT4" => Value::Int(Some(r.try_get::<i32, _>(i)? as i64)),
            "INT2" => Value::Int(Some(r.try_get::<i16, _>(i)? as i64)),
            "BOOL" => Value::Bool(Some(r.try_get::<bool, _>(i)?)),
            "FLOAT8" => Value::Real(Some(r.try_get::<f64, _>(i)?)),
            "FLOAT4" => Value::Real(Some(r.try_get::<f32, _>(i)? as f64)),
            "BYTEA" => Value::Bytes(Some(r.try_get::<Vec<u8>, _>(i)?)),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => Value::Text(Some(r.try_get::<String, _>(i)?)),
            other => return Err(StoreError::Decode(format!("column {} has unsupported type {other}", cols[i]))),
        };
        vals.push(v);
    }
    Ok(Row { cols: cols.clone(), vals })
}

macro_rules! bind_all {
    ($q:expr, $args:expr, $engine:ident) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Value::Null | Value::Text(None) => q.bind(Option::<String>::None),
                Value::Int(v) => q.bind(v),
                Value::Real(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
                Value::Bytes(v) => q.bind(v),
                Value::Array(v) => bind_all!(@array q, v, $engine),
            };
        }
        q
    }};
    (@array $q:ident, $v:ident, pg) => {
        match $v {
            Array::Int(v) => $q.bind(v),
            Array::Real(v) => $q.bind(v),
            Array::Text(v) => $q.bind(v),
            Array::Bool(v) => $q.bind(v),
            Array::Bytes(v) => $q.bind(v),
        }
    };
    (@array $q:ident, $v:ident, sqlite) => {{
        let _ = $v;
        return Err(StoreError::Decode("array parameters are for PostgreSQL only".into()));
    }};
}

/// Runs statements: implemented by a pool (`Db`, autocommit) and a transaction (`Tx`).
pub trait Exec: Send {
    fn engine(&self) -> Engine;
    fn execute(&mut self, sql: &str, args: Vec<Value>) -> impl Future<Output = Result<u64>> + Send;
    /// Maps each row of the result as it streams in: a big result is never held as rows.
    fn fetch_map<T: Send, F: FnMut(Row) -> Result<T> + Send>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
        f: F,
    ) -> impl Future<Output = Result<Vec<T>>> + Send;

    fn fetch_all(&mut self, sql: &str, args: Vec<Value>) -> impl Future<Output = Result<Vec<Row>>> + Send {
        self.fetch_map(sql, args, Ok)
    }

    fn fetch_optional(&mut self, sql: &str, args: Vec<Value>) -> impl Future<Output = Result<Option<Row>>> + Send {
        async move { Ok(self.fetch_all(sql, args).await?.into_iter().next()) }
    }

    fn fetch_one(&mut self, sql: &str, args: Vec<Value>) -> impl Future<Output = Result<Row>> + Send {
        async move { self.fetch_optional(sql, args).await?.ok_or(StoreError::Db(sqlx::Error::RowNotFound)) }
    }
}

/// A connection pool on one engine. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction. Dropping it without `commit` rolls back.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Db {
    /// Opens the pool for `cfg.url`: `sqlite://path` (created if missing; WAL,
    /// `synchronous=FULL`, foreign keys on, a writer waits up to 5 s for the lock, see
    /// `sqlite_busy`) or `postgres://…`.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Db> {
        let url = cfg.url.as_str();
        let timeout = Duration::from_secs(cfg.connect_timeout_secs.max(1));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            if let Some(p) = &cfg.password {
                opts = opts.password(p);
            }
            opts = opts.application_name("inflow");
            let pool = PgPoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(timeout)
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::Unavailable(describe_connect_error(url, &e)))?;
            Ok(Db::Postgres(pool))
        } else {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL (default): a committed CRM write survives power loss, not only a crash.
                .synchronous(match cfg.sqlite_synchronous {
                    crate::config::SqliteSync::Full => SqliteSynchronous::Full,
                    crate::config::SqliteSync::Normal => SqliteSynchronous::Normal,
                })
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        let mut handle = conn.lock_handle().await?;
                        sqlite_busy::install(handle.as_raw_handle().as_ptr());
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::Unavailable(describe_connect_error(url, &e)))?;
            Ok(Db::Sqlite(pool))
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    /// Begins a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`)
    /// so a read-then-write transaction never fails half-way on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }

    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(p) => Some(p),
            _ => None,
        }
    }

    pub fn pg_pool(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(p) => Some(p),
            _ => None,
        }
    }
}

/// SQLite's own busy handler (what `busy_timeout` installs) sleeps 1, 2, 5, 10, 15, 20, 25,
/// 25, 25, 50, 50, then 100 ms between attempts to take the write lock. Our writers (the
/// webhook group commit, call processing, the job queue) each hold the lock for a few
/// milliseconds and take it again soon after, so a waiter that has backed off to 50–100 ms
/// keeps missing the free moments: a webhook's ack waited 430 ms at the 99th percentile at
/// 600 requests/s. This handler retries every 100 µs for the first 10 ms, then every 1 ms,
/// and gives up (SQLITE_BUSY) after the same 5 s.
mod sqlite_busy {
    use std::cell::Cell;
    use std::os::raw::{c_int, c_void};
    use std::time::{Duration, Instant};

    const GIVE_UP: Duration = Duration::from_secs(5);

    thread_local! {
        /// When the current wait began. sqlx runs each SQLite connection on its own thread,
        /// and SQLite calls the handler on the thread that is waiting.
        static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    /// Called by SQLite with the number of times it was already called for this wait.
    extern "C" fn retry(_: *mut c_void, attempts: c_int) -> c_int {
        let now = Instant::now();
        let since = SINCE.with(|s| {
            if attempts == 0 || s.get().is_none() {
                s.set(Some(now));
            }
            s.get().unwrap_or(now)
        });
        let waited = now.duration_since(since);
        if waited >= GIVE_UP {
            return 0;
        }
        std::thread::sleep(if waited < Duration::from_millis(10) {
            Duration::from_micros(100)
        } else {
            Duration::from_millis(1)
        });
        1
    }

    /// Installs the handler on a connection (replacing the one `busy_timeout` set).
    pub(super) fn install(db: *mut libsqlite3_sys::sqlite3) {
        // SAFETY: `db` is a live connection handle locked for our exclusive use by sqlx
        // (`LockedSqliteHandle`), and `retry` is a plain function that touches no SQLite state.
        unsafe {
            libsqlite3_sys::sqlite3_busy_handler(db, Some(retry), std::ptr::null_mut());
        }
    }
}

fn describe_connect_error(url: &str, e: &sqlx::Error) -> String {
    // Never echo a password from the URL.
    let shown = match url.find('@') {
        Some(at) if url.contains("://") => {
            let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
            format!("{}…{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    };
    format!("{shown}: {e}")
}

impl Exec for Db {
    fn engine(&self) -> Engine {
        Db::engine(self)
    }

    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64> {
        Ok(match self {
            Db::Sqlite(p) => {
                bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, sqlite).execute(&*p).await?.rows_affected()
            }
            Db::Postgres(p) => {
                bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, pg).execute(&*p).await?.rows_affected()
            }
        })
    }

    async fn fetch_map<T: Send, F: FnMut(Row) -> Result<T> + Send>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
        f: F,
    ) -> Result<Vec<T>> {
        match self {
            Db::Sqlite(p) => {
                collect_rows(
                    bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, sqlite).fetch(&*p),
                    sqlite_row,
                    f,
                )
                .await
            }
            Db::Postgres(p) => {
                collect_rows(bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, pg).fetch(&*p), pg_row, f)
                    .await
            }
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

impl Exec for Tx {
    fn engine(&self) -> Engine {
        match self {
            Tx::Sqlite(_) => Engine::Sqlite,
            Tx::Postgres(_) => Engine::Postgres,
        }
    }

    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64> {
        Ok(match self {
            Tx::Sqlite(t) => bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, sqlite)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            Tx::Postgres(t) => {
                bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, pg).execute(&mut **t).await?.rows_affected()
            }
        })
    }

    async fn fetch_map<T: Send, F: FnMut(Row) -> Result<T> + Send>(
        &mut self,
        sql: &str,
        args: Vec<Value>,
        f: F,
    ) -> Result<Vec<T>> {
        match self {
            Tx::Sqlite(t) => {
                collect_rows(
                    bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, sqlite).fetch(&mut **t),
                    sqlite_row,
                    f,
                )
                .await
            }
            Tx::Postgres(t) => {
                collect_rows(bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args, pg).fetch(&mut **t), pg_row, f)
                    .await
            }
        }
    }
}

// ---- migrations ----

/// One migration: the portable part (`migrations/common`) followed by the engine's own part
/// (`migrations/sqlite`, `migrations/postgres`) of the same version.
struct MigrationFiles {
    version: i64,
    description: &'static str,
    common: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

macro_rules! migration {
    ($v:expr, $name:literal) => {
        MigrationFiles {
            version: $v,
            description: $name,
            common: include_str!(concat!("../../migrations/common/", $name, ".sql")),
            sqlite: include_str!(concat!("../../migrations/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!("../../migrations/postgres/", $name, ".sql")),
        }
    };
}

const MIGRATIONS: &[MigrationFiles] = &[
    migration!(1, "0001_core"),
    migration!(2, "0002_pbx"),
    migration!(3, "0003_alerts"),
    migration!(4, "0004_mail"),
    migration!(5, "0005_waves"),
    migration!(6, "0006_api"),
    migration!(7, "0007_mail_accuracy"),
    migration!(8, "0008_close_the_loop"),
    migration!(9, "0009_oauth"),
    migration!(10, "0010_quick_email"),
    migration!(11, "0011_pbx_lines"),
    migration!(12, "0012_console"),
    migration!(13, "0013_oauth_alert"),
    migration!(14, "0014_api_access"),
    migration!(15, "0015_pbx_cdr_table"),
    migration!(16, "0016_pbx_accounts"),
    migration!(17, "0017_pbx_call_line"),
    migration!(18, "0018_lead_last_activity"),
    migration!(19, "0019_lz4"),
    migration!(20, "0020_lead_activity_rollup"),
];

/// Migrations that manage their own transaction on SQLite (a table rebuild must switch
/// `foreign_keys` off, which SQLite ignores inside a transaction).
const SQLITE_OWN_TRANSACTION: &[i64] = &[10];

/// inflow's own migration history table. Kept apart from `_sqlx_migrations`, which
/// apalis-sqlite uses for its queue tables in the same SQLite file.
pub const MIGRATIONS_TABLE: &str = "inflow_migrations";

fn migrator(engine: Engine) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let list = MIGRATIONS
        .iter()
        .map(|m| {
            let own = match engine {
                Engine::Sqlite => m.sqlite,
                Engine::Postgres => m.postgres,
            };
            let sql = format!("{}\n{}", m.common, own);
            Migration::new(
                m.version,
                m.description.into(),
                MigrationType::Simple,
                AssertSqlSafe(sql).into_sql_str(),
                engine == Engine::Sqlite && SQLITE_OWN_TRANSACTION.contains(&m.version),
            )
        })
        .collect();
    let mut m = Migrator::with_migrations(list);
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

use sqlx::SqlSafeStr as _;

impl Db {
    /// Applies inflow's migrations, then the apalis queue migrations (apalis-sqlite in
    /// `_sqlx_migrations`, apalis-postgres in schema `apalis`).
    pub async fn migrate(&self) -> Result<()> {
        let m = migrator(self.engine());
        let err = |e: sqlx::migrate::MigrateError| StoreError::Migrate(Box::new(e));
        match self {
            Db::Sqlite(p) => {
                m.run(p).await.map_err(err)?;
                // Not SqliteStorage::setup(): it would set synchronous=OFF on a pooled
                // connection. The pool's own pragmas (WAL, FULL) stay in force.
                apalis_sqlite::SqliteStorage::<()>::migrations().run(p).await.map_err(err)?;
            }
            Db::Postgres(p) => {
                m.run(p).await.map_err(err)?;
                apalis_postgres::PostgresStorage::<()>::setup(p).await.map_err(|e| StoreError::Migrate(Box::new(e)))?;
            }
        }
        Ok(())
    }

    pub async fn readiness(&self) -> Result<()> {
        let latest = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        let mut db = self.clone();
        let sql = format!("SELECT COALESCE(MAX(version), 0) AS v FROM {MIGRATIONS_TABLE} WHERE success = TRUE");
        let row = db.fetch_one(&sql, vec![]).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let applied: i64 = row.get("v")?;
        if applied < latest {
            return Err(StoreError::SchemaBehind { applied, latest });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_columns_take_the_type_of_their_first_typed_value() {
        let col = [Value::Null, Value::Int(None), Value::Int(Some(7))];
        assert_eq!(Array::column(col.iter()), Some(Array::Int(vec![None, None, Some(7)])));
        let col = [Value::Text(Some("a".into())), Value::Null];
        assert_eq!(Array::column(col.iter()).map(|a| a.pg_type()), Some("text[]"));
        // Mixed types, or nothing but untyped NULLs: no array (the insert falls back to VALUES).
        assert_eq!(Array::column([Value::Int(Some(1)), Value::Text(Some("1".into()))].iter()), None);
        assert_eq!(Array::column([Value::Null, Value::Null].iter()), None);
    }
}
