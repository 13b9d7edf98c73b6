//! The one integration-test binary: store suites run the same bodies on SQLite and on
//! PostgreSQL; daemon tests start the real `inflow` binary.

mod alerts;
mod api;
mod console;
mod corpus;
mod daemon;
mod dovecot;
mod helpers;
mod layers;
mod mail;
mod mail_real;
mod oauth;
mod outage;
mod pbx;
mod scale;
mod store;
mod systemd;
mod waves;
mod work;
