-- Issue 17: when the operator was last told (alerts.fallback_address) that an OAuth account
-- needs a new sign-in: at most one alert e-mail a day per account, however many daemons scan.
CREATE TABLE oauth_alert (
    account TEXT PRIMARY KEY,
    alerted_at BIGINT NOT NULL
);
