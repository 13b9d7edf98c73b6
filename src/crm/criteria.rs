//! Dynamic marketing-list criteria (§2.6 [DESIGN]): a typed filter document instead of
//! FetchXML, validated against a whitelist of fields and operators per member type.
//!
//! The document is JSON:
//! ```json
//! {"all": [{"field": "industrycode", "op": "eq", "value": 16},
//!          {"field": "revenue", "op": "gt", "value": 1000000},
//!          {"any": [{"field": "address1_city", "op": "eq", "value": "Москва"},
//!                   {"not": {"field": "donotbulkemail", "op": "eq", "value": true}}]}]}
//! ```
//! Nodes: `all`/`any` (lists of nodes), `not` (one node), or a condition. Parsing yields a
//! typed `Filter` whose field references point into the whitelist; the store turns it into
//! parameterised SQL at use time (values are always bind parameters, never SQL text).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::error::RuleError;
use super::types::{EntityKind, Money};

/// The kind of a whitelisted field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Int,
    Bool,
    Money,
    Date,
    Instant,
    Uuid,
}

/// A field a criteria document may name. `name` is also the column name.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: &'static str,
    pub ty: FieldType,
}

macro_rules! fields {
    ($($n:ident : $t:ident),* $(,)?) => { &[$(FieldDef { name: stringify!($n), ty: FieldType::$t }),*] };
}

const COMMON: &[FieldDef] = fields![
    emailaddress1: Text, address1_city: Text, address1_country: Text, address1_postalcode: Text,
    donotemail: Bool, donotbulkemail: Bool, donotsendmm: Bool, donotphone: Bool,
    statecode: Int, statuscode: Int, ownerid: Uuid, createdon: Instant, modifiedon: Instant,
    lastusedincampaign: Date,
];
const CONTACT: &[FieldDef] = fields![
    firstname: Text, lastname: Text, jobtitle: Text, telephone1: Text, mobilephone: Text,
    parentcustomerid: Uuid,
];
const LEAD: &[FieldDef] = fields![
    subject: Text, firstname: Text, lastname: Text, companyname: Text, jobtitle: Text,
    telephone1: Text, mobilephone: Text, leadqualitycode: Int, leadsourcecode: Int,
    industrycode: Int, revenue: Money, numberofemployees: Int, campaignid: Uuid,
    estimatedamount: Money, purchasetimeframe: Int, budgetamount: Money,
];
const ACCOUNT: &[FieldDef] = fields![
    name: Text, telephone1: Text, industrycode: Int, revenue: Money, numberofemployees: Int,
    parentaccountid: Uuid, primarycontactid: Uuid,
];

/// The member entity of a list (`createdfromcode`: 1 Account, 2 Contact, 4 Lead).
pub fn member_kind(createdfromcode: i32) -> Option<EntityKind> {
    match createdfromcode {
        1 => Some(EntityKind::Account),
        2 => Some(EntityKind::Contact),
        4 => Some(EntityKind::Lead),
        _ => None,
    }
}

/// The whitelisted field `name` of `kind`.
pub fn field(kind: EntityKind, name: &str) -> Option<&'static FieldDef> {
    let own = match kind {
        EntityKind::Contact => CONTACT,
        EntityKind::Lead => LEAD,
        EntityKind::Account => ACCOUNT,
        _ => return None,
    };
    own.iter().chain(COMMON.iter()).find(|f| f.name == name)
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    Null,
    NotNull,
    Contains,
    BeginsWith,
    EndsWith,
    /// Date/instant within the last N days (evaluated at use time).
    LastDays,
    /// Date/instant older than N days (evaluated at use time).
    OlderThanDays,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "null" => Op::Null,
            "not_null" => Op::NotNull,
            "contains" => Op::Contains,
            "begins_with" => Op::BeginsWith,
            "ends_with" => Op::EndsWith,
            "last_days" => Op::LastDays,
            "older_than_days" => Op::OlderThanDays,
            _ => return None,
        })
    }

    fn allowed_for(self, ty: FieldType) -> bool {
        use FieldType::*;
        match self {
            Op::Eq | Op::Ne | Op::Null | Op::NotNull => true,
            Op::In | Op::NotIn => ty != Bool,
            Op::Gt | Op::Ge | Op::Lt | Op::Le => matches!(ty, Int | Money | Date | Instant),
            Op::Contains | Op::BeginsWith | Op::EndsWith => ty == Text,
            Op::LastDays | Op::OlderThanDays => matches!(ty, Date | Instant),
        }
    }
}

/// A typed literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
    Money(Money),
    Date(NaiveDate),
    Instant(DateTime<Utc>),
    Uuid(Uuid),
}

/// A condition's right-hand side.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    One(Scalar),
    Many(Vec<Scalar>),
    Days(i64),
}

/// One validated condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: &'static FieldDef,
    pub op: Op,
    pub value: Operand,
}

/// A validated filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Cond(Condition),
}

/// A validated criteria document for one member entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    pub entity: EntityKind,
    pub filter: Filter,
}

const MAX_DEPTH: usize = 8;
const MAX_CONDITIONS: usize = 100;
const MAX_IN_VALUES: usize = 1000;

fn bad(path: &str, msg: impl std::fmt::Display) -> RuleError {
    RuleError::new("§2.6", "invalid_criteria", format!("query{path}: {msg}"))
}

/// Parses and validates a criteria document for a list whose members are `entity`.
pub fn parse(entity: EntityKind, doc: &Value) -> Result<Criteria, RuleError> {
    if !entity.is_party() {
        return Err(bad("", format!("lists cannot hold {entity} records")));
    }
    let mut count = 0;
    let filter = node(entity, doc, "", 0, &mut count)?;
    Ok(Criteria { entity, filter })
}

fn node(entity: EntityKind, v: &Value, path: &str, depth: usize, count: &mut usize) -> Result<Filter, RuleError> {
    if depth > MAX_DEPTH {
        return Err(bad(path, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let Some(obj) = v.as_object() else {
        return Err(bad(path, "expected an object with all, any, not or field"));
    };
    let mut group = |key: &str| -> Result<Vec<Filter>, RuleError> {
        if obj.len() != 1 {
            return Err(bad(path, format!("'{key}' must be the only key of its object")));
        }
        let Some(items) = obj[key].as_array() else {
            return Err(bad(&format!("{path}.{key}"), "expected a list"));
        };
        if items.is_empty() {
            return Err(bad(&format!("{path}.{key}"), "must not be empty"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, it)| node(entity, it, &format!("{path}.{key}[{i}]"), depth + 1, count))
            .collect()
    };
    if obj.contains_key("all") {
        return Ok(Filter::All(group("all")?));
    }
    if obj.contains_key("any") {
        return Ok(Filter::Any(group("any")?));
    }
    if let Some(inner) = obj.get("not") {
        if obj.len() != 1 {
            return Err(bad(path, "'not' must be the only key of its object"));
        }
        return Ok(Filter::Not(Box::new(node(entity, inner, &format!("{path}.not"), depth + 1, count)?)));
    }
    for k in obj.keys() {
        if !matches!(k.as_str(), "field" | "op" | "value") {
            return Err(bad(&format!("{path}.{k}"), "unknown key (expected field, op, value, or all/any/not)"));
        }
    }
    *count += 1;
    if *count > MAX_CONDITIONS {
        return Err(bad(path, format!("more than {MAX_CONDITIONS} conditions")));
    }
    let name = obj.get("field").and_then(Value::as_str).ok_or_else(|| bad(&format!("{path}.field"), "missing"))?;
    let field = field(entity, name)
        .ok_or_else(|| bad(&format!("{path}.field"), format!("'{name}' is not a filterable {entity} field")))?;
    let op_name = obj.get("op").and_then(Value::as_str).ok_or_else(|| bad(&format!("{path}.op"), "missing"))?;
    let op = Op::parse(op_name).ok_or_else(|| bad(&format!("{path}.op"), format!("unknown operator '{op_name}'")))?;
    if !op.allowed_for(field.ty) {
        return Err(bad(&format!("{path}.op"), format!("'{op_name}' does not apply to {name}")));
    }
    let vpath = format!("{path}.value");
    let raw = obj.get("value");
    let value = match op {
        Op::Null | Op::NotNull => {
            if raw.is_some_and(|v| !v.is_null()) {
                return Err(bad(&vpath, "takes no value"));
            }
            Operand::None
        }
        Op::In | Op::NotIn => {
            let items = raw.and_then(Value::as_array).ok_or_else(|| bad(&vpath, "expected a list"))?;
            if items.is_empty() || items.len() > MAX_IN_VALUES {
                return Err(bad(&vpath, format!("expected 1..{MAX_IN_VALUES} values")));
            }
            Operand::Many(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| scalar(field, it, &format!("{vpath}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Op::LastDays | Op::OlderThanDays => {
            let d = raw
                .and_then(Value::as_i64)
                .filter(|d| (0..=36_500).contains(d))
                .ok_or_else(|| bad(&vpath, "expected a number of days 0..36500"))?;
            Operand::Days(d)
        }
        _ => Operand::One(scalar(field, raw.ok_or_else(|| bad(&vpath, "missing"))?, &vpath)?),
    };
    Ok(Filter::Cond(Condition { field, op, value }))
}

fn scalar(field: &FieldDef, v: &Value, path: &str) -> Result<Scalar, RuleError> {
    let want = |what: &str| bad(path, format!("{} expects {what}", field.name));
    Ok(match field.ty {
        FieldType::Text => Scalar::Text(v.as_str().ok_or_else(|| want("a string"))?.to_string()),
        FieldType::Int => Scalar::Int(v.as_i64().ok_or_else(|| want("an integer"))?),
        FieldType::Bool => Scalar::Bool(v.as_bool().ok_or_else(|| want("true or false"))?),
        FieldType::Money => Scalar::Money(serde_json::from_value(v.clone()).map_err(|_| want("an amount"))?),
        FieldType::Date => {
            Scalar::Date(v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| want("a date YYYY-MM-DD"))?)
        }
        FieldType::Instant => Scalar::Instant(
            v.as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| want("an RFC 3339 time"))?,
        ),
        FieldType::Uuid => Scalar::Uuid(v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| want("a UUID"))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_001_financial_and_revenue_filter_parses() {
        // SEED 001: industry = Financial AND annual revenue > 1,000,000.
        let c = parse(
            EntityKind::Lead,
            &json!({"all": [
                {"field": "industrycode", "op": "eq", "value": 16},
                {"field": "revenue", "op": "gt", "value": 1000000}
            ]}),
        )
        .unwrap();
        let Filter::All(items) = c.filter else { panic!() };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1],
            Filter::Cond(Condition {
                field: field(EntityKind::Lead, "revenue").unwrap(),
                op: Op::Gt,
                value: Operand::One(Scalar::Money(Money(100_000_000)))
            })
        );
    }

    #[test]
    fn unknown_field_and_operator_are_named_with_their_path() {
        let e =
            parse(EntityKind::Contact, &json!({"all": [{"field": "revenue", "op": "gt", "value": 1}]})).unwrap_err();
        assert!(e.message.contains("query.all[0].field") && e.message.contains("revenue"), "{}", e.message);
        let e = parse(EntityKind::Contact, &json!({"any": [{"field": "lastname", "op": "regex", "value": "x"}]}))
            .unwrap_err();
        assert!(e.message.contains("query.any[0].op") && e.message.contains("regex"), "{}", e.message);
        let e = parse(EntityKind::Contact, &json!({"field": "lastname", "op": "gt", "value": "x"})).unwrap_err();
        assert!(e.message.contains("does not apply"), "{}", e.message);
        let e = parse(EntityKind::Lead, &json!({"field": "industrycode", "op": "eq", "value": "16; DROP TABLE lead"}))
            .unwrap_err();
        assert!(e.message.contains("expects an integer"), "{}", e.message);
        let e =
            parse(EntityKind::Lead, &json!({"field": "subject", "op": "eq", "value": "x", "sql": "1=1"})).unwrap_err();
        assert!(e.message.contains("query.sql"), "{}", e.message);
    }

    #[test]
    fn sql_looking_text_is_just_a_value() {
        let c =
            parse(EntityKind::Lead, &json!({"field": "subject", "op": "contains", "value": "'; DROP TABLE lead; --"}))
                .unwrap();
        assert!(matches!(c.filter, Filter::Cond(Condition { value: Operand::One(Scalar::Text(_)), .. })));
    }

    #[test]
    fn limits_and_shapes() {
        assert!(parse(EntityKind::Lead, &json!({"all": []})).is_err());
        assert!(parse(EntityKind::Lead, &json!([1])).is_err());
        assert!(parse(EntityKind::Lead, &json!({"field": "subject", "op": "null", "value": "x"})).is_err());
        assert!(parse(EntityKind::Lead, &json!({"field": "createdon", "op": "last_days", "value": 7})).is_ok());
        assert!(parse(EntityKind::Campaign, &json!({"field": "name", "op": "eq", "value": "x"})).is_err());
        let mut deep = json!({"field": "subject", "op": "null"});
        for _ in 0..10 {
            deep = json!({"not": deep});
        }
        assert!(parse(EntityKind::Lead, &deep).unwrap_err().message.contains("deeper"));
        assert_eq!(member_kind(4), Some(EntityKind::Lead));
        assert_eq!(member_kind(3), None);
    }
}
