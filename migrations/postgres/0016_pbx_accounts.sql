-- PostgreSQL part of migration 0016: nothing differs.
SELECT 1;
