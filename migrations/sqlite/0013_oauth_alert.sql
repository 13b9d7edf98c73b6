-- SQLite part of migration 0013: nothing differs.
SELECT 1;
