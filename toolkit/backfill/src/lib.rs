//! Backfill: copy a capability's rows from the monolith's database into the
//! extracted service's, so that a service starts with the monolith's data.
//!
//! Which tables and columns belong to a capability, and how they are named on
//! each side, comes from the mapping file (the `mapping` crate). The copy
//! ([`copy`]) walks each table in key order in batches, upserts each batch
//! into the service's table and records a checkpoint in the SAME transaction,
//! which makes it:
//! - idempotent: a row copied twice is written twice with the same values;
//! - resumable: after an interruption the next run starts after the last
//!   committed batch, never in the middle of one;
//! - batched: memory is bounded by the batch size, not the table size.

pub mod copy;

pub use copy::{backfill, BackfillError, BackfillOptions, TableReport};
