-- SQLite part of migration 0019: SQLite does not compress values.
SELECT 1;
