-- SQLite part of migration 0014: nothing differs.
SELECT 1;
