//! `strict_transport_security`: every answer over TLS carries the
//! configured `Strict-Transport-Security`, over HTTP/1.1 and HTTP/2, unless
//! its backend sent its own; answers over plain HTTP never do (RFC 6797
//! §7.2); and the value is checked at load.

use std::path::Path;

use hyper::StatusCode;

use crate::helpers::tls::{get, https_request, Pki};
use crate::tls::TlsFront;

const POLICY: &str = "max-age=31536000; includeSubDomains";

#[tokio::test]
async fn answers_over_tls_carry_the_policy_and_a_backends_own_stands() {
    let extra = format!("listen = \"127.0.0.1:0\"\nstrict_transport_security = \"{POLICY}\"");
    let front = TlsFront::start(&extra).await;
    let (pki, facade, tls) = (&front.pki, &front.facade, front.tls());

    for alpn in [&[&b"http/1.1"[..]][..], &[b"h2"]] {
        // The status, and every `Strict-Transport-Security` of the answer
        // to a GET of `target` over a new connection offering `alpn`.
        let policies = async |target: &str| {
            let seen = https_request(
                tls,
                "shop.test",
                pki.client_config(alpn),
                get(target, "shop.test"),
            )
            .await
            .unwrap();
            let values = seen
                .headers
                .get_all("strict-transport-security")
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .collect::<Vec<_>>();
            (seen.status, values, seen.version)
        };
        let (status, values, version) = policies("/orders").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(values, [POLICY], "{version:?}");
        // The backend's own policy is the application's: it stands alone.
        let (_, values, version) = policies("/orders?hsts=1").await;
        assert_eq!(values, ["max-age=60"], "{version:?}");
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
