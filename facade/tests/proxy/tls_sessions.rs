//! TLS session resumption on the facade's listener: stateless tickets let
//! any number of returning clients resume, more than a session cache
//! holds.

use std::sync::Arc;

use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, HandshakeKind};

use crate::helpers::tls::{connect_tls, get, send_on};
use crate::tls::TlsFront;

/// Opens a TLS connection with `config`, makes one request on it (which
/// also takes in the session tickets the facade sends after the
/// handshake), and says how the handshake went.
pub(crate) async fn handshake(
    tls: std::net::SocketAddr,
    config: &Arc<ClientConfig>,
) -> Result<HandshakeKind, String> {
    let stream = connect_tls(tls, "shop.test", Arc::clone(config)).await?;
    let kind = stream
        .get_ref()
        .1
        .handshake_kind()
        .ok_or("the handshake did not finish")?;
    let seen = send_on(TokioIo::new(stream), false, get("/", "shop.test")).await?;
    if seen.status != StatusCode::OK {
        return Err(format!("answered {}", seen.status));
    }
    Ok(kind)
}

#[tokio::test]
async fn a_returning_client_resumes_after_more_new_clients_than_a_session_cache_holds() {
    let front = TlsFront::start("").await;
    let (pki, tls) = (&front.pki, front.tls());
    let returning = pki.client_config(&[b"http/1.1"]);
    assert_eq!(handshake(tls, &returning).await, Ok(HandshakeKind::Full));
    assert_eq!(handshake(tls, &returning).await, Ok(HandshakeKind::Resumed));

    // 300 first-time clients: more sessions than rustls's cache of 256
    // keeps, so a session held only there would be gone by now.
    let mut others = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let config = (0..38)
            .map(|_| pki.client_config(&[b"http/1.1"]))
            .collect::<Vec<_>>();
        others.spawn(async move {
            for config in config {
                assert_eq!(handshake(tls, &config).await, Ok(HandshakeKind::Full));
            }
        });
    }
    while let Some(done) = others.join_next().await {
        done.unwrap();
    }

    assert_eq!(handshake(tls, &returning).await, Ok(HandshakeKind::Resumed));
}
