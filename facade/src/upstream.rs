//! Connections to one backend instance: HTTP/1.1 keep-alive connections
//! kept in a small pool, handed out one request at a time.
//!
//! Written on hyper's connection-level client rather than hyper-util's
//! pooled `Client` because the latter spawns a task per request to put the
//! connection back once the response body is done. Here the response body
//! itself returns the connection when it ends, so a proxied request costs
//! one task hop less. A connection is reused only once its previous response
//! has been read to the end; a response cut short closes its connection.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::http::uri::Authority;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::backend::UpstreamBody;

/// The most idle connections kept per instance.
const MAX_IDLE: usize = 1024;

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be opened.
    Connect(std::io::Error),
    /// Opening a connection took longer than the connect timeout.
    ConnectTimeout(Duration),
    /// The connection failed while sending the request or reading the head
    /// (this includes a failure of the client's body, found in the source).
    Http(hyper::Error),
}

impl UpstreamError {
    /// Whether no connection to the instance could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_))
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(error) => write!(f, "connecting failed: {error}"),
            UpstreamError::ConnectTimeout(limit) => write!(f, "connecting took longer than {limit:?}"),
            UpstreamError::Http(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Connect(error) => Some(error),
            UpstreamError::ConnectTimeout(_) => None,
            UpstreamError::Http(error) => Some(error),
        }
    }
}

/// A request that failed, with the request itself when none of it was sent.
#[derive(Debug)]
pub struct SendError {
    /// What went wrong.
    pub error: UpstreamError,
    /// The request, if no byte of it reached the upstream.
    pub unsent: Option<Request<UpstreamBody>>,
}

/// The idle connections to one instance.
#[derive(Debug)]
pub struct ConnectionPool {
    authority: Authority,
    connect_timeout: Duration,
    idle: Mutex<Vec<SendRequest<UpstreamBody>>>,
}

impl ConnectionPool {
    /// An empty pool for `authority` (`host:port`).
    pub fn new(authority: Authority, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            authority,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` (its URI in origin form) and returns the response,
    /// whose body gives the connection back to the pool when it ends. When
    /// no byte of the request left the facade, the error hands it back, so
    /// the caller may send it elsewhere.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut request = request;
        // A pooled connection may have been closed by the upstream while
        // idle; hyper then hands the request back unsent, and one fresh
        // connection is tried.
        if let Some(mut sender) = self.checkout().await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.wrap(response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => {
                        return Err(SendError {
                            error: UpstreamError::Http(error.into_error()),
                            unsent: None,
                        })
                    }
                },
            }
        }
        let mut sender = match self.connect().await {
            Ok(sender) => sender,
            Err(error) => {
                return Err(SendError {
                    error,
                    unsent: Some(request),
                })
            }
        };
        match sender.try_send_request(request).await {
            Ok(response) => Ok(self.wrap(response, sender)),
            Err(mut error) => {
                let unsent = error.take_message();
                Err(SendError {
                    error: UpstreamError::Http(error.into_error()),
                    unsent,
                })
            }
        }
    }

    fn wrap(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: SendRequest<UpstreamBody>,
    ) -> Response<PooledBody> {
        // An upgraded connection belongs to the tunnel from now on.
        let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS;
        response.map(|inner| {
            let mut body = PooledBody {
                inner,
                return_to: reusable.then(|| (Arc::clone(self), sender)),
            };
            if body.inner.is_end_stream() {
                body.give_back();
            }
            body
        })
    }

    /// An idle connection, if one is open. A connection is checked in as
    /// soon as its response body ends, a moment before hyper marks it ready
    /// again, so this waits for that moment (bounded: a connection that does
    /// not become ready within the connect timeout is dropped).
    async fn checkout(&self) -> Option<SendRequest<UpstreamBody>> {
        loop {
            let mut sender = {
                let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                idle.pop()?
            };
            if sender.is_closed() {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            if let Ok(Ok(())) = tokio::time::timeout(self.connect_timeout, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    fn checkin(&self, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
        let address = self.authority.as_str();
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(UpstreamError::Connect(error)),
            Err(_) => return Err(UpstreamError::ConnectTimeout(self.connect_timeout)),
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(instance = %authority, %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A response body from an upstream; gives its connection back to the
/// pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    return_to: Option<(Arc<ConnectionPool>, SendRequest<UpstreamBody>)>,
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("reusable", &self.return_to.is_some())
            .finish()
    }
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.return_to.take() {
            pool.checkin(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            // A broken body leaves its connection unusable: drop it.
            Poll::Ready(Some(Err(_))) => this.return_to = None,
            _ => {}
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
