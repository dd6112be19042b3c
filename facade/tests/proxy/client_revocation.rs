//! Revoked client certificates (`client_crl_file`): a certificate its CA
//! revoked is refused in the handshake and counted; a new list reloads
//! without a restart; and the file is checked at load (missing, holding no
//! list, malformed, expired), with the line.

use std::path::Path;
use std::time::Duration;

use hyper::StatusCode;

use crate::client_certificates::{handshake_failures_reach, mutual_config, served_to};
use crate::helpers::tls::{Issued, Pki};
use crate::helpers::{eventually, metric_value, spawn_upstream, sqlite_store, start_facade, WAIT_LIMIT};

/// [`mutual_config`] with `client_crl_file` set to `crl`.
fn revoking_config(upstream: std::net::SocketAddr, served: &Issued, client_ca: &Path, crl: &Path) -> String {
    mutual_config(upstream, served, client_ca).replacen(
        "client_ca_file",
        &format!(
            "client_crl_file = {:?}\nclient_ca_file",
            crl.display().to_string()
        ),
        1,
    )
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_until_a_new_list_reinstates_it() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let member = pki.issue("member", &["client.shop.test"]);
    let lost = pki.issue("lost", &["laptop.shop.test"]);
    let crl = pki.revocation_list("clients", 1, &[&lost], (2025, 2099));
    let upstream = spawn_upstream("legacy").await;
    let store = sqlite_store();
    let facade = start_facade(
        &revoking_config(upstream.addr, &shop, &pki.ca_file, &crl),
        store.url(),
    )
    .await;
    let tls = facade.tls.unwrap();

    assert_eq!(served_to(tls, &pki, &member).await, Ok(StatusCode::OK));
    let hits = upstream.hits();
    let revoked = served_to(tls, &pki, &lost).await;
    assert!(revoked.is_err(), "a revoked certificate was served: {revoked:?}");
    assert_eq!(upstream.hits(), hits, "a revoked client reached the backend");
    handshake_failures_reach(&facade, "client_certificate", 1.0).await;

    // The CA publishes a list without it (a revocation made in error):
    // the facade picks it up on its own.
    let next = pki.revocation_list("next", 2, &[], (2025, 2099));
    std::fs::copy(&next, &crl).unwrap();
    eventually(
        "the new list to reinstate the certificate",
        WAIT_LIMIT,
        Duration::from_millis(50),
        async || served_to(tls, &pki, &lost).await.map(|_| ()),
    )
    .await;

    // An expired list changes nothing, and the failed reload is counted.
    let stale = pki.revocation_list("stale", 3, &[&member], (2020, 2021));
    std::fs::copy(&stale, &crl).unwrap();
    eventually(
        "the expired list's reload to fail",
        WAIT_LIMIT,
        Duration::from_millis(50),
        async || {
            let failed = metric_value(
                &facade.metrics().await,
                "strangler_facade_tls_certificate_reloads_total",
                &[("outcome", "failed")],
            );
            if failed >= 1.0 {
                Ok(())
            } else {
                Err("not yet tried".to_owned())
            }
        },
    )
    .await;
    assert_eq!(served_to(tls, &pki, &member).await, Ok(StatusCode::OK));
    assert_eq!(served_to(tls, &pki, &lost).await, Ok(StatusCode::OK));
}

#[test]
fn an_unusable_client_crl_file_stops_the_load_naming_the_file_and_the_line() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let upstream: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let parse =
        |text: &str| facade::config::FacadeConfig::parse(Path::new("/etc/strangler/strangler.toml"), text);
    let error_for = |crl: &Path| {
        parse(&revoking_config(upstream, &shop, &pki.ca_file, crl))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let current = pki.revocation_list("current", 1, &[], (2025, 2099));
    assert!(parse(&revoking_config(upstream, &shop, &pki.ca_file, &current)).is_ok());

    // `client_crl_file` is on line 5, before `client_ca_file`.
    let missing = pki.dir.path().join("missing.crl.pem");
    let error = error_for(&missing);
    assert!(
        error.contains("strangler.toml:5") && error.contains("missing.crl.pem"),
        "{error}"
    );

    let error = error_for(&pki.ca_file);
    assert!(
        error.contains("strangler.toml:5") && error.contains("holds no certificate revocation list"),
        "{error}"
    );

    let garbage = pki.dir.path().join("garbage.crl.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let error = error_for(&garbage);
    assert!(
        error.contains("strangler.toml:5") && error.contains("revocation list 1 is not a valid CRL"),
        "{error}"
    );

    let stale = pki.revocation_list("stale", 1, &[], (2020, 2021));
    let error = error_for(&stale);
    assert!(
        error.contains("strangler.toml:5") && error.contains("expired at 2021-01-01"),
        "{error}"
    );

    let error = parse(&format!(
        "[facade]\ntls_listen = \"127.0.0.1:0\"\nclient_crl_file = {:?}\n\n[[facade.certificates]]\ncert = {:?}\nkey = {:?}\n\n[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n",
        current.display().to_string(),
        shop.cert.display().to_string(),
        shop.key.display().to_string(),
    ))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("strangler.toml:3") && error.contains("needs `client_ca_file`"),
        "{error}"
    );
}

#[test]
fn authorities_without_a_list_in_client_crl_file_are_named() {
    let listed = Pki::new();
    let unlisted = Pki::new();
    let shop = listed.issue("shop", &["shop.test"]);
    let bundle = listed.dir.path().join("both-cas.pem");
    let text = std::fs::read_to_string(&listed.ca_file).unwrap()
        + &std::fs::read_to_string(&unlisted.ca_file).unwrap();
    std::fs::write(&bundle, text).unwrap();
    let crl = listed.revocation_list("listed", 1, &[], (2025, 2099));
    let upstream: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let config = facade::config::FacadeConfig::parse(
        Path::new("/etc/strangler/strangler.toml"),
        &revoking_config(upstream, &shop, &bundle, &crl),
    )
    .unwrap();
    let authorities = config.tls.unwrap().client_authorities.unwrap();
    assert_eq!(authorities.crls.len(), 1);
    assert_eq!(authorities.unchecked.len(), 1, "{:?}", authorities.unchecked);
    let (_, unlisted_ca) =
        x509_parser::pem::parse_x509_pem(&std::fs::read(&unlisted.ca_file).unwrap()).unwrap();
    let unlisted_subject = unlisted_ca.parse_x509().unwrap().subject().to_string();
    assert_eq!(authorities.unchecked, [unlisted_subject]);
}
