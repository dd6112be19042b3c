//! Mutual TLS on the facade's listener (`client_ca_file`): only clients
//! whose certificate the configured authorities issued are served, over
//! HTTP/1.1 and HTTP/2 alike; the others are refused in the handshake and
//! counted, and the file is checked at load.

use std::path::Path;
use std::time::Duration;

use hyper::{StatusCode, Version};

use crate::helpers::tls::{get, https_request, Issued, Pki};
use crate::helpers::{
    eventually, metric_value, spawn_upstream, sqlite_store, start_facade, TestFacade, WAIT_LIMIT,
};

/// `[facade]` with a TLS listener serving `served` that asks clients for a
/// certificate issued by the CA in `client_ca`, in front of `upstream`.
fn mutual_config(upstream: std::net::SocketAddr, served: &Issued, client_ca: &Path) -> String {
    format!(
        "[facade]\ndefault_backend = \"legacy\"\naccess_log = false\ntls_listen = \"127.0.0.1:0\"\nclient_ca_file = {:?}\n\n\
         [[facade.certificates]]\ncert = {:?}\nkey = {:?}\n\n[backends.legacy]\nurls = [\"http://{upstream}\"]\n",
        client_ca.display().to_string(),
        served.cert.display().to_string(),
        served.key.display().to_string(),
    )
}

/// Client handshakes the facade refused for their certificate.
async fn refused(facade: &TestFacade) -> f64 {
    metric_value(
        &facade.metrics().await,
        "strangler_facade_tls_handshake_failures_total",
        &[("reason", "client_certificate")],
    )
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_configured_authority_are_served() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let member = pki.issue("member", &["client.shop.test"]);
    let outsiders = Pki::new();
    let outsider = outsiders.issue("outsider", &["client.shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(&mutual_config(upstream.addr, &shop, &pki.ca_file), store.url()).await;
    let tls = facade.tls.unwrap();

    for alpn in [&[&b"http/1.1"[..]][..], &[b"h2"]] {
        let seen = https_request(
            tls,
            "shop.test",
            pki.client_config_with(&member, alpn),
            get("/orders", "shop.test"),
        )
        .await
        .unwrap();
        assert_eq!(seen.status, StatusCode::OK);
        let expected = if alpn == [b"h2"] {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        assert_eq!(seen.version, expected);
    }
    assert_eq!(refused(&facade).await, 0.0);

    // Without a certificate, and with one from another authority: refused
    // in the handshake (with TLS 1.3 the client learns it on its first
    // read), nothing proxied, and each counted.
    let hits = upstream.hits();
    let without = https_request(
        tls,
        "shop.test",
        pki.client_config(&[b"http/1.1"]),
        get("/", "shop.test"),
    )
    .await;
    assert!(
        without.is_err(),
        "a client without a certificate was served: {without:?}"
    );
    // Trusting the facade's CA, presenting a certificate another CA issued.
    let foreign = https_request(
        tls,
        "shop.test",
        pki.client_config_with(&outsider, &[b"http/1.1"]),
        get("/", "shop.test"),
    )
    .await;
    assert!(
        foreign.is_err(),
        "a certificate from another CA was accepted: {foreign:?}"
    );
    assert_eq!(upstream.hits(), hits, "a refused client reached the backend");
    eventually(
        "both refusals to be counted",
        WAIT_LIMIT,
        Duration::from_millis(20),
        async || match refused(&facade).await {
            2.0 => Ok(()),
            counted => Err(format!("{counted} counted")),
        },
    )
    .await;
}

#[test]
fn an_unusable_client_ca_file_stops_the_load_naming_the_file_and_the_line() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let parse = |text: &str| {
        facade::config::FacadeConfig::parse(Path::new("/etc/strangler/strangler.toml"), text)
            .map_err(|e| e.to_string())
    };
    let upstream: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert!(parse(&mutual_config(upstream, &shop, &pki.ca_file)).is_ok());

    let missing = pki.dir.path().join("missing-ca.pem");
    let error = parse(&mutual_config(upstream, &shop, &missing)).unwrap_err();
    assert!(
        error.contains("strangler.toml:5") && error.contains("missing-ca.pem"),
        "{error}"
    );

    let empty = pki.dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "").unwrap();
    let error = parse(&mutual_config(upstream, &shop, &empty)).unwrap_err();
    assert!(
        error.contains("strangler.toml:5")
            && error.contains("no usable CA certificate")
            && error.contains("clients"),
        "{error}"
    );

    let error = parse(&format!(
        "[facade]\nclient_ca_file = {:?}\n\n[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n",
        pki.ca_file.display().to_string()
    ))
    .unwrap_err();
    assert!(
        error.contains("strangler.toml:2") && error.contains("needs `tls_listen`"),
        "{error}"
    );
}
