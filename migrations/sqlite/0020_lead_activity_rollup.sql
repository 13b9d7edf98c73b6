-- SQLite part of migration 0020: nothing (its triggers of 0018 keep `lead.lastactivityon`).
SELECT 1;
