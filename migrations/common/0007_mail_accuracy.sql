-- Mail read right (issue 16): why each address bounced (Sisimai's reason vocabulary), and
-- what every inbound message was — its subject and its own date — whatever became of it, so
-- bounces, auto-replies and skipped mail can be told apart in the ops views.
ALTER TABLE mail_bounce ADD COLUMN last_reason TEXT;
ALTER TABLE inbound_event ADD COLUMN subject TEXT;
ALTER TABLE inbound_event ADD COLUMN message_date BIGINT;
-- Messages a mailbox saw again (same key as an earlier event): the ops view of duplicates.
ALTER TABLE mailbox_state ADD COLUMN duplicates BIGINT NOT NULL DEFAULT 0;
