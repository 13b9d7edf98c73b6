//! Small shared value types: entity references and money.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The record types inflow stores, by their Dynamics logical names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// The default owner type.
    #[default]
    Systemuser,
    Team,
    Account,
    Contact,
    Lead,
    Opportunity,
    List,
    Campaign,
    Campaignactivity,
    Campaignresponse,
    Bulkoperation,
    Task,
    Phonecall,
    Email,
    Appointment,
    Letter,
    Fax,
    /// The closing activity of an opportunity (R-OPP-1: Win/Lose), kept in the activity table.
    Opportunityclose,
}

impl EntityKind {
    pub const ALL: [EntityKind; 18] = [
        EntityKind::Systemuser,
        EntityKind::Team,
        EntityKind::Account,
        EntityKind::Contact,
        EntityKind::Lead,
        EntityKind::Opportunity,
        EntityKind::List,
        EntityKind::Campaign,
        EntityKind::Campaignactivity,
        EntityKind::Campaignresponse,
        EntityKind::Bulkoperation,
        EntityKind::Task,
        EntityKind::Phonecall,
        EntityKind::Email,
        EntityKind::Appointment,
        EntityKind::Letter,
        EntityKind::Fax,
        EntityKind::Opportunityclose,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Systemuser => "systemuser",
            EntityKind::Team => "team",
            EntityKind::Account => "account",
            EntityKind::Contact => "contact",
            EntityKind::Lead => "lead",
            EntityKind::Opportunity => "opportunity",
            EntityKind::List => "list",
            EntityKind::Campaign => "campaign",
            EntityKind::Campaignactivity => "campaignactivity",
            EntityKind::Campaignresponse => "campaignresponse",
            EntityKind::Bulkoperation => "bulkoperation",
            EntityKind::Task => "task",
            EntityKind::Phonecall => "phonecall",
            EntityKind::Email => "email",
            EntityKind::Appointment => "appointment",
            EntityKind::Letter => "letter",
            EntityKind::Fax => "fax",
            EntityKind::Opportunityclose => "opportunityclose",
        }
    }

    /// The plain activity types kept in the shared `activity` table (activitypointer).
    pub fn is_plain_activity(self) -> bool {
        matches!(
            self,
            EntityKind::Task
                | EntityKind::Phonecall
                | EntityKind::Email
                | EntityKind::Appointment
                | EntityKind::Letter
                | EntityKind::Fax
                | EntityKind::Opportunityclose
        )
    }

    /// The table a record type is stored in and its key column (every plain activity shares
    /// `activity`, like Dynamics' activitypointer). The one place this mapping is written;
    /// a test checks it against each record's own description.
    pub fn table(self) -> (&'static str, &'static str) {
        match self {
            EntityKind::Systemuser => ("systemuser", "systemuserid"),
            EntityKind::Team => ("team", "teamid"),
            EntityKind::Account => ("account", "accountid"),
            EntityKind::Contact => ("contact", "contactid"),
            EntityKind::Lead => ("lead", "leadid"),
            EntityKind::Opportunity => ("opportunity", "opportunityid"),
            EntityKind::List => ("list", "listid"),
            EntityKind::Campaign => ("campaign", "campaignid"),
            EntityKind::Campaignactivity => ("campaignactivity", "activityid"),
            EntityKind::Campaignresponse => ("campaignresponse", "activityid"),
            EntityKind::Bulkoperation => ("bulkoperation", "activityid"),
            EntityKind::Task
            | EntityKind::Phonecall
            | EntityKind::Email
            | EntityKind::Appointment
            | EntityKind::Letter
            | EntityKind::Fax
            | EntityKind::Opportunityclose => ("activity", "activityid"),
        }
    }

    /// The admin API's entity set of a record type (`/api/v1/<set>`).
    pub fn set(self) -> &'static str {
        match self {
            EntityKind::Systemuser => "systemusers",
            EntityKind::Team => "teams",
            EntityKind::Account => "accounts",
            EntityKind::Contact => "contacts",
            EntityKind::Lead => "leads",
            EntityKind::Opportunity => "opportunities",
            EntityKind::List => "lists",
            EntityKind::Campaign => "campaigns",
            EntityKind::Campaignactivity => "campaignactivities",
            EntityKind::Campaignresponse => "campaignresponses",
            EntityKind::Bulkoperation => "bulkoperations",
            _ => "activities",
        }
    }

    /// The record type of an entity set (the inverse of `set`); None for `activities`, which
    /// every plain activity type shares, and for names that are no set.
    pub fn from_set(set: &str) -> Option<EntityKind> {
        EntityKind::ALL.iter().copied().find(|k| k.set() == set && k.table().0 != "activity")
    }

    /// Account, contact or lead: the parties a list can hold and a response can name.
    pub fn is_party(self) -> bool {
        matches!(self, EntityKind::Account | EntityKind::Contact | EntityKind::Lead)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EntityKind::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown entity type '{s}'"))
    }
}

/// A typed lookup (`Lookup`, `Customer`, `Owner`, `regardingobjectid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: EntityKind,
    pub id: Uuid,
}

impl EntityRef {
    pub fn new(kind: EntityKind, id: Uuid) -> Self {
        EntityRef { kind, id }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// Money with precision 2, held exactly as minor units (kopecks, cents).
///
/// Stored as BIGINT minor units on both engines; shown in JSON as a decimal number.
/// Values stay exact in JSON up to ±90 trillion (2^53 minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);
    /// Dynamics' Money range is 0..1e14 for lead.revenue; the daemon accepts ±1e14.
    pub const LIMIT: i64 = 100_000_000_000_000 * 100;

    pub fn minor(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = String;
    /// Parses `1234`, `1234.5`, `-12.34`, `1 000 000,00` (space groups, comma decimal).
    fn from_str(s: &str) -> Result<Self, String> {
        let cleaned: String = s.trim().chars().filter(|c| !c.is_whitespace() && *c != '_').collect();
        let cleaned = cleaned.replace(',', ".");
        let (neg, body) = match cleaned.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(format!("'{s}' is not an amount"));
        }
        if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("'{s}' is not an amount"));
        }
        if frac.len() > 2 {
            return Err(format!("'{s}' has more than 2 decimal places"));
        }
        let int_v: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| format!("'{s}' is too large"))? };
        let frac_v: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().unwrap_or(0) * 10,
            _ => frac.parse::<i64>().unwrap_or(0),
        };
        let minor = int_v
            .checked_mul(100)
            .and_then(|v| v.checked_add(frac_v))
            .filter(|v| *v <= Money::LIMIT)
            .ok_or_else(|| format!("'{s}' is out of range"))?;
        Ok(Money(if neg { -minor } else { minor }))
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 100.0)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            I(i64),
            F(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::I(i) => i
                .checked_mul(100)
                .filter(|v| v.abs() <= Money::LIMIT)
                .map(Money)
                .ok_or_else(|| serde::de::Error::custom("amount out of range")),
            // Go through the shortest decimal text so 0.1 + 0.2 style binary noise never leaks in.
            Raw::F(f) => {
                if !f.is_finite() {
                    return Err(serde::de::Error::custom("amount must be finite"));
                }
                format!("{f}").parse().map_err(serde::de::Error::custom)
            }
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_names_its_record_type_and_activities_name_none() {
        for k in [EntityKind::Lead, EntityKind::Contact, EntityKind::Account, EntityKind::Opportunity] {
            assert_eq!(EntityKind::from_set(k.set()), Some(k));
        }
        assert_eq!(EntityKind::from_set("campaignactivities"), Some(EntityKind::Campaignactivity));
        assert_eq!(EntityKind::from_set("activities"), None);
        assert_eq!(EntityKind::from_set("lead"), None);
    }

    #[test]
    fn money_parses_and_prints_exactly() {
        assert_eq!("1234.5".parse::<Money>().unwrap(), Money(123_450));
        assert_eq!("1 000 000,00".parse::<Money>().unwrap(), Money(100_000_000));
        assert_eq!("-0.07".parse::<Money>().unwrap(), Money(-7));
        assert_eq!(Money(-7).to_string(), "-0.07");
        assert_eq!(Money(100_000_050).to_string(), "1000000.50");
        assert!("1.234".parse::<Money>().is_err());
        assert!("abc".parse::<Money>().is_err());
        assert!("1e5".parse::<Money>().is_err());
    }

    #[test]
    fn money_json_round_trip() {
        let m: Money = serde_json::from_str("1000000.1").unwrap();
        assert_eq!(m, Money(100_000_010));
        assert_eq!(serde_json::to_string(&m).unwrap(), "1000000.1");
        let m: Money = serde_json::from_str("\"12.30\"").unwrap();
        assert_eq!(m, Money(1230));
        let m: Money = serde_json::from_str("5").unwrap();
        assert_eq!(m, Money(500));
    }

    #[test]
    fn entity_kind_names_round_trip() {
        for k in EntityKind::ALL {
            assert_eq!(k.as_str().parse::<EntityKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        assert!("membercode".parse::<EntityKind>().is_err());
    }
}
