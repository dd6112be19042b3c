//! What a running facade keeps per capability besides its stage: the
//! safe-cutover policy from the config, the error budget that triggers an
//! automatic rollback, and the fields learned as shadow noise.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use resilience::ErrorBudget;

use crate::config::CapabilityConfig;
use crate::decision::policy::CapabilityPolicy;

/// Per-capability runtime state, indexed like the route table's
/// capabilities.
#[derive(Debug)]
pub struct CapabilityState {
    /// The capability's name, interned for metric labels.
    pub name: &'static str,
    /// Its policy.
    pub policy: CapabilityPolicy,
    /// Service failures over the rollback window.
    pub budget: ErrorBudget,
    /// Set once a rollback has been asked for, until the stage changes:
    /// one breach asks once, not once per failing request.
    rollback_requested: AtomicBool,
    /// Fields learned as noise (from the store at start, then as learned).
    noise: RwLock<BTreeSet<String>>,
    // Serializes learning so a field is reported new exactly once.
    learning: Mutex<()>,
}

impl CapabilityState {
    /// The state of `config`, with noise already known to the store.
    pub fn new(name: &'static str, config: &CapabilityConfig, noise: BTreeSet<String>) -> Self {
        let rollback = config.policy.rollback;
        Self {
            name,
            policy: config.policy.clone(),
            budget: ErrorBudget::new(rollback.max_error_rate, rollback.window, rollback.min_requests),
            rollback_requested: AtomicBool::new(false),
            noise: RwLock::new(noise),
            learning: Mutex::new(()),
        }
    }

    /// Claims the right to ask for a rollback; true only for the first
    /// caller since the last [`CapabilityState::stage_changed`].
    pub fn claim_rollback(&self) -> bool {
        !self.rollback_requested.swap(true, Ordering::AcqRel)
    }

    /// Forgets failures and a pending rollback: the stage moved.
    pub fn stage_changed(&self) {
        self.budget.reset();
        self.rollback_requested.store(false, Ordering::Release);
    }

    /// The fields learned as noise so far.
    pub fn noise(&self) -> BTreeSet<String> {
        self.noise.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds `fields` to the noise; returns those not known before.
    pub fn learn(&self, fields: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let _one_at_a_time = self.learning.lock().unwrap_or_else(|e| e.into_inner());
        let known = self.noise();
        let new: BTreeSet<String> = fields.into_iter().filter(|f| !known.contains(f)).collect();
        if !new.is_empty() {
            self.noise
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(new.iter().cloned());
        }
        new
    }
}
