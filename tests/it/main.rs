//! The one integration-test binary: store suites run the same bodies on SQLite and on
//! PostgreSQL; daemon tests start the real `inflow` binary.

mod alerts;
mod daemon;
mod helpers;
mod pbx;
mod store;
