//! The flow: one request's way through the facade, step by step, and the
//! runtime state those steps read and count into.
//!
//! [`handle`] strings the steps together (refuse → route → forward →
//! finish): the wire hands it each request, it asks the decision layer
//! where the request goes, [`dispatch`] sends it with the backend's safety
//! net, [`answer`] says what the client gets when that failed, and on the
//! way out it feeds [`shadow`] and the error budget of [`rollback`].
//! [`exchange`] is what every step reads; [`trace`] records a sampled
//! request's OpenTelemetry spans (decided once, as it arrives).
//!
//! The flow imports the wire, the decisions and the configuration, never
//! the control layer above it: what control needs from a request (a
//! breached budget, a shadow result) leaves through a channel or a shared
//! counter that control reads.

pub(crate) mod answer;
pub(crate) mod backend;
pub(crate) mod capability_state;
pub(crate) mod dispatch;
pub(crate) mod error_chain;
pub(crate) mod exchange;
pub(crate) mod grpc;
pub(crate) mod handle;
pub(crate) mod idempotency_keys;
pub(crate) mod metrics;
pub(crate) mod outgoing;
pub(crate) mod rollback;
pub(crate) mod shadow;
pub(crate) mod state;
pub(crate) mod trace;
pub(crate) mod upgrade;
