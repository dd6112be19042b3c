//! Session tickets sealed with keys the replicas share
//! (`session_ticket_key_files`): a client resumes on a replica other than
//! the one it first met; a rotation that lists the new key first keeps
//! every session; new keys and broken ones reload as certificates do; a
//! change of client authorities ends the sessions begun under the old
//! ones; and bad key files stop the load naming the file and the line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::StatusCode;
use rustls::HandshakeKind;

use crate::client_certificates::{mutual_config, served_to};
use crate::helpers::tls::{Issued, Pki};
use crate::helpers::{
    eventually, metric_value, spawn_upstream, sqlite_store, start_facade, TestFacade, WAIT_LIMIT,
};
use crate::tls::{load_error, tls_config};
use crate::tls_sessions::handshake;

/// Writes an 80-byte key, its name and secret made of `byte`.
fn write_key(path: &Path, byte: u8) {
    let mut key = [byte; 80];
    key[16] = byte.wrapping_mul(3);
    std::fs::write(path, key).unwrap();
}

fn key_files(files: &[&Path]) -> String {
    let quoted = files
        .iter()
        .map(|file| format!("{:?}", file.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    format!("session_ticket_key_files = [{quoted}]")
}

/// A replica serving `shop` in front of `upstream`, with `extra` in
/// `[facade]`.
async fn replica(upstream: std::net::SocketAddr, shop: &Issued, extra: &str) -> TestFacade {
    let store = sqlite_store();
    start_facade(&tls_config(upstream, &[shop], extra), store.url()).await
}

/// Reloads of the facade's TLS files that ended with `outcome`.
async fn reloads(facade: &TestFacade, outcome: &str) -> f64 {
    metric_value(
        &facade.metrics().await,
        "strangler_facade_tls_certificate_reloads_total",
        &[("outcome", outcome)],
    )
}

/// Waits until the facade has counted more reloads with `outcome` than
/// `before`.
async fn reloaded(facade: &TestFacade, outcome: &str, before: f64) {
    eventually(
        &format!("a reload ending `{outcome}`"),
        WAIT_LIMIT,
        Duration::from_millis(50),
        async || match reloads(facade, outcome).await {
            now if now > before => Ok(()),
            now => Err(format!("{now} reloads ended `{outcome}`")),
        },
    )
    .await;
}

#[tokio::test]
async fn a_client_resumes_on_another_replica_that_shares_the_ticket_key() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let key = pki.dir.path().join("ticket.key");
    write_key(&key, 1);
    let upstream = spawn_upstream("legacy").await;
    let first = replica(upstream.addr, &shop, &key_files(&[&key])).await;
    let second = replica(upstream.addr, &shop, &key_files(&[&key])).await;
    let apart = replica(upstream.addr, &shop, "").await;

    let client = pki.client_config(&[b"http/1.1"]);
    assert_eq!(
        handshake(first.tls.unwrap(), &client).await,
        Ok(HandshakeKind::Full)
    );
    assert_eq!(
        handshake(second.tls.unwrap(), &client).await,
        Ok(HandshakeKind::Resumed)
    );
    assert_eq!(
        handshake(first.tls.unwrap(), &client).await,
        Ok(HandshakeKind::Resumed)
    );
    // A replica with keys of its own cannot open the others' tickets: a
    // full handshake, served all the same.
    assert_eq!(
        handshake(apart.tls.unwrap(), &client).await,
        Ok(HandshakeKind::Full)
    );

    // Over HTTP/2 as well.
    let h2 = pki.client_config(&[b"h2"]);
    assert_eq!(handshake(second.tls.unwrap(), &h2).await, Ok(HandshakeKind::Full));
    assert_eq!(
        handshake(first.tls.unwrap(), &h2).await,
        Ok(HandshakeKind::Resumed)
    );
}

#[tokio::test]
async fn a_rotation_keeps_sessions_and_a_broken_key_file_changes_nothing() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let dir = pki.dir.path();
    let (current, previous) = (dir.join("current.key"), dir.join("previous.key"));
    write_key(&current, 1);
    write_key(&previous, 2);
    let upstream = spawn_upstream("legacy").await;
    // The rotation's first step on one replica: the new key in front, the
    // old one still listed. The other replica has not rotated yet.
    let rotated_key = dir.join("rotated.key");
    write_key(&rotated_key, 3);
    let rotated = replica(upstream.addr, &shop, &key_files(&[&rotated_key, &current])).await;
    let facade = replica(upstream.addr, &shop, &key_files(&[&current, &previous])).await;
    let tls = facade.tls.unwrap();
    // Holds a ticket sealed with `current.key` until the very end.
    let stale = pki.client_config(&[b"http/1.1"]);
    assert_eq!(handshake(tls, &stale).await, Ok(HandshakeKind::Full));

    // A ticket the unrotated replica sealed opens on the rotated one.
    let client = pki.client_config(&[b"http/1.1"]);
    assert_eq!(handshake(tls, &client).await, Ok(HandshakeKind::Full));
    assert_eq!(
        handshake(rotated.tls.unwrap(), &client).await,
        Ok(HandshakeKind::Resumed)
    );

    // This replica reloads a new first key (its file rewritten) while
    // keeping the one before it: a ticket sealed before still opens, and
    // new ones are sealed with the new key, which another replica holding
    // only that key opens.
    let holder = pki.client_config(&[b"http/1.1"]);
    assert_eq!(handshake(tls, &holder).await, Ok(HandshakeKind::Full));
    let ok = reloads(&facade, "ok").await;
    std::fs::copy(&current, &previous).unwrap();
    write_key(&current, 4);
    reloaded(&facade, "ok", ok).await;
    assert_eq!(handshake(tls, &holder).await, Ok(HandshakeKind::Resumed));
    let only_new = dir.join("only-new.key");
    write_key(&only_new, 4);
    let newcomer = replica(upstream.addr, &shop, &key_files(&[&only_new])).await;
    let fresh = pki.client_config(&[b"http/1.1"]);
    assert_eq!(handshake(tls, &fresh).await, Ok(HandshakeKind::Full));
    assert_eq!(
        handshake(newcomer.tls.unwrap(), &fresh).await,
        Ok(HandshakeKind::Resumed)
    );

    // A key file cut short is refused on reload; the keys in use stay.
    let failed = reloads(&facade, "failed").await;
    std::fs::write(&previous, [9u8; 20]).unwrap();
    reloaded(&facade, "failed", failed).await;
    assert_eq!(handshake(tls, &fresh).await, Ok(HandshakeKind::Resumed));

    // Once the old key is gone, its tickets no longer open: the client
    // makes a full handshake and is served.
    let ok = reloads(&facade, "ok").await;
    write_key(&previous, 5);
    reloaded(&facade, "ok", ok).await;
    assert_eq!(handshake(tls, &stale).await, Ok(HandshakeKind::Full));
}

#[tokio::test]
async fn a_session_begun_under_old_client_authorities_does_not_resume_on_any_replica() {
    let before = Pki::new();
    let shop = before.issue("shop", &["shop.test"]);
    let member = before.issue("member", &["client.shop.test"]);
    let after = Pki::new();
    let newcomer = after.issue("newcomer", &["client.shop.test"]);
    let bundle = before.dir.path().join("clients.pem");
    std::fs::copy(&before.ca_file, &bundle).unwrap();
    let key = before.dir.path().join("ticket.key");
    write_key(&key, 1);
    let upstream = spawn_upstream("legacy").await;
    let config = mutual_config(upstream.addr, &shop, &bundle).replacen(
        "[facade]\n",
        &format!("[facade]\n{}\n", key_files(&[&key])),
        1,
    );
    let (first, second) = {
        let (a, b) = (sqlite_store(), sqlite_store());
        (
            start_facade(&config, a.url()).await,
            start_facade(&config, b.url()).await,
        )
    };
    let (first, second) = (first.tls.unwrap(), second.tls.unwrap());

    let resuming = before.client_config_with(&member, &[b"http/1.1"]);
    assert_eq!(handshake(first, &resuming).await, Ok(HandshakeKind::Full));
    assert_eq!(handshake(second, &resuming).await, Ok(HandshakeKind::Resumed));

    // Both replicas rotate to the newcomer's authority.
    std::fs::copy(&after.ca_file, &bundle).unwrap();
    for tls in [first, second] {
        eventually(
            "a client of the new authority to be served",
            WAIT_LIMIT,
            Duration::from_millis(50),
            async || served_to(tls, &before, &newcomer).await.map(|_| ()),
        )
        .await;
    }
    for tls in [first, second] {
        let resumed = handshake(tls, &resuming).await;
        assert!(
            resumed.is_err(),
            "a session from before the rotation resumed: {resumed:?}"
        );
    }
    // Sessions begun under the new authority resume across replicas again.
    let joined = before.client_config_with(&newcomer, &[b"http/1.1"]);
    assert_eq!(served_to(first, &before, &newcomer).await, Ok(StatusCode::OK));
    assert_eq!(handshake(first, &joined).await, Ok(HandshakeKind::Full));
    assert_eq!(handshake(second, &joined).await, Ok(HandshakeKind::Resumed));
}

/// The load error for `[facade]` with `extra`, which must name
/// `strangler.toml:line` and every one of `words`.
fn refused_at_load(shop: &Issued, extra: &str, line: usize, words: &[&str]) {
    let text = tls_config("127.0.0.1:1".parse().unwrap(), &[shop], extra);
    let error = load_error(&text);
    assert!(error.contains(&format!("strangler.toml:{line}")), "{error}");
    for word in words {
        assert!(error.contains(word), "`{word}` missing from: {error}");
    }
}

#[test]
fn unusable_key_files_stop_the_load_naming_the_file_and_the_line() {
    let pki = Pki::new();
    let shop = pki.issue("shop", &["shop.test"]);
    let dir = pki.dir.path();
    let good: PathBuf = dir.join("good.key");
    write_key(&good, 1);
    let text = tls_config("127.0.0.1:1".parse().unwrap(), &[&shop], &key_files(&[&good]));
    assert!(facade::config::FacadeConfig::parse(Path::new("/etc/strangler/strangler.toml"), &text).is_ok());

    // `[facade]` starts on line 2 of `tls_config`'s text, the extra key on 6.
    let missing = dir.join("missing.key");
    refused_at_load(
        &shop,
        &key_files(&[&good, &missing]),
        6,
        &["missing.key", "cannot read"],
    );
    let short = dir.join("short.key");
    std::fs::write(&short, [1u8; 48]).unwrap();
    refused_at_load(
        &shop,
        &key_files(&[&short]),
        6,
        &["short.key", "48 bytes", "openssl rand 80"],
    );
    let copy = dir.join("copy.key");
    std::fs::copy(&good, &copy).unwrap();
    refused_at_load(
        &shop,
        &key_files(&[&good, &copy]),
        6,
        &["good.key", "copy.key", "same name"],
    );
    refused_at_load(
        &shop,
        "session_ticket_key_files = []",
        6,
        &["empty", "openssl rand 80"],
    );

    // Without a TLS listener there are no tickets to seal.
    let text = format!(
        "[facade]\ndefault_backend = \"legacy\"\n{}\n\n[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n",
        key_files(&[&good])
    );
    let error = load_error(&text);
    assert!(
        error.contains("strangler.toml:3") && error.contains("need `tls_listen`"),
        "{error}"
    );
}
