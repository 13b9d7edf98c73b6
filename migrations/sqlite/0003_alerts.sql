-- SQLite part of migration 0003: nothing differs.
SELECT 1;
