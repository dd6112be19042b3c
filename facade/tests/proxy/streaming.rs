//! Bodies are streamed, never held whole: 100 MB each way with exact byte
//! counts and checksums while this process (which runs the facade, the
//! upstream and the client) grows by far less than the body. And a protocol
//! upgrade passes bytes both ways once the upstream has switched.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    payload_checksum, payload_chunk, read_response, spawn_upgrade_upstream, sqlite_store, start_facade,
    Checksum, Shop, CHUNK,
};

const HUNDRED_MB: u64 = 100 * 1024 * 1024;
/// How much the process may grow while 100 MB pass through it.
const GROWTH_LIMIT: u64 = 40 * 1024 * 1024;

/// Samples this process's resident memory until dropped; keeps the peak.
struct PeakMemory {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl PeakMemory {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(resident_bytes()));
        let sampler = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    peak.fetch_max(resident_bytes(), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            stop,
            peak,
            sampler: Some(sampler),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(sampler) = self.sampler.take() {
            sampler.join().unwrap();
        }
        self.peak.load(Ordering::SeqCst).max(resident_bytes())
    }
}

/// This process's resident memory, from `/proc/self/status` (`VmRSS`).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_and_download_stream_through_in_constant_memory() {
    let store = sqlite_store();
    let shop = Shop::spawn().await;
    let facade = start_facade(&shop.config(""), store.url()).await;
    let client: Client<_, BoxBody<Bytes, Infallible>> = Client::builder(TokioExecutor::new()).build_http();
    let expected = payload_checksum(HUNDRED_MB);

    // Warm up every connection and buffer on the way with a small transfer.
    let warm = hyper::Request::get(facade.url("/download?bytes=1048576"))
        .body(Empty::new().boxed())
        .unwrap();
    let warm = client.request(warm).await.unwrap();
    let warmed = warm.into_body().collect().await.unwrap().to_bytes().len();
    assert_eq!(warmed, 1024 * 1024);

    let before = resident_bytes();
    let peak = PeakMemory::start();

    let chunks = HUNDRED_MB.div_ceil(CHUNK as u64);
    let frames = futures::stream::iter(0..chunks)
        .map(|index| Ok::<_, Infallible>(Frame::data(payload_chunk(index, HUNDRED_MB))));
    let upload = hyper::Request::post(facade.url("/upload"))
        .header("content-length", HUNDRED_MB)
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap();
    let response = client.request(upload).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["name"], "legacy");
    assert_eq!(answer["bytes"], HUNDRED_MB, "{answer}");
    assert_eq!(
        answer["checksum"],
        expected.as_str(),
        "the upload arrived changed"
    );

    let download = hyper::Request::get(facade.url(&format!("/download?bytes={HUNDRED_MB}")))
        .body(Empty::new().boxed())
        .unwrap();
    let response = client.request(download).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut checksum = Checksum::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            checksum.update(&data);
        }
    }
    assert_eq!(checksum.bytes(), HUNDRED_MB);
    assert_eq!(checksum.finish(), expected, "the download arrived changed");

    let peak = peak.finish();
    let growth = peak.saturating_sub(before);
    assert!(
        growth < GROWTH_LIMIT,
        "resident memory grew by {:.1} MiB (from {:.1} to a peak of {:.1} MiB) while 100 MB \
         passed each way: a body is being buffered",
        mib(growth),
        mib(before),
        mib(peak)
    );
}

#[tokio::test]
async fn an_upgraded_connection_passes_bytes_both_ways() {
    let store = sqlite_store();
    let shop = Shop::spawn().await;
    let upgrade = spawn_upgrade_upstream().await;
    let config = shop.config("").replace(
        "[capabilities.catalog]",
        &format!(
            "[backends.socket]\nurls = [\"http://{}\"]\n\n[capabilities.socket]\nlegacy = \"socket\"\n\
             service = \"socket\"\n\n[[routes]]\ncapability = \"socket\"\npath = \"/socket\"\n\n\
             [capabilities.catalog]",
            upgrade.addr
        ),
    );
    let facade = start_facade(&config, store.url()).await;

    let mut stream = TcpStream::connect(facade.proxy).await.unwrap();
    stream
        .write_all(
            b"GET /socket HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let (response, mut received) = read_response(&mut stream).await;
    assert_eq!(response.status, 101, "{response:?}");
    assert_eq!(response.header("upgrade"), Some("echo"));
    assert_eq!(upgrade.hits(), 1);

    // The upstream speaks first, then echoes.
    let greeting = b"hello from upstream\n";
    read_exactly(&mut stream, &mut received, greeting.len()).await;
    assert_eq!(&received[..greeting.len()], greeting);
    received.drain(..greeting.len());
    for message in [&b"ping"[..], b"\x00\x01binary\xff", &[b'q'; 100_000][..]] {
        stream.write_all(message).await.unwrap();
        read_exactly(&mut stream, &mut received, message.len()).await;
        assert_eq!(&received[..message.len()], message, "the echo differs");
        received.drain(..message.len());
    }
    // Closing our side ends the tunnel: the facade closes its side too.
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the tunnel stayed open after the client closed");
}

async fn read_exactly(stream: &mut TcpStream, buffer: &mut Vec<u8>, length: usize) {
    let mut chunk = vec![0u8; 64 * 1024];
    while buffer.len() < length {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("no bytes through the tunnel in time")
            .unwrap();
        assert!(n > 0, "the tunnel closed early");
        buffer.extend_from_slice(&chunk[..n]);
    }
}
