//! `tls_min_version`: by default the listener accepts TLS 1.2 and 1.3;
//! with `"1.3"` a client that speaks no newer than TLS 1.2 is refused in
//! the handshake and counted as `incompatible`, while TLS 1.3 clients are
//! served; a value the facade does not offer stops the load with its line.

use std::sync::Arc;

use hyper::StatusCode;
use rustls::{ClientConfig, ProtocolVersion};

use crate::client_certificates::handshake_failures_reach;
use crate::helpers::tls::{get, https_request, Issued, Pki};
use crate::tls::{load_error, tls_config, TlsFront};

/// A client trusting `pki` that speaks TLS 1.2 and nothing newer.
fn tls12_only(pki: &Pki) -> Arc<ClientConfig> {
    #[allow(deprecated, reason = "the facade's own provider is ring")]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
    Arc::new(config)
}

/// One request on a new connection with `config`: its status, or why it
/// failed.
async fn served(tls: std::net::SocketAddr, config: Arc<ClientConfig>) -> Result<StatusCode, String> {
    https_request(tls, "shop.test", config, get("/", "shop.test"))
        .await
        .map(|seen| seen.status)
}

/// The version a handshake with `config` settles on.
async fn version(tls: std::net::SocketAddr, config: Arc<ClientConfig>) -> Option<ProtocolVersion> {
    let stream = crate::helpers::tls::connect_tls(tls, "shop.test", config)
        .await
        .ok()?;
    stream.get_ref().1.protocol_version()
}

#[tokio::test]
async fn by_default_tls_1_2_and_1_3_clients_are_served() {
    let front = TlsFront::start("").await;
    let (pki, tls) = (&front.pki, front.tls());
    assert_eq!(served(tls, tls12_only(pki)).await, Ok(StatusCode::OK));
    assert_eq!(
        version(tls, tls12_only(pki)).await,
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        version(tls, pki.client_config(&[])).await,
        Some(ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn with_a_minimum_of_1_3_older_clients_are_refused_and_counted() {
    let front = TlsFront::start("tls_min_version = \"1.3\"").await;
    let (pki, facade, tls) = (&front.pki, &front.facade, front.tls());

    let refused = served(tls, tls12_only(pki)).await;
    assert!(refused.is_err(), "a TLS 1.2 client was served: {refused:?}");
    handshake_failures_reach(facade, "incompatible", 1.0).await;
    assert_eq!(served(tls, pki.client_config(&[b"h2"])).await, Ok(StatusCode::OK));
    assert_eq!(front.upstream.hits(), 1);
}

fn load_error_with(shop: &Issued, extra: &str) -> String {
    load_error(&tls_config("127.0.0.1:1".parse().unwrap(), &[shop], extra))
}

#[test]
fn a_version_the_facade_does_not_offer_stops_the_load_with_its_line() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    // `tls_config`'s `[facade]` starts on line 2; the extra key is on 6.
    for version in ["1.1", "TLSv1.3", "1.4"] {
        let error = load_error_with(&shop, &format!("tls_min_version = \"{version}\""));
        assert!(
            error.contains("strangler.toml:6") && error.contains(version) && error.contains("\"1.3\""),
            "{error}"
        );
    }
    let text = "[facade]\ndefault_backend = \"legacy\"\ntls_min_version = \"1.3\"\n\n[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n";
    let error = load_error(text);
    assert!(
        error.contains("strangler.toml:3") && error.contains("needs `tls_listen`"),
        "{error}"
    );
}
