-- Issue 19 (R-LD-5): when something last happened with a lead, on PostgreSQL too. SQLite
-- keeps `lead.lastactivityon` with triggers since 0018; PostgreSQL now keeps the same column
-- with a roll-up outside the writers' transactions (its part says how).
-- The console's customer lists, by name (issue 19).
CREATE INDEX contact_lastname ON contact (lastname);
CREATE INDEX account_name ON account (name);
