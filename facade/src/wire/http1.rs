//! The facade's own HTTP/1.1 server connection, for the plain requests
//! nearly all traffic is made of; hyper serves everything else.
//!
//! Every client connection starts here. Each request head is parsed in
//! place ([`request`]); a plain one (HTTP/1.1, an origin-form target, no
//! body or one of known length, no upgrade, no `Expect`) is served inline:
//! the [`Handler`] (the flow's) decides and forwards it, and [`response`]
//! writes the answer. The first head that is anything else (HTTP/2's
//! preface, HTTP/1.0, a transfer coding, an upgrade, a head over the
//! limit, bytes that do not parse) hands the connection to hyper with the
//! bytes read so far put back in front ([`handoff`](mod@handoff)); hyper
//! then serves it to the end, with all of its checks and answers (400,
//! 431, HTTP/2, upgrades).
//!
//! Why by hand: under callgrind hyper's server side was the largest single
//! cost of a proxied request (about a third of the facade's instructions),
//! mostly its per-connection dispatcher and body channel, which a request
//! without a body or with a known length does not need. The fast path
//! takes only heads whose framing cannot be read two ways, so what it
//! accepts it frames exactly as hyper would.
//!
//! Invariants:
//! - A request's body is read to its end before the connection serves the
//!   next request; a body the handler left unread closes the connection
//!   after the answer (after a short lingering read, so the client sees
//!   the answer rather than a reset).
//! - An answer whose body fails or does not match its length closes the
//!   connection: the client sees a cut answer, never a wrongly framed one.
//! - On shutdown an idle connection closes at once; one serving a request
//!   finishes it, answers with `Connection: close`, and closes.

pub(crate) mod body;
mod handoff;
mod request;
mod response;
pub(crate) mod stream;

pub(crate) use request::{is_host, BAD_HOST};

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::wire::client_body::ClientIncoming;
use crate::wire::correlation;
use crate::wire::error_response::{error_response, Fault};
use crate::wire::idle::{Activity, TrackedBody};
use crate::wire::interim::{relay_while, InterimSink};
use crate::wire::service::{Handler, Peer};
use crate::wire::shutdown::{Phase, Watch};
use body::FastBody;
use request::{Parsed, PlainRequest};
use stream::{ClientReader, ClientStream, ClientWriter};

/// How long a client may take to send a request head by default, counted
/// from when the connection starts waiting for it (so also how long a
/// kept-alive connection may sit idle). hyper's connections use the same
/// limit. `header_read_timeout_ms` in `[facade]` changes it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long, and how much, a closing connection still reads of a request
/// body nobody wanted, so that its answer is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// What every client connection shares.
pub(crate) struct Shared<H> {
    /// What answers the requests.
    pub handler: Arc<H>,
    /// The request-head size limit; a larger head gets hyper's 431.
    pub max_head: usize,
    /// Requests one connection may carry; the answer to the last says
    /// `Connection: close`, and the client opens another.
    pub max_requests: u64,
    /// How long a request head may take to arrive ([`HEADER_READ_TIMEOUT`]
    /// unless configured); hyper's builder below has the same.
    pub head_timeout: Duration,
    /// Whether every connection starts with a PROXY protocol header
    /// ([`crate::wire::proxy_protocol`]), read before anything else.
    pub proxy_protocol: bool,
    /// How long an HTTP/2 connection may sit with no stream open before
    /// it is closed (`http2_idle_timeout_seconds`).
    pub http2_idle_timeout: Duration,
    /// hyper's connection builder, for connections handed to it.
    pub hyper: auto::Builder<TokioExecutor>,
    /// Cancelled when the facade shuts down.
    pub stop: CancellationToken,
    /// Whether the facade asks TLS clients for certificates
    /// ([`crate::wire::server::Settings::asks_client_certificates`]).
    pub asks_client_certificates: bool,
    /// Added to every answer over TLS that has none.
    pub strict_transport_security: Option<HeaderValue>,
}

impl<H> Shared<H> {
    /// How long a connection hyper serves may sit with nothing in flight:
    /// an HTTP/2 one as configured, an HTTP/1.1 one as long as the facade's
    /// own connections wait between requests.
    pub(crate) fn idle_limit(&self, http2: bool) -> Duration {
        if http2 {
            self.http2_idle_timeout
        } else {
            self.head_timeout
        }
    }

    /// Gives an answer over TLS the configured `Strict-Transport-Security`,
    /// unless its backend sent one (the application's own policy stands).
    fn add_strict_transport_security(&self, headers: &mut hyper::HeaderMap) {
        if let Some(value) = &self.strict_transport_security {
            headers
                .entry(hyper::header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| value.clone());
        }
    }
}

/// Serves one client connection until the client closes it, it fails, or
/// the facade shuts down.
///
/// The caller polls `watch` (so the task wakes at shutdown) and ends the
/// connection when the facade halts; this loop closes it when the drain
/// starts and it is idle, or after the request it is serving.
pub(crate) async fn serve_connection<H: Handler>(
    stream: ClientStream,
    mut peer: Peer,
    shared: Arc<Shared<H>>,
    watch: &Watch,
) {
    let (read_half, mut writer) = stream.split();
    // This connection writes interim answers itself (hyper's could not).
    let interim = InterimSink::new();
    peer.interim = Some(Arc::clone(&interim));
    let mut reader = Some(read_half);
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    let mut head_timer = HeadTimer::new(shared.head_timeout);
    let mut served = 0u64;
    loop {
        let Some(mut read_half) = reader.take() else {
            return;
        };
        head_timer.disarm();
        let plain = loop {
            if !buffer.is_empty() {
                match request::take_request(&mut buffer, shared.max_head) {
                    Parsed::Plain(plain) => break plain,
                    Parsed::Partial => {}
                    Parsed::Handoff => {
                        return handoff(read_half, writer, buffer, peer, &shared, served).await
                    }
                    Parsed::Invalid(problem) => {
                        refuse(&mut writer, &mut out, StatusCode::BAD_REQUEST, problem).await;
                        return;
                    }
                    Parsed::TargetTooLong => {
                        let problem = "the request target is longer than the head limit (max_header_bytes)";
                        refuse(&mut writer, &mut out, StatusCode::URI_TOO_LONG, problem).await;
                        return;
                    }
                }
            }
            let waited = wait_for_bytes(&mut read_half, &mut buffer, &mut head_timer, watch).await;
            if !matches!(waited, Waited::Bytes) {
                if let Waited::Failed(error) = waited {
                    tracing::debug!(peer = %peer.addr, %error, "reading from the client failed");
                }
                return;
            }
        };

        let PlainRequest {
            request,
            body_length,
            close,
        } = plain;
        let head_request = request.method() == Method::HEAD;
        let (body, returned) = if body_length == 0 {
            reader = Some(read_half);
            (FastBody::empty(), None)
        } else {
            let (body, returned) = FastBody::new(read_half, std::mem::take(&mut buffer), body_length);
            (body, Some(returned))
        };
        let request = request.map(|()| ClientIncoming::Fast(body));
        let answering = pin!(shared.handler.handle(&peer, request));
        let mut response = relay_while(answering, &interim, &mut writer).await;
        if peer.secure {
            shared.add_strict_transport_security(response.headers_mut());
        }
        // The handler has dropped the body by now, which handed the read
        // side back; whether the body was read to its end decides whether
        // the connection can go on.
        let mut body_read = true;
        if let Some(mut returned) = returned {
            match returned.try_recv() {
                Ok(side) => {
                    body_read = side.unread == 0;
                    buffer = side.buffer;
                    reader = Some(side.reader);
                }
                Err(_) => body_read = false,
            }
        }
        served += 1;
        let last = close || !body_read || served >= shared.max_requests || watch.phase() != Phase::Running;
        match response::write(&mut writer, &mut out, response, head_request, last).await {
            Ok(true) if !last => {}
            Ok(_) => {
                if !body_read {
                    linger(reader.take(), writer).await;
                } else if let ClientWriter::Tls(_) = writer {
                    // TLS ends with close_notify, so the client can tell the
                    // end of the connection from a cut.
                    let _ = tokio::time::timeout(LINGER, writer.shutdown()).await;
                }
                return;
            }
            Err(error) => {
                tracing::debug!(peer = %peer.addr, %error, "writing the answer to the client failed");
                return;
            }
        }
    }
}

/// Answers a head the connection cannot serve with `status`, as the
/// client's fault; the caller then closes the connection.
async fn refuse(writer: &mut ClientWriter, out: &mut Vec<u8>, status: StatusCode, problem: &str) {
    let request_id = correlation::request_id(&hyper::HeaderMap::new());
    let answer = error_response(status, Fault::Client, problem, &request_id);
    let _ = response::write(writer, out, answer, false, true).await;
}

/// How waiting for more of a request head ended.
enum Waited {
    /// Bytes arrived.
    Bytes,
    /// The client closed the connection.
    Closed,
    /// The head did not arrive in time.
    TimedOut,
    /// The facade is shutting down and the connection was idle.
    Stopping,
    /// Reading failed.
    Failed(std::io::Error),
}

/// Reads more of a request head into `buffer`, within the head timeout;
/// gives up at shutdown if nothing of the head has arrived.
async fn wait_for_bytes(
    reader: &mut ClientReader,
    buffer: &mut BytesMut,
    timer: &mut HeadTimer,
    watch: &Watch,
) -> Waited {
    buffer.reserve(4096);
    std::future::poll_fn(|cx| {
        match tokio_util::io::poll_read_buf(Pin::new(&mut *reader), cx, buffer) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Waited::Closed),
            Poll::Ready(Ok(_)) => return Poll::Ready(Waited::Bytes),
            Poll::Ready(Err(error)) => return Poll::Ready(Waited::Failed(error)),
            Poll::Pending => {}
        }
        if buffer.is_empty() && watch.phase() != Phase::Running {
            return Poll::Ready(Waited::Stopping);
        }
        if timer.poll_expired(cx) {
            Poll::Ready(Waited::TimedOut)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The deadline for one request head: the head timeout from when
/// the connection starts waiting for it (most heads arrive whole in the
/// first read and never start it).
///
/// The deadline moves with every request, and moving a tokio timer files
/// it again in the timer wheel, under a lock. So the deadline is kept here
/// and the timer is left where it is: it can only be early (deadlines only
/// move later), and when it fires early it is moved to the deadline then.
/// One timer serves the connection's whole life.
struct HeadTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// `None` until the connection starts waiting for the current head.
    deadline: Option<Instant>,
}

impl HeadTimer {
    /// A timer giving each head `limit`.
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: None,
            deadline: None,
        }
    }

    /// A new head: its clock has not started.
    fn disarm(&mut self) {
        self.deadline = None;
    }

    /// Starts the clock if it has not started, and says whether the
    /// deadline has passed; if not, the task behind `cx` is woken by then.
    fn poll_expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + self.limit);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return true;
            }
            sleep.as_mut().reset(deadline);
        }
        false
    }
}

/// Serves the rest of the connection with hyper, replaying `buffer` first.
async fn handoff<H: Handler>(
    reader: ClientReader,
    writer: ClientWriter,
    buffer: BytesMut,
    mut peer: Peer,
    shared: &Shared<H>,
    served: u64,
) {
    // hyper's server cannot send interim answers: they are dropped.
    peer.interim = None;
    let prefix = buffer.freeze();
    // HTTP/2's preface is the only head that starts so.
    let idle = shared.idle_limit(prefix.starts_with(b"PRI "));
    match ClientStream::reunite(reader, writer) {
        Some(ClientStream::Tcp(tcp)) => {
            serve_with_hyper(handoff::Rewind::new(tcp, prefix), peer, shared, served, idle).await;
        }
        Some(ClientStream::Tls(tls)) => {
            serve_with_hyper(handoff::Rewind::new(tls, prefix), peer, shared, served, idle).await;
        }
        None => {}
    }
}

/// Serves a connection with hyper to its end: HTTP/1.1 (with upgrades) or
/// HTTP/2, whichever the client speaks. `served` requests were already
/// served on it. Once nothing has been in flight on it for `idle`, it is
/// closed gracefully (HTTP/2's GOAWAY).
pub(crate) async fn serve_with_hyper<H, IO>(
    io: IO,
    peer: Peer,
    shared: &Shared<H>,
    served: u64,
    idle: Duration,
) where
    H: Handler,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let handler = Arc::clone(&shared.handler);
    let addr = peer.addr;
    // HTTP/1.1 requests hyper serves count on from those the fast path
    // served; the last one's answer closes the connection. (HTTP/2 streams
    // are bounded by hyper's concurrency limit instead.)
    let served = Arc::new(std::sync::atomic::AtomicU64::new(served));
    let max_requests = shared.max_requests;
    let strict_transport_security = shared.strict_transport_security.clone().filter(|_| peer.secure);
    let activity = Activity::new();
    let tracked = activity.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let in_flight = tracked.start();
        let (handler, peer, served) = (Arc::clone(&handler), peer.clone(), Arc::clone(&served));
        let strict_transport_security = strict_transport_security.clone();
        async move {
            let http1 = request.version() <= hyper::Version::HTTP_11;
            let mut response = handler.handle(&peer, request.map(ClientIncoming::Hyper)).await;
            if let Some(value) = strict_transport_security {
                response
                    .headers_mut()
                    .entry(hyper::header::STRICT_TRANSPORT_SECURITY)
                    .or_insert(value);
            }
            let count = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if http1 && count >= max_requests {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
        }
    });
    let mut connection = pin!(shared.hyper.serve_connection_with_upgrades(io, service));
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shared.stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = activity.idle_for(idle) => {
            tracing::debug!(peer = %addr, idle_seconds = idle.as_secs_f64(), "closing an idle client connection");
            connection.as_mut().graceful_shutdown();
            // A drain that starts meanwhile finds the connection closing
            // already; its grace period bounds the wait.
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(peer = %addr, %error, "client connection ended with an error");
    }
}

/// Closes a connection whose request body was not read to its end.
///
/// Closing a socket with unread bytes in it makes the kernel reset the
/// connection, which can destroy the answer before the client has read it;
/// so the write side is shut first and what the client still sends is read
/// and dropped, for a short while and up to a bound.
async fn linger(reader: Option<ClientReader>, mut writer: ClientWriter) {
    if writer.shutdown().await.is_err() {
        return;
    }
    let Some(mut reader) = reader else {
        return;
    };
    let drain = async {
        let mut sink = vec![0u8; 16 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls the timer once, as the connection does when a read is pending.
    async fn expired(timer: &mut HeadTimer) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(timer.poll_expired(cx))).await
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_deadline_counts_from_the_wait_for_each_head() {
        let half = HEADER_READ_TIMEOUT / 2;
        let mut timer = HeadTimer::new(HEADER_READ_TIMEOUT);
        assert!(!expired(&mut timer).await);
        tokio::time::advance(half).await;

        // The next head's clock starts now; the timer, still set for the
        // first head's deadline, fires early and must not end it.
        timer.disarm();
        assert!(!expired(&mut timer).await);
        tokio::time::advance(half + Duration::from_millis(10)).await;
        assert!(!expired(&mut timer).await, "the head timed out early");

        tokio::time::advance(half).await;
        assert!(expired(&mut timer).await, "the head never timed out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_has_not_started_waiting_has_no_deadline() {
        let mut timer = HeadTimer::new(HEADER_READ_TIMEOUT);
        assert!(!expired(&mut timer).await);
        tokio::time::advance(HEADER_READ_TIMEOUT * 3).await;
        // Armed long ago, but a new head has not waited at all yet.
        timer.disarm();
        assert!(!expired(&mut timer).await);
        tokio::time::advance(HEADER_READ_TIMEOUT).await;
        assert!(expired(&mut timer).await);
    }
}
