//! The CRM core: entities, newtypes and the rules of `shared/DOMAIN.md`.
//!
//! Everything here is pure: no I/O, no clock, no randomness. Callers (the store, the ingest
//! channels, the HTTP layer) gather the facts a rule needs, call a `plan_*`/`validate_*`
//! function here, and apply the returned decision in one transaction. Tests beside each rule
//! cite its rule ID.

pub mod activity;
pub mod alerts;
pub mod bounce;
pub mod calls;
pub mod campaign;
pub mod criteria;
pub mod entities;
pub mod error;
pub mod inbound;
pub mod labels;
pub mod lead;
pub mod mail;
pub mod matching;
pub mod merge;
pub mod normalize;
pub mod opportunity;
pub mod person_name;
pub mod quick;
pub mod receivers;
pub mod reply_text;
pub mod response;
pub mod state;
pub mod status;
pub mod text;
pub mod timeline;
pub mod types;
pub mod views;
pub mod waves;
pub mod work;

pub use error::RuleError;
pub use normalize::{EmailAddress, EmailRules, Phone, PhoneNumber};
pub use types::{EntityKind, EntityRef, Money};
