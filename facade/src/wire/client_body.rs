//! The client's request body on its way upstream: streamed frame by frame,
//! within the size limit, with a deadline between frames, a signal when it
//! has been sent completely, and optionally a bounded copy (to send it again
//! elsewhere: a retry, a fallback, a shadow).
//!
//! Every failure here is the client's (too large, stalled, aborted) and is
//! tagged as such ([`ClientBodyError::find`]), so the flow answers
//! 413/408/400 and never blames, or counts against, the upstream.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::wire::http1::body::FastBody;

/// Marks the moment a request body has been sent completely, which is
/// when the upstream's clock starts: a slow upload is not a slow upstream.
#[derive(Debug, Default)]
pub struct BodySent {
    done: AtomicBool,
    notify: Notify,
}

impl BodySent {
    /// A signal not yet given.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Gives the signal (once is enough; later calls do nothing).
    pub fn mark(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// Waits for the signal.
    pub async fn wait(&self) {
        loop {
            // Registered before the check, so a `mark` in between is seen.
            let notified = self.notify.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// A copy of a body kept as it streams past, up to a cap. Complete only if
/// the whole body fitted and arrived.
#[derive(Debug)]
pub struct BodyCopy {
    state: Mutex<CopyState>,
}

#[derive(Debug)]
struct CopyState {
    chunks: Vec<Bytes>,
    len: usize,
    cap: usize,
    complete: bool,
    overflow: bool,
}

impl BodyCopy {
    /// An empty copy that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(CopyState {
                chunks: Vec::new(),
                len: 0,
                cap,
                complete: false,
                overflow: false,
            }),
        })
    }

    fn push(&self, data: &Bytes) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.overflow {
            return;
        }
        if state.len + data.len() > state.cap {
            state.overflow = true;
            state.chunks = Vec::new();
            return;
        }
        state.len += data.len();
        state.chunks.push(data.clone());
    }

    fn complete(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).complete = true;
    }

    /// The whole body, if it was read to its end within the cap.
    pub fn bytes(&self) -> Option<Bytes> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.complete || state.overflow {
            return None;
        }
        Some(match state.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        })
    }
}

/// Why the client's body could not be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBodyError {
    /// More bytes than the limit.
    TooLarge,
    /// No bytes for longer than the idle timeout.
    Stalled,
    /// The client's connection broke mid-body.
    Aborted,
}

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientBodyError::TooLarge => "the request body exceeds the facade's limit",
            ClientBodyError::Stalled => "the client stopped sending the request body",
            ClientBodyError::Aborted => "the client's connection broke while sending the request body",
        })
    }
}

impl std::error::Error for ClientBodyError {}

impl ClientBodyError {
    /// The client's body failure among `error` and its sources, if that is
    /// what failed: an upstream call broken by the client's own body is the
    /// client's fault, not the upstream's.
    pub(crate) fn find(error: &(dyn std::error::Error + 'static)) -> Option<ClientBodyError> {
        let mut source = Some(error);
        while let Some(cause) = source {
            if let Some(body_error) = cause.downcast_ref::<ClientBodyError>() {
                return Some(*body_error);
            }
            source = cause.source();
        }
        None
    }
}

/// A client's request body as it arrives: from hyper's connection, or from
/// the facade's own HTTP/1.1 connection (see [`crate::wire::http1`]).
#[derive(Debug)]
pub enum ClientIncoming {
    /// Read by hyper (HTTP/2, and HTTP/1.1 connections handed to it).
    Hyper(Incoming),
    /// Read by the facade's HTTP/1.1 connection: no body, or a known length.
    Fast(FastBody),
}

impl Body for ClientIncoming {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Either way a failure is the client's connection breaking.
        match self.get_mut() {
            ClientIncoming::Hyper(inner) => Pin::new(inner)
                .poll_frame(cx)
                .map_err(|_| ClientBodyError::Aborted),
            ClientIncoming::Fast(inner) => Pin::new(inner)
                .poll_frame(cx)
                .map_err(|_| ClientBodyError::Aborted),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientIncoming::Hyper(inner) => inner.is_end_stream(),
            ClientIncoming::Fast(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientIncoming::Hyper(inner) => inner.size_hint(),
            ClientIncoming::Fast(inner) => inner.size_hint(),
        }
    }
}

/// A request body forwarded from the client.
pub struct ClientBody {
    inner: ClientIncoming,
    remaining: u64,
    idle_timeout: Duration,
    // Armed on the first wait for a frame: most requests have no body and
    // never need a timer.
    idle: Option<Pin<Box<Sleep>>>,
    finished: Arc<BodySent>,
    copy: Option<Arc<BodyCopy>>,
}

impl ClientBody {
    /// Wraps `inner`; `finished` is marked once the last frame has been
    /// read (or the body failed); `copy`, if any, keeps the bytes.
    pub fn new(
        inner: ClientIncoming,
        limit: u64,
        idle_timeout: Duration,
        finished: Arc<BodySent>,
        copy: Option<Arc<BodyCopy>>,
    ) -> Self {
        let mut body = Self {
            inner,
            remaining: limit,
            idle_timeout,
            idle: None,
            finished,
            copy,
        };
        // A request without a body is sent as soon as its head is.
        if body.inner.is_end_stream() {
            if let Some(copy) = &body.copy {
                copy.complete();
            }
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        self.finished.mark();
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.finish();
                        return Poll::Ready(Some(Err(ClientBodyError::TooLarge)));
                    }
                    this.remaining -= len;
                    if let Some(copy) = &this.copy {
                        copy.push(data);
                    }
                }
                if let Some(idle) = this.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + this.idle_timeout);
                }
                // A body of known length ends with its last byte: hyper's
                // client then stops polling, so the end is never seen as
                // `None` and must be noted here.
                if this.inner.is_end_stream() {
                    if let Some(copy) = &this.copy {
                        copy.complete();
                    }
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => {
                this.finish();
                Poll::Ready(Some(Err(ClientBodyError::Aborted)))
            }
            Poll::Ready(None) => {
                if let Some(copy) = &this.copy {
                    copy.complete();
                }
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => match this
                .idle
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.idle_timeout)))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => {
                    this.finish();
                    Poll::Ready(Some(Err(ClientBodyError::Stalled)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
