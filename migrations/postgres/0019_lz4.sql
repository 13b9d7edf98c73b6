-- PostgreSQL part of migration 0019 (issue 23): values over about 2 KB are compressed when
-- stored, with pglz by default. E-mail bodies (2-50 KB, an activity's description), messages
-- kept for replay, and webhook requests are the large values inflow writes on its hot paths;
-- lz4 compresses them about three times faster than pglz, for slightly larger storage.
-- Applies to values written from now on (nothing is rewritten); reading either is the same.
-- A server without lz4 (PostgreSQL before 14, or built without it) keeps pglz.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        -- EXECUTE: a server before 14 would not even parse SET COMPRESSION.
        EXECUTE 'ALTER TABLE activity ALTER COLUMN description SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE inbound_event ALTER COLUMN raw SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE pbx_event ALTER COLUMN raw SET COMPRESSION lz4';
    END IF;
END $$;
