-- PostgreSQL part of migration 0009: nothing differs.
SELECT 1;
