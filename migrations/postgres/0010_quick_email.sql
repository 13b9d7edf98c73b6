-- PostgreSQL part of migration 0010: the reference is a named constraint.
ALTER TABLE wave DROP CONSTRAINT IF EXISTS wave_activityid_fkey;
