//! What the wire asks of the layer above it: something that answers one
//! request from one client connection.
//!
//! The connections and the accept loop are generic over the [`Handler`],
//! so the wire never names the flow that implements it, and the call on
//! the hot path is a direct one that can be inlined.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Request, Response};

use crate::wire::body::ProxyBody;
use crate::wire::client_body::ClientIncoming;
use crate::wire::interim::InterimSink;
use crate::wire::proxy_protocol::ProxyHeaderFailure;
use crate::wire::tls::server::HandshakeFailure;

/// The client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Its IP address as `X-Forwarded-For` carries it, made once per
    /// connection rather than once per request.
    pub ip: HeaderValue,
    /// Where interim answers for this client go, on connections that can
    /// write them (the facade's own HTTP/1.1 connections).
    pub interim: Option<Arc<InterimSink>>,
    /// Whether the client reached the facade over TLS
    /// (`X-Forwarded-Proto: https`).
    pub secure: bool,
    /// The client's certificate as upstreams learn of it
    /// (`X-Forwarded-Client-Cert`).
    pub client_certificate: ClientCertificate,
}

/// What upstreams are told of the client's certificate, in
/// `X-Forwarded-Client-Cert`.
#[derive(Debug, Clone, Default)]
pub enum ClientCertificate {
    /// The facade asks for none (no `client_ca_file`): the header is not
    /// the facade's, and passes as the client sent it.
    #[default]
    NotAsked,
    /// The facade asks for certificates but this connection showed none
    /// (the plain listener): a header from the client is removed, so no
    /// client can claim an identity it did not prove.
    Absent,
    /// Verified in the handshake: the header is the facade's, replacing
    /// any from the client (`Hash=<SHA-256 of the certificate>;Subject="…"`,
    /// as Envoy writes it).
    Verified(HeaderValue),
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            ip: crate::wire::headers::peer_ip_value(addr),
            interim: None,
            secure: false,
            client_certificate: ClientCertificate::NotAsked,
        }
    }
}

/// Answers requests; shared by every connection of the listener.
///
/// An answer is always produced: a failure is the handler's to turn into
/// an error answer, so the connection only ever writes responses.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers `request`, which arrived from `peer`.
    fn handle(
        &self,
        peer: &Peer,
        request: Request<ClientIncoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;

    /// Counts a client's TLS handshake that did not complete.
    fn tls_handshake_failed(&self, failure: HandshakeFailure);

    /// Counts a connection closed for its PROXY protocol header.
    fn proxy_header_refused(&self, failure: ProxyHeaderFailure);
}
