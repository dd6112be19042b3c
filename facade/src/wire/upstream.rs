//! Connections to one backend instance: HTTP/1.1 keep-alive connections
//! kept in a small pool, handed out one request at a time.
//!
//! This is the facade's own HTTP/1.1 client, and the one place it writes
//! HTTP by hand (the client side stays on hyper). hyper's client runs each
//! connection in a task of its own and passes requests, answers and body
//! chunks to it over channels; on the proxy's hot path that machinery cost
//! more than the rest of the facade put together (measured with callgrind,
//! see `docs/performance.md`). Here the request that holds a connection
//! does its I/O itself, in the client connection's own task: it writes the
//! head and streams the body, reads the answer's head with `httparse`, and
//! the answer's body decodes straight out of the connection's buffer as
//! the client reads it. Upstreams are the operator's own services, but
//! their answers are still checked: a malformed head, differing
//! `Content-Length` values, a broken chunk or a connection closed early is
//! an error, never passed on as if it were a complete answer.
//!
//! A connection is reused only once its previous response has been read
//! to the end; a response cut short closes its connection. An idle
//! connection is not polled; one the upstream closed meanwhile is found
//! (from the reactor's readiness, without a system call in the usual case)
//! and dropped when next checked out.

mod body;
mod client;
mod head;
mod hyper_client;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::http::uri::Authority;
use hyper::http::HeaderValue;
use hyper::{Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use body::PooledBody;
pub use client::{InstanceClient, UpstreamBody};
pub use head::{HeadError, RequestHead};
pub use hyper_client::{HyperSettings, HyperUpstream};

use crate::wire::body::ProxyBody;
use crate::wire::interim::InterimSink;
use crate::wire::proxy_threads;
use head::RequestFraming;

/// The most idle connections kept per instance.
const MAX_IDLE: usize = 1024;

/// How often idle pooled connections are swept: one unused for a whole
/// interval is closed (so after 30 to 60 s idle; nginx's upstream
/// `keepalive_timeout` is 60 s).
pub const IDLE_SWEEP: Duration = Duration::from_secs(30);

/// How long one write of a request body may wait for the upstream to take
/// it.
const BODY_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be opened.
    Connect(std::io::Error),
    /// Opening a connection took longer than the connect timeout.
    ConnectTimeout(Duration),
    /// Reading or writing the connection failed.
    Io(std::io::Error),
    /// The upstream closed the connection before its answer was complete.
    Closed,
    /// The answer's head is not one the facade can pass on.
    Head(HeadError),
    /// The answer's chunked body is malformed.
    Chunk(&'static str),
    /// The client's body failed while it was being sent (too large,
    /// stalled, aborted: found in the source).
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// The upstream answered, or closed, before it had the whole body.
    AnsweredEarly,
    /// No answer came within the request timeout after an upload the
    /// upstream cut short.
    AnswerTimeout(Duration),
    /// The TLS handshake with the backend failed (its certificate did not
    /// verify, say), in rustls's words.
    Tls(String),
    /// hyper's client failed after the connection was made (an HTTP/2
    /// stream reset, a broken TLS connection).
    Client(Box<dyn std::error::Error + Send + Sync>),
}

impl UpstreamError {
    /// Whether no connection to the instance could be made.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_) | UpstreamError::Tls(_)
        )
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(error) => write!(f, "connecting failed: {error}"),
            UpstreamError::ConnectTimeout(limit) => write!(f, "connecting took longer than {limit:?}"),
            UpstreamError::Io(error) => write!(f, "the connection failed: {error}"),
            UpstreamError::Closed => {
                f.write_str("the backend closed the connection before the answer was complete")
            }
            UpstreamError::Head(error) => write!(f, "{error}"),
            UpstreamError::Chunk(problem) => write!(f, "the backend's chunked body is malformed: {problem}"),
            UpstreamError::Body(_) => f.write_str("the client's request body failed"),
            UpstreamError::AnswerTimeout(limit) => write!(f, "the backend did not answer within {limit:?}"),
            UpstreamError::AnsweredEarly => {
                f.write_str("the backend answered before it had the whole request body")
            }
            UpstreamError::Tls(reason) => write!(f, "TLS with the backend failed: {reason}"),
            UpstreamError::Client(error) => write!(f, "the connection failed: {error}"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Connect(error) | UpstreamError::Io(error) => Some(error),
            UpstreamError::Head(error) => Some(error),
            UpstreamError::Body(error) | UpstreamError::Client(error) => Some(error.as_ref()),
            UpstreamError::ConnectTimeout(_)
            | UpstreamError::Closed
            | UpstreamError::Chunk(_)
            | UpstreamError::AnsweredEarly
            | UpstreamError::Tls(_)
            | UpstreamError::AnswerTimeout(_) => None,
        }
    }
}

/// How an exchange waits for its answer.
#[derive(Debug, Clone, Copy)]
pub struct AnswerWait<'a> {
    /// The longest wait for the answer's head after an upload the upstream
    /// cut short (the caller times every other wait itself).
    pub answer_timeout: Duration,
    /// Where interim answers go, when the client's connection can take
    /// them.
    pub interim: Option<&'a Arc<InterimSink>>,
}

/// A request that failed, with its body when none of the request was sent.
#[derive(Debug)]
pub struct SendError {
    /// What went wrong.
    pub error: UpstreamError,
    /// The request's body, if no byte of the request reached the upstream
    /// (or, on a reused connection, the upstream closed it unanswered and
    /// the request is safe to repeat).
    pub unsent: Option<ProxyBody>,
}

/// The socket taken over by a protocol upgrade (`101 Switching
/// Protocols`), with any bytes the upstream sent after its answer. Found in
/// the response's extensions; taken once.
#[derive(Debug, Clone)]
pub struct UpstreamUpgrade(Arc<Mutex<Option<(TcpStream, Bytes)>>>);

impl UpstreamUpgrade {
    /// The socket and the bytes already read from it, the first time.
    pub fn take(&self) -> Option<(TcpStream, Bytes)> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// One open connection and what has been read from it but not used yet.
struct Connection {
    io: TcpStream,
    buffer: BytesMut,
    /// Where each request's head is put together; kept with the
    /// connection so that a request does not allocate one.
    out: BytesMut,
    reused: bool,
    /// Set by a sweep of the idle pool, cleared when the connection is
    /// checked in again: a connection still marked at the next sweep has
    /// been idle for a whole sweep interval and is closed (see
    /// [`ConnectionPool::sweep_idle`]). A flag, not a time, so that the
    /// request path reads no clock for it.
    swept: bool,
}

impl Connection {
    /// Whether an idle connection can take a request. Anything readable on
    /// it (the upstream closing it, or talking out of turn) says no. The
    /// reactor's readiness is checked first, so the usual case costs no
    /// system call.
    fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// The idle connections to one instance, in one shard per proxy thread
/// (and one for every other thread): a connection is registered with the
/// reactor of the thread that opened it, and is reused only there (see
/// [`crate::wire::proxy_threads`]).
pub struct ConnectionPool {
    authority: Authority,
    connect_timeout: Duration,
    shards: Box<[Shard]>,
}

/// One thread's idle connections, on a cache line of its own so that two
/// threads taking connections never share one.
#[repr(align(64))]
struct Shard {
    #[allow(
        clippy::vec_box,
        reason = "a connection moves between the pool and an answer's body many times; boxed, it moves as a pointer"
    )]
    idle: Mutex<Vec<Box<Connection>>>,
}

impl fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl ConnectionPool {
    /// An empty pool for `authority` (`host:port`), for a facade with
    /// `proxy_threads` proxy threads.
    pub fn new(authority: Authority, connect_timeout: Duration, proxy_threads: usize) -> Arc<Self> {
        Arc::new(Self {
            authority,
            connect_timeout,
            shards: (0..=proxy_threads)
                .map(|_| Shard {
                    idle: Mutex::new(Vec::new()),
                })
                .collect(),
        })
    }

    /// The current thread's idle connections.
    #[allow(clippy::vec_box, reason = "see `Shard`")]
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<Connection>>> {
        self.shards[proxy_threads::pool_shard(self.shards.len())]
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the idle connections that have not been used since the last
    /// sweep and marks the others; returns how many it closed. Called every
    /// [`IDLE_SWEEP`], it closes a connection after one to two intervals of
    /// idleness, so that the descriptors and buffers a burst of traffic
    /// opened are given back once it has passed.
    pub fn sweep_idle(&self) -> usize {
        let mut closed = 0;
        for shard in &self.shards {
            let mut idle = shard.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let before = idle.len();
            idle.retain_mut(|connection| {
                let keep = !connection.swept;
                connection.swept = true;
                keep
            });
            closed += before - idle.len();
        }
        closed
    }

    /// Sends `head` with `host` and `body` and returns the response,
    /// whose body gives the connection back to the pool when it ends. When
    /// no byte of the request left the facade, the error hands the body
    /// back, so the caller may send the request elsewhere.
    pub async fn send(
        self: &Arc<Self>,
        head: &RequestHead,
        host: &HeaderValue,
        body: ProxyBody,
        wait: AnswerWait<'_>,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut body = body;
        // A pooled connection may have been closed by the upstream just as
        // it was picked; the request then comes back unsent and one fresh
        // connection is tried.
        if let Some(connection) = self.checkout() {
            match self.exchange(connection, head, host, body, wait).await {
                Err(SendError {
                    unsent: Some(unsent), ..
                }) => body = unsent,
                done => return done,
            }
        }
        match self.connect().await {
            Ok(connection) => self.exchange(connection, head, host, body, wait).await,
            Err(error) => Err(SendError {
                error,
                unsent: Some(body),
            }),
        }
    }

    fn checkout(&self) -> Option<Box<Connection>> {
        loop {
            let mut connection = self.idle().pop()?;
            if connection.is_usable() {
                return Some(connection);
            }
        }
    }

    fn checkin(&self, mut connection: Box<Connection>) {
        connection.reused = true;
        connection.swept = false;
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }

    /// Connections are boxed: an answer's body carries its connection, and
    /// the answer is moved several times on its way to the client.
    async fn connect(&self) -> Result<Box<Connection>, UpstreamError> {
        let address = self.authority.as_str();
        let io = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(io)) => io,
            Ok(Err(error)) => return Err(UpstreamError::Connect(error)),
            Err(_) => return Err(UpstreamError::ConnectTimeout(self.connect_timeout)),
        };
        let _ = io.set_nodelay(true);
        Ok(Box::new(Connection {
            io,
            buffer: BytesMut::new(),
            out: BytesMut::new(),
            reused: false,
            swept: false,
        }))
    }

    /// One request and its answer's head on `connection`.
    async fn exchange(
        self: &Arc<Self>,
        mut connection: Box<Connection>,
        head: &RequestHead,
        host: &HeaderValue,
        mut body: ProxyBody,
        wait: AnswerWait<'_>,
    ) -> Result<Response<PooledBody>, SendError> {
        let method = head.method();
        let length = body.size_hint().exact();
        let framing = head.framing(body.is_end_stream(), length);
        connection.out.clear();
        head.write(&mut connection.out, host, framing, length);
        if let Err(error) = connection.io.write_all(&connection.out).await {
            // The upstream cannot have acted on part of a head.
            return Err(SendError {
                error: UpstreamError::Io(error),
                unsent: Some(body),
            });
        }
        // An upstream may answer before it has the whole body (a 413, say)
        // and stop reading, or close. Its answer, if it sent one, is what
        // the client gets; the connection is not reused.
        let mut answered_early = false;
        let mut write_failure = None;
        if framing != RequestFraming::Empty {
            match send_body(
                &mut connection,
                &mut body,
                framing,
                method,
                wait.interim.map(Arc::as_ref),
            )
            .await
            {
                Ok(()) => {}
                Err(UpstreamError::AnsweredEarly) => answered_early = true,
                Err(error @ UpstreamError::Io(_)) => {
                    answered_early = true;
                    write_failure = Some(error);
                }
                Err(error) => return Err(SendError { error, unsent: None }),
            }
        }
        // The caller's clock for the answer starts when the whole body has
        // gone out. An upload the upstream cut short never gets there, so
        // its answer gets a clock here: nothing the upstream does can hold
        // the request past the timeout. (Inline, not a wrapped future: the
        // usual answer pays for no timer and no extra copy of this state.)
        let deadline = answered_early.then(|| tokio::time::Instant::now() + wait.answer_timeout);
        loop {
            // Nothing read yet (the usual case for a kept-alive connection):
            // nothing to parse.
            let taken = if connection.buffer.is_empty() {
                Ok(None)
            } else {
                head::take_response(&mut connection.buffer, method)
            };
            let parsed = match taken {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    connection.buffer.reserve(8 * 1024);
                    let read = match deadline {
                        None => connection.io.read_buf(&mut connection.buffer).await,
                        Some(at) => {
                            match tokio::time::timeout_at(at, connection.io.read_buf(&mut connection.buffer))
                                .await
                            {
                                Ok(read) => read,
                                Err(_) => {
                                    return Err(SendError {
                                        error: UpstreamError::AnswerTimeout(wait.answer_timeout),
                                        unsent: None,
                                    })
                                }
                            }
                        }
                    };
                    if matches!(read, Ok(n) if n > 0) {
                        continue;
                    }
                    // A reused connection the upstream closed or reset
                    // without a word: the request was not answered and, with
                    // no body and a method safe to repeat, goes again.
                    let unanswered = match &read {
                        Ok(_) => true,
                        Err(error) => matches!(
                            error.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::BrokenPipe
                        ),
                    };
                    let repeat = unanswered
                        && connection.reused
                        && connection.buffer.is_empty()
                        && framing == RequestFraming::Empty
                        && method.is_idempotent();
                    let error = match (write_failure, read) {
                        (Some(failure), _) => failure,
                        (None, Ok(_)) => UpstreamError::Closed,
                        (None, Err(error)) => UpstreamError::Io(error),
                    };
                    return Err(SendError {
                        error,
                        unsent: repeat.then_some(body),
                    });
                }
                Err(error) => {
                    return Err(SendError {
                        error: UpstreamError::Head(error),
                        unsent: None,
                    })
                }
            };
            let status = parsed.response.status();
            // Interim answers go to the client where it can take them
            // (not `100 Continue`: the facade answers the client's
            // expectation itself); the final one follows.
            if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                pass_interim(&parsed.response, wait.interim.map(Arc::as_ref));
                continue;
            }
            if status == StatusCode::SWITCHING_PROTOCOLS && !head.asks_upgrade() {
                return Err(SendError {
                    error: UpstreamError::Head(HeadError::UnsolicitedUpgrade),
                    unsent: None,
                });
            }
            if status == StatusCode::SWITCHING_PROTOCOLS {
                let leftover = connection.buffer.split().freeze();
                let upgrade = UpstreamUpgrade(Arc::new(Mutex::new(Some((connection.io, leftover)))));
                let mut response = parsed.response.map(|()| PooledBody::empty(Arc::clone(self)));
                response.extensions_mut().insert(upgrade);
                return Ok(response);
            }
            let pool = Arc::clone(self);
            return Ok(parsed.response.map(|()| {
                PooledBody::new(
                    Some(connection),
                    pool,
                    parsed.framing,
                    parsed.reusable && !answered_early,
                )
            }));
        }
    }
}

/// Streams the client's body upstream, framed as `framing` says. While it
/// waits for the client's next piece it watches the upstream too: anything
/// the upstream sends before it has the whole body (an early answer, or a
/// close) ends the upload with [`UpstreamError::AnsweredEarly`], except
/// interim answers (`100 Continue`, `103 Early Hints`), which are passed
/// on or dropped while the upload goes on.
async fn send_body(
    connection: &mut Connection,
    body: &mut ProxyBody,
    framing: RequestFraming,
    method: &Method,
    interim: Option<&InterimSink>,
) -> Result<(), UpstreamError> {
    let chunked = framing == RequestFraming::Chunked;
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            ready = connection.io.readable() => {
                ready.map_err(UpstreamError::Io)?;
                // Readiness can be stale; only bytes or a close count.
                match connection.io.try_read_buf(&mut connection.buffer) {
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Ok(read) if read > 0 => match take_interims(&mut connection.buffer, method, interim) {
                        Ok(Waiting::Interim) => continue,
                        Ok(Waiting::Final) => return Err(UpstreamError::AnsweredEarly),
                        Err(error) => return Err(UpstreamError::Head(error)),
                    },
                    _ => return Err(UpstreamError::AnsweredEarly),
                }
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(UpstreamError::Body)?;
        // Trailers from the client are not passed on.
        let Ok(data) = frame.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        let io = &mut connection.io;
        if chunked {
            write(io, format!("{:x}\r\n", data.len()).as_bytes()).await?;
            write(io, &data).await?;
            write(io, b"\r\n").await?;
        } else {
            write(io, &data).await?;
        }
    }
    if chunked {
        write(&mut connection.io, b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// What the bytes read during an upload hold, once interim answers are
/// taken out.
enum Waiting {
    /// Nothing, or the start of an interim answer: the upload goes on.
    Interim,
    /// (The start of) a final answer: the upstream answered early.
    Final,
}

/// Takes every complete interim answer off the front of `buffer`, passing
/// each on as [`pass_interim`] says.
fn take_interims(
    buffer: &mut BytesMut,
    method: &Method,
    interim: Option<&InterimSink>,
) -> Result<Waiting, HeadError> {
    loop {
        // `HTTP/1.1 1xx` but `101`: the status is bytes 9 to 11.
        let status = buffer.get(9..12);
        let interim_status = match status {
            Some(code) => code[0] == b'1' && code != b"101",
            // Too short to tell: wait for more, unless it is no status line.
            None => {
                return Ok(if b"HTTP/1.".starts_with(&buffer[..buffer.len().min(7)]) {
                    Waiting::Interim
                } else {
                    Waiting::Final
                })
            }
        };
        if !interim_status {
            return Ok(Waiting::Final);
        }
        match head::take_response(buffer, method)? {
            Some(parsed) => pass_interim(&parsed.response, interim),
            None => return Ok(Waiting::Interim),
        }
        if buffer.is_empty() {
            return Ok(Waiting::Interim);
        }
    }
}

/// Passes an interim answer on to the client if its connection can take
/// one. `100 Continue` never is: the facade answers the client's
/// expectation itself, and does not pass `Expect` upstream.
fn pass_interim(response: &Response<()>, interim: Option<&InterimSink>) {
    if let Some(sink) = interim {
        if response.status() != StatusCode::CONTINUE {
            sink.push(response.status(), response.headers());
        }
    }
}

async fn write(io: &mut TcpStream, bytes: &[u8]) -> Result<(), UpstreamError> {
    match tokio::time::timeout(BODY_WRITE_TIMEOUT, io.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(UpstreamError::Io(error)),
        Err(_) => Err(UpstreamError::Io(std::io::ErrorKind::TimedOut.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_connection_is_closed_at_the_second_sweep_and_a_used_one_is_kept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let pool = ConnectionPool::new(authority, Duration::from_secs(1), 1);
        let idle = pool.connect().await.unwrap();
        let (mut upstream_side, _) = listener.accept().await.unwrap();
        pool.checkin(idle);
        assert_eq!(pool.sweep_idle(), 0, "the first sweep only marks");
        assert_eq!(pool.sweep_idle(), 1, "idle for a whole interval: closed");
        // The upstream sees the connection end.
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), upstream_side.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?}");

        // One taken and given back between two sweeps stays.
        let used = pool.connect().await.unwrap();
        pool.checkin(used);
        assert_eq!(pool.sweep_idle(), 0);
        let again = pool.checkout().expect("a pooled connection");
        pool.checkin(again);
        assert_eq!(pool.sweep_idle(), 0, "used since the last sweep");
        assert_eq!(pool.sweep_idle(), 1);
    }
}
