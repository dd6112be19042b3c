//! The proxy listener: accept connections, serve them (plain HTTP/1.1 on
//! the facade's own connection, everything else, HTTP/2 and upgrades
//! included, on hyper's; see [`crate::http1`]), and drain on shutdown.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::http1::{self, HEADER_READ_TIMEOUT};
use crate::proxy::{Peer, ProxyState};
use crate::shutdown::{Phase, Shutdown};

/// Serves the proxy until `stop` is cancelled, then stops accepting and
/// lets in-flight requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    max_header_bytes: usize,
    stop: CancellationToken,
    grace: Duration,
) {
    let mut hyper = auto::Builder::new(TokioExecutor::new());
    hyper
        .http1()
        .max_buf_size(max_header_bytes.max(8192))
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let shared = Arc::new(http1::Shared {
        state,
        max_head: max_header_bytes,
        hyper,
        stop: stop.clone(),
    });
    // Closes idle connections when the drain starts, and every connection
    // still open when the grace period is over.
    let shutdown = Shutdown::new();
    // Every connection holds a sender; when the last is dropped, `recv`
    // returns `None` and the drain is over.
    let (open, mut drained) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let open = open.clone();
                let watch = shutdown.watch();
                tokio::spawn(async move {
                    let mut connection = pin!(http1::serve_connection(stream, Peer::new(peer), shared, &watch));
                    poll_fn(|cx| match watch.poll_phase(cx) {
                        Phase::Halted => Poll::Ready(()),
                        Phase::Running | Phase::Stopping => connection.as_mut().poll(cx),
                    })
                    .await;
                    drop(open);
                });
            }
            () = stop.cancelled() => break,
        }
    }
    drop(listener);
    drop(open);
    shutdown.enter(Phase::Stopping);
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        "facade shutting down: draining in-flight requests"
    );
    tokio::select! {
        _ = drained.recv() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period expired with requests still in flight; closing them"),
    }
    shutdown.enter(Phase::Halted);
}
