-- PostgreSQL part of migration 0015: nothing differs.
SELECT 1;
