//! The proxy's threads: one single-threaded tokio runtime per thread, each
//! serving the client connections dealt to it to their end, the way nginx
//! runs one event loop per worker process.
//!
//! Why not tokio's shared work-stealing runtime, which the admin API, the
//! health checks and the route watcher still run on: there a connection's
//! task runs on whichever worker polled the reactor, so its state is often
//! cold in that core's cache, one worker wakes the other whenever it finds
//! more than one task ready (a futex and an inter-processor interrupt), and
//! every socket call of a multi-threaded process counts a reference on the
//! file. Measured side by side at 64 connections on two cores, the shared
//! runtime served 0.85x nginx's requests per second and one runtime per
//! thread about nginx's, with a lower p99 (`docs/performance.md`).
//!
//! Why connections are dealt rather than each thread accepting from the
//! listener itself: which thread wins a race to accept is chance, and a
//! thread left with more connections than another stays the bottleneck
//! for as long as they live, since nothing moves a connection once it is
//! served. The listener's task gives each new connection to the thread
//! with the fewest open, so a burst of 64 is split 32 and 32.
//!
//! Invariants:
//! - A client connection runs on the thread it was dealt to, to its end.
//! - An upstream connection is pooled in the shard of the thread that
//!   opened it ([`pool_shard`]), so a proxy thread reuses only connections
//!   registered with its own reactor. Any other thread (a shadow copy sent
//!   from the shared runtime) uses a shard of its own.
//! - A proxy thread's runtime lives until the task given to it ends; what
//!   is still spawned on it then (a WebSocket tunnel) ends with it.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

thread_local! {
    /// This thread's index among the proxy threads; `None` on any other
    /// thread.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A client connection on its way to a proxy thread.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The accepted socket, not yet registered with any reactor.
    pub stream: std::net::TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Counts the connection as open on its thread until dropped.
    pub open: OpenConnection,
    /// Which listener took it, and so how it is served.
    pub kind: ConnectionKind,
}

/// How a client connection is served, by the listener that took it.
#[derive(Debug, Clone)]
pub(crate) enum ConnectionKind {
    /// Plain HTTP: the fast path, handing to hyper what it does not take.
    Plain,
    /// TLS: the handshake on the proxy thread, then hyper (HTTP/1.1 or
    /// HTTP/2 by ALPN).
    Tls(crate::wire::tls::server::TlsAccept),
    /// Plain HTTP answered with a redirect to HTTPS on this port.
    Redirect(u16),
}

/// One connection counted as open on its proxy thread; dropping it counts
/// the connection closed.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connections a proxy thread is given; `recv` returns `None` once
/// the listener has stopped.
pub(crate) type Inbox = mpsc::UnboundedReceiver<Incoming>;

/// The running proxy threads, as the listener's task sees them.
#[derive(Debug)]
pub(crate) struct ProxyThreads {
    lanes: Vec<Lane>,
    /// Where the search for the least busy thread starts, moved on each
    /// time so that ties are spread.
    next: usize,
}

#[derive(Debug)]
struct Lane {
    inbox: mpsc::UnboundedSender<Incoming>,
    open: Arc<AtomicUsize>,
}

/// Starts `count` proxy threads, each running `serve(inbox)` on a runtime
/// of its own and dropping the runtime when it returns. Nothing is started
/// unless every runtime could be made; a thread that cannot be started
/// ends those started before it (their inboxes close).
pub(crate) fn start<F, Fut>(count: usize, serve: F) -> std::io::Result<(ProxyThreads, Vec<JoinHandle<()>>)>
where
    F: Fn(Inbox) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    let runtimes = (0..count.max(1))
        .map(|_| tokio::runtime::Builder::new_current_thread().enable_all().build())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut lanes = Vec::with_capacity(runtimes.len());
    let mut handles = Vec::with_capacity(runtimes.len());
    for (index, runtime) in runtimes.into_iter().enumerate() {
        let (sender, inbox) = mpsc::unbounded_channel();
        let serve = serve.clone();
        let handle = std::thread::Builder::new()
            .name(format!("strangler-proxy-{index}"))
            .spawn(move || {
                INDEX.with(|slot| slot.set(Some(index)));
                runtime.block_on(serve(inbox));
            })?;
        lanes.push(Lane {
            inbox: sender,
            open: Arc::new(AtomicUsize::new(0)),
        });
        handles.push(handle);
    }
    Ok((ProxyThreads { lanes, next: 0 }, handles))
}

impl ProxyThreads {
    /// Client connections open on all threads.
    pub fn open(&self) -> usize {
        self.lanes
            .iter()
            .map(|lane| lane.open.load(Ordering::Relaxed))
            .sum()
    }

    /// Gives a new connection to the thread with the fewest open. A
    /// connection a thread can no longer take (it has stopped) is dropped,
    /// which closes it.
    pub fn deal(&mut self, stream: std::net::TcpStream, peer: SocketAddr, kind: ConnectionKind) {
        let count = self.lanes.len();
        let start = self.next % count;
        self.next = self.next.wrapping_add(1);
        let Some(lane) = (0..count)
            .map(|offset| &self.lanes[(start + offset) % count])
            .min_by_key(|lane| lane.open.load(Ordering::Relaxed))
        else {
            return;
        };
        lane.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection(Arc::clone(&lane.open));
        if lane
            .inbox
            .send(Incoming {
                stream,
                peer,
                open,
                kind,
            })
            .is_err()
        {
            tracing::warn!(%peer, "a proxy thread has stopped; connection closed");
        }
    }
}

/// The upstream-pool shard the current thread uses, among `shards`: proxy
/// thread `i` uses shard `i`, and every other thread the last one.
pub(crate) fn pool_shard(shards: usize) -> usize {
    let last = shards.saturating_sub(1);
    INDEX.with(Cell::get).map_or(last, |index| index.min(last))
}

/// The number of proxy threads when the configuration does not say: one
/// per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_other_than_proxy_threads_use_the_last_shard() {
        assert_eq!(pool_shard(3), 2);
        assert_eq!(pool_shard(1), 0);
    }

    fn accepted(listener: &std::net::TcpListener) -> (std::net::TcpStream, std::net::TcpStream, SocketAddr) {
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        (client, stream, peer)
    }

    #[test]
    fn connections_go_to_the_thread_with_the_fewest_open() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (first, mut first_inbox) = mpsc::unbounded_channel();
        let (second, mut second_inbox) = mpsc::unbounded_channel();
        let mut threads = ProxyThreads {
            lanes: vec![
                Lane {
                    inbox: first,
                    open: Arc::default(),
                },
                Lane {
                    inbox: second,
                    open: Arc::default(),
                },
            ],
            next: 0,
        };
        let mut clients = Vec::new();
        let mut deal = |threads: &mut ProxyThreads| {
            let (client, stream, peer) = accepted(&listener);
            clients.push(client);
            threads.deal(stream, peer, ConnectionKind::Plain);
        };
        for _ in 0..4 {
            deal(&mut threads);
        }
        let mut on_first: Vec<Incoming> = std::iter::from_fn(|| first_inbox.try_recv().ok()).collect();
        let on_second: Vec<Incoming> = std::iter::from_fn(|| second_inbox.try_recv().ok()).collect();
        assert_eq!(
            (on_first.len(), on_second.len()),
            (2, 2),
            "four connections split two and two"
        );
        // One closes on the first thread, so the next goes there.
        on_first.pop();
        deal(&mut threads);
        let fifth = first_inbox.try_recv();
        assert!(fifth.is_ok(), "the thread with fewer open takes the next");
        assert!(second_inbox.try_recv().is_err());
        assert_eq!(threads.lanes[0].open.load(Ordering::Relaxed), 2);
        assert_eq!(threads.lanes[1].open.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn each_proxy_thread_has_its_own_shard_and_ends_when_its_inbox_closes() {
        let (reports, received) = std::sync::mpsc::channel();
        let (threads, handles) = start(2, move |mut inbox: Inbox| {
            let reports = reports.clone();
            async move {
                reports.send(pool_shard(3)).unwrap();
                while inbox.recv().await.is_some() {}
            }
        })
        .unwrap();
        let mut shards = [received.recv().unwrap(), received.recv().unwrap()];
        shards.sort_unstable();
        assert_eq!(shards, [0, 1]);
        drop(threads);
        for handle in handles {
            handle.join().unwrap();
        }
    }
}
