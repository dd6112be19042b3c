//! End-to-end tests: the sample shop's three applications running together
//! on real sockets against real databases, and what `deploy/` ships checked
//! against a facade in front of them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod dependency_rules;
mod deploy_assets;
mod dual_write_repair;
mod helpers;
mod stack;
