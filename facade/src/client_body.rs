//! The client's request body on its way upstream: streamed frame by frame,
//! within the size limit, with a deadline between frames, and a signal when
//! it has been sent completely.
//!
//! Every failure here is the client's (too large, stalled, aborted) and is
//! tagged as such, so the proxy answers 413/408/400 and never blames, or
//! counts against, the upstream.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

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

/// A request body forwarded from the client.
pub struct ClientBody {
    inner: Incoming,
    remaining: u64,
    idle_timeout: Duration,
    // Armed on the first wait for a frame: most requests have no body and
    // never need a timer.
    idle: Option<Pin<Box<Sleep>>>,
    finished: Option<oneshot::Sender<()>>,
}

impl ClientBody {
    /// Wraps `inner`; `finished` fires once the last frame has been read
    /// (or the body failed), which is when the upstream's clock starts.
    pub fn new(inner: Incoming, limit: u64, idle_timeout: Duration, finished: oneshot::Sender<()>) -> Self {
        let mut body = Self {
            inner,
            remaining: limit,
            idle_timeout,
            idle: None,
            finished: Some(finished),
        };
        // A request without a body is sent as soon as its head is.
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(finished) = self.finished.take() {
            let _ = finished.send(());
        }
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
                }
                if let Some(idle) = this.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + this.idle_timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => {
                this.finish();
                Poll::Ready(Some(Err(ClientBodyError::Aborted)))
            }
            Poll::Ready(None) => {
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
