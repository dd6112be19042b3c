//! TLS on both sides of the facade, with rustls and its `ring` provider.
//!
//! - [`certificates`]: the facade's own certificates, loaded and checked
//!   from PEM files and chosen per handshake by SNI; swapped whole on a
//!   reload.
//! - [`server`]: the client side: TLS 1.2 and 1.3 only, ALPN `h2` and
//!   `http/1.1`, a handshake bounded in time whose failures are named.
//! - [`client_authorities`]: with `client_ca_file`, the authorities whose
//!   client certificates the listener accepts, and the revocation lists
//!   of `client_crl_file`.
//! - [`session_tickets`]: with `session_ticket_key_files`, session
//!   tickets sealed with keys shared between replicas, so a client resumes
//!   on any of them.
//! - [`client`]: the upstream side: `https://` backends verified against
//!   the system's roots or a CA bundle, with an optional client
//!   certificate; one configuration per backend, so its session cache is
//!   shared by every connection to it and new connections resume.

pub mod certificates;
pub mod client;
pub mod client_authorities;
pub mod server;
pub mod session_tickets;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The one crypto provider the facade uses.
#[allow(
    deprecated,
    reason = "ring lacks the post-quantum key exchange aws-lc-rs has, but builds in seconds with no C toolchain beyond cc; the classical groups are what nginx offers by default"
)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
