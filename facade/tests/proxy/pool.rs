//! Upstream connections: reused while they live, replaced when the upstream
//! closes them while idle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{legacy_only_config, sqlite_store, start_facade};

/// An upstream that answers every request on a connection with a small
/// keep-alive response, closes each connection `idle_close` after its last
/// answer, and counts the connections it accepted.
async fn closing_upstream(idle_close: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                loop {
                    let read = tokio::time::timeout(idle_close, stream.read(&mut buffer)).await;
                    // Idle too long, or the peer went away: close, as
                    // upstreams with a keep-alive timeout do.
                    let Ok(Ok(n)) = read else { return };
                    if n == 0 {
                        return;
                    }
                    let body = "{\"ok\":true}";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn connections_are_reused_and_replaced_after_the_upstream_closes_them() {
    let store = sqlite_store();
    let (upstream, accepted) = closing_upstream(Duration::from_millis(200)).await;
    let facade = start_facade(&legacy_only_config(upstream), store.url()).await;
    let url = format!("http://{}/anything", facade.proxy);

    // Sequential requests share one upstream connection.
    for _ in 0..20 {
        let response = facade.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "{\"ok\":true}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "sequential requests must reuse the connection"
    );

    // The upstream drops the idle connection; the next request still
    // succeeds, on a new connection. (Waiting here is the scenario itself:
    // the upstream's idle timeout has to pass.)
    tokio::time::sleep(Duration::from_millis(600)).await;
    let response = facade.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
