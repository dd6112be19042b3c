//! The byte pipe of a protocol upgrade (WebSocket and the like): once the
//! upstream has answered `101 Switching Protocols` and the client has its
//! answer, the two connections are joined byte for byte until either side
//! closes.

use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long hyper's client may take to hand over a connection whose `101`
/// it has already read; it needs no more than its own task's next turn.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The upstream's end of a switched connection.
#[derive(Debug)]
pub(crate) enum UpstreamSide {
    /// The facade's own client's socket (a plain `http://` instance) and
    /// the bytes the upstream sent right after its `101`.
    Socket(TcpStream, Bytes),
    /// hyper's client connection (an `https://` instance), which hyper
    /// hands over once it has read the `101`, with whatever it read past it.
    Hyper(OnUpgrade),
}

/// Joins the client's connection, once hyper has switched it (`client`),
/// to the upstream's (`upstream`), on a task of its own: the answer goes out
/// while the tunnel waits for the switch. `upstream` is `None` when the
/// upstream's socket was already gone; the client's side is then dropped.
pub(crate) fn spawn(client: OnUpgrade, upstream: Option<UpstreamSide>, request_id: String) {
    tokio::spawn(async move {
        match upstream {
            None => tracing::warn!(%request_id, "protocol upgrade failed: the upstream connection is gone"),
            Some(UpstreamSide::Socket(upstream, early)) => join(client, upstream, early, &request_id).await,
            Some(UpstreamSide::Hyper(upstream)) => match tokio::time::timeout(SWITCH_TIMEOUT, upstream).await
            {
                Ok(Ok(upstream)) => join(client, TokioIo::new(upstream), Bytes::new(), &request_id).await,
                Ok(Err(error)) => {
                    tracing::warn!(%request_id, %error, "protocol upgrade failed: the upstream connection did not switch")
                }
                Err(_) => tracing::warn!(
                    %request_id,
                    "protocol upgrade failed: the upstream connection did not switch within {SWITCH_TIMEOUT:?}"
                ),
            },
        }
    });
}

/// Copies both ways between the client, once switched, and `upstream`,
/// `early` (bytes already read from the upstream) first.
async fn join<U>(client: OnUpgrade, mut upstream: U, early: Bytes, request_id: &str)
where
    U: AsyncRead + AsyncWrite + Unpin,
{
    match client.await {
        Ok(client) => {
            let mut client = TokioIo::new(client);
            if !early.is_empty() {
                if let Err(error) = client.write_all(&early).await {
                    tracing::debug!(%request_id, %error, "upgraded connection ended");
                    return;
                }
            }
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%request_id, %error, "upgraded connection ended");
            }
        }
        Err(error) => tracing::warn!(%request_id, %error, "protocol upgrade failed"),
    }
}
