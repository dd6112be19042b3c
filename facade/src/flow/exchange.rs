//! What every step of one request reads ([`Exchange`]), and the facade's
//! own answer to a request it does not forward ([`Refusal`]).

use std::borrow::Cow;
use std::time::Instant;

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use crate::decision::routing::Decision;
use crate::flow::backend::Backend;
use crate::flow::dispatch::FallbackCause;
use crate::flow::state::ProxyState;
use crate::flow::trace::{Ended, LogIds, Trace, Traced};
use crate::wire::body::ProxyBody;
use crate::wire::error_response::{error_response, Fault};
use crate::wire::service::Peer;

/// What every step of one request reads.
pub(crate) struct Exchange<'s> {
    pub state: &'s ProxyState,
    pub peer: &'s Peer,
    /// The client: the peer, or behind trusted proxies the address they
    /// vouch for (`wire/client_address.rs`).
    pub client: std::net::IpAddr,
    /// When the request arrived: its latency counts from here.
    pub started: Instant,
    /// Its correlation id, sent upstream and back to the client.
    pub request_id: HeaderValue,
    /// Whether and how it is traced, decided as it arrived.
    pub trace: Trace,
}

impl Exchange<'_> {
    /// The correlation id as log lines carry it.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    /// The ids its log lines carry.
    pub fn log_ids(&self) -> LogIds<'_> {
        LogIds {
            request_id: self.request_id(),
            trace: self.trace.log_ids(),
            client: self.client,
            tls: self.peer.secure,
        }
    }

    /// The request's span, when its trace is kept.
    #[inline]
    pub fn traced(&self) -> Option<Traced<'_>> {
        self.trace.traced(self.state.tracing.as_ref())
    }

    /// Ends the request's span, when its trace is kept, with what the route
    /// decided and who answered.
    pub fn span_ended(
        &self,
        decision: &Decision<'_>,
        status: StatusCode,
        served_by: &Backend,
        fallback_from: Option<FallbackCause>,
        shadow: bool,
        error: Option<&'static str>,
    ) {
        let Some(traced) = self.traced() else {
            return;
        };
        traced.request_ended(Ended {
            status: status.as_u16(),
            route: decision.route.map(|(_, pattern)| pattern),
            decision: decision
                .capability
                .map(|capability| (capability, decision.stage, decision.target)),
            served_by: Some(&served_by.name),
            fallback: fallback_from.map(|cause| cause.first),
            shadow,
            error,
        });
    }

    /// The facade's own answer to a request it does not forward, counted.
    pub fn refused(&self, refusal: Refusal) -> Response<ProxyBody> {
        let metrics = &self.state.metrics;
        let (response, capability) = match refusal {
            Refusal::Client(status, message) => {
                metrics.request("-", "-", status.as_u16(), self.started.elapsed());
                (
                    error_response(status, Fault::Client, &message, &self.request_id),
                    None,
                )
            }
            Refusal::NoRoute { capability } => {
                let response = error_response(
                    StatusCode::NOT_FOUND,
                    Fault::Facade,
                    "no route matches this request and no default backend is configured",
                    &self.request_id,
                );
                metrics.request(capability, "-", 404, self.started.elapsed());
                (response, (capability != "-").then_some(capability))
            }
        };
        if let Some(traced) = self.traced() {
            traced.request_ended(Ended {
                status: response.status().as_u16(),
                route: None,
                decision: capability.map(|name| (name, None, None)),
                served_by: None,
                fallback: None,
                shadow: false,
                error: None,
            });
        }
        response
    }
}

/// Why a request gets the facade's own answer instead of being forwarded.
pub(crate) enum Refusal {
    /// The client's request is unusable. Counted under capability and
    /// backend `-`: it is refused whatever its route.
    Client(StatusCode, Cow<'static, str>),
    /// No route and no default backend (404), counted under the
    /// capability's label.
    NoRoute { capability: &'static str },
}
