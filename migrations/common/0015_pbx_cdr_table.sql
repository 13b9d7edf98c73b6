-- Issue 20: where each polled CDR table (FreePBX / Issabel `asteriskcdrdb.cdr`) has been read
-- up to: the latest call end time seen, in UTC milliseconds. The poll reads again a little
-- before it, so a row written late is still found; event ids make the overlap a no-op.
CREATE TABLE pbx_cdr_checkpoint (
    source TEXT PRIMARY KEY,
    read_until BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
