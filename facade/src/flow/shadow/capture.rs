//! Copying the monolith's answer as it streams to the client, and offering
//! the shadow job once the answer has been sent in full.
//!
//! The copy rides along the client's body: frames are passed on unchanged
//! and their bytes (cheap reference-counted clones) kept up to the cap. The
//! job is built at the end of the body, on the task that serves the client,
//! and offered without waiting; nothing here can delay or alter the answer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Uri};

use response_diff::Captured;

use super::{ShadowJob, Shadower, SkipReason};
use crate::flow::trace::SpanLink;
use crate::wire::client_body::BodyCopy;
use crate::wire::upstream::RequestHead;

/// Everything about the request a shadow job needs, gathered before the
/// answer streams.
#[derive(Debug)]
pub struct PendingShadow {
    /// The shadower to offer the job to.
    pub shadower: Arc<Shadower>,
    /// The capability's index.
    pub capability: usize,
    /// Its name.
    pub name: &'static str,
    /// Method.
    pub method: Method,
    /// Origin-form target.
    pub uri: Uri,
    /// Normalized path without the query.
    pub path: String,
    /// The request head as sent upstream.
    pub head: RequestHead,
    /// The client's `Host`.
    pub original_host: Option<HeaderValue>,
    /// The request body's copy; `None` for a request without a body.
    pub request_body: Option<Arc<BodyCopy>>,
    /// Cap on the answer's body.
    pub cap: usize,
    /// Correlation id.
    pub request_id: String,
    /// The request's span, when its trace is kept.
    pub link: Option<SpanLink>,
}

/// A response body that keeps a copy for the shadow comparison.
pub struct CapturingBody<B> {
    inner: B,
    pending: Option<PendingShadow>,
    status: u16,
    response_headers: HeaderMap,
    chunks: Vec<Bytes>,
    len: usize,
    overflow: bool,
}

impl<B> CapturingBody<B> {
    /// Wraps the monolith's answer (`status`, `headers`, `inner`).
    pub fn new(inner: B, status: u16, headers: HeaderMap, pending: PendingShadow) -> Self {
        Self {
            inner,
            pending: Some(pending),
            status,
            response_headers: headers,
            chunks: Vec::new(),
            len: 0,
            overflow: false,
        }
    }

    fn finish(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        // The copy may have been kept with a larger cap, for a retry.
        let request_body = match &pending.request_body {
            None => Some(Bytes::new()),
            Some(copy) => copy.bytes().filter(|body| body.len() <= pending.cap),
        };
        let (Some(request_body), false) = (request_body, self.overflow) else {
            pending.shadower.skipped(pending.name, SkipReason::BodyTooLarge);
            return;
        };
        let body = match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        };
        let job = ShadowJob {
            capability: pending.capability,
            name: pending.name,
            method: pending.method,
            uri: pending.uri,
            path: pending.path,
            head: pending.head,
            original_host: pending.original_host,
            body: request_body,
            legacy: Captured {
                status: self.status,
                headers: std::mem::take(&mut self.response_headers),
                body,
            },
            request_id: pending.request_id,
            link: pending.link,
        };
        pending.shadower.offer(job);
    }
}

impl<B> Drop for CapturingBody<B> {
    fn drop(&mut self) {
        // An answer not sent to its end (client gone) is no evidence.
        if let Some(pending) = self.pending.take() {
            pending.shadower.skipped(pending.name, SkipReason::Incomplete);
        }
    }
}

impl<B> Body for CapturingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(pending)) = (frame.data_ref(), &this.pending) {
                    if this.len + data.len() > pending.cap {
                        this.overflow = true;
                        this.chunks = Vec::new();
                    } else if !this.overflow {
                        this.len += data.len();
                        this.chunks.push(data.clone());
                    }
                }
                // Trailers (a gRPC answer's `grpc-status`) are compared
                // as headers.
                if let Some(trailers) = frame.trailers_ref() {
                    for (name, value) in trailers {
                        this.response_headers.append(name.clone(), value.clone());
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Finishes at once an answer whose body is already complete (no frames
/// will be polled), so its job is offered.
pub fn finish_if_empty<B: Body<Data = Bytes> + Unpin>(body: &mut CapturingBody<B>) {
    if body.inner.is_end_stream() {
        body.finish();
    }
}
