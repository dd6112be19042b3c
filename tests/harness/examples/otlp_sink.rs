//! An OTLP/HTTP trace receiver that accepts and discards, counting spans:
//! the benchmark's collector (`bench/facade.sh`'s `traced` setup).
//!
//! `otlp_sink 127.0.0.1:18911` prints `listening on …`, and on SIGTERM or
//! Ctrl-C the number of export requests and spans it received.

#![allow(clippy::expect_used)] // a sink that cannot start has nothing else to do

use std::net::SocketAddr;

use test_harness::otlp::OtlpReceiver;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".to_owned())
        .parse()
        .expect("the first argument is an address to listen on (127.0.0.1:4318)");
    let sink = OtlpReceiver::counting(addr).await;
    println!("listening on {}", sink.base_url());
    let mut terminate = signal(SignalKind::terminate()).expect("listening for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!(
        "received {} export requests, {} spans",
        sink.requests(),
        sink.span_count()
    );
}
