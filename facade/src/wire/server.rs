//! The proxy listeners: accept connections on the listener's task and deal
//! each to the least busy proxy thread (see [`crate::wire::proxy_threads`]),
//! serve them there with the [`Handler`] it is given, and drain on
//! shutdown.
//!
//! Two listeners, either or both: the plain one (HTTP/1.1 on the facade's
//! own connection, everything else, HTTP/2 and upgrades included, on
//! hyper's; see [`crate::wire::http1`]; or only redirects to HTTPS, see
//! [`crate::wire::redirect`]) and the TLS one (the handshake on the proxy
//! thread, bounded in time; then hyper, HTTP/1.1 or HTTP/2 by ALPN).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::wire::http1;
use crate::wire::http1::stream::ClientStream;
use crate::wire::proxy_protocol;
use crate::wire::proxy_threads::{self, ConnectionKind, Inbox};
use crate::wire::redirect;
use crate::wire::service::{ClientCertificate, Handler, Peer};
use crate::wire::shutdown::{Phase, Shutdown, Watch};
use crate::wire::tls::server::{client_certificate_header, TlsAccept};

/// How long an HTTP/2 client may send nothing before it is pinged, and
/// then how long it has to answer.
const HTTP2_PING_AFTER: Duration = Duration::from_secs(60);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The header list HTTP/2 clients may send, for a head limit of
/// `max_header_bytes` on HTTP/1.1: HTTP/2 counts 32 bytes per field
/// besides its name and value where HTTP/1.1 spends 4 (`: ` and CRLF), so
/// a head of the most fields HTTP/1.1 takes (100, hyper's limit) that
/// passes there passes here too. Over it, h2 answers 431 itself.
fn http2_header_list_limit(max_header_bytes: usize) -> u32 {
    const FIELDS: usize = 100;
    u32::try_from(max_header_bytes.saturating_add(32 * FIELDS)).unwrap_or(u32::MAX)
}

/// How long the proxy threads get to end once the grace period is over
/// and every connection has been told to close at once.
const HALT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the proxy listener serves.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The request-head size limit.
    pub max_header_bytes: usize,
    /// Requests one client connection may carry.
    pub max_requests_per_connection: u64,
    /// How long a request head may take to arrive.
    pub header_read_timeout: Duration,
    /// Whether every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// How long an HTTP/2 connection may sit with no stream open.
    pub http2_idle_timeout: Duration,
    /// Proxy threads, each with its own event loop.
    pub threads: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub grace: Duration,
    /// Client connections open at most; one more is answered 503 and
    /// closed at once, so a flood runs the facade out of neither memory nor
    /// file descriptors.
    pub max_connections: usize,
    /// Whether the TLS listener asks clients for certificates
    /// (`client_ca_file`); then no client's own `X-Forwarded-Client-Cert`
    /// reaches an upstream, on either listener.
    pub asks_client_certificates: bool,
    /// Added to every answer over TLS that has none
    /// (`strict_transport_security`).
    pub strict_transport_security: Option<HeaderValue>,
}

/// The answer to a connection over `max_connections`, written without
/// reading its request.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 103\r\n\r\n{\"error\":\"the facade has too many open connections; retry shortly\",\"source\":\"facade\",\"request_id\":null}";

/// How often refusals over `max_connections` are logged, at most.
const OVER_CAPACITY_LOG_EVERY: Duration = Duration::from_secs(10);

/// The bound proxy listeners.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// Plain HTTP.
    pub plain: Option<TcpListener>,
    /// TLS, with how its handshakes are done.
    pub tls: Option<(TcpListener, TlsAccept)>,
    /// When set, the plain listener only redirects to HTTPS on this port.
    pub redirect_to: Option<u16>,
}

/// Accepts from `listener`, or waits forever when there is none.
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves the proxy until `stop` is cancelled, then stops accepting and
/// lets in-flight requests finish for up to `settings.grace`.
///
/// Fails, having served nothing, if the proxy threads cannot be started.
pub(crate) async fn serve<H: Handler>(
    listeners: Listeners,
    handler: Arc<H>,
    settings: Settings,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut hyper = auto::Builder::new(TokioExecutor::new());
    hyper
        .http1()
        .max_buf_size(settings.max_header_bytes.max(8192))
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    // A ping after a minute without a frame from the client, and the
    // connection closed if it is not answered: a client gone without a
    // word no longer holds its streams (a gRPC stream, say) open forever.
    hyper
        .http2()
        .max_header_list_size(http2_header_list_limit(settings.max_header_bytes))
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING_AFTER)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let shared = Arc::new(http1::Shared {
        handler,
        max_head: settings.max_header_bytes,
        max_requests: settings.max_requests_per_connection,
        head_timeout: settings.header_read_timeout,
        proxy_protocol: settings.proxy_protocol,
        http2_idle_timeout: settings.http2_idle_timeout,
        hyper,
        stop: stop.clone(),
        asks_client_certificates: settings.asks_client_certificates,
        strict_transport_security: settings.strict_transport_security.clone(),
    });
    // Closes idle connections when the drain starts, and every connection
    // still open when the grace period is over.
    let shutdown = Shutdown::new();
    // Every proxy thread holds a sender until its connections have ended;
    // when the last is dropped, `recv` returns `None` and the drain is over.
    let (open, mut drained) = mpsc::channel::<()>(1);
    let (mut threads, _handles) = proxy_threads::start(settings.threads, {
        let shutdown = Arc::clone(&shutdown);
        move |inbox| serve_thread(inbox, Arc::clone(&shared), Arc::clone(&shutdown), open.clone())
    })?;
    let (mut refused, mut last_warned) = (0u64, None);
    let plain_kind = match listeners.redirect_to {
        Some(port) => ConnectionKind::Redirect(port),
        None => ConnectionKind::Plain,
    };
    let tls_listener = listeners.tls.as_ref().map(|(listener, _)| listener);
    loop {
        let (accepted, kind) = tokio::select! {
            accepted = accept_on(listeners.plain.as_ref()) => (accepted, plain_kind.clone()),
            accepted = accept_on(tls_listener) => match &listeners.tls {
                Some((_, accept)) => (accepted, ConnectionKind::Tls(accept.clone())),
                None => continue,
            },
            () = stop.cancelled() => break,
        };
        {
            {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if threads.open() >= settings.max_connections {
                    // Best effort and never waits: a full send buffer just
                    // means the client sees the connection close. A TLS
                    // client could not read plain text; it sees the close.
                    if !matches!(kind, ConnectionKind::Tls(_)) {
                        let _ = stream.try_write(OVER_CAPACITY);
                    }
                    refused += 1;
                    if last_warned
                        .is_none_or(|at: tokio::time::Instant| at.elapsed() >= OVER_CAPACITY_LOG_EVERY)
                    {
                        tracing::warn!(
                            max_connections = settings.max_connections,
                            refused,
                            "client connections over the limit answered 503 and closed"
                        );
                        last_warned = Some(tokio::time::Instant::now());
                        refused = 0;
                    }
                    continue;
                }
                match stream.into_std() {
                    Ok(stream) => threads.deal(stream, peer, kind),
                    Err(error) => {
                        tracing::warn!(%error, %peer, "a connection could not be handed to a proxy thread")
                    }
                }
            }
        }
    }
    drop(listeners);
    // Closes the threads' inboxes: each serves what it has, then ends.
    drop(threads);
    shutdown.enter(Phase::Stopping);
    tracing::info!(
        grace_seconds = settings.grace.as_secs_f64(),
        "facade shutting down: draining in-flight requests"
    );
    tokio::select! {
        _ = drained.recv() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(settings.grace) => {
            tracing::warn!("grace period expired with requests still in flight; closing them");
            shutdown.enter(Phase::Halted);
            // Every connection now ends the next time it runs.
            if tokio::time::timeout(HALT_TIMEOUT, drained.recv()).await.is_err() {
                tracing::error!("proxy threads did not stop after the grace period");
            }
        }
    }
    shutdown.enter(Phase::Halted);
    Ok(())
}

/// One proxy thread: serves each connection it is given as a task on its
/// runtime until the listener stops, then until they have all ended.
async fn serve_thread<H: Handler>(
    mut inbox: Inbox,
    shared: Arc<http1::Shared<H>>,
    shutdown: Arc<Shutdown>,
    open: mpsc::Sender<()>,
) {
    let (local_open, mut local_drained) = mpsc::channel::<()>(1);
    while let Some(incoming) = inbox.recv().await {
        let stream = match TcpStream::from_std(incoming.stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, peer = %incoming.peer, "a connection could not be registered; closed");
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let local_open = local_open.clone();
        let watch = shutdown.watch();
        let counted = incoming.open;
        let kind = incoming.kind;
        tokio::spawn(async move {
            serve_until_halted(stream, Peer::new(incoming.peer), kind, shared, &watch).await;
            drop(counted);
            drop(local_open);
        });
    }
    drop(local_open);
    // The connections still open are tasks on this thread's runtime, which
    // must keep running until they end.
    let _ = local_drained.recv().await;
    drop(open);
}

/// Serves one connection, cut off when the grace period is over.
async fn serve_until_halted<H: Handler>(
    stream: TcpStream,
    peer: Peer,
    kind: ConnectionKind,
    shared: Arc<http1::Shared<H>>,
    watch: &Watch,
) {
    let mut connection = pin!(serve_one(stream, peer, kind, shared, watch));
    poll_fn(|cx| match watch.poll_phase(cx) {
        Phase::Halted => Poll::Ready(()),
        Phase::Running | Phase::Stopping => connection.as_mut().poll(cx),
    })
    .await;
}

/// Serves one connection as the listener that took it says.
async fn serve_one<H: Handler>(
    mut stream: TcpStream,
    mut peer: Peer,
    kind: ConnectionKind,
    shared: Arc<http1::Shared<H>>,
    watch: &Watch,
) {
    // Until its PROXY header and its TLS handshake are done, a connection
    // has asked for nothing: the drain closes it at once, as it closes an
    // idle one, rather than wait for it up to the grace period.
    if shared.proxy_protocol {
        let header = tokio::select! {
            header = proxy_protocol::read_header(&mut stream, shared.head_timeout) => header,
            () = watch.draining() => return,
        };
        match header {
            Ok(Some(client)) => peer = Peer::new(client),
            Ok(None) => {}
            Err(failure) => {
                tracing::debug!(peer = %peer.addr, reason = failure.as_str(), "PROXY protocol header refused; connection closed");
                shared.handler.proxy_header_refused(failure);
                return;
            }
        }
    }
    if shared.asks_client_certificates {
        peer.client_certificate = ClientCertificate::Absent;
    }
    match kind {
        ConnectionKind::Plain => {
            http1::serve_connection(ClientStream::Tcp(stream), peer, shared, watch).await
        }
        ConnectionKind::Redirect(port) => redirect::serve(stream, port, shared.head_timeout).await,
        ConnectionKind::Tls(accept) => match tokio::select! {
            accepted = accept.accept(stream) => accepted,
            () = watch.draining() => return,
        } {
            Ok(tls) => {
                peer.secure = true;
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first());
                if let Some(header) = leaf.and_then(|leaf| client_certificate_header(leaf)) {
                    peer.client_certificate = ClientCertificate::Verified(header);
                }
                // HTTP/2 by ALPN goes to hyper at once; HTTP/1.1 takes the
                // fast path, as on the plain listener.
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let idle = shared.idle_limit(true);
                    http1::serve_with_hyper(tls, peer, &shared, 0, idle).await;
                } else {
                    http1::serve_connection(ClientStream::Tls(Box::new(tls)), peer, shared, watch).await;
                }
            }
            Err(failure) => {
                tracing::debug!(peer = %peer.addr, reason = failure.as_str(), "TLS handshake failed");
                shared.handler.tls_handshake_failed(failure);
            }
        },
    }
}

/// Binds `addr`, with an error that names the address and what to do.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {addr}: {error} (is another process using it? choose another address)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::OVER_CAPACITY;

    #[test]
    fn the_over_capacity_answer_is_framed_by_its_length() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(OVER_CAPACITY).unwrap() else {
            panic!("an incomplete head");
        };
        assert_eq!(response.code, Some(503));
        let length = response
            .headers
            .iter()
            .find(|h| h.name == "content-length")
            .map(|h| std::str::from_utf8(h.value).unwrap().parse::<usize>().unwrap());
        let body = &OVER_CAPACITY[head..];
        assert_eq!(length, Some(body.len()));
        serde_json::from_slice::<serde_json::Value>(body).unwrap();
    }
}
