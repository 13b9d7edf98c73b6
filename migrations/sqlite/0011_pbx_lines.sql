-- SQLite part of migration 0011: nothing differs.
SELECT 1;
