//! The facade's TLS listener: HTTP/1.1 and HTTP/2 by ALPN, certificates by
//! SNI, handshakes bounded in time and counted when they fail, reloads that
//! drop nothing, and the plain listener's redirect to HTTPS.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::{StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::tls::{connect_tls, get, https_request, send_on, Issued, Pki};
use crate::helpers::{
    eventually, metric_value, raw_request, spawn_upgrade_upstream, spawn_upstream, sqlite_store,
    start_facade, wait_until, TestFacade, Upstream, WAIT_LIMIT,
};
use test_harness::TestDatabase;

/// `[facade]` with a TLS listener serving `certificates`, in front of one
/// legacy backend at `upstream`.
pub(crate) fn tls_config(upstream: std::net::SocketAddr, certificates: &[&Issued], extra: &str) -> String {
    let mut text = format!(
        r#"
[facade]
default_backend = "legacy"
access_log = false
tls_listen = "127.0.0.1:0"
{extra}
"#
    );
    for issued in certificates {
        text.push_str(&format!(
            "\n[[facade.certificates]]\ncert = {:?}\nkey = {:?}\n",
            issued.cert.display().to_string(),
            issued.key.display().to_string()
        ));
    }
    text.push_str(&format!("\n[backends.legacy]\nurls = [\"http://{upstream}\"]\n"));
    text
}

/// What most TLS tests start with: a PKI, the facade's certificate for
/// `shop.test` from it, an echoing `legacy` upstream, and a facade with a
/// TLS listener in front of it (`extra` added to `[facade]`) on a fresh
/// store.
pub(crate) struct TlsFront {
    /// Where the certificates come from; clients trust it.
    pub pki: Pki,
    /// The upstream every request goes to.
    pub upstream: Upstream,
    /// The facade.
    pub facade: TestFacade,
    _store: TestDatabase,
}

impl TlsFront {
    /// Starts it all.
    pub(crate) async fn start(extra: &str) -> Self {
        let pki = Pki::new();
        let shop = pki.issue("shop", &["shop.test"]);
        let upstream = spawn_upstream("legacy").await;
        let store = sqlite_store();
        let facade = start_facade(&tls_config(upstream.addr, &[&shop], extra), store.url()).await;
        Self {
            pki,
            upstream,
            facade,
            _store: store,
        }
    }

    /// The TLS listener's address.
    pub(crate) fn tls(&self) -> std::net::SocketAddr {
        self.facade.tls.expect("the facade has a TLS listener")
    }
}

/// The error loading `text` as `/etc/strangler/strangler.toml` gives.
pub(crate) fn load_error(text: &str) -> String {
    parse(text).map(|_| ()).unwrap_err()
}

async fn metrics(facade: &TestFacade) -> String {
    facade.metrics().await
}

#[tokio::test]
async fn serves_http1_and_http2_over_tls_with_forwarded_proto_https() {
    let front = TlsFront::start("").await;
    let (pki, facade, tls) = (&front.pki, &front.facade, front.tls());

    let http1 = https_request(
        tls,
        "shop.test",
        pki.client_config(&[b"http/1.1"]),
        get("/items?x=1", "shop.test"),
    )
    .await
    .unwrap();
    assert_eq!(http1.status, StatusCode::OK);
    assert_eq!(http1.version, Version::HTTP_11);
    let echoed = http1.json();
    assert_eq!(echoed["path"], "/items");
    assert_eq!(echoed["headers"]["x-forwarded-proto"][0], "https");
    assert!(http1.headers.contains_key("x-request-id"), "{:?}", http1.headers);

    let http2 = https_request(
        tls,
        "shop.test",
        pki.client_config(&[b"h2", b"http/1.1"]),
        hyper::Request::get("https://shop.test/h2")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(http2.status, StatusCode::OK);
    assert_eq!(http2.version, Version::HTTP_2, "ALPN h2 gives HTTP/2");
    let echoed = http2.json();
    assert_eq!(echoed["path"], "/h2");
    assert_eq!(echoed["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(
        echoed["headers"]["host"][0], "shop.test",
        "the :authority becomes Host upstream"
    );
    // The plain listener is still there beside the TLS one.
    let plain = facade.client.get(facade.url("/plain")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
}

#[tokio::test]
async fn chooses_the_certificate_by_sni_and_serves_the_first_for_other_names() {
    let pki = Pki::new();
    let first = pki.issue("first", &["first.test"]);
    let second = pki.issue("second", &["second.test", "*.wild.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(&tls_config(upstream.addr, &[&first, &second], ""), store.url()).await;
    let tls = facade.tls.unwrap();
    let config = pki.client_config(&[b"http/1.1"]);

    let seen = https_request(tls, "second.test", config.clone(), get("/", "second.test"))
        .await
        .unwrap();
    assert_eq!(seen.peer_certificate, second.der);
    let seen = https_request(tls, "api.wild.test", config.clone(), get("/", "api.wild.test"))
        .await
        .unwrap();
    assert_eq!(
        seen.peer_certificate, second.der,
        "a wildcard name one label down"
    );
    let seen = https_request(tls, "first.test", config.clone(), get("/", "first.test"))
        .await
        .unwrap();
    assert_eq!(seen.peer_certificate, first.der);

    // A name no certificate covers gets the first one, which the client
    // then refuses: the handshake fails on the client's side, with an
    // alert the facade counts.
    let before = metric_value(
        &metrics(&facade).await,
        "strangler_facade_tls_handshake_failures_total",
        &[("reason", "alert")],
    );
    let wrong = https_request(tls, "unknown.test", config, get("/", "unknown.test")).await;
    let error = wrong.unwrap_err();
    assert!(
        error.contains("not valid for name") || error.contains("NotValidForName"),
        "{error}"
    );
    eventually(
        "the refused handshake to be counted",
        WAIT_LIMIT,
        Duration::from_millis(20),
        async || {
            let after = metric_value(
                &metrics(&facade).await,
                "strangler_facade_tls_handshake_failures_total",
                &[("reason", "alert")],
            );
            if after > before {
                Ok(())
            } else {
                Err(format!("still {after}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_and_blocks_no_one() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(
        &tls_config(upstream.addr, &[&shop], "tls_handshake_timeout_ms = 300"),
        store.url(),
    )
    .await;
    let tls = facade.tls.unwrap();

    // Opens TCP and says nothing.
    let mut silent = tokio::net::TcpStream::connect(tls).await.unwrap();
    // Meanwhile others are served.
    let served = https_request(
        tls,
        "shop.test",
        pki.client_config(&[b"http/1.1"]),
        get("/", "shop.test"),
    )
    .await
    .unwrap();
    assert_eq!(served.status, StatusCode::OK);
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was not closed: {read:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Plain HTTP sent to the TLS port is a failed handshake too.
    let mut confused = tokio::net::TcpStream::connect(tls).await.unwrap();
    confused
        .write_all(b"GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), confused.read_to_end(&mut rest)).await;

    eventually(
        "both failures to be counted",
        WAIT_LIMIT,
        Duration::from_millis(20),
        async || {
            let text = metrics(&facade).await;
            let timeouts = metric_value(
                &text,
                "strangler_facade_tls_handshake_failures_total",
                &[("reason", "timeout")],
            );
            let all = metric_value(&text, "strangler_facade_tls_handshake_failures_total", &[]);
            if timeouts >= 1.0 && all >= 2.0 {
                Ok(())
            } else {
                Err(format!("timeouts {timeouts}, all {all}"))
            }
        },
    )
    .await;
    // And the listener still serves.
    let again = https_request(
        tls,
        "shop.test",
        pki.client_config(&[b"h2"]),
        get("/", "shop.test"),
    )
    .await
    .unwrap();
    assert_eq!(again.status, StatusCode::OK);
}

/// Replaces the files of `live` with those of `next`.
fn overwrite(live: &Issued, next: &Issued) {
    // The key first and the certificate last, as a careless renewal might:
    // the reload in between fails and keeps the old pair.
    std::fs::copy(&next.key, &live.key).unwrap();
    std::fs::copy(&next.cert, &live.cert).unwrap();
}

#[tokio::test]
async fn certificates_reload_when_their_files_change_without_dropping_a_connection() {
    let pki = Pki::new();
    let live = pki.issue("live", &["shop.test"]);
    let renewed = pki.issue("renewed", &["shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(&tls_config(upstream.addr, &[&live], ""), store.url()).await;
    let tls = facade.tls.unwrap();
    let config = pki.client_config(&[b"http/1.1"]);

    // A kept-alive connection opened before the reload, and clients opening
    // new connections all along.
    let kept = connect_tls(tls, "shop.test", config.clone()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(kept))
        .await
        .unwrap();
    tokio::spawn(connection);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, config) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            config.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match https_request(tls, "shop.test", config.clone(), get("/", "shop.test")).await {
                    Ok(seen) if seen.status == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    overwrite(&live, &renewed);
    eventually(
        "new connections to get the renewed certificate",
        WAIT_LIMIT,
        Duration::from_millis(50),
        async || {
            // A fresh client, which cannot resume a session made with the old
            // certificate.
            let fresh = pki.client_config(&[b"http/1.1"]);
            let seen = https_request(tls, "shop.test", fresh, get("/", "shop.test")).await?;
            if seen.peer_certificate == renewed.der {
                Ok(())
            } else {
                Err("still the old certificate".to_owned())
            }
        },
    )
    .await;
    // The connection opened before the reload still carries requests.
    for _ in 0..3 {
        let answer = sender.send_request(get("/kept", "shop.test")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        http_body_util::BodyExt::collect(answer.into_body())
            .await
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a request failed during the reload"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    let text = metrics(&facade).await;
    assert!(
        metric_value(
            &text,
            "strangler_facade_tls_certificate_reloads_total",
            &[("outcome", "ok")]
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn the_plain_listener_can_redirect_to_https() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(
        &tls_config(
            upstream.addr,
            &[&shop],
            "redirect_to_https = true\nlisten = \"127.0.0.1:0\"",
        ),
        store.url(),
    )
    .await;
    let tls_port = facade.tls.unwrap().port();
    let answer = raw_request(
        facade.proxy,
        b"POST /orders?x=1 HTTP/1.1\r\nhost: shop.test:8080\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 308, "{answer:?}");
    assert_eq!(
        answer.header("location"),
        Some(format!("https://shop.test:{tls_port}/orders?x=1").as_str())
    );
    assert_eq!(upstream.hits(), 0, "a redirect proxies nothing");
}

#[tokio::test]
async fn websocket_upgrades_work_over_tls() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let upstream = spawn_upgrade_upstream().await;
    let store = sqlite_store();
    let facade = start_facade(&tls_config(upstream.addr, &[&shop], ""), store.url()).await;
    let mut tls = connect_tls(
        facade.tls.unwrap(),
        "shop.test",
        pki.client_config(&[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /ws HTTP/1.1\r\nhost: shop.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            tls.read(&mut byte).await.unwrap(),
            1,
            "closed early: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut hello = [0u8; 20];
    tokio::time::timeout(WAIT_LIMIT, tls.read_exact(&mut hello))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&hello, b"hello from upstream\n");
    tls.write_all(b"ping over tls").await.unwrap();
    let mut echoed = [0u8; 13];
    tokio::time::timeout(WAIT_LIMIT, tls.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping over tls");
}

#[tokio::test]
async fn http2_prior_knowledge_on_the_plain_listener_still_works() {
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(&crate::helpers::legacy_only_config(upstream.addr), store.url()).await;
    let tcp = tokio::net::TcpStream::connect(facade.proxy).await.unwrap();
    let request = hyper::Request::get(format!("http://{}/h2c", facade.proxy))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let seen = send_on(hyper_util::rt::TokioIo::new(tcp), true, request)
        .await
        .unwrap();
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.json()["headers"]["x-forwarded-proto"][0], "http");
}

fn parse(text: &str) -> Result<facade::config::FacadeConfig, String> {
    facade::config::FacadeConfig::parse(Path::new("/etc/strangler/strangler.toml"), text)
        .map_err(|e| e.to_string())
}

#[test]
fn unusable_certificates_stop_the_load_naming_the_file_and_the_line() {
    let pki = Pki::new();
    let good = pki.issue("good", &["shop.test"]);
    let other = pki.issue("other", &["other.test"]);
    let mut expired = rcgen::CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = pki.sign("expired", expired);
    let config = |cert: &Path, key: &Path| {
        format!(
            "[facade]\ntls_listen = \"127.0.0.1:0\"\n\n[[facade.certificates]]\ncert = {:?}\nkey = {:?}\n\n[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    assert!(parse(&config(&good.cert, &good.key)).is_ok());

    let missing = pki.dir.path().join("missing.pem");
    let error = parse(&config(&missing, &good.key)).unwrap_err();
    assert!(
        error.contains("strangler.toml:4") && error.contains("missing.pem"),
        "{error}"
    );

    let error = parse(&config(&good.cert, &other.key)).unwrap_err();
    assert!(
        error.contains("strangler.toml:4") && error.contains("other.key") && error.contains("does not match"),
        "{error}"
    );

    let error = parse(&config(&expired.cert, &expired.key)).unwrap_err();
    assert!(
        error.contains("strangler.toml:4") && error.contains("expired.pem is expired"),
        "{error}"
    );

    let error = parse("[facade]\ntls_listen = \"127.0.0.1:0\"\n").unwrap_err();
    assert!(
        error.contains("strangler.toml:2") && error.contains("at least one certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn a_request_in_flight_over_tls_finishes_during_the_drain() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let mut facade = start_facade(
        &tls_config(upstream.addr, &[&shop], "grace_seconds = 5"),
        store.url(),
    )
    .await;
    let tls = facade.tls.unwrap();
    let config = pki.client_config(&[b"h2"]);
    // A slow request over HTTP/2 on TLS, in flight when the drain starts.
    let slow = tokio::spawn(https_request(
        tls,
        "shop.test",
        config.clone(),
        get("/slow?sleep_ms=700", "shop.test"),
    ));
    wait_until("the slow request to reach the upstream", || upstream.hits() == 1).await;
    let running = facade.stop();
    let answer = slow.await.unwrap().unwrap();
    assert_eq!(answer.status, StatusCode::OK, "the request in flight was cut");
    tokio::time::timeout(WAIT_LIMIT, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        https_request(tls, "shop.test", config, get("/", "shop.test"))
            .await
            .is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn over_tls_and_http2_a_dead_service_is_covered_by_legacy() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let legacy = spawn_upstream("legacy").await;
    let dead = crate::helpers::closed_address().await;
    let store = sqlite_store();
    let text = format!(
        r#"
[facade]
access_log = false
tls_listen = "127.0.0.1:0"

[[facade.certificates]]
cert = {:?}
key = {:?}

[backends.legacy]
urls = ["http://{}"]

[backends.service]
urls = ["http://{dead}"]

[capabilities.orders]
legacy = "legacy"
service = "service"
initial = "canary 100%"

[capabilities.orders.rollback]
enabled = false

[[routes]]
capability = "orders"
path = "/orders/*"
"#,
        shop.cert.display().to_string(),
        shop.key.display().to_string(),
        legacy.addr
    );
    let facade = start_facade(&text, store.url()).await;
    let seen = https_request(
        facade.tls.unwrap(),
        "shop.test",
        pki.client_config(&[b"h2"]),
        get("/orders/1", "shop.test"),
    )
    .await
    .unwrap();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.headers["x-strangler-served-by"], "legacy");
    assert_eq!(seen.headers["x-strangler-fallback"], "connect");
    let text = metrics(&facade).await;
    assert!(
        metric_value(
            &text,
            "strangler_facade_fallbacks_total",
            &[("reason", "connect")]
        ) >= 1.0,
        "{text}"
    );
}
