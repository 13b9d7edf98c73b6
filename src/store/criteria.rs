//! Turns a validated dynamic-list filter (`crm::criteria`) into parameterised SQL.
//! Column names come only from the whitelist; every value is a bind parameter.

use chrono::{DateTime, Duration, Utc};

use super::db::{Engine, Value};
use crate::crm::EntityKind;
use crate::crm::criteria::{Condition, Criteria, Filter, Op, Operand, Scalar};

fn table_and_key(kind: EntityKind) -> (&'static str, &'static str) {
    kind.table()
}

struct Builder {
    args: Vec<Value>,
    engine: Engine,
    now: DateTime<Utc>,
}

impl Builder {
    fn bind(&mut self, v: Value) -> String {
        self.args.push(v);
        format!("${}", self.args.len())
    }

    fn scalar(&mut self, s: &Scalar) -> String {
        let v = match s {
            Scalar::Text(t) => Value::from(t.clone()),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Bool(b) => Value::from(*b),
            Scalar::Money(m) => Value::from(*m),
            Scalar::Date(d) => Value::from(*d),
            Scalar::Instant(t) => Value::from(*t),
            Scalar::Uuid(u) => Value::from(*u),
        };
        self.bind(v)
    }

    fn filter(&mut self, f: &Filter) -> String {
        match f {
            Filter::All(items) => {
                format!("({})", items.iter().map(|i| self.filter(i)).collect::<Vec<_>>().join(" AND "))
            }
            Filter::Any(items) => {
                format!("({})", items.iter().map(|i| self.filter(i)).collect::<Vec<_>>().join(" OR "))
            }
            Filter::Not(inner) => format!("(NOT {})", self.filter(inner)),
            Filter::Cond(c) => self.cond(c),
        }
    }

    fn like(&mut self, col: &str, pattern: String) -> String {
        let p = self.bind(Value::from(pattern));
        // Dialect: SQLite's LIKE is case-insensitive (ASCII); PostgreSQL needs ILIKE.
        let op = match self.engine {
            Engine::Sqlite => "LIKE",
            Engine::Postgres => "ILIKE",
        };
        format!("({col} {op} {p} ESCAPE '\\')")
    }

    fn cond(&mut self, c: &Condition) -> String {
        let col = c.field.name;
        let one = |b: &mut Builder| match &c.value {
            Operand::One(s) => b.scalar(s),
            _ => b.bind(Value::Text(None)),
        };
        let days_ago = |b: &mut Builder, days: i64| -> String {
            let t = b.now - Duration::days(days);
            match c.field.ty {
                crate::crm::criteria::FieldType::Date => b.bind(Value::from(t.date_naive())),
                _ => b.bind(Value::from(t)),
            }
        };
        match c.op {
            Op::Eq => format!("({col} = {})", one(self)),
            Op::Ne => format!("({col} <> {})", one(self)),
            Op::Gt => format!("({col} > {})", one(self)),
            Op::Ge => format!("({col} >= {})", one(self)),
            Op::Lt => format!("({col} < {})", one(self)),
            Op::Le => format!("({col} <= {})", one(self)),
            Op::Null => format!("({col} IS NULL)"),
            Op::NotNull => format!("({col} IS NOT NULL)"),
            Op::In | Op::NotIn => {
                let Operand::Many(items) = &c.value else { return "(1 = 0)".into() };
                let ps: Vec<String> = items.iter().map(|s| self.scalar(s)).collect();
                let not = if c.op == Op::NotIn { "NOT " } else { "" };
                format!("({col} {not}IN ({}))", ps.join(", "))
            }
            Op::Contains | Op::BeginsWith | Op::EndsWith => {
                let Operand::One(Scalar::Text(t)) = &c.value else { return "(1 = 0)".into() };
                let esc = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                let pattern = match c.op {
                    Op::Contains => format!("%{esc}%"),
                    Op::BeginsWith => format!("{esc}%"),
                    _ => format!("%{esc}"),
                };
                self.like(col, pattern)
            }
            Op::LastDays | Op::OlderThanDays => {
                let Operand::Days(d) = c.value else { return "(1 = 0)".into() };
                let p = days_ago(self, d);
                if c.op == Op::LastDays { format!("({col} >= {p})") } else { format!("({col} < {p})") }
            }
        }
    }
}

/// `SELECT <key> AS id FROM <table> WHERE <filter>` with its bind values, evaluated at `now`.
pub fn compile_members_query(c: &Criteria, engine: Engine, now: DateTime<Utc>) -> (String, Vec<Value>) {
    let (table, key) = table_and_key(c.entity);
    let mut b = Builder { args: Vec::new(), engine, now };
    let w = b.filter(&c.filter);
    (format!("SELECT {key} AS id FROM {table} WHERE {w} ORDER BY {key}"), b.args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_parameters_never_sql_text() {
        let c = crate::crm::criteria::parse(
            EntityKind::Lead,
            &json!({"all": [{"field": "subject", "op": "contains", "value": "50%'; DROP TABLE lead; \
                --"}, {"field": "industrycode", "op": "in", "value": [16, 7]}]}),
        )
        .unwrap();
        let (sql, args) = compile_members_query(&c, Engine::Postgres, Utc::now());
        assert_eq!(
            sql,
            "SELECT leadid AS id FROM lead WHERE ((subject ILIKE $1 ESCAPE '\\') AND (industrycode IN ($2, \
                $3))) ORDER BY leadid"
        );
        assert!(!sql.contains("DROP"));
        assert_eq!(args[0], Value::Text(Some("%50\\%'; DROP TABLE lead; --%".into())));
        assert_eq!(args.len(), 3);
    }
}
