-- SQLite part of migration 0006: nothing differs.
SELECT 1;
