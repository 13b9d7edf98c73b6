-- SQLite part of migration 0012: nothing differs.
SELECT 1;
