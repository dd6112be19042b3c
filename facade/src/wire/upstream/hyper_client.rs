//! Backends reached over TLS or HTTP/2, through hyper's pooled client.
//!
//! The facade's own HTTP/1.1 client ([`super::ConnectionPool`]) writes
//! plain HTTP/1.1 on a TCP socket and nothing else; HTTP/2's streams, flow
//! control and trailers, and a TLS session under HTTP/1.1, are hyper's and
//! rustls's to do well. So an instance whose URL is `https://`, or whose
//! backend says `protocol = "h2"`, is reached through hyper's client with
//! a connector of the facade's: it connects to the instance's own address
//! whatever the request's authority says (the `Host` the facade sends may
//! be the client's), handshakes TLS with the backend's configuration
//! ([`crate::wire::tls::client`]), and reports ALPN `h2`.
//!
//! Interim answers (`103 Early Hints`) from an HTTP/1.1 one over TLS are
//! relayed through hyper's informational callback; HTTP/2 ones are not
//! (hyper's HTTP/2 client does not surface them). An upgrade
//! (WebSocket) to an HTTP/1.1 one over TLS is switched by hyper's client,
//! whose upgraded connection the tunnel then joins to the client's; an
//! HTTP/2 one is never asked for an upgrade.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{RequestHead, SendError, UpstreamError};
use crate::wire::body::ProxyBody;
use crate::wire::interim::InterimSink;

/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// An instance reached through hyper's client.
#[derive(Debug, Clone)]
pub struct HyperUpstream {
    client: Client<InstanceConnector, ProxyBody>,
    scheme: Scheme,
    authority: Authority,
    http2: bool,
}

/// How to reach one instance.
#[derive(Debug, Clone)]
pub struct HyperSettings {
    /// Where to connect: `host:port`.
    pub address: String,
    /// The instance's authority, for requests that carry no `Host`.
    pub authority: Authority,
    /// Time limit for the TCP connection and the TLS handshake together.
    pub connect_timeout: Duration,
    /// TLS, with the name to verify; `None` for h2c.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// HTTP/2 only (ALPN `h2` over TLS, prior knowledge over TCP).
    pub http2: bool,
}

impl HyperUpstream {
    /// A client for the instance `settings` describe.
    pub fn new(settings: HyperSettings) -> Self {
        let secure = settings.tls.is_some();
        let connector = InstanceConnector {
            address: Arc::from(settings.address.as_str()),
            connect_timeout: settings.connect_timeout,
            tls: settings
                .tls
                .map(|(config, name)| (TlsConnector::from(config), name)),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(settings.http2 && !secure);
        Self {
            client: builder.build(connector),
            scheme: if secure { Scheme::HTTPS } else { Scheme::HTTP },
            authority: settings.authority,
            http2: settings.http2,
        }
    }

    /// Whether the instance speaks HTTP/2, where no upgrade can be asked
    /// for with `Connection: upgrade`.
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// Sends `head` with `host` and `body`. The answer's body streams
    /// from hyper, trailers included.
    pub async fn send(
        &self,
        head: &RequestHead,
        host: &HeaderValue,
        body: ProxyBody,
        interim: Option<&Arc<InterimSink>>,
    ) -> Result<Response<hyper::body::Incoming>, SendError> {
        let mut request = match self.request(head, host, body) {
            Ok(request) => request,
            Err(error) => return Err(SendError { error, unsent: None }),
        };
        let interim = interim.filter(|_| !self.http2);
        if let Some(sink) = interim {
            let sink = Arc::clone(sink);
            // `100 Continue` is the facade's own to answer (`Expect` is not
            // sent upstream), and hyper's client reads `101` itself.
            hyper::ext::on_informational(&mut request, move |answer| {
                let status = answer.status();
                if status != hyper::StatusCode::CONTINUE && status != hyper::StatusCode::SWITCHING_PROTOCOLS {
                    sink.push(status, answer.headers());
                }
            });
        }
        let mut answering = std::pin::pin!(self.client.request(request));
        let answered = std::future::poll_fn(|cx| {
            if let Some(sink) = interim {
                sink.wake_on_push(cx.waker());
            }
            answering.as_mut().poll(cx)
        })
        .await;
        match answered {
            Ok(response) => {
                if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS && !head.asks_upgrade() {
                    return Err(SendError {
                        error: UpstreamError::Head(super::HeadError::UnsolicitedUpgrade),
                        unsent: None,
                    });
                }
                Ok(response)
            }
            Err(error) => Err(SendError {
                error: classify(error),
                unsent: None,
            }),
        }
    }

    /// The request for hyper: the head's target made absolute with the
    /// `Host` being sent (hyper's pool keys on it; the connector ignores
    /// it), its header lines, and for HTTP/2 `te: trailers`, which gRPC
    /// servers require and the hop-by-hop rules took out.
    fn request(
        &self,
        head: &RequestHead,
        host: &HeaderValue,
        body: ProxyBody,
    ) -> Result<Request<ProxyBody>, UpstreamError> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut headers);
        let lines = head.lines_with_end();
        let malformed = |_| {
            UpstreamError::Head(super::HeadError::Malformed(
                "the request head could not be re-encoded",
            ))
        };
        parsed.parse(&lines).map_err(malformed)?;
        let target = parsed.path.unwrap_or("/");
        let authority = Authority::try_from(host.as_bytes()).unwrap_or_else(|_| self.authority.clone());
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(target)
            .build()
            .map_err(|_| {
                UpstreamError::Head(super::HeadError::Malformed(
                    "the request target is not a valid URI",
                ))
            })?;
        let mut request = Request::new(body);
        *request.method_mut() = head.method().clone();
        *request.uri_mut() = uri;
        if self.http2 {
            *request.version_mut() = Version::HTTP_2;
        }
        let map = request.headers_mut();
        for line in parsed.headers.iter() {
            let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(line.name.as_bytes()),
                HeaderValue::from_bytes(line.value),
            ) else {
                continue;
            };
            map.append(name, value);
        }
        map.insert(header::HOST, host.clone());
        if self.http2 {
            map.remove(header::HOST);
            let grpc = map
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
            if grpc {
                map.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
        Ok(request)
    }
}

/// Names what failed: a TLS failure (verification above all) says why in
/// the backend's words; anything else at connect time is a connect error.
fn classify(error: hyper_util::client::legacy::Error) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = source {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return UpstreamError::Tls(tls.to_string());
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return UpstreamError::Tls(tls.to_string());
            }
        }
        source = current.source();
    }
    if error.is_connect() {
        let io = std::error::Error::source(&error)
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
            .map_or_else(
                || std::io::Error::other(error.to_string()),
                |io| std::io::Error::new(io.kind(), io.to_string()),
            );
        return UpstreamError::Connect(io);
    }
    UpstreamError::Client(Box::new(error))
}

/// Connects to one instance's address, whatever the request's URI names.
#[derive(Clone)]
struct InstanceConnector {
    address: Arc<str>,
    connect_timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for InstanceConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceConnector")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for InstanceConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let limit = this.connect_timeout;
            let connecting = async {
                let tcp = TcpStream::connect(&*this.address).await?;
                let _ = tcp.set_nodelay(true);
                match &this.tls {
                    None => Ok(UpstreamStream::Plain(tcp)),
                    Some((connector, name)) => {
                        let tls = connector.connect(name.clone(), tcp).await?;
                        Ok(UpstreamStream::Tls(Box::new(tls)))
                    }
                }
            };
            match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result.map(TokioIo::new),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting took longer than {limit:?}"),
                )),
            }
        })
    }
}

/// A connection to an instance, plain or TLS.
pub enum UpstreamStream {
    /// h2c.
    Plain(TcpStream),
    /// TLS, boxed: its state is large.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            UpstreamStream::Plain(_) => Connected::new(),
            UpstreamStream::Tls(tls) => {
                let (_, session) = tls.get_ref();
                if session.alpn_protocol() == Some(b"h2") {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(tcp) => tcp.is_write_vectored(),
            UpstreamStream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
