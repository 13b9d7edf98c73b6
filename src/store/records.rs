//! Generic reading and writing of every `crm::entities::Record` type, driven by the table
//! descriptions in `crm::entities`. Column names come only from those compile-time
//! descriptions; every value is a bind parameter.

use serde_json::{Map, Value as Json};
use uuid::Uuid;

use super::db::{Exec, Row, Value};
use super::{Result, Store, StoreError};
use crate::crm::Money;
use crate::crm::entities::{ColType, Record};

/// Converts a record to bind values in `R::COLS` order.
pub(crate) fn to_values<R: Record>(rec: &R) -> Result<Vec<Value>> {
    let json = serde_json::to_value(rec).map_err(StoreError::decode)?;
    let Json::Object(obj) = json else { return Err(StoreError::decode("record is not an object")) };
    R::COLS.iter().map(|c| json_to_value(c.name, c.ty, obj.get(c.name).unwrap_or(&Json::Null))).collect()
}

fn json_to_value(name: &str, ty: ColType, v: &Json) -> Result<Value> {
    let bad = || StoreError::Decode(format!("field {name} has an unexpected value {v}"));
    Ok(match ty {
        ColType::Text | ColType::Date | ColType::Uuid => match v {
            Json::Null => Value::Text(None),
            Json::String(s) => Value::from(s.as_str()),
            _ => return Err(bad()),
        },
        ColType::Int => match v {
            Json::Null => Value::Int(None),
            _ => Value::Int(Some(v.as_i64().ok_or_else(bad)?)),
        },
        ColType::Bool => match v {
            Json::Null => Value::Bool(None),
            _ => Value::Bool(Some(v.as_bool().ok_or_else(bad)?)),
        },
        ColType::Money => match v {
            Json::Null => Value::Int(None),
            _ => Value::Int(Some(serde_json::from_value::<Money>(v.clone()).map_err(|_| bad())?.minor())),
        },
        ColType::Instant => match v {
            Json::Null => Value::Int(None),
            Json::String(s) => {
                Value::Int(Some(chrono::DateTime::parse_from_rfc3339(s).map_err(|_| bad())?.timestamp_millis()))
            }
            _ => return Err(bad()),
        },
        ColType::Json => match v {
            Json::Null => Value::Text(None),
            other => Value::from(other.to_string()),
        },
    })
}

pub(crate) fn json_of(name: &str, ty: ColType, v: &Value) -> Result<Json> {
    if v.is_null() {
        return Ok(Json::Null);
    }
    let bad = |e: String| StoreError::Decode(format!("column {name}: {e}"));
    use super::db::FromValue;
    Ok(match ty {
        ColType::Text | ColType::Date | ColType::Uuid => Json::String(String::from_value(v).map_err(bad)?),
        ColType::Int => Json::from(i64::from_value(v).map_err(bad)?),
        ColType::Bool => Json::Bool(bool::from_value(v).map_err(bad)?),
        ColType::Money => serde_json::to_value(Money(i64::from_value(v).map_err(bad)?)).map_err(StoreError::decode)?,
        ColType::Instant => {
            let t = chrono::DateTime::<chrono::Utc>::from_value(v).map_err(bad)?;
            Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        }
        ColType::Json => serde_json::from_str(&String::from_value(v).map_err(bad)?).map_err(|e| bad(e.to_string()))?,
    })
}

/// Builds a record from a row selected with `R::COLS`.
pub(crate) fn from_row<R: Record>(row: &Row) -> Result<R> {
    let mut obj = Map::with_capacity(R::COLS.len());
    for c in R::COLS {
        let v = row.value(c.name).ok_or_else(|| StoreError::Decode(format!("{}: no column {}", R::TABLE, c.name)))?;
        obj.insert(c.name.to_string(), json_of(c.name, c.ty, v)?);
    }
    serde_json::from_value(Json::Object(obj)).map_err(|e| StoreError::Decode(format!("{}: {e}", R::TABLE)))
}

fn col_list<R: Record>() -> String {
    R::COLS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

pub(crate) fn placeholders(n: usize, start: usize) -> String {
    (start..start + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Inserts a record and indexes its contact points.
pub(crate) async fn insert<R: Record>(ex: &mut impl Exec, store: &Store, rec: &R) -> Result<()> {
    let sql = format!("INSERT INTO {} ({}) VALUES ({})", R::TABLE, col_list::<R>(), placeholders(R::COLS.len(), 1));
    ex.execute(&sql, to_values(rec)?).await?;
    super::ops::index_points(ex, store, rec, false).await
}

/// Inserts several records of one type with multi-row statements (`insert_rows`), then
/// their contact points.
pub(crate) async fn insert_many<R: Record>(ex: &mut impl Exec, store: &Store, recs: &[R]) -> Result<()> {
    let mut rows = Vec::with_capacity(recs.len());
    let mut points = Vec::new();
    for rec in recs {
        rows.push(to_values(rec)?);
        points.extend(super::ops::contact_points(store, rec)?);
    }
    insert_rows(ex, &format!("{} ({})", R::TABLE, col_list::<R>()), &rows, "").await?;
    super::ops::insert_points(ex, &points).await
}

/// Rows per `UNNEST` insert on PostgreSQL, and the fewest that go that way.
const UNNEST_ROWS: usize = 5000;
const UNNEST_MIN_ROWS: usize = 8;

/// Inserts same-shaped value rows into `table (cols)`, with an optional `ON CONFLICT …`
/// tail. On PostgreSQL each column is bound as one array and the rows come from `UNNEST`:
/// one statement per table whatever the row count, with the same text (and cached plan)
/// every time. Multi-row VALUES with a parameter per value cost PostgreSQL a parse and plan
/// per row count (a 20,000 recipient expansion took 1.6 s at 400 values per statement and
/// 31 s at 1,000). Where `unnest` says no, the chunk goes as VALUES. Returns the rows
/// written (a conflict the tail skips is not counted).
pub(crate) async fn insert_rows(
    ex: &mut impl Exec,
    table_cols: &str,
    rows: &[Vec<Value>],
    on_conflict: &str,
) -> Result<u64> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(0) };
    let mut written = 0;
    for chunk in rows.chunks(UNNEST_ROWS) {
        written += match unnest(ex.engine(), chunk, width) {
            Some((casts, args)) => {
                ex.execute(&format!("INSERT INTO {table_cols} SELECT * FROM UNNEST({casts}){on_conflict}"), args)
                    .await?
            }
            None => insert_values(ex, table_cols, chunk, on_conflict).await?,
        };
    }
    Ok(written)
}

/// Same-shaped rows as PostgreSQL array parameters, one per column: the `$1::type[], …`
/// list for `UNNEST(…)` and the arguments. `None` (use VALUES) on SQLite, for fewer than
/// `UNNEST_MIN_ROWS` rows (measured: UNNEST for the 1-3 contact points of each call record
/// made PBX processing ~10 % slower on PostgreSQL), or when a column cannot be typed (see
/// `Array::column`).
pub(crate) fn unnest(engine: super::db::Engine, rows: &[Vec<Value>], width: usize) -> Option<(String, Vec<Value>)> {
    if engine != super::db::Engine::Postgres || rows.len() < UNNEST_MIN_ROWS {
        return None;
    }
    let columns: Vec<super::db::Array> =
        (0..width).map(|c| super::db::Array::column(rows.iter().map(move |r| &r[c]))).collect::<Option<_>>()?;
    let casts: Vec<String> = columns.iter().enumerate().map(|(i, a)| format!("${}::{}", i + 1, a.pg_type())).collect();
    Some((casts.join(", "), columns.into_iter().map(Value::Array).collect()))
}

/// Multi-row INSERT … VALUES. On SQLite the placeholders are anonymous `?`: SQLite finds a
/// named parameter (`$N`) by a linear scan, so binding n named values costs n²/2 lookups —
/// with `?` it is linear, and a statement can carry ~900 values (measured: expanding a
/// 20,000 recipient wave, 3.3 s of inserts at 400 named values per statement).
async fn insert_values(ex: &mut impl Exec, table_cols: &str, rows: &[Vec<Value>], on_conflict: &str) -> Result<u64> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(0) };
    let mut written = 0;
    let sqlite = ex.engine() == super::db::Engine::Sqlite;
    let per_statement = if sqlite { 900 } else { 400 };
    for chunk in rows.chunks((per_statement / width).max(1)) {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| {
                if sqlite {
                    format!("({})", vec!["?"; width].join(", "))
                } else {
                    format!("({})", placeholders(width, i * width + 1))
                }
            })
            .collect();
        let args: Vec<Value> = chunk.iter().flatten().cloned().collect();
        written +=
            ex.execute(&format!("INSERT INTO {table_cols} VALUES {}{on_conflict}", tuples.join(", ")), args).await?;
    }
    Ok(written)
}

/// Selects one record by key.
pub(crate) async fn get<R: Record>(ex: &mut impl Exec, id: Uuid) -> Result<Option<R>> {
    let sql = format!("SELECT {} FROM {} WHERE {} = $1", col_list::<R>(), R::TABLE, R::KEY);
    match ex.fetch_optional(&sql, vec![id.into()]).await? {
        Some(row) => Ok(Some(from_row(&row)?)),
        None => Ok(None),
    }
}

/// Like `get`, but a missing record is `NotFound`.
pub(crate) async fn load<R: Record>(ex: &mut impl Exec, id: Uuid) -> Result<R> {
    get(ex, id).await?.ok_or_else(|| StoreError::NotFound { kind: R::KIND.as_str(), id: id.to_string() })
}

/// Writes every column of `rec` if the stored version is still `rec.versionnumber`, then
/// bumps the version. Returns the record as stored. A lost race is `Conflict`.
pub(crate) async fn update<R: Record>(ex: &mut impl Exec, store: &Store, rec: &R) -> Result<R> {
    let sets: Vec<String> = R::COLS
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name != R::KEY && c.name != "versionnumber")
        .map(|(i, c)| format!("{} = ${}", c.name, i + 1))
        .collect();
    let values = to_values(rec)?;
    let n = values.len();
    let key_pos = R::COLS.iter().position(|c| c.name == R::KEY).expect("key column") + 1;
    let sql = format!(
        "UPDATE {} SET {}, versionnumber = versionnumber + 1 WHERE {} = ${} AND versionnumber = ${}",
        R::TABLE,
        sets.join(", "),
        R::KEY,
        key_pos,
        n + 1
    );
    let mut args = values;
    args.push(rec.version().into());
    if ex.execute(&sql, args).await? == 0 {
        return Err(match get::<R>(ex, rec.id()).await? {
            Some(_) => StoreError::Conflict { kind: R::KIND.as_str(), id: rec.id().to_string() },
            None => StoreError::NotFound { kind: R::KIND.as_str(), id: rec.id().to_string() },
        });
    }
    super::ops::index_contact_points(ex, store, rec).await?;
    load(ex, rec.id()).await
}

/// One page of records, newest first, with the total count.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListPage<R> {
    pub items: Vec<R>,
    pub total: i64,
}

/// Lists records ordered by `createdon` descending (then key), `limit` capped at 500.
pub(crate) async fn list<R: Record>(ex: &mut impl Exec, limit: i64, offset: i64) -> Result<ListPage<R>> {
    let sql =
        format!("SELECT {} FROM {} ORDER BY createdon DESC, {} LIMIT $1 OFFSET $2", col_list::<R>(), R::TABLE, R::KEY);
    let rows = ex.fetch_all(&sql, vec![limit.clamp(1, 500).into(), offset.max(0).into()]).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<R>>>()?;
    let total: i64 = ex.fetch_one(&format!("SELECT COUNT(*) AS n FROM {}", R::TABLE), vec![]).await?.get("n")?;
    Ok(ListPage { items, total })
}

/// Record access on the store (autocommit: each call is its own transaction).
pub trait RecordExt {
    fn insert<R: Record>(&self, rec: &R) -> impl Future<Output = Result<()>> + Send;
    fn get<R: Record>(&self, id: Uuid) -> impl Future<Output = Result<Option<R>>> + Send;
    fn load<R: Record>(&self, id: Uuid) -> impl Future<Output = Result<R>> + Send;
    fn update<R: Record>(&self, rec: &R) -> impl Future<Output = Result<R>> + Send;
    fn list<R: Record>(&self, limit: i64, offset: i64) -> impl Future<Output = Result<ListPage<R>>> + Send;
}

impl RecordExt for Store {
    async fn insert<R: Record>(&self, rec: &R) -> Result<()> {
        let mut tx = self.db.begin().await?;
        insert(&mut tx, self, rec).await?;
        tx.commit().await
    }

    async fn get<R: Record>(&self, id: Uuid) -> Result<Option<R>> {
        get(&mut self.db.clone(), id).await
    }

    async fn load<R: Record>(&self, id: Uuid) -> Result<R> {
        load(&mut self.db.clone(), id).await
    }

    async fn update<R: Record>(&self, rec: &R) -> Result<R> {
        let mut tx = self.db.begin().await?;
        let out = update(&mut tx, self, rec).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list<R: Record>(&self, limit: i64, offset: i64) -> Result<ListPage<R>> {
        list(&mut self.db.clone(), limit, offset).await
    }
}
