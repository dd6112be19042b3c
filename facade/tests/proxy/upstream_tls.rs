//! Backends over TLS and HTTP/2: `https://` verified against a CA bundle
//! (and refused, with a named 502, when it does not verify),
//! `tls_server_name`, mutual TLS, session resumption, `protocol = "h2"`
//! over TLS and h2c, gRPC end to end with trailers and deadlines, and
//! upgrades (WebSocket) tunnelled to an `https://` backend.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::tls::{
    grpc_call, grpc_messages, https_request, spawn_grpc_upstream, spawn_grpc_upstream_with,
    spawn_h2c_upstream, spawn_hinting_tls_upstream, spawn_tls_upstream, Pki, TlsUpstream,
};
use crate::helpers::{
    eventually, metric_value, read_response, read_response_after, sqlite_store, start_facade, TestFacade,
    WAIT_LIMIT,
};

/// A facade whose default backend `legacy` is `backend` (the keys after
/// `[backends.legacy]`).
async fn facade_for(backend: &str, facade_extra: &str) -> (test_harness::TestDatabase, TestFacade) {
    let store = sqlite_store();
    let text = format!(
        "[facade]\ndefault_backend = \"legacy\"\naccess_log = false\n{facade_extra}\n\n[backends.legacy]\n{backend}\n"
    );
    let facade = start_facade(&text, store.url()).await;
    (store, facade)
}

/// An HTTPS upstream answering as `name`, with a certificate for `names`
/// from `pki`, offering `alpn`, and requiring a client certificate from
/// `pki` when `mutual`.
async fn secure_upstream(
    pki: &Pki,
    name: &'static str,
    names: &[&str],
    alpn: &[&[u8]],
    mutual: bool,
) -> TlsUpstream {
    let cert = pki.issue("upstream", names);
    spawn_tls_upstream(name, pki.server_config(&cert, alpn, mutual)).await
}

/// A backend's `urls` (`upstream` reached as `host`) and `ca_file` lines.
fn https_backend(host: &str, upstream: &TlsUpstream, pki: &Pki) -> String {
    format!(
        "urls = [\"https://{host}:{}\"]\nca_file = {}\n",
        upstream.addr.port(),
        path(&pki.ca_file)
    )
}

/// The status of `GET target` through `facade`.
async fn status_of(facade: &TestFacade, target: &str) -> reqwest::StatusCode {
    facade
        .client
        .get(facade.url(target))
        .send()
        .await
        .unwrap()
        .status()
}

/// Asserts that `facade` counted one TLS failure with backend `legacy`.
async fn assert_one_tls_error(facade: &TestFacade) {
    let metrics = facade.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "strangler_facade_upstream_errors_total",
            &[("backend", "legacy"), ("kind", "tls")]
        ),
        1.0,
        "{metrics}"
    );
}

fn path(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[tokio::test]
async fn an_https_backend_verified_by_its_ca_bundle_is_proxied() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "secure", &["localhost"], &[b"http/1.1"], false).await;
    let backend = https_backend("localhost", &upstream, &pki);
    let (_store, facade) = facade_for(&backend, "").await;
    let response = facade
        .client
        .get(facade.url("/orders/7"))
        .header("host", "shop.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["name"], "secure");
    assert_eq!(body["path"], "/orders/7");
    assert_eq!(body["version"], "HTTP/1.1");
    assert_eq!(
        body["headers"]["host"], "shop.test",
        "Host is preserved by default"
    );
}

#[tokio::test]
async fn an_untrusted_backend_certificate_is_a_named_502_and_counted() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "secure", &["localhost"], &[b"http/1.1"], false).await;
    // Another CA: the backend's certificate does not chain to it.
    let other = Pki::new();
    let backend = https_backend("localhost", &upstream, &other);
    let (_store, facade) = facade_for(&backend, "").await;
    let response = facade.client.get(facade.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("TLS with backend `legacy` failed"), "{body}");
    assert!(error.contains("invalid peer certificate"), "{body}");
    assert_one_tls_error(&facade).await;
}

#[tokio::test]
async fn tls_server_name_verifies_a_name_other_than_the_connect_address() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "orders", &["orders.internal"], &[b"http/1.1"], false).await;
    let url = https_backend("127.0.0.1", &upstream, &pki);
    let (_store, without) = facade_for(&url, "").await;
    assert_eq!(status_of(&without, "/").await, 502);
    let (_store, with) = facade_for(&format!("{url}tls_server_name = \"orders.internal\"\n"), "").await;
    assert_eq!(status_of(&with, "/").await, 200);
}

#[tokio::test]
async fn a_backend_that_requires_mutual_tls_gets_the_client_certificate() {
    let pki = Pki::new();
    let client = pki.issue("facade-client", &["facade.internal"]);
    let upstream = secure_upstream(&pki, "mtls", &["localhost"], &[b"http/1.1"], true).await;
    let url = https_backend("localhost", &upstream, &pki);
    let (_store, anonymous) = facade_for(&url, "").await;
    assert_eq!(status_of(&anonymous, "/").await, 502);
    let with_certificate = format!(
        "{url}client_cert = {}\nclient_key = {}\n",
        path(&client.cert),
        path(&client.key)
    );
    let (_store, facade) = facade_for(&with_certificate, "").await;
    let response = facade.client.get(facade.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn new_connections_to_a_backend_resume_its_tls_session() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "resume", &["localhost"], &[b"http/1.1"], false).await;
    let url = https_backend("localhost", &upstream, &pki);
    let (_store, facade) = facade_for(&url, "").await;
    // `?close=1`: the backend closes each connection after its answer, so
    // every request needs a new one.
    for _ in 0..3 {
        let response = facade.client.get(facade.url("/?close=1")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let handshakes = upstream.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes.len(), 3, "{handshakes:?}");
    assert_eq!(handshakes[0], HandshakeKind::Full);
    assert!(
        handshakes[1..].iter().all(|kind| *kind == HandshakeKind::Resumed),
        "{handshakes:?}"
    );
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "anyone", &["somewhere.else"], &[b"http/1.1"], false).await;
    let url = format!(
        "urls = [\"https://127.0.0.1:{}\"]\ninsecure_skip_verify = true\n",
        upstream.addr.port()
    );
    let (_store, facade) = facade_for(&url, "").await;
    assert_eq!(status_of(&facade, "/").await, 200);
}

#[tokio::test]
async fn http2_backends_over_tls_and_h2c() {
    let pki = Pki::new();
    let secure = secure_upstream(&pki, "h2-tls", &["localhost"], &[b"h2"], false).await;
    let backend = format!("{}protocol = \"h2\"\n", https_backend("localhost", &secure, &pki));
    let (_store, facade) = facade_for(&backend, "").await;
    let body: serde_json::Value = facade
        .client
        .get(facade.url("/a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (body["name"].as_str(), body["version"].as_str()),
        (Some("h2-tls"), Some("HTTP/2.0"))
    );

    let plain = spawn_h2c_upstream("h2c").await;
    let backend = format!("urls = [\"http://{plain}\"]\nprotocol = \"h2\"\n");
    let (_store, facade) = facade_for(&backend, "").await;
    let body: serde_json::Value = facade
        .client
        .post(facade.url("/b"))
        .body("twelve bytes")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["version"], "HTTP/2.0");
    assert_eq!(body["body_bytes"], 12);
}

async fn grpc_facade(upstream: SocketAddr, facade_extra: &str) -> (test_harness::TestDatabase, TestFacade) {
    let store = sqlite_store();
    let text = format!(
        r#"
[facade]
default_backend = "legacy"
access_log = false
{facade_extra}

[backends.legacy]
urls = ["http://127.0.0.1:1"]

[backends.echo]
urls = ["http://{upstream}"]
protocol = "h2"
request_timeout_ms = 5000

[capabilities.echo]
legacy = "echo"
service = "echo"

[[routes]]
capability = "echo"
path = "/test.Echo/*"
"#
    );
    let facade = start_facade(&text, store.url()).await;
    (store, facade)
}

fn grpc_status(seen: &crate::helpers::tls::Seen) -> Option<String> {
    // A trailers-only answer carries the status in its headers.
    seen.trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| seen.headers.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn grpc_unary_and_streaming_calls_pass_with_their_trailers() {
    let upstream = spawn_grpc_upstream().await;
    let (_store, facade) = grpc_facade(upstream, "").await;

    let unary = grpc_call(facade.proxy, "Unary", b"hello", Some("3S"))
        .await
        .unwrap();
    assert_eq!(unary.status, StatusCode::OK);
    assert_eq!(
        grpc_messages(unary.body.clone()),
        vec![bytes::Bytes::from_static(b"hello")]
    );
    assert_eq!(grpc_status(&unary).as_deref(), Some("0"));
    assert!(unary.trailers.is_some(), "the trailers were lost");
    assert_eq!(
        unary.headers["x-seen-grpc-timeout"], "3S",
        "grpc-timeout goes upstream"
    );
    assert_eq!(unary.headers["x-strangler-served-by"], "legacy");

    let streamed = grpc_call(facade.proxy, "Stream", b"tick", None).await.unwrap();
    let messages = grpc_messages(streamed.body.clone());
    assert_eq!(messages, vec![&b"tick#1"[..], &b"tick#2"[..], &b"tick#3"[..]]);
    assert_eq!(grpc_status(&streamed).as_deref(), Some("0"));

    let failed = grpc_call(facade.proxy, "Fail", b"", None).await.unwrap();
    assert_eq!(grpc_status(&failed).as_deref(), Some("5"));
}

#[tokio::test]
async fn a_grpc_deadline_bounds_the_wait_and_is_answered_as_deadline_exceeded() {
    let upstream = spawn_grpc_upstream().await;
    let (_store, facade) = grpc_facade(upstream, "").await;
    let started = std::time::Instant::now();
    // The upstream takes two seconds; the client gives 300 ms.
    let seen = grpc_call(facade.proxy, "Slow", b"late", Some("300m"))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(seen.status, StatusCode::OK, "a trailers-only gRPC answer");
    assert_eq!(grpc_status(&seen).as_deref(), Some("4"));
    assert!(seen.headers.contains_key("grpc-message"));
}

#[tokio::test]
async fn grpc_over_a_tls_listener_with_alpn_h2() {
    let pki = Pki::new();
    let cert = pki.issue("shop", &["shop.test"]);
    let upstream = spawn_grpc_upstream().await;
    let extra = format!(
        "tls_listen = \"127.0.0.1:0\"\n\n[[facade.certificates]]\ncert = {}\nkey = {}\n",
        path(&cert.cert),
        path(&cert.key)
    );
    let (_store, facade) = grpc_facade(upstream, &extra).await;
    let request = hyper::Request::post("https://shop.test/test.Echo/Unary")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(crate::helpers::tls::grpc_frame(
            b"secure",
        )))
        .unwrap();
    let seen = https_request(
        facade.tls.unwrap(),
        "shop.test",
        pki.client_config(&[b"h2"]),
        request,
    )
    .await
    .unwrap();
    assert_eq!(seen.version, hyper::Version::HTTP_2);
    assert_eq!(
        grpc_messages(seen.body.clone()),
        vec![bytes::Bytes::from_static(b"secure")]
    );
    assert_eq!(grpc_status(&seen).as_deref(), Some("0"));
}

/// A facade with capability `echo` at `stage`, legacy and service each a
/// gRPC upstream.
async fn grpc_migration(
    legacy: SocketAddr,
    service: SocketAddr,
    stage: &str,
) -> (test_harness::TestDatabase, TestFacade) {
    let store = sqlite_store();
    let text = format!(
        r#"
[facade]
access_log = false

[backends.legacy]
urls = ["http://{legacy}"]
protocol = "h2"

[backends.service]
urls = ["http://{service}"]
protocol = "h2"

[capabilities.echo]
legacy = "legacy"
service = "service"
initial = "{stage}"
sticky = "header:x-user"

[capabilities.echo.shadow]
service_writes_own_database = true

[[routes]]
capability = "echo"
path = "/test.Echo/*"
"#
    );
    let facade = start_facade(&text, store.url()).await;
    (store, facade)
}

async fn shadow_count(facade: &TestFacade, reason: &str) -> f64 {
    metric_value(
        &facade.metrics().await,
        "strangler_facade_shadow_total",
        &[("capability", "echo"), ("reason", reason)],
    )
}

#[tokio::test]
async fn unary_grpc_calls_are_shadowed_and_their_bytes_and_status_compared() {
    let legacy = spawn_grpc_upstream().await;
    let same = spawn_grpc_upstream().await;
    let (_store, facade) = grpc_migration(legacy, same, "shadow").await;
    for _ in 0..3 {
        let seen = grpc_call(facade.proxy, "Unary", b"same", None).await.unwrap();
        assert_eq!(
            grpc_messages(seen.body.clone()),
            vec![bytes::Bytes::from_static(b"same")]
        );
    }
    eventually(
        "three matches",
        WAIT_LIMIT,
        Duration::from_millis(20),
        async || {
            let matched = shadow_count(&facade, "match").await;
            if matched == 3.0 {
                Ok(())
            } else {
                Err(format!("{matched} matches"))
            }
        },
    )
    .await;

    let differing = spawn_grpc_upstream_with(b"!").await;
    let (_store, facade) = grpc_migration(legacy, differing, "shadow").await;
    let seen = grpc_call(facade.proxy, "Unary", b"client", None).await.unwrap();
    assert_eq!(
        grpc_messages(seen.body.clone()),
        vec![bytes::Bytes::from_static(b"client")],
        "the client gets the monolith's answer"
    );
    eventually("a mismatch", WAIT_LIMIT, Duration::from_millis(20), async || {
        let mismatched = shadow_count(&facade, "mismatch").await;
        if mismatched == 1.0 {
            Ok(())
        } else {
            Err(format!("{mismatched} mismatches"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_grpc_canary_sends_its_share_to_the_service() {
    let legacy = spawn_grpc_upstream().await;
    let service = spawn_grpc_upstream_with(b"@service").await;
    let (_store, facade) = grpc_migration(legacy, service, "canary 50%").await;
    let mut sides = std::collections::BTreeSet::new();
    for user in 0..40 {
        let tcp = tokio::net::TcpStream::connect(facade.proxy).await.unwrap();
        let request = hyper::Request::post(format!("http://{}/test.Echo/Unary", facade.proxy))
            .header("content-type", "application/grpc")
            .header("x-user", format!("user-{user}"))
            .body(http_body_util::Full::new(crate::helpers::tls::grpc_frame(b"who")))
            .unwrap();
        let seen = crate::helpers::tls::send_on(hyper_util::rt::TokioIo::new(tcp), true, request)
            .await
            .unwrap();
        let side = seen.headers["x-strangler-served-by"].to_str().unwrap().to_owned();
        let message = grpc_messages(seen.body.clone()).remove(0);
        assert_eq!(
            message.ends_with(b"@service"),
            side == "service",
            "{side}: {message:?}"
        );
        assert_eq!(grpc_status(&seen).as_deref(), Some("0"));
        sides.insert(side);
    }
    assert_eq!(sides.len(), 2, "both sides served some of 40 users: {sides:?}");
}

/// Sends a WebSocket-style upgrade for `/ws` to `facade` on a new plain
/// connection; returns the answer's head and the bytes read past it.
async fn ask_upgrade(facade: &TestFacade) -> (TcpStream, crate::helpers::RawResponse, Vec<u8>) {
    let mut stream = TcpStream::connect(facade.proxy).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nhost: shop.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let (answer, rest) = read_response(&mut stream).await;
    (stream, answer, rest)
}

/// Reads from `stream` into `buffer` until it holds `length` bytes.
async fn read_until(stream: &mut TcpStream, buffer: &mut Vec<u8>, length: usize) {
    let mut chunk = [0u8; 4096];
    while buffer.len() < length {
        let n = tokio::time::timeout(WAIT_LIMIT, stream.read(&mut chunk))
            .await
            .expect("no bytes through the tunnel in time")
            .unwrap();
        assert!(n > 0, "the tunnel closed early after {buffer:?}");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn an_upgrade_to_an_https_backend_is_switched_and_tunnelled() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "secure", &["localhost"], &[b"http/1.1"], false).await;
    let backend = https_backend("localhost", &upstream, &pki);
    let (_store, facade) = facade_for(&backend, "").await;
    let (mut stream, answer, mut received) = ask_upgrade(&facade).await;
    assert_eq!(answer.status, 101, "{answer:?}");
    assert_eq!(answer.header("upgrade"), Some("echo"));
    assert!(answer.header("x-request-id").is_some(), "{answer:?}");
    // The upstream speaks first over its TLS session, then echoes.
    let greeting = b"hello from upstream\n";
    read_until(&mut stream, &mut received, greeting.len()).await;
    assert_eq!(&received[..], greeting);
    for message in [&b"ping"[..], b"\x00\x01binary\xff", &[b'q'; 100_000][..]] {
        received.clear();
        stream.write_all(message).await.unwrap();
        read_until(&mut stream, &mut received, message.len()).await;
        assert_eq!(&received[..], message, "the echo differs");
    }
    assert_eq!(
        upstream.handshakes.lock().unwrap().len(),
        1,
        "one TLS session with the backend carried the upgrade"
    );
    // Closing the client's side ends the tunnel and the facade closes too.
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT_LIMIT, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the tunnel stayed open after the client closed");
    // Ordinary requests to the same backend still go through hyper's pool.
    assert_eq!(status_of(&facade, "/orders/1").await, 200);
}

#[tokio::test]
async fn early_hints_from_an_https_backend_reach_the_client_before_the_answer() {
    let pki = Pki::new();
    let cert = pki.issue("upstream", &["localhost"]);
    let (addr, release) = spawn_hinting_tls_upstream(pki.server_config(&cert, &[b"http/1.1"], false)).await;
    let backend = format!(
        "urls = [\"https://localhost:{}\"]\nca_file = {}\n",
        addr.port(),
        path(&pki.ca_file)
    );
    let (_store, facade) = facade_for(&backend, "").await;
    let mut client = TcpStream::connect(facade.proxy).await.unwrap();
    client
        .write_all(b"GET /page HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    // The backend holds its final answer until the hint has arrived here.
    let (hints, rest) = tokio::time::timeout(WAIT_LIMIT, read_response(&mut client))
        .await
        .expect("the 103 waited for the final answer");
    assert_eq!(hints.status, 103, "{hints:?}");
    assert_eq!(hints.header("link"), Some("</app.css>; rel=preload"));
    release.notify_one();
    let (answer, _) = read_response_after(&mut client, rest).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, b"final");
}

#[tokio::test]
async fn an_upgrade_to_an_untrusted_https_backend_is_a_named_502() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "secure", &["localhost"], &[b"http/1.1"], false).await;
    let other = Pki::new();
    let backend = https_backend("localhost", &upstream, &other);
    let (_store, facade) = facade_for(&backend, "").await;
    let (_stream, answer, _) = ask_upgrade(&facade).await;
    assert_eq!(answer.status, 502, "{answer:?}");
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("TLS with backend `legacy` failed"), "{error}");
    assert_one_tls_error(&facade).await;
}

#[tokio::test]
async fn an_upgrade_to_an_http2_backend_is_refused_saying_why() {
    let pki = Pki::new();
    let upstream = secure_upstream(&pki, "secure", &["localhost"], &[b"h2"], false).await;
    let backend = format!(
        "{}protocol = \"h2\"\n",
        https_backend("localhost", &upstream, &pki)
    );
    let (_store, facade) = facade_for(&backend, "").await;
    let (_stream, answer, _) = ask_upgrade(&facade).await;
    assert_eq!(answer.status, 502, "{answer:?}");
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("speaks HTTP/2"), "{error}");
    assert!(error.contains("does not forward upgrades"), "{error}");
    assert!(
        upstream.handshakes.lock().unwrap().is_empty(),
        "nothing was sent upstream"
    );
}
