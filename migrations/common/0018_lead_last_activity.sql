-- Issue 19 (R-LD-5): when something last happened with a lead, for the `stale` view. SQLite
-- keeps it (its part of this migration); PostgreSQL does not (its part says why).
SELECT 1;
