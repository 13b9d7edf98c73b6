-- SQLite part of migration 0008: nothing differs.
SELECT 1;
