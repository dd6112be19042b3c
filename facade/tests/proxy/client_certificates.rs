//! Mutual TLS on the facade's listener (`client_ca_file`): only clients
//! whose certificate the configured authorities issued are served, over
//! HTTP/1.1 and HTTP/2 alike; the others are refused in the handshake and
//! counted; upstreams learn the verified certificate in
//! `X-Forwarded-Client-Cert` and never a client's own; and the file is
//! checked at load and reloaded when it changes.

use std::path::Path;
use std::time::Duration;

use hyper::{StatusCode, Version};

use hyper_util::rt::TokioIo;
use rustls::HandshakeKind;

use crate::helpers::tls::{connect_tls, get, https_request, Issued, Pki};
use crate::helpers::{
    eventually, metric_value, spawn_upstream, sqlite_store, start_facade, TestFacade, WAIT_LIMIT,
};
use crate::tls_sessions::handshake;

/// `[facade]` with a TLS listener serving `served` that asks clients for a
/// certificate issued by the CA in `client_ca`, in front of `upstream`.
pub(crate) fn mutual_config(upstream: std::net::SocketAddr, served: &Issued, client_ca: &Path) -> String {
    format!(
        "[facade]\ndefault_backend = \"legacy\"\naccess_log = false\ntls_listen = \"127.0.0.1:0\"\nclient_ca_file = {:?}\n\n\
         [[facade.certificates]]\ncert = {:?}\nkey = {:?}\n\n[backends.legacy]\nurls = [\"http://{upstream}\"]\n",
        client_ca.display().to_string(),
        served.cert.display().to_string(),
        served.key.display().to_string(),
    )
}

/// Client handshakes the facade refused for their certificate.
pub(crate) async fn refused(facade: &TestFacade) -> f64 {
    metric_value(
        &facade.metrics().await,
        "strangler_facade_tls_handshake_failures_total",
        &[("reason", "client_certificate")],
    )
}

/// Waits until the facade has counted `expected` client handshakes that
/// failed for `reason`: a client learns of its refusal before the facade
/// has counted it.
pub(crate) async fn handshake_failures_reach(facade: &TestFacade, reason: &str, expected: f64) {
    eventually(
        &format!("{expected} handshake failures counted as {reason}"),
        WAIT_LIMIT,
        Duration::from_millis(20),
        async || match metric_value(
            &facade.metrics().await,
            "strangler_facade_tls_handshake_failures_total",
            &[("reason", reason)],
        ) {
            counted if counted == expected => Ok(()),
            counted => Err(format!("{counted} counted")),
        },
    )
    .await;
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
    handshake_failures_reach(&facade, "client_certificate", 2.0).await;
}

/// The `x-forwarded-client-cert` values an echoing upstream received.
fn forwarded_client_cert(echoed: &serde_json::Value) -> Vec<String> {
    echoed["headers"]["x-forwarded-client-cert"]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn upstreams_learn_the_verified_client_certificate_and_never_a_forged_one() {
    use sha2::Digest;
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let member = pki.issue("member", &["client.shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(&mutual_config(upstream.addr, &shop, &pki.ca_file), store.url()).await;
    let hash: String = sha2::Sha256::digest(&member.der)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();

    for alpn in [&[&b"http/1.1"[..]][..], &[b"h2"]] {
        let mut forged = get("/orders", "shop.test");
        forged.headers_mut().insert(
            "x-forwarded-client-cert",
            "Hash=forged;Subject=\"CN=admin\"".parse().unwrap(),
        );
        let seen = https_request(
            facade.tls.unwrap(),
            "shop.test",
            pki.client_config_with(&member, alpn),
            forged,
        )
        .await
        .unwrap();
        assert_eq!(seen.status, StatusCode::OK);
        let values = forwarded_client_cert(&seen.json());
        assert_eq!(values.len(), 1, "{values:?}");
        assert!(
            values[0].starts_with(&format!("Hash={hash};Subject=\"")),
            "{values:?}"
        );
        assert!(values[0].contains("CN="), "{values:?}");
    }

    // The plain listener beside it proves nothing: a claimed identity is
    // removed, not passed on.
    let plain = facade
        .client
        .get(facade.url("/orders"))
        .header("x-forwarded-client-cert", "Hash=forged")
        .send()
        .await
        .unwrap();
    let echoed: serde_json::Value = plain.json().await.unwrap();
    assert!(forwarded_client_cert(&echoed).is_empty(), "{echoed}");
}

/// One request on a new TLS connection presenting `identity`, trusting
/// `pki` for the facade's certificate.
pub(crate) async fn served_to(
    tls: std::net::SocketAddr,
    pki: &Pki,
    identity: &Issued,
) -> Result<StatusCode, String> {
    let config = pki.client_config_with(identity, &[b"http/1.1"]);
    https_request(tls, "shop.test", config, get("/", "shop.test"))
        .await
        .map(|seen| seen.status)
}

#[tokio::test]
async fn the_client_authorities_reload_when_their_file_changes_and_a_broken_bundle_keeps_them() {
    let before = Pki::new();
    let shop = before.issue("shop", &["shop.test"]);
    let member = before.issue("member", &["client.shop.test"]);
    let after = Pki::new();
    let newcomer = after.issue("newcomer", &["client.shop.test"]);
    let bundle = before.dir.path().join("clients.pem");
    std::fs::copy(&before.ca_file, &bundle).unwrap();
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(&mutual_config(upstream.addr, &shop, &bundle), store.url()).await;
    let tls = facade.tls.unwrap();
    assert_eq!(served_to(tls, &before, &member).await, Ok(StatusCode::OK));
    assert!(served_to(tls, &before, &newcomer).await.is_err());
    // The member's kept-alive connection, verified before the rotation.
    let kept = connect_tls(
        tls,
        "shop.test",
        before.client_config_with(&member, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(kept))
        .await
        .unwrap();
    tokio::spawn(connection);
    // A member holding a session ticket from before the rotation.
    let resuming = before.client_config_with(&member, &[b"http/1.1"]);
    assert_eq!(handshake(tls, &resuming).await, Ok(HandshakeKind::Full));
    assert_eq!(handshake(tls, &resuming).await, Ok(HandshakeKind::Resumed));

    // The authorities rotate: the newcomer's CA replaces the member's.
    std::fs::copy(&after.ca_file, &bundle).unwrap();
    eventually(
        "a client of the new authority to be served",
        WAIT_LIMIT,
        Duration::from_millis(50),
        async || served_to(tls, &before, &newcomer).await.map(|_| ()),
    )
    .await;
    let refused = served_to(tls, &before, &member).await;
    assert!(
        refused.is_err(),
        "a client of the removed authority was served on a new connection: {refused:?}"
    );
    // Nor can it resume its session to skip the new authorities' check.
    let resumed = handshake(tls, &resuming).await;
    assert!(
        resumed.is_err(),
        "a session from before the rotation resumed: {resumed:?}"
    );
    // The connection the old authority verified is not cut.
    let answer = sender.send_request(get("/kept", "shop.test")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    // A bundle that is not one changes nothing, and the failure is counted.
    let failed = || async {
        metric_value(
            &facade.metrics().await,
            "strangler_facade_tls_certificate_reloads_total",
            &[("outcome", "failed")],
        )
    };
    assert_eq!(failed().await, 0.0);
    std::fs::write(&bundle, "not a certificate\n").unwrap();
    eventually(
        "the broken bundle's reload to fail",
        WAIT_LIMIT,
        Duration::from_millis(50),
        async || match failed().await {
            0.0 => Err("not yet tried".to_owned()),
            _ => Ok(()),
        },
    )
    .await;
    assert_eq!(served_to(tls, &before, &newcomer).await, Ok(StatusCode::OK));
    assert!(served_to(tls, &before, &member).await.is_err());
}

#[tokio::test]
async fn without_client_ca_file_the_header_is_not_the_facades_and_passes_as_sent() {
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(
        &format!("[facade]\ndefault_backend = \"legacy\"\naccess_log = false\n\n[backends.legacy]\nurls = [\"http://{}\"]\n", upstream.addr),
        store.url(),
    )
    .await;
    let response = facade
        .client
        .get(facade.url("/orders"))
        .header("x-forwarded-client-cert", "Hash=from-a-proxy-in-front")
        .send()
        .await
        .unwrap();
    let echoed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(forwarded_client_cert(&echoed), ["Hash=from-a-proxy-in-front"]);
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

#[tokio::test]
async fn with_certificates_optional_an_anonymous_client_is_served_with_no_identity() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let member = pki.issue("member", &["client.shop.test"]);
    let outsiders = Pki::new();
    let outsider = outsiders.issue("outsider", &["client.shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let config = mutual_config(upstream.addr, &shop, &pki.ca_file).replacen(
        "[facade]\n",
        "[facade]\nrequire_client_certificate = false\n",
        1,
    );
    let facade = start_facade(&config, store.url()).await;
    let tls = facade.tls.unwrap();

    for alpn in [&[&b"http/1.1"[..]][..], &[b"h2"]] {
        // Anonymous, claiming an identity: served, and the claim removed.
        let mut forged = get("/orders", "shop.test");
        forged.headers_mut().insert(
            "x-forwarded-client-cert",
            "Hash=forged;Subject=\"CN=admin\"".parse().unwrap(),
        );
        let seen = https_request(tls, "shop.test", pki.client_config(alpn), forged)
            .await
            .unwrap();
        assert_eq!(seen.status, StatusCode::OK);
        assert!(
            forwarded_client_cert(&seen.json()).is_empty(),
            "{:?}",
            seen.json()
        );
        // A member is still named.
        let seen = https_request(
            tls,
            "shop.test",
            pki.client_config_with(&member, alpn),
            get("/orders", "shop.test"),
        )
        .await
        .unwrap();
        assert_eq!(forwarded_client_cert(&seen.json()).len(), 1);
    }
    // A certificate that does not verify is refused, not taken as none.
    let before = upstream.hits();
    assert!(served_to(tls, &pki, &outsider).await.is_err());
    handshake_failures_reach(&facade, "client_certificate", 1.0).await;
    assert_eq!(upstream.hits(), before);
}

#[test]
fn require_client_certificate_without_client_ca_file_stops_the_load() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let text = crate::tls::tls_config(
        "127.0.0.1:1".parse().unwrap(),
        &[&shop],
        "require_client_certificate = false",
    );
    let error = crate::tls::load_error(&text);
    // `tls_config`'s `[facade]` starts on line 2; the extra key is on 6.
    assert!(
        error.contains("strangler.toml:6") && error.contains("needs `client_ca_file`"),
        "{error}"
    );
}
