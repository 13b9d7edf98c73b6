//! What people read instead of codes and ids (issue 18 §9): the labels of the picklists of
//! DOMAIN §2 and which record a lookup column points at, so grouped views can say "Trade
//! Show" beside 7 and lists can say "Анна Волкова" beside an owner id. Pure tables.

use super::state;
use super::types::EntityKind;

/// Where a lookup column points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Always this record type.
    To(EntityKind),
    /// The type is in another column of the row (`customeridtype`, `regardingobjectidtype`).
    Typed(&'static str),
}

/// The lookup a column of a table is, if it is one.
pub fn lookup(table: &str, col: &str) -> Option<Lookup> {
    use EntityKind::*;
    Some(match (table, col) {
        (_, "ownerid" | "createdby" | "modifiedby" | "parentsystemuserid") => Lookup::To(Systemuser),
        (_, "campaignid") => Lookup::To(Campaign),
        (_, "campaignactivityid") => Lookup::To(Campaignactivity),
        (_, "originatingleadid" | "qualifyingleadid") => Lookup::To(Lead),
        (_, "parentaccountid" | "parentcustomerid") => Lookup::To(Account),
        (_, "parentcontactid" | "primarycontactid") => Lookup::To(Contact),
        (_, "qualifyingopportunityid") => Lookup::To(Opportunity),
        ("campaignactivity", "regardingobjectid") => Lookup::To(Campaign),
        (_, "customerid") => Lookup::Typed("customeridtype"),
        (_, "regardingobjectid") => Lookup::Typed("regardingobjectidtype"),
        _ => return None,
    })
}

/// The label of a picklist value of a table's column (DOMAIN §2 option sets), if the column
/// is a picklist and the value is one of its options.
pub fn picklist(table: &str, col: &str, code: i64) -> Option<&'static str> {
    let c = i32::try_from(code).ok()?;
    let pick = |opts: &[(i32, &'static str)]| opts.iter().find(|(k, _)| *k == c).map(|(_, v)| *v);
    match (table, col) {
        (_, "statecode") => kind_of(table).and_then(|k| state::model(k).iter().find(|d| d.code == c).map(|d| d.name)),
        ("lead", "statuscode") => pick(&[
            (1, "New"),
            (2, "Contacted"),
            (3, "Qualified"),
            (4, "Lost"),
            (5, "Cannot Contact"),
            (6, "No Longer Interested"),
            (7, "Canceled"),
        ]),
        ("opportunity", "statuscode") => {
            pick(&[(1, "In Progress"), (2, "On Hold"), (3, "Won"), (4, "Canceled"), (5, "Out-Sold")])
        }
        ("campaign", "statuscode") => pick(&[
            (0, "Proposed"),
            (1, "Ready To Launch"),
            (2, "Launched"),
            (3, "Completed"),
            (4, "Canceled"),
            (5, "Suspended"),
            (6, "Inactive"),
        ]),
        ("campaignactivity", "statuscode") => pick(&[
            (0, "In Progress"),
            (1, "Proposed"),
            (2, "Closed"),
            (3, "Canceled"),
            (4, "Pending"),
            (5, "System Aborted"),
            (6, "Completed"),
        ]),
        ("campaignresponse", "statuscode") => pick(&[(1, "Open"), (2, "Closed"), (3, "Canceled")]),
        ("lead", "leadsourcecode") => pick(&[
            (1, "Advertisement"),
            (2, "Employee Referral"),
            (3, "External Referral"),
            (4, "Partner"),
            (5, "Public Relations"),
            (6, "Seminar"),
            (7, "Trade Show"),
            (8, "Web"),
            (9, "Word of Mouth"),
            (10, "Other"),
            (100_000_000, "E-mail"),
            (100_000_001, "Phone call"),
        ]),
        ("lead", "leadqualitycode") | ("opportunity", "opportunityratingcode") => {
            pick(&[(1, "Hot"), (2, "Warm"), (3, "Cold")])
        }
        ("opportunity", "salesstage") => pick(&[(0, "Qualify"), (1, "Develop"), (2, "Propose"), (3, "Close")]),
        ("campaign", "typecode") => {
            pick(&[(1, "Advertisement"), (2, "Direct Marketing"), (3, "Event"), (4, "Co-branding"), (5, "Other")])
        }
        ("campaignactivity", "channeltypecode") => pick(&[
            (1, "Phone"),
            (2, "Appointment"),
            (3, "Letter"),
            (4, "Letter via Mail Merge"),
            (5, "Fax"),
            (6, "Fax via Mail Merge"),
            (7, "Email"),
            (8, "Email via Mail Merge"),
            (9, "Other"),
        ]),
        ("campaignactivity", "typecode") => pick(&[
            (1, "Research"),
            (2, "Content Preparation"),
            (3, "Target Marketing List Creation"),
            (4, "Lead Qualification"),
            (5, "Content Distribution"),
            (6, "Direct Initial Contact"),
            (7, "Direct Follow-Up Contact"),
            (8, "Reminder Distribution"),
        ]),
        ("campaignresponse", "responsecode") => {
            pick(&[(1, "Interested"), (2, "Not Interested"), (3, "Do Not Send Marketing Materials"), (4, "Error")])
        }
        ("campaignresponse", "channeltypecode") => {
            pick(&[(1, "Email"), (2, "Phone"), (3, "Fax"), (4, "Letter"), (5, "Appointment"), (6, "Others")])
        }
        ("list", "createdfromcode") => pick(&[(1, "Account"), (2, "Contact"), (4, "Lead")]),
        (_, "prioritycode") => pick(&[(0, "Low"), (1, "Normal"), (2, "High")]),
        _ => None,
    }
}

/// The record type of a table, for its state names.
fn kind_of(table: &str) -> Option<EntityKind> {
    match table {
        // The shared activity table mixes types whose Open/Completed/Canceled codes agree.
        "activity" => Some(EntityKind::Task),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picklists_of_section_2_have_their_labels() {
        assert_eq!(picklist("lead", "leadsourcecode", 7), Some("Trade Show"));
        assert_eq!(picklist("lead", "leadsourcecode", 100_000_001), Some("Phone call"));
        assert_eq!(picklist("lead", "statecode", 2), Some("Disqualified"));
        assert_eq!(picklist("opportunity", "statecode", 1), Some("Won"));
        assert_eq!(picklist("activity", "statecode", 1), Some("Completed"));
        assert_eq!(picklist("campaignresponse", "responsecode", 3), Some("Do Not Send Marketing Materials"));
        // §2.10: the two channel option sets number differently.
        assert_eq!(picklist("campaignresponse", "channeltypecode", 1), Some("Email"));
        assert_eq!(picklist("campaignactivity", "channeltypecode", 1), Some("Phone"));
        assert_eq!(picklist("lead", "leadsourcecode", 42), None);
        assert_eq!(picklist("lead", "revenue", 1), None);
    }

    #[test]
    fn lookups_say_where_they_point() {
        assert_eq!(lookup("lead", "ownerid"), Some(Lookup::To(EntityKind::Systemuser)));
        assert_eq!(lookup("campaignactivity", "regardingobjectid"), Some(Lookup::To(EntityKind::Campaign)));
        assert_eq!(lookup("activity", "regardingobjectid"), Some(Lookup::Typed("regardingobjectidtype")));
        assert_eq!(lookup("opportunity", "customerid"), Some(Lookup::Typed("customeridtype")));
        assert_eq!(lookup("lead", "subject"), None);
    }
}
