-- Issue 20: several accounts of one provider. Each event and call keeps the account it came
-- through (`[[pbx.<provider>]]` `name`, an Asterisk PBX's name; '' before this migration).
ALTER TABLE pbx_event ADD COLUMN account TEXT NOT NULL DEFAULT '';
ALTER TABLE pbx_call ADD COLUMN account TEXT NOT NULL DEFAULT '';
