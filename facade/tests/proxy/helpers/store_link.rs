//! A TCP link between facades and the store's PostgreSQL that a test can
//! cut and restore: cutting it resets every open connection and refuses
//! new ones, as a restarting PostgreSQL does; restoring lets them through
//! again on the same address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use test_harness::DatabaseUrl;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A forwarder in front of a PostgreSQL server.
pub struct StoreLink {
    /// The URL to give the facades: the store's, through the link.
    pub url: DatabaseUrl,
    up: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepting: JoinHandle<()>,
}

impl StoreLink {
    /// Forwards to the server of `store` (a `postgres://` URL on a TCP
    /// address) from a port of its own.
    pub async fn to(store: &DatabaseUrl) -> Self {
        let raw = store.expose();
        let after_scheme = raw.split_once("://").unwrap().1;
        let authority = after_scheme.split('/').next().unwrap();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let server: SocketAddr = tokio::net::lookup_host(host_port).await.unwrap().next().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = listener.local_addr().unwrap();
        let url = DatabaseUrl::parse(&raw.replacen(host_port, &link.to_string(), 1)).unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepting = tokio::spawn({
            let (up, pipes) = (Arc::clone(&up), Arc::clone(&pipes));
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        // Refused: the connection closes at once.
                        continue;
                    }
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(server).await {
                            let mut client = client;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                    pipes.lock().unwrap().push(pipe);
                }
            }
        });
        Self {
            url,
            up,
            pipes,
            accepting,
        }
    }

    /// Resets every connection through the link and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for StoreLink {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}
