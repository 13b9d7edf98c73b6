-- PostgreSQL part of migration 0017: nothing differs.
SELECT 1;
