-- inflow core schema, portable part: runs unchanged on SQLite and PostgreSQL.
-- Types: ids TEXT (UUID text), instants BIGINT epoch milliseconds (UTC), DateOnly TEXT
-- 'YYYY-MM-DD', Money BIGINT minor units, JSON documents TEXT, flags BOOLEAN.
-- Columns carry Dynamics logical names (shared/DOMAIN.md); owner/state/audit columns are
-- the ones every user-owned entity has (DOMAIN §0).

CREATE TABLE systemuser (
    systemuserid TEXT PRIMARY KEY,
    fullname TEXT, firstname TEXT, lastname TEXT NOT NULL,
    internalemailaddress TEXT,
    parentsystemuserid TEXT REFERENCES systemuser(systemuserid),
    isdisabled BOOLEAN NOT NULL DEFAULT FALSE,
    businessunitid TEXT, pbx_extension TEXT, notify_channel TEXT,
    createdon BIGINT NOT NULL, modifiedon BIGINT NOT NULL, versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX systemuser_manager ON systemuser (parentsystemuserid);
CREATE UNIQUE INDEX systemuser_extension ON systemuser (pbx_extension) WHERE pbx_extension IS NOT NULL;

CREATE TABLE team (
    teamid TEXT PRIMARY KEY,
    name TEXT NOT NULL, contact_email TEXT,
    createdon BIGINT NOT NULL, modifiedon BIGINT NOT NULL, versionnumber BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE account (
    accountid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    emailaddress1 TEXT, emailaddress2 TEXT, emailaddress3 TEXT,
    telephone1 TEXT, telephone2 TEXT, telephone3 TEXT, fax TEXT,
    address1_line1 TEXT, address1_city TEXT, address1_postalcode TEXT, address1_country TEXT,
    primarycontactid TEXT, parentaccountid TEXT REFERENCES account(accountid), originatingleadid TEXT,
    industrycode INTEGER, revenue BIGINT, numberofemployees INTEGER,
    donotemail BOOLEAN NOT NULL DEFAULT FALSE, donotbulkemail BOOLEAN NOT NULL DEFAULT FALSE,
    donotsendmm BOOLEAN NOT NULL DEFAULT FALSE, donotphone BOOLEAN NOT NULL DEFAULT FALSE,
    donotfax BOOLEAN NOT NULL DEFAULT FALSE, donotpostalmail BOOLEAN NOT NULL DEFAULT FALSE,
    donotbulkpostalmail BOOLEAN NOT NULL DEFAULT FALSE,
    lastusedincampaign TEXT, description TEXT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX account_owner ON account (ownerid, statecode);

CREATE TABLE contact (
    contactid TEXT PRIMARY KEY,
    firstname TEXT, middlename TEXT, lastname TEXT NOT NULL, jobtitle TEXT,
    emailaddress1 TEXT, emailaddress2 TEXT, emailaddress3 TEXT,
    telephone1 TEXT, telephone2 TEXT, mobilephone TEXT,
    address1_line1 TEXT, address1_city TEXT, address1_postalcode TEXT, address1_country TEXT,
    parentcustomerid TEXT, parentcustomeridtype TEXT, originatingleadid TEXT,
    donotemail BOOLEAN NOT NULL DEFAULT FALSE, donotbulkemail BOOLEAN NOT NULL DEFAULT FALSE,
    donotsendmm BOOLEAN NOT NULL DEFAULT FALSE, donotphone BOOLEAN NOT NULL DEFAULT FALSE,
    donotfax BOOLEAN NOT NULL DEFAULT FALSE, donotpostalmail BOOLEAN NOT NULL DEFAULT FALSE,
    donotbulkpostalmail BOOLEAN NOT NULL DEFAULT FALSE,
    lastusedincampaign TEXT, description TEXT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX contact_owner ON contact (ownerid, statecode);
CREATE INDEX contact_parent ON contact (parentcustomerid);

CREATE TABLE lead (
    leadid TEXT PRIMARY KEY,
    subject TEXT NOT NULL, firstname TEXT, lastname TEXT NOT NULL, companyname TEXT, jobtitle TEXT,
    emailaddress1 TEXT, emailaddress2 TEXT, emailaddress3 TEXT,
    telephone1 TEXT, mobilephone TEXT, fax TEXT,
    address1_line1 TEXT, address1_city TEXT, address1_postalcode TEXT, address1_country TEXT,
    leadqualitycode INTEGER NOT NULL DEFAULT 2, leadsourcecode INTEGER, industrycode INTEGER,
    revenue BIGINT, numberofemployees INTEGER,
    campaignid TEXT, relatedobjectid TEXT, parentaccountid TEXT, parentcontactid TEXT,
    customerid TEXT, customeridtype TEXT, qualifyingopportunityid TEXT,
    qualificationcomments TEXT, estimatedamount BIGINT, estimatedclosedate TEXT,
    purchasetimeframe INTEGER, budgetamount BIGINT, description TEXT,
    donotemail BOOLEAN NOT NULL DEFAULT FALSE, donotbulkemail BOOLEAN NOT NULL DEFAULT FALSE,
    donotsendmm BOOLEAN NOT NULL DEFAULT FALSE, donotphone BOOLEAN NOT NULL DEFAULT FALSE,
    donotfax BOOLEAN NOT NULL DEFAULT FALSE, donotpostalmail BOOLEAN NOT NULL DEFAULT FALSE,
    lastusedincampaign TEXT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX lead_owner_state ON lead (ownerid, statecode);
CREATE INDEX lead_state_created ON lead (statecode, createdon);
CREATE INDEX lead_campaign ON lead (campaignid);

CREATE TABLE opportunity (
    opportunityid TEXT PRIMARY KEY,
    name TEXT NOT NULL, customerid TEXT, customeridtype TEXT,
    parentaccountid TEXT, parentcontactid TEXT, originatingleadid TEXT, campaignid TEXT,
    estimatedvalue BIGINT, isrevenuesystemcalculated BOOLEAN NOT NULL DEFAULT FALSE,
    closeprobability INTEGER, estimatedclosedate TEXT, opportunityratingcode INTEGER NOT NULL DEFAULT 2,
    salesstage INTEGER, purchasetimeframe INTEGER, budgetamount BIGINT, transactioncurrencyid TEXT,
    deal_closed_on TEXT, description TEXT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX opportunity_lead ON opportunity (originatingleadid);
CREATE INDEX opportunity_customer ON opportunity (customerid);

CREATE TABLE list (
    listid TEXT PRIMARY KEY,
    listname TEXT NOT NULL,
    createdfromcode INTEGER NOT NULL CHECK (createdfromcode IN (1, 2, 4)),
    isdynamic BOOLEAN NOT NULL DEFAULT FALSE,
    query TEXT, membercount INTEGER,
    lockstatus BOOLEAN NOT NULL DEFAULT FALSE,
    donotsendonoptout BOOLEAN NOT NULL DEFAULT TRUE,
    ignoreinactivelistmembers BOOLEAN NOT NULL DEFAULT TRUE,
    lastusedon TEXT, purpose TEXT, source TEXT, cost BIGINT, description TEXT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 0,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);

-- Static list members. One entity type per list (checked by the store against createdfromcode).
CREATE TABLE listmember (
    listid TEXT NOT NULL REFERENCES list(listid) ON DELETE CASCADE,
    entityid TEXT NOT NULL,
    entitytype TEXT NOT NULL,
    createdon BIGINT NOT NULL,
    PRIMARY KEY (listid, entityid)
);
CREATE INDEX listmember_entity ON listmember (entityid);

CREATE TABLE campaign (
    campaignid TEXT PRIMARY KEY,
    name TEXT NOT NULL, codename TEXT, typecode INTEGER NOT NULL DEFAULT 1,
    budgetedcost BIGINT, othercost BIGINT, totalcampaignactivityactualcost BIGINT, totalactualcost BIGINT,
    expectedrevenue BIGINT, expectedresponse INTEGER,
    proposedstart TEXT, proposedend TEXT, actualstart TEXT, actualend TEXT,
    promotioncodename TEXT, objective TEXT, message TEXT, description TEXT,
    istemplate BOOLEAN NOT NULL DEFAULT FALSE, transactioncurrencyid TEXT NOT NULL,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 0,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX campaign_codename ON campaign (codename) WHERE codename IS NOT NULL;

-- campaignitem: the campaign's marketing lists.
CREATE TABLE campaignitem (
    campaignid TEXT NOT NULL REFERENCES campaign(campaignid) ON DELETE CASCADE,
    listid TEXT NOT NULL REFERENCES list(listid),
    PRIMARY KEY (campaignid, listid)
);

CREATE TABLE campaignactivity (
    activityid TEXT PRIMARY KEY,
    regardingobjectid TEXT NOT NULL REFERENCES campaign(campaignid),
    subject TEXT NOT NULL, channeltypecode INTEGER, typecode INTEGER,
    budgetedcost BIGINT, actualcost BIGINT,
    scheduledstart TEXT, scheduledend TEXT, actualstart TEXT, actualend TEXT,
    donotsendonoptout BOOLEAN NOT NULL DEFAULT TRUE,
    ignoreinactivelistmembers BOOLEAN NOT NULL DEFAULT TRUE,
    excludeifcontactedinxdays INTEGER, sender TEXT, description TEXT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX campaignactivity_campaign ON campaignactivity (regardingobjectid);
CREATE INDEX campaignactivity_open_due ON campaignactivity (scheduledend) WHERE statecode = 0;

-- campaignactivityitem: the wave's target lists (a subset of the campaign's lists).
CREATE TABLE campaignactivityitem (
    campaignactivityid TEXT NOT NULL REFERENCES campaignactivity(activityid) ON DELETE CASCADE,
    listid TEXT NOT NULL REFERENCES list(listid),
    PRIMARY KEY (campaignactivityid, listid)
);

CREATE TABLE bulkoperation (
    activityid TEXT PRIMARY KEY,
    operationtypecode INTEGER NOT NULL, createdrecordtypecode INTEGER,
    regardingobjectid TEXT NOT NULL, regardingobjectidtype TEXT NOT NULL,
    subject TEXT, targetmemberscount INTEGER, successcount INTEGER, failurecount INTEGER, errornumber INTEGER,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX bulkoperation_regarding ON bulkoperation (regardingobjectid);

CREATE TABLE campaignresponse (
    activityid TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    regardingobjectid TEXT NOT NULL, regardingobjectidtype TEXT NOT NULL,
    originatingactivityid TEXT, originatingactivityidtype TEXT, campaignactivityid TEXT,
    customerid TEXT, customeridtype TEXT,
    firstname TEXT, lastname TEXT, companyname TEXT, emailaddress TEXT, telephone TEXT, fax TEXT,
    responsecode INTEGER NOT NULL DEFAULT 1, channeltypecode INTEGER, receivedon TEXT,
    promotioncodename TEXT, scheduledend TEXT, prioritycode INTEGER, description TEXT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX campaignresponse_regarding ON campaignresponse (regardingobjectid);
CREATE INDEX campaignresponse_wave ON campaignresponse (campaignactivityid, customerid);
CREATE INDEX campaignresponse_open_due ON campaignresponse (scheduledend) WHERE statecode = 0;

-- Plain activities (task, phonecall, email, appointment, letter, fax) share one table.
CREATE TABLE activity (
    activityid TEXT PRIMARY KEY,
    activitytypecode TEXT NOT NULL,
    subject TEXT, description TEXT,
    regardingobjectid TEXT, regardingobjectidtype TEXT,
    scheduledstart BIGINT, scheduledend BIGINT, actualstart BIGINT, actualend BIGINT,
    actualdurationminutes INTEGER, prioritycode INTEGER,
    directioncode BOOLEAN, phonenumber TEXT, leftvoicemail BOOLEAN, percentcomplete INTEGER,
    messageid TEXT, inreplyto TEXT, trackingtoken TEXT, correlationmethod INTEGER,
    sender TEXT, torecipients TEXT, parentactivityid TEXT, deliveryattempts INTEGER, senton BIGINT,
    ownerid TEXT NOT NULL, owneridtype TEXT NOT NULL DEFAULT 'systemuser',
    statecode INTEGER NOT NULL DEFAULT 0, statuscode INTEGER NOT NULL DEFAULT 1,
    createdon BIGINT NOT NULL, createdby TEXT, modifiedon BIGINT NOT NULL, modifiedby TEXT,
    versionnumber BIGINT NOT NULL DEFAULT 1
);
-- R-TASK-1's scan: open activities by due instant.
CREATE INDEX activity_open_due ON activity (scheduledend) WHERE statecode = 0;
CREATE INDEX activity_regarding ON activity (regardingobjectid);
CREATE INDEX activity_owner_state ON activity (ownerid, statecode);
CREATE INDEX activity_messageid ON activity (messageid) WHERE messageid IS NOT NULL;
CREATE UNIQUE INDEX activity_trackingtoken ON activity (trackingtoken) WHERE trackingtoken IS NOT NULL;

CREATE TABLE activityparty (
    activityid TEXT NOT NULL REFERENCES activity(activityid) ON DELETE CASCADE,
    participationtypemask INTEGER NOT NULL,
    partyid TEXT, partyidtype TEXT, addressused TEXT
);
CREATE INDEX activityparty_activity ON activityparty (activityid);
CREATE INDEX activityparty_party ON activityparty (partyid);

-- Matchable addresses of every party (R-DUP-1/2/3, R-EM-4): one row per e-mail, phone
-- (E.164) or account-name key, kept in the same transaction as the record it indexes.
CREATE TABLE contact_point (
    entitytype TEXT NOT NULL,
    entityid TEXT NOT NULL,
    field TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'phone', 'name')),
    value TEXT NOT NULL,
    statecode INTEGER NOT NULL,
    PRIMARY KEY (entitytype, entityid, field)
);
CREATE INDEX contact_point_value ON contact_point (channel, value);

-- Daemon-side entities (DOMAIN §2.13).

-- Idempotency + audit for every inbound item: one row per (source, external id).
CREATE TABLE inbound_event (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'processed', 'skipped', 'quarantined', 'failed')),
    reason TEXT,
    result TEXT,
    raw_location TEXT,
    processed_at BIGINT,
    UNIQUE (source, external_id)
);
CREATE INDEX inbound_event_status ON inbound_event (status, received_at);

-- Address-level opt-out (e-mail or E.164), independent of which records carry the address.
CREATE TABLE suppression (
    address TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT,
    created_on BIGINT NOT NULL
);

-- Idempotent escalation: at most one notification per (activity, level, due date).
CREATE TABLE notification_log (
    id TEXT PRIMARY KEY,
    activityid TEXT NOT NULL,
    activitytype TEXT NOT NULL,
    level INTEGER NOT NULL,
    scheduledend BIGINT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_userid TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    UNIQUE (activityid, level, scheduledend)
);
CREATE INDEX notification_log_pending ON notification_log (status, created_at);

-- Review queue for ambiguous matches (R-DUP-3): never auto-linked.
CREATE TABLE dup_candidate (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_value TEXT NOT NULL,
    source_ref TEXT NOT NULL DEFAULT '',
    candidates TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'merged', 'ignored')),
    created_at BIGINT NOT NULL,
    UNIQUE (rule, subject_value, source_ref)
);
