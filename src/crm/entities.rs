//! The CRM records (DOMAIN §2), with Dynamics logical names as field names.
//!
//! Each record type also describes its table (`Record`): the table name, key and the
//! storage kind of every column. The store uses that description to read and write every
//! record type with one implementation, so adding a field touches the struct and a migration,
//! nothing else. Field names are column names are JSON names.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::{EntityKind, Money};

/// How a column is stored. All kinds are portable between SQLite and PostgreSQL:
/// ids are TEXT, instants are BIGINT epoch milliseconds, dates are TEXT `YYYY-MM-DD`,
/// money is BIGINT minor units, JSON documents are TEXT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Int,
    Bool,
    Money,
    Instant,
    Date,
    Uuid,
    Json,
}

/// A column of a record table.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub name: &'static str,
    pub ty: ColType,
}

/// A record type and its table.
pub trait Record: Serialize + serde::de::DeserializeOwned + Send + Sync + Unpin + 'static {
    const KIND: EntityKind;
    const TABLE: &'static str;
    const KEY: &'static str;
    const COLS: &'static [Col];
    fn id(&self) -> Uuid;
    fn version(&self) -> i64;
}

/// Maps a Rust field type to its storage kind.
pub trait ColTyped {
    const TYPE: ColType;
}

macro_rules! col_typed {
    ($($t:ty => $c:ident),* $(,)?) => { $( impl ColTyped for $t { const TYPE: ColType = ColType::$c; } )* };
}
col_typed! {
    String => Text, Option<String> => Text,
    i32 => Int, Option<i32> => Int, i64 => Int, Option<i64> => Int,
    bool => Bool, Option<bool> => Bool,
    Money => Money, Option<Money> => Money,
    DateTime<Utc> => Instant, Option<DateTime<Utc>> => Instant,
    NaiveDate => Date, Option<NaiveDate> => Date,
    Uuid => Uuid, Option<Uuid> => Uuid,
    EntityKind => Text, Option<EntityKind> => Text,
    Option<serde_json::Value> => Json,
}

pub(crate) fn yes() -> bool {
    true
}

/// Declares a record struct and its table description. `owned` adds the fields every
/// user-owned entity carries (DOMAIN §0): owner, state/status, audit fields, version.
macro_rules! record {
    (@impl $name:ident, $kind:ident, $table:literal, $key:ident, [$($f:ident : $t:ty),*]) => {
        impl Record for $name {
            const KIND: EntityKind = EntityKind::$kind;
            const TABLE: &'static str = $table;
            const KEY: &'static str = stringify!($key);
            const COLS: &'static [Col] = &[ $( Col { name: stringify!($f), ty: <$t as ColTyped>::TYPE } ),* ];
            fn id(&self) -> Uuid { self.$key }
            fn version(&self) -> i64 { self.versionnumber }
        }
    };
    ($(#[$m:meta])* owned $name:ident ($kind:ident) in $table:literal key $key:ident $(state_from $sf:ident)? {
        $( $(#[$fm:meta])* $f:ident : $t:ty ),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            pub $key: Uuid,
            $( $(#[$fm])* pub $f: $t, )*
            pub ownerid: Uuid,
            pub owneridtype: EntityKind,
            pub statecode: i32,
            pub statuscode: i32,
            pub createdon: DateTime<Utc>,
            pub createdby: Option<Uuid>,
            pub modifiedon: DateTime<Utc>,
            pub modifiedby: Option<Uuid>,
            pub versionnumber: i64,
        }
        impl $name {
            /// Sets what every new user-owned record carries: owner, the default state
            /// (0 with its default status; for activities, of their activitytypecode),
            /// creation and modification stamps, version 1.
            pub fn stamped(mut self, owner: Uuid, owner_type: EntityKind, now: DateTime<Utc>,
                actor: Option<Uuid>) -> Self {
                self.ownerid = owner;
                self.owneridtype = owner_type;
                #[allow(unused_variables)]
                let kind = EntityKind::$kind;
                $(let kind = self.$sf;)?
                self.statecode = 0;
                self.statuscode = super::state::model(kind).first().map(|d| d.default).unwrap_or(1);
                self.createdon = now;
                self.createdby = actor;
                self.modifiedon = now;
                self.modifiedby = actor;
                self.versionnumber = 1;
                self
            }
        }
        record!(@impl $name, $kind, $table, $key, [$key: Uuid, $($f: $t,)* ownerid: Uuid, owneridtype: EntityKind,
            statecode: i32, statuscode: i32, createdon: DateTime<Utc>, createdby: Option<Uuid>,
            modifiedon: DateTime<Utc>, modifiedby: Option<Uuid>, versionnumber: i64]);
    };
    ($(#[$m:meta])* plain $name:ident ($kind:ident) in $table:literal key $key:ident {
        $( $(#[$fm:meta])* $f:ident : $t:ty ),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            pub $key: Uuid,
            $( $(#[$fm])* pub $f: $t, )*
            pub createdon: DateTime<Utc>,
            pub modifiedon: DateTime<Utc>,
            pub versionnumber: i64,
        }
        record!(@impl $name, $kind, $table, $key, [$key: Uuid, $($f: $t,)* createdon: DateTime<Utc>,
            modifiedon: DateTime<Utc>, versionnumber: i64]);
    };
}

record! {
    /// systemuser (§2.1). `parentsystemuserid` is the manager: the escalation target.
    plain SystemUser (Systemuser) in "systemuser" key systemuserid {
        fullname: Option<String>,
        firstname: Option<String>,
        lastname: String,
        internalemailaddress: Option<String>,
        parentsystemuserid: Option<Uuid>,
        isdisabled: bool,
        businessunitid: Option<String>,
        pbx_extension: Option<String>,
        notify_channel: Option<String>,
    }
}

record! {
    /// team (§2.1): can own records; notifications go to its contact address.
    plain Team (Team) in "team" key teamid {
        name: String,
        contact_email: Option<String>,
    }
}

record! {
    /// account (§2.2).
    owned Account (Account) in "account" key accountid {
        name: String,
        emailaddress1: Option<String>,
        emailaddress2: Option<String>,
        emailaddress3: Option<String>,
        telephone1: Option<String>,
        telephone2: Option<String>,
        telephone3: Option<String>,
        fax: Option<String>,
        address1_line1: Option<String>,
        address1_city: Option<String>,
        address1_postalcode: Option<String>,
        address1_country: Option<String>,
        primarycontactid: Option<Uuid>,
        parentaccountid: Option<Uuid>,
        originatingleadid: Option<Uuid>,
        industrycode: Option<i32>,
        revenue: Option<Money>,
        numberofemployees: Option<i32>,
        donotemail: bool,
        donotbulkemail: bool,
        donotsendmm: bool,
        donotphone: bool,
        donotfax: bool,
        donotpostalmail: bool,
        donotbulkpostalmail: bool,
        lastusedincampaign: Option<NaiveDate>,
        description: Option<String>,
        /// R-DUP-5: the record this one was merged into.
        masterid: Option<Uuid>,
    }
}

record! {
    /// contact (§2.3).
    owned Contact (Contact) in "contact" key contactid {
        firstname: Option<String>,
        middlename: Option<String>,
        lastname: String,
        jobtitle: Option<String>,
        emailaddress1: Option<String>,
        emailaddress2: Option<String>,
        emailaddress3: Option<String>,
        telephone1: Option<String>,
        telephone2: Option<String>,
        mobilephone: Option<String>,
        address1_line1: Option<String>,
        address1_city: Option<String>,
        address1_postalcode: Option<String>,
        address1_country: Option<String>,
        parentcustomerid: Option<Uuid>,
        parentcustomeridtype: Option<EntityKind>,
        originatingleadid: Option<Uuid>,
        donotemail: bool,
        donotbulkemail: bool,
        donotsendmm: bool,
        donotphone: bool,
        donotfax: bool,
        donotpostalmail: bool,
        donotbulkpostalmail: bool,
        lastusedincampaign: Option<NaiveDate>,
        description: Option<String>,
        /// R-DUP-5: the record this one was merged into.
        masterid: Option<Uuid>,
    }
}

record! {
    /// lead, "Интерес" (§2.4): a flat record; company and person fields sit on it.
    owned Lead (Lead) in "lead" key leadid {
        subject: String,
        firstname: Option<String>,
        lastname: String,
        companyname: Option<String>,
        jobtitle: Option<String>,
        emailaddress1: Option<String>,
        emailaddress2: Option<String>,
        emailaddress3: Option<String>,
        telephone1: Option<String>,
        mobilephone: Option<String>,
        fax: Option<String>,
        address1_line1: Option<String>,
        address1_city: Option<String>,
        address1_postalcode: Option<String>,
        address1_country: Option<String>,
        /// Rating: 1 Hot, 2 Warm (default), 3 Cold.
        leadqualitycode: i32,
        leadsourcecode: Option<i32>,
        industrycode: Option<i32>,
        revenue: Option<Money>,
        numberofemployees: Option<i32>,
        campaignid: Option<Uuid>,
        relatedobjectid: Option<Uuid>,
        parentaccountid: Option<Uuid>,
        parentcontactid: Option<Uuid>,
        customerid: Option<Uuid>,
        customeridtype: Option<EntityKind>,
        qualifyingopportunityid: Option<Uuid>,
        qualificationcomments: Option<String>,
        estimatedamount: Option<Money>,
        estimatedclosedate: Option<NaiveDate>,
        purchasetimeframe: Option<i32>,
        budgetamount: Option<Money>,
        description: Option<String>,
        donotemail: bool,
        donotbulkemail: bool,
        donotsendmm: bool,
        donotphone: bool,
        donotfax: bool,
        donotpostalmail: bool,
        lastusedincampaign: Option<NaiveDate>,
        /// R-DUP-5: the record this one was merged into.
        masterid: Option<Uuid>,
    }
}

record! {
    /// opportunity (§2.5).
    owned Opportunity (Opportunity) in "opportunity" key opportunityid {
        name: String,
        customerid: Option<Uuid>,
        customeridtype: Option<EntityKind>,
        parentaccountid: Option<Uuid>,
        parentcontactid: Option<Uuid>,
        originatingleadid: Option<Uuid>,
        campaignid: Option<Uuid>,
        estimatedvalue: Option<Money>,
        isrevenuesystemcalculated: bool,
        closeprobability: Option<i32>,
        estimatedclosedate: Option<NaiveDate>,
        opportunityratingcode: i32,
        salesstage: Option<i32>,
        purchasetimeframe: Option<i32>,
        budgetamount: Option<Money>,
        transactioncurrencyid: Option<String>,
        deal_closed_on: Option<NaiveDate>,
        description: Option<String>,
        /// R-OPP-1: the value and date a win records.
        actualvalue: Option<Money>,
        actualclosedate: Option<NaiveDate>,
    }
}

record! {
    /// list, the marketing list (§2.6). `isdynamic` is Dynamics' `type` (false = static);
    /// `query` holds a dynamic list's criteria document (see `crm::criteria`).
    owned MarketingList (List) in "list" key listid {
        listname: String,
        /// Member type: 1 Account, 2 Contact, 4 Lead. Immutable.
        createdfromcode: i32,
        isdynamic: bool,
        query: Option<serde_json::Value>,
        membercount: Option<i32>,
        lockstatus: bool,
        #[serde(default = "yes")]
        donotsendonoptout: bool,
        #[serde(default = "yes")]
        ignoreinactivelistmembers: bool,
        lastusedon: Option<NaiveDate>,
        purpose: Option<String>,
        source: Option<String>,
        cost: Option<Money>,
        description: Option<String>,
    }
}

record! {
    /// campaign (§2.7). A quick campaign is a bulkoperation (op 7) over one list.
    owned Campaign (Campaign) in "campaign" key campaignid {
        name: String,
        codename: Option<String>,
        typecode: i32,
        budgetedcost: Option<Money>,
        othercost: Option<Money>,
        /// Read-only: Σ campaignactivity.actualcost (R-WV-6).
        totalcampaignactivityactualcost: Option<Money>,
        /// Read-only: the above + othercost (R-WV-6).
        totalactualcost: Option<Money>,
        expectedrevenue: Option<Money>,
        expectedresponse: Option<i32>,
        proposedstart: Option<NaiveDate>,
        proposedend: Option<NaiveDate>,
        actualstart: Option<NaiveDate>,
        actualend: Option<NaiveDate>,
        promotioncodename: Option<String>,
        objective: Option<String>,
        message: Option<String>,
        description: Option<String>,
        istemplate: bool,
        transactioncurrencyid: String,
    }
}

record! {
    /// campaignactivity (§2.8): a wave or a campaign-plan task with cost.
    owned CampaignActivity (Campaignactivity) in "campaignactivity" key activityid {
        /// The parent campaign (campaign only; not updatable).
        regardingobjectid: Uuid,
        subject: String,
        channeltypecode: Option<i32>,
        typecode: Option<i32>,
        budgetedcost: Option<Money>,
        actualcost: Option<Money>,
        scheduledstart: Option<NaiveDate>,
        scheduledend: Option<NaiveDate>,
        actualstart: Option<NaiveDate>,
        actualend: Option<NaiveDate>,
        #[serde(default = "yes")]
        donotsendonoptout: bool,
        #[serde(default = "yes")]
        ignoreinactivelistmembers: bool,
        excludeifcontactedinxdays: Option<i32>,
        sender: Option<String>,
        description: Option<String>,
    }
}

record! {
    /// bulkoperation (§2.9): a distribution run (op 4) or a quick campaign (op 7).
    owned BulkOperation (Bulkoperation) in "bulkoperation" key activityid {
        operationtypecode: i32,
        createdrecordtypecode: Option<i32>,
        regardingobjectid: Uuid,
        regardingobjectidtype: EntityKind,
        subject: Option<String>,
        targetmemberscount: Option<i32>,
        successcount: Option<i32>,
        failurecount: Option<i32>,
        errornumber: Option<i32>,
        /// Members left out, counted by reason (R-WV-3, R-QC-1).
        excluded: Option<serde_json::Value>,
    }
}

record! {
    /// campaignresponse (§2.10). `regardingobjectid` is the campaign (or quick campaign),
    /// never the wave; `campaignactivityid` is the daemon's extension pointing at the wave.
    owned CampaignResponse (Campaignresponse) in "campaignresponse" key activityid {
        subject: String,
        regardingobjectid: Uuid,
        regardingobjectidtype: EntityKind,
        originatingactivityid: Option<Uuid>,
        originatingactivityidtype: Option<EntityKind>,
        campaignactivityid: Option<Uuid>,
        customerid: Option<Uuid>,
        customeridtype: Option<EntityKind>,
        firstname: Option<String>,
        lastname: Option<String>,
        companyname: Option<String>,
        emailaddress: Option<String>,
        telephone: Option<String>,
        fax: Option<String>,
        /// 1 Interested, 2 Not Interested, 3 Do Not Send Marketing Materials, 4 Error.
        responsecode: i32,
        channeltypecode: Option<i32>,
        receivedon: Option<NaiveDate>,
        promotioncodename: Option<String>,
        scheduledend: Option<NaiveDate>,
        prioritycode: Option<i32>,
        description: Option<String>,
    }
}

record! {
    /// The plain activities (§2.11: task, phonecall, email, appointment, letter, fax) share
    /// one table, like Dynamics' activitypointer; type-specific fields are nullable.
    owned Activity (Task) in "activity" key activityid state_from activitytypecode {
        activitytypecode: EntityKind,
        subject: Option<String>,
        description: Option<String>,
        regardingobjectid: Option<Uuid>,
        regardingobjectidtype: Option<EntityKind>,
        scheduledstart: Option<DateTime<Utc>>,
        /// The due date ("Due Date" on task and email, "Due" on phonecall).
        scheduledend: Option<DateTime<Utc>>,
        actualstart: Option<DateTime<Utc>>,
        actualend: Option<DateTime<Utc>>,
        actualdurationminutes: Option<i32>,
        prioritycode: Option<i32>,
        /// true = Outgoing.
        directioncode: Option<bool>,
        phonenumber: Option<String>,
        leftvoicemail: Option<bool>,
        percentcomplete: Option<i32>,
        messageid: Option<String>,
        inreplyto: Option<String>,
        trackingtoken: Option<String>,
        correlationmethod: Option<i32>,
        sender: Option<String>,
        torecipients: Option<String>,
        parentactivityid: Option<Uuid>,
        deliveryattempts: Option<i32>,
        senton: Option<DateTime<Utc>>,
    }
}

/// An `activityparty` row: who took part in an activity, as a record or an unresolved address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityParty {
    /// 1 From/Sender, 2 To, 3 Cc, 4 Bcc.
    pub participationtypemask: i32,
    pub party: Option<super::EntityRef>,
    pub addressused: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` on every record type.
    macro_rules! every_record {
        ($check:ident) => {
            $check::<SystemUser>();
            $check::<Team>();
            $check::<Account>();
            $check::<Contact>();
            $check::<Lead>();
            $check::<Opportunity>();
            $check::<MarketingList>();
            $check::<Campaign>();
            $check::<CampaignActivity>();
            $check::<BulkOperation>();
            $check::<CampaignResponse>();
            $check::<Activity>();
        };
    }

    #[test]
    fn entity_kinds_know_their_tables() {
        fn check<R: Record>() {
            assert_eq!(R::KIND.table(), (R::TABLE, R::KEY), "{}", R::KIND);
        }
        every_record!(check);
    }

    #[test]
    fn table_descriptions_match_serde_names() {
        fn check<R: Record + Default>() {
            let json = serde_json::to_value(R::default()).unwrap();
            let obj = json.as_object().unwrap();
            assert_eq!(obj.len(), R::COLS.len(), "{}", R::TABLE);
            for c in R::COLS {
                assert!(obj.contains_key(c.name), "{}.{} missing from JSON", R::TABLE, c.name);
            }
            assert!(R::COLS.iter().any(|c| c.name == R::KEY));
        }
        every_record!(check);
    }

    #[test]
    fn stamped_takes_the_state_model_of_the_record_type() {
        let t = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        let call = Activity { activitytypecode: EntityKind::Phonecall, ..Default::default() }.stamped(
            Uuid::nil(),
            EntityKind::Systemuser,
            t,
            None,
        );
        assert_eq!((call.statecode, call.statuscode), (0, 1), "phonecall Open");
        let task = Activity { activitytypecode: EntityKind::Task, ..Default::default() }.stamped(
            Uuid::nil(),
            EntityKind::Systemuser,
            t,
            None,
        );
        assert_eq!(task.statuscode, 2, "task Not Started");
        let lead = Lead::default().stamped(Uuid::nil(), EntityKind::Systemuser, t, None);
        assert_eq!((lead.statuscode, lead.versionnumber), (1, 1));
    }

    #[test]
    fn marketing_list_opt_out_defaults_are_true() {
        // §2.6: donotsendonoptout and ignoreinactivelistmembers default to true.
        let l: MarketingList = serde_json::from_str(r#"{"listname":"x","createdfromcode":2}"#).unwrap();
        assert!(l.donotsendonoptout && l.ignoreinactivelistmembers);
    }
}
