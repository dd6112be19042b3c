//! The facade's own HTTP/1.1 client against upstreams that answer byte for
//! byte as scripted: every way an answer can be framed, answers that cannot
//! be framed exactly, interim answers, an answer before the body was read,
//! and a reused connection closed without an answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use test_harness::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{json_of, legacy_only_config, sqlite_store, start_facade, TestFacade};

/// What the scripted upstream does with one request.
struct Reply {
    /// Bytes written back.
    bytes: Vec<u8>,
    /// Close the connection after writing them.
    close: bool,
}

fn reply(text: &str) -> Reply {
    Reply {
        bytes: text.as_bytes().to_vec(),
        close: false,
    }
}

fn reply_and_close(text: &str) -> Reply {
    Reply {
        bytes: text.as_bytes().to_vec(),
        close: true,
    }
}

/// An upstream that reads each request head (and, when `read_bodies`, a
/// `Content-Length` body) and answers with `script(connection, request)`,
/// both counted from 0. Returns its address and the connections accepted.
async fn scripted_upstream(
    read_bodies: bool,
    script: impl Fn(usize, usize) -> Reply + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let connection = counter.fetch_add(1, Ordering::SeqCst);
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                serve(stream, connection, read_bodies, &*script).await;
            });
        }
    });
    (addr, accepted)
}

async fn serve(
    mut stream: TcpStream,
    connection: usize,
    read_bodies: bool,
    script: &(dyn Fn(usize, usize) -> Reply + Send + Sync),
) {
    let mut buffer = Vec::new();
    for request in 0.. {
        let Some(head_end) = read_head(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap());
        buffer.drain(..head_end);
        if read_bodies {
            while buffer.len() < length {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            buffer.drain(..length);
        }
        let Reply { bytes, close } = script(connection, request);
        if stream.write_all(&bytes).await.is_err() || close {
            return;
        }
    }
}

/// A facade with every route on a [`scripted_upstream`], and its store.
struct ScriptedStack {
    _store: TestDatabase,
    facade: TestFacade,
    accepted: Arc<AtomicUsize>,
}

impl ScriptedStack {
    async fn start(
        read_bodies: bool,
        script: impl Fn(usize, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let store = sqlite_store();
        let (upstream, accepted) = scripted_upstream(read_bodies, script).await;
        let facade = start_facade(&legacy_only_config(upstream), store.url()).await;
        Self {
            _store: store,
            facade,
            accepted,
        }
    }

    /// The connections the upstream has accepted.
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Sends `GET path` `times` times, one after the other; each must be
    /// answered 200 with `body`.
    async fn get_each_time(&self, times: usize, path: &str, body: &str) {
        for time in 0..times {
            let response = self
                .facade
                .client
                .get(self.facade.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "GET {path}, time {time}");
            assert_eq!(response.text().await.unwrap(), body, "GET {path}, time {time}");
        }
    }
}

/// Reads until a whole head is in `buffer`; its length with the blank line.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end + 4);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn chunked_answers_are_decoded_with_extensions_and_trailers_and_the_connection_reused() {
    let stack = ScriptedStack::start(true, |_, _| {
        reply(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             5;name=value\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        )
    })
    .await;
    stack.get_each_time(3, "/greeting", "hello, world").await;
    assert_eq!(
        stack.connections(),
        1,
        "a chunked answer read to its end leaves the connection reusable"
    );
}

#[tokio::test]
async fn answers_framed_by_the_close_are_passed_on_whole_and_their_connection_dropped() {
    let stack = ScriptedStack::start(true, |_, _| {
        reply_and_close("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
    })
    .await;
    stack.get_each_time(2, "/stream", "until the end").await;
    assert_eq!(stack.connections(), 2);
}

#[tokio::test]
async fn differing_content_lengths_from_an_upstream_are_a_502_not_a_guess() {
    let stack = ScriptedStack::start(true, |_, _| {
        reply("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!")
    })
    .await;
    let facade = &stack.facade;
    let (status, body) = json_of(facade.client.get(facade.url("/x")).send().await.unwrap()).await;
    assert_eq!(status, 502);
    assert_eq!(body["source"], "upstream");
}

#[tokio::test]
async fn an_answer_cut_short_fails_the_client_read_and_is_not_reused() {
    let stack = ScriptedStack::start(true, |connection, _| match connection {
        0 => reply_and_close("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b"),
        _ => reply("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    })
    .await;
    let facade = &stack.facade;
    // The client sees the answer fail: at its head when the facade had not
    // flushed it yet, else in its body. Never a short answer taken as whole.
    let outcome = match facade.client.get(facade.url("/short")).send().await {
        Ok(response) => response.bytes().await.map(|bytes| bytes.len()),
        Err(error) => Err(error),
    };
    assert!(outcome.is_err(), "a short answer passed as complete: {outcome:?}");
    // The facade closed that client connection mid-answer; a new client
    // connection, and a new upstream one behind it.
    let response = reqwest::Client::new()
        .get(facade.url("/next"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(stack.connections(), 2);
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let stack = ScriptedStack::start(true, |_, _| {
        reply(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
             HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\ncreated",
        )
    })
    .await;
    let facade = &stack.facade;
    let response = facade
        .client
        .post(facade.url("/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.unwrap(), "created");
}

#[tokio::test]
async fn an_answer_given_before_the_upload_was_read_reaches_the_client() {
    // The upstream refuses at once, reads none of the body, and closes.
    let stack = ScriptedStack::start(false, |_, _| {
        reply_and_close(
            "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!",
        )
    })
    .await;
    // A client that announces a large upload and sends only its start: the
    // answer must not wait for the rest.
    let mut client = TcpStream::connect(stack.facade.proxy).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nhost: shop\r\ncontent-length: 1000000\r\n\r\nfirst bytes")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        while !answer.ends_with(b"too big!") {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the answer must come while the upload is unfinished"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with("too big!"), "{answer}");
}

#[tokio::test]
async fn a_reused_connection_closed_without_an_answer_is_retried_on_a_fresh_one() {
    // Each connection answers its first request and drops the second
    // unanswered, as an upstream closing an idle connection at that very
    // moment does.
    let stack = ScriptedStack::start(true, |_, request| match request {
        0 => reply("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        _ => reply_and_close(""),
    })
    .await;
    stack.get_each_time(3, "/again", "ok").await;
    assert_eq!(
        stack.connections(),
        3,
        "each unanswered request moved to a new connection"
    );
}
