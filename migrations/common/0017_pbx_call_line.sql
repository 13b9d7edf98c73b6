-- Issue 19: the line a call came in on (the configured line's number, else the dialled number,
-- E.164), so the console can count calls answered and missed per line.
ALTER TABLE pbx_call ADD COLUMN line TEXT;
CREATE INDEX pbx_call_line ON pbx_call (line, first_event_at);
