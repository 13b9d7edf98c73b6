-- PostgreSQL part of migration 0004: nothing differs.
SELECT 1;
