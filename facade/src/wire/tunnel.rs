//! The byte pipe of a protocol upgrade (WebSocket and the like): once the
//! upstream has answered `101 Switching Protocols` and the client has its
//! answer, the two connections are joined byte for byte until either side
//! closes.

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Joins the client's connection, once hyper has switched it (`client`),
/// to the upstream's socket and the bytes the upstream sent right after its
/// `101` (`upstream`), on a task of its own: the answer goes out while the
/// tunnel waits for the switch. `upstream` is `None` when the upstream's
/// socket was already gone; the client's side is then dropped.
pub(crate) fn spawn(client: OnUpgrade, upstream: Option<(TcpStream, Bytes)>, request_id: String) {
    tokio::spawn(async move {
        let Some((mut upstream, early)) = upstream else {
            tracing::warn!(%request_id, "protocol upgrade failed: the upstream connection is gone");
            return;
        };
        match client.await {
            Ok(client) => {
                let mut client = TokioIo::new(client);
                // Bytes the upstream sent right after its 101 go first.
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
            Err(error) => {
                tracing::warn!(%request_id, %error, "protocol upgrade failed")
            }
        }
    });
}
