-- PostgreSQL part of migration 0018: nothing. The SQLite part keeps `lead.lastactivityon` with
-- triggers so the `stale` view reads one column (531 -> 6 ms at 100,000 leads and 1,000,000
-- activities). The same triggers on PostgreSQL (row triggers calling a function that updates
-- the lead) took call processing from about 1,000 to 394 calls/s end to end in
-- bench/webhooks.sh and the IMAP ingest from about 950 to 707 msg/s, and they lock lead rows
-- inside every writer's transaction. So here the view asks the activities, as before (about
-- 240 ms at that size). A rollup kept outside the writers' transactions is what is left to try.
SELECT 1;
