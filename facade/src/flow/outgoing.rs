//! The request as every upstream gets it ([`Outgoing`]): its head encoded
//! once, with the facade's own headers, for every attempt, the fallback
//! and a shadow copy alike.

use hyper::header::{self, HeaderValue};
use hyper::{Method, Uri};

use crate::config::HostHeader;
use crate::flow::backend::{Backend, Instance};
use crate::flow::trace::{TraceHeader, TRACEPARENT};
use crate::wire::correlation;
use crate::wire::headers::{
    self, X_FORWARDED_CLIENT_CERT, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use crate::wire::service::{ClientCertificate, Peer};
use crate::wire::upstream::RequestHead;

/// The parts of a request that every attempt sends alike.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Method.
    pub method: Method,
    /// Origin-form target.
    pub uri: Uri,
    /// The head as upstreams get it, encoded once, without `Host`.
    pub head: RequestHead,
    /// The client's `Host`, for backends that preserve it.
    pub original_host: Option<HeaderValue>,
}

impl Outgoing {
    /// The request as upstreams get it: hop-by-hop headers removed (an
    /// upgrade's own `Connection: upgrade` and `Upgrade` put back),
    /// `X-Forwarded-*` added (`X-Forwarded-Client-Cert` as the peer's
    /// [`ClientCertificate`] says), the correlation id set, `Host` left to each
    /// attempt, `traceparent` as `trace` says. The head is encoded here,
    /// once: the client's headers are not copied, and the facade's own go
    /// straight into the encoding.
    pub(crate) fn new(
        parts: hyper::http::request::Parts,
        uri: Uri,
        peer: &Peer,
        original_host: Option<HeaderValue>,
        request_id: &HeaderValue,
        upgrade: Option<HeaderValue>,
        trace: TraceHeader,
    ) -> Self {
        let mut headers = parts.headers;
        headers::strip_hop_by_hop(&mut headers);
        let forwarded_for = headers::forwarded_for(&headers, &peer.ip);
        let proto = HeaderValue::from_static(if peer.secure { "https" } else { "http" });
        let upgrade_token = HeaderValue::from_static("upgrade");
        let (host, xff, xfp, xfh, rid) = (
            header::HOST,
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            correlation::REQUEST_ID,
        );
        let (connection, upgrade_name, expect) = (header::CONNECTION, header::UPGRADE, header::EXPECT);
        // Replaced, not passed on: the facade sets these itself. `Expect`
        // too: the facade answers `100-continue` to the client itself (its
        // HTTP/1.1 server does when the body is first read) and streams the
        // body at once, so the upstream is never left waiting to be asked.
        let (traceparent, xfcc) = (TRACEPARENT, X_FORWARDED_CLIENT_CERT);
        let mut skip = [&host, &xff, &xfp, &rid, &expect, &host, &host, &host];
        let mut skipped = 5;
        let mut also_skip = |name| {
            skip[skipped] = name;
            skipped += 1;
        };
        if original_host.is_some() {
            also_skip(&xfh);
        }
        // A kept trace's `traceparent` is each attempt's own; otherwise the
        // client's goes on as sent.
        if trace == TraceHeader::Replace {
            also_skip(&traceparent);
        }
        if !matches!(peer.client_certificate, ClientCertificate::NotAsked) {
            also_skip(&xfcc);
        }
        let skip = &skip[..skipped];
        let mut extra = [(&xff, &forwarded_for); 7];
        let mut count = 0;
        let mut add = |pair| {
            extra[count] = pair;
            count += 1;
        };
        add((&xff, &forwarded_for));
        add((&xfp, &proto));
        add((&rid, request_id));
        if let Some(host) = &original_host {
            add((&xfh, host));
        }
        if let Some(protocol) = &upgrade {
            add((&connection, &upgrade_token));
            add((&upgrade_name, protocol));
        }
        if let ClientCertificate::Verified(certificate) = &peer.client_certificate {
            add((&xfcc, certificate));
        }
        let target = uri.path_and_query().map_or("/", |target| target.as_str());
        let head = RequestHead::new(&parts.method, target, &headers, skip, &extra[..count]);
        Self {
            method: parts.method,
            uri,
            head,
            original_host,
        }
    }

    /// The `Host` an attempt to `instance` of `backend` sends. HTTP/1.1
    /// needs one: without one from the client (HTTP/1.0, or HTTP/2's
    /// `:authority`), the instance's is used.
    pub(crate) fn host<'a>(&'a self, backend: &Backend, instance: &'a Instance) -> &'a HeaderValue {
        match (backend.host_header, &self.original_host) {
            (HostHeader::Preserve, Some(original)) => original,
            _ => &instance.host,
        }
    }
}
