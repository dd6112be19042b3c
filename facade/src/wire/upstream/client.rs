//! The client for one backend instance, whichever way it is reached: the
//! facade's own HTTP/1.1 pool for plain `http://` instances (nearly all
//! traffic, and the fast path), hyper's client for TLS and HTTP/2; and the
//! answer's body from either.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::http::HeaderValue;
use hyper::Response;

use super::{AnswerWait, ConnectionPool, HyperUpstream, PooledBody, RequestHead, SendError, UpstreamError};
use crate::wire::body::ProxyBody;

/// How the facade reaches one instance.
#[derive(Debug)]
pub enum InstanceClient {
    /// Plain HTTP/1.1 on the facade's own pool.
    Plain(Arc<ConnectionPool>),
    /// TLS and/or HTTP/2 through hyper.
    Hyper(Box<HyperUpstream>),
}

impl InstanceClient {
    /// Sends one request and returns the answer's head with its body
    /// streaming behind it. When no byte of the request left the facade,
    /// the error hands the body back, so the caller may send it elsewhere.
    pub async fn send(
        &self,
        head: &RequestHead,
        host: &HeaderValue,
        body: ProxyBody,
        wait: AnswerWait<'_>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match self {
            InstanceClient::Plain(pool) => {
                let response = pool.send(head, host, body, wait).await?;
                Ok(response.map(UpstreamBody::Pooled))
            }
            InstanceClient::Hyper(client) => {
                // hyper's client keeps the body of a request it could not
                // send; an empty one is made anew, so a request without a
                // body can still be retried or fall back. (A body with
                // bytes in it comes back from the caller's copy, if any.)
                let empty = body.is_end_stream();
                match client.send(head, host, body, wait.interim).await {
                    Ok(response) => Ok(response.map(UpstreamBody::Hyper)),
                    Err(mut failed) => {
                        if empty && failed.error.is_connect() {
                            failed.unsent = Some(crate::wire::body::empty());
                        }
                        Err(failed)
                    }
                }
            }
        }
    }

    /// Whether answers come through hyper (HTTP/2 or TLS), which passes
    /// trailers on.
    pub fn is_hyper(&self) -> bool {
        matches!(self, InstanceClient::Hyper(_))
    }

    /// Whether the instance speaks HTTP/2 (`protocol = "h2"`), where an
    /// HTTP/1.1 upgrade cannot be forwarded.
    pub fn is_http2(&self) -> bool {
        matches!(self, InstanceClient::Hyper(client) if client.is_http2())
    }
}

/// An answer's body from an instance.
#[derive(Debug)]
pub enum UpstreamBody {
    /// From the facade's own pool; gives the connection back when read.
    Pooled(PooledBody),
    /// From hyper, trailers included (gRPC's `grpc-status`).
    Hyper(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        match self.get_mut() {
            UpstreamBody::Pooled(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|error| UpstreamError::Client(Box::new(error))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Pooled(body) => body.is_end_stream(),
            UpstreamBody::Hyper(body) => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Pooled(body) => body.size_hint(),
            UpstreamBody::Hyper(body) => body.size_hint(),
        }
    }
}
