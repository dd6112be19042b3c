//! TLS and HTTP/2 for the tests: a certificate authority made per test
//! (no key is checked in), a client that speaks TLS with a chosen SNI and
//! ALPN and reports what it saw, upstreams over TLS (optionally requiring
//! a client certificate, recording whether each handshake resumed a
//! session), and a gRPC upstream over h2c written on hyper (unary,
//! server-streaming, an error status, a slow call).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, HandshakeKind, RootCertStore, ServerConfig};
use serde_json::json;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[allow(deprecated, reason = "the facade uses ring too")]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its key, PEM.
    pub key: PathBuf,
    /// The certificate, DER, to compare with what a peer presented.
    pub der: Vec<u8>,
}

/// A certificate authority for one test, with its files in a folder of
/// its own.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    /// Where the files are.
    pub dir: TempDir,
    /// The CA's certificate, PEM.
    pub ca_file: PathBuf,
}

impl Pki {
    /// A new CA, with a name of its own.
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("strangler test CA {number}"));
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Self {
            ca,
            ca_key,
            dir,
            ca_file,
        }
    }

    /// A certificate for `names`, signed by the CA, written as `stem.pem`
    /// and `stem.key`.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        self.sign(stem, params)
    }

    /// A certificate from `params`, signed by the CA.
    pub fn sign(&self, stem: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    /// A revocation list from the CA revoking `revoked`, valid from
    /// `this_update` to `next_update` (years), written as `stem.crl.pem`.
    pub fn revocation_list(
        &self,
        stem: &str,
        number: u64,
        revoked: &[&Issued],
        valid: (i32, i32),
    ) -> PathBuf {
        let serial = |issued: &Issued| {
            let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).unwrap();
            rcgen::SerialNumber::from_slice(cert.tbs_certificate.raw_serial())
        };
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(valid.0, 1, 1),
            next_update: rcgen::date_time_ymd(valid.1, 1, 1),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|issued| rcgen::RevokedCertParams {
                    serial_number: serial(issued),
                    revocation_time: rcgen::date_time_ymd(valid.0, 1, 2),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let list = params.signed_by(&self.ca, &self.ca_key).unwrap();
        let path = self.dir.path().join(format!("{stem}.crl.pem"));
        std::fs::write(&path, list.pem().unwrap()).unwrap();
        path
    }

    /// The CA as a root store.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der().to_vec())).unwrap();
        roots
    }

    /// A client configuration trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// As [`Pki::client_config`], presenting `identity` as the client's
    /// certificate.
    pub fn client_config_with(&self, identity: &Issued, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain = vec![CertificateDer::from(identity.der.clone())];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&identity.key).unwrap();
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_client_auth_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A server configuration serving `issued`, offering `alpn`, and
    /// requiring a client certificate from this CA when `mutual`.
    pub fn server_config(&self, issued: &Issued, alpn: &[&[u8]], mutual: bool) -> Arc<ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain = vec![CertificateDer::from(issued.der.clone())];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&issued.key).unwrap();
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// What a TLS client saw.
#[derive(Debug)]
pub struct Seen {
    /// The answer's status.
    pub status: StatusCode,
    /// The HTTP version spoken.
    pub version: Version,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// Its trailers, if any.
    pub trailers: Option<HeaderMap>,
    /// The leaf certificate the server presented.
    pub peer_certificate: Vec<u8>,
}

impl Seen {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A TLS connection to `addr` naming `server_name`, trusting `config`.
pub async fn connect_tls(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "the handshake timed out".to_owned())?
    .map_err(|e| e.to_string())
}

/// One request over a new TLS connection to `addr`, HTTP/2 when ALPN
/// settles on it, else HTTP/1.1.
pub async fn https_request(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    request: Request<Full<Bytes>>,
) -> Result<Seen, String> {
    let tls = connect_tls(addr, server_name, config).await?;
    let peer_certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
        .unwrap_or_default();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut request = request;
    if h2 && request.uri().scheme().is_none() {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |t| t.as_str())
            .to_owned();
        *request.uri_mut() = format!("https://{server_name}{target}").parse().unwrap();
        request.headers_mut().remove("host");
    }
    let mut seen = send_on(TokioIo::new(tls), h2, request).await?;
    seen.peer_certificate = peer_certificate;
    Ok(seen)
}

/// One request on `io`, over HTTP/2 (prior knowledge) or HTTP/1.1.
pub async fn send_on<IO>(io: IO, h2: bool, mut request: Request<Full<Bytes>>) -> Result<Seen, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let response = if h2 {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        *request.version_mut() = Version::HTTP_2;
        sender.send_request(request).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(|e| e.to_string())?
    };
    collect(response).await
}

/// The whole answer, trailers kept.
pub async fn collect(response: Response<Incoming>) -> Result<Seen, String> {
    let (parts, body) = response.into_parts();
    let collected = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .map_err(|_| "the body did not end in time".to_owned())?
        .map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned();
    Ok(Seen {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
        peer_certificate: Vec::new(),
    })
}

/// A GET of `path` with `host`.
pub fn get(path: &str, host: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// An upstream over TLS.
pub struct TlsUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Each completed handshake's kind (full or resumed), in order.
    pub handshakes: Arc<Mutex<Vec<HandshakeKind>>>,
}

/// Starts an upstream serving `config` (see [`Pki::server_config`]) that
/// answers every request with JSON naming itself, the version, path and
/// headers it got; with `?close=1` it closes the connection after. A
/// request carrying `Upgrade` is switched and echoed, as
/// [`super::upstream::echo_upgrade`] does.
pub async fn spawn_tls_upstream(name: &'static str, config: Arc<ServerConfig>) -> TlsUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&handshakes);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(kind) = tls.get_ref().1.handshake_kind() {
                    recorded.lock().unwrap().push(kind);
                }
                let service = service_fn(move |request: Request<Incoming>| async move {
                    if request.headers().contains_key(hyper::header::UPGRADE) {
                        return Ok::<_, Infallible>(super::upstream::echo_upgrade(request));
                    }
                    Ok(describe(name, request).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsUpstream { addr, handshakes }
}

/// Starts an HTTPS upstream that answers each request with `103 Early
/// Hints` (a `Link` to `/app.css`) at once, and with its final `200` only
/// once `release` is notified, so a test can see the hint arrive first.
pub async fn spawn_hinting_tls_upstream(config: Arc<ServerConfig>) -> (SocketAddr, Arc<tokio::sync::Notify>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let released = Arc::clone(&release);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, released) = (acceptor.clone(), Arc::clone(&released));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let hint = b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n";
                if tls.write_all(hint).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                released.notified().await;
                let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfinal";
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, release)
}

/// Starts a plain HTTP/2-only (h2c) upstream answering as [`spawn_tls_upstream`].
pub async fn spawn_h2c_upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    Ok::<_, Infallible>(describe(name, request).await)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn describe(name: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or("?"))))
        .collect();
    let answer = json!({
        "name": name,
        "version": format!("{:?}", parts.version),
        "path": parts.uri.path(),
        "authority": parts.uri.authority().map(|a| a.as_str().to_owned()),
        "headers": headers,
        "body_bytes": body.len(),
    });
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if parts.uri.query() == Some("close=1") && parts.version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
    }
    response
}

/// One gRPC message: the flag byte, the length, the bytes.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed.freeze()
}

/// The messages in a gRPC body.
pub fn grpc_messages(mut body: Bytes) -> Vec<Bytes> {
    let mut messages = Vec::new();
    while body.len() >= 5 {
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        body.advance(5);
        messages.push(body.split_to(length.min(body.len())));
    }
    messages
}

type GrpcBody = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Starts a gRPC upstream over h2c with the service `test.Echo`:
/// - `Unary`: answers the request's message;
/// - `Stream`: answers it three times, numbered;
/// - `Fail`: trailers only, `grpc-status: 5`;
/// - `Slow`: waits two seconds first.
///
/// Every answer records the `grpc-timeout` the call arrived with in the
/// `x-seen-grpc-timeout` header.
pub async fn spawn_grpc_upstream() -> SocketAddr {
    spawn_grpc_upstream_with(b"").await
}

/// [`spawn_grpc_upstream`], with `suffix` added to each unary answer (an
/// extracted service that differs).
pub async fn spawn_grpc_upstream_with(suffix: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(tcp),
                        service_fn(move |request| grpc(request, suffix)),
                    )
                    .await;
            });
        }
    });
    addr
}

async fn grpc(request: Request<Incoming>, suffix: &'static [u8]) -> Result<Response<GrpcBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let seen_timeout = request.headers().get("grpc-timeout").cloned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = grpc_messages(body).into_iter().next().unwrap_or_default();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut frames = Vec::new();
    match path.as_str() {
        "/test.Echo/Unary" => frames.push(Frame::data(grpc_frame(&[&message[..], suffix].concat()))),
        "/test.Echo/Slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            frames.push(Frame::data(grpc_frame(&message)));
        }
        "/test.Echo/Stream" => {
            for n in 1..=3 {
                let mut numbered = message.to_vec();
                numbered.extend_from_slice(format!("#{n}").as_bytes());
                frames.push(Frame::data(grpc_frame(&numbered)));
            }
        }
        _ => {
            trailers.insert("grpc-status", HeaderValue::from_static("5"));
            trailers.insert("grpc-message", HeaderValue::from_static("no such method"));
        }
    }
    frames.push(Frame::trailers(trailers));
    let mut response = Response::new(StreamBody::new(futures::stream::iter(
        frames.into_iter().map(Ok::<_, Infallible>).collect::<Vec<_>>(),
    )));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    if let Some(timeout) = seen_timeout {
        response.headers_mut().insert("x-seen-grpc-timeout", timeout);
    }
    Ok(response)
}

/// A gRPC call of `method` on `test.Echo` with one `message`, over h2c
/// prior knowledge to `addr`, with `grpc-timeout` when given.
pub async fn grpc_call(
    addr: SocketAddr,
    method: &str,
    message: &[u8],
    timeout: Option<&str>,
) -> Result<Seen, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut request = Request::post(format!("http://{addr}/test.Echo/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(grpc_frame(message)))
        .unwrap();
    if let Some(timeout) = timeout {
        request
            .headers_mut()
            .insert("grpc-timeout", HeaderValue::from_str(timeout).unwrap());
    }
    send_on(TokioIo::new(tcp), true, request).await
}
