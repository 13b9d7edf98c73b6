-- SQLite part of migration 0002: nothing differs.
SELECT 1;
