//! Channels in: each turns raw input (a webhook, a mail message) into typed values for the
//! CRM rules, and nothing else. They never write SQL; persistence goes through `store`.

pub mod autoreply;
pub mod bounce;
pub mod complaint;
pub mod envelope;
pub mod imap;
pub mod mail;
pub mod pbx;
