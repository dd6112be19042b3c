//! `strict_transport_security`: every answer over TLS carries the
//! configured `Strict-Transport-Security`, over HTTP/1.1 and HTTP/2, unless
//! its backend sent its own; answers over plain HTTP never do (RFC 6797
//! §7.2); and the value is checked at load.

use std::path::Path;

use hyper::StatusCode;

use crate::helpers::tls::{get, https_request, Pki};
use crate::helpers::{spawn_upstream, sqlite_store, start_facade};
use crate::tls::tls_config;

const POLICY: &str = "max-age=31536000; includeSubDomains";

#[tokio::test]
async fn answers_over_tls_carry_the_policy_and_a_backends_own_stands() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let extra = format!("listen = \"127.0.0.1:0\"\nstrict_transport_security = \"{POLICY}\"");
    let facade = start_facade(&tls_config(upstream.addr, &[&shop], &extra), store.url()).await;
    let tls = facade.tls.unwrap();

    for alpn in [&[&b"http/1.1"[..]][..], &[b"h2"]] {
        let seen = https_request(
            tls,
            "shop.test",
            pki.client_config(alpn),
            get("/orders", "shop.test"),
        )
        .await
        .unwrap();
        assert_eq!(seen.status, StatusCode::OK);
        assert_eq!(
            seen.headers
                .get_all("strict-transport-security")
                .iter()
                .collect::<Vec<_>>(),
            [POLICY],
            "{:?}",
            seen.version
        );
        // The backend's own policy is the application's: it stands alone.
        let seen = https_request(
            tls,
            "shop.test",
            pki.client_config(alpn),
            get("/orders?hsts=1", "shop.test"),
        )
        .await
        .unwrap();
        assert_eq!(
            seen.headers
                .get_all("strict-transport-security")
                .iter()
                .collect::<Vec<_>>(),
            ["max-age=60"],
            "{:?}",
            seen.version
        );
    }
    let plain = facade.client.get(facade.url("/orders")).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(
        plain.headers().get("strict-transport-security").is_none(),
        "sent over plain HTTP: {:?}",
        plain.headers()
    );
}

#[test]
fn a_policy_browsers_would_misread_stops_the_load_naming_the_line() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let parse = |hsts: &str| {
        let text = format!(
            "[facade]\ntls_listen = \"127.0.0.1:0\"\nstrict_transport_security = {hsts:?}\n\n\
             [[facade.certificates]]\ncert = {:?}\nkey = {:?}\n\n[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n",
            shop.cert.display().to_string(),
            shop.key.display().to_string(),
        );
        facade::config::FacadeConfig::parse(Path::new("/etc/strangler/strangler.toml"), &text)
            .map(|_| ())
            .map_err(|error| error.to_string())
    };
    assert_eq!(parse(POLICY), Ok(()));
    assert_eq!(
        parse("max-age=0"),
        Ok(()),
        "max-age=0 is how a site withdraws its policy"
    );
    assert_eq!(parse("max-age=63072000; includeSubDomains; preload"), Ok(()));
    for (value, problem) in [
        ("includeSubDomains", "max-age is missing"),
        ("max-age=one year", "is not a number of seconds"),
        ("max-age=60; max-age=120", "repeats max-age"),
        (
            "max-age=60; includeSubdomain",
            "unknown directive `includeSubdomain`",
        ),
    ] {
        let error = parse(value).unwrap_err();
        assert!(
            error.contains("strangler.toml:3") && error.contains(problem),
            "{value}: {error}"
        );
    }
    let error = facade::config::FacadeConfig::parse(
        Path::new("/etc/strangler/strangler.toml"),
        "[facade]\nstrict_transport_security = \"max-age=60\"\n\n[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n",
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("strangler.toml:2") && error.contains("needs `tls_listen`"),
        "{error}"
    );
}
