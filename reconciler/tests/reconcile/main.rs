//! The reconciler against real PostgreSQL, MariaDB and SQLite databases, in
//! every pairing. A test whose server is absent prints why and skips, unless
//! `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod big_tables;
mod declared_types;
mod divergences;
mod failures;
mod helpers;
mod incremental;
mod keys_and_names;
mod mysql_native;
mod normalization;
mod null_keys;
mod performance;
mod progress;
mod repair;
mod repair_races;
mod repeated_keys;
mod schedule;
mod settle;
mod shards;
mod sweeps;
