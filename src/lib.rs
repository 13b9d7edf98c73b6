//! inflow: a worker daemon that keeps a sales-and-marketing CRM fed (see README.md).
//!
//! Channels in (IMAP, PBX webhooks, admin HTTP) → `crm` (pure rules) → `store` (SQL) →
//! channels out (waves, alerts, jobs). `app` wires them together under one shutdown token.

pub mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod crm;
pub mod failpoint;
pub mod http;
pub mod import;
pub mod ingest;
pub mod jobs;
pub mod lease;
pub mod metrics;
pub mod oauth;
pub mod smtp;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod waves;
