-- PostgreSQL part of migration 0005: nothing differs.
SELECT 1;
