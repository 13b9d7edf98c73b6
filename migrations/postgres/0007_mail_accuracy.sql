-- PostgreSQL part of migration 0007: nothing differs.
SELECT 1;
