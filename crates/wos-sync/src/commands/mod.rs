//! One module per command of [`crate::cli::Command`].

pub mod backfill;
pub mod check;
pub mod conflicts;
pub mod dlq;
pub mod parked;
pub mod publish;
pub mod setup;
pub mod status;
pub mod up;
