//! End-to-end tests: the sample shop's three applications running together
//! on real sockets against real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod dependency_rules;
mod dual_write_repair;
mod helpers;
mod stack;
