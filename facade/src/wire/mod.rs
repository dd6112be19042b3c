//! The wire: connections and HTTP/1.1 on both sides of the facade, and
//! nothing about routes, stages or policies.
//!
//! This is the lowest layer; it imports nothing from the layers above. What
//! it needs from them at run time it is handed: the request handler comes
//! in as a [`service::Handler`] (the flow implements it), so the accept loop
//! and the connections are generic over it and the hot path calls it
//! directly, without a virtual call.

pub(crate) mod body;
pub(crate) mod client_address;
pub(crate) mod client_body;
pub(crate) mod content_length;
pub(crate) mod correlation;
pub(crate) mod descriptors;
pub(crate) mod error_response;
pub(crate) mod header_names;
pub(crate) mod headers;
pub(crate) mod http1;
pub(crate) mod idle;
pub(crate) mod interim;
pub(crate) mod proxy_protocol;
pub(crate) mod proxy_threads;
pub(crate) mod redirect;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod shutdown;
pub(crate) mod tls;
pub(crate) mod tunnel;
pub(crate) mod upstream;
