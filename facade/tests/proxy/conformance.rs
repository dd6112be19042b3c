//! RFC 9110/9112 cases a conformance run found wrong, each against an
//! upstream that answers exactly the bytes the case needs.
//!
//! `Expect: 100-continue`, `Host` rules, absolute-form targets, an
//! over-long request line, the target forwarded as sent, interim answers
//! passed on, and an unsolicited `101`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{
    legacy_only_config, raw_request, read_response, read_response_after, sqlite_store, start_facade,
    TestFacade,
};

/// How the scripted upstream answers each request.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// Reads the body, then answers 200 with the head it got and the body's
    /// length as JSON.
    Echo,
    /// Sends `100 Continue` at once, whatever the request says, then as
    /// [`Script::Echo`].
    ContinueThenEcho,
    /// Sends `100 Continue` and then nothing at all.
    ContinueThenSilence,
    /// Sends `103 Early Hints` with a `Link`, then a 200.
    EarlyHints,
    /// Switches protocols unasked.
    SwitchProtocols,
}

/// An upstream that answers as its script says and records every request
/// head it received.
struct Scripted {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    async fn spawn(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script, Arc::clone(&seen)));
            }
        });
        Self { addr, heads }
    }

    /// The request heads received so far.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The one request head received.
    fn only_head(&self) -> String {
        let heads = self.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        heads.into_iter().next().unwrap()
    }
}

async fn serve(mut stream: TcpStream, script: Script, seen: Arc<Mutex<Vec<String>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(end) = read_until_head_end(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        seen.lock().unwrap().push(head.clone());
        let length = header_of(&head, "content-length").map_or(0, |v| v.parse::<usize>().unwrap());
        match script {
            Script::ContinueThenEcho | Script::ContinueThenSilence => {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
                if let Script::ContinueThenSilence = script {
                    // Holds the connection open without a word.
                    let _ = stream.read_to_end(&mut Vec::new()).await;
                    return;
                }
            }
            Script::EarlyHints => {
                stream
                    .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n")
                    .await
                    .unwrap();
            }
            Script::SwitchProtocols => {
                let answer =
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
                stream.write_all(answer.as_bytes()).await.unwrap();
                let _ = stream.read_to_end(&mut Vec::new()).await;
                return;
            }
            Script::Echo => {}
        }
        while buffer.len() < length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..length);
        let request_line = head.lines().next().unwrap_or_default();
        let body = serde_json::json!({
            "request_line": request_line,
            "host": header_of(&head, "host"),
            "body_bytes": length,
        })
        .to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads until `buffer` holds a whole head; its end's index, or `None` when
/// the connection closed first.
async fn read_until_head_end(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The value of the first `name` field of a raw head.
fn header_of<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A facade in front of `upstream`, with `extra` added to `[backends.legacy]`.
async fn facade_for(upstream: &Scripted, extra: &str) -> (TestFacade, test_harness::TestDatabase) {
    let store = sqlite_store();
    let config = format!("{}{extra}\n", legacy_only_config(upstream.addr));
    (start_facade(&config, store.url()).await, store)
}

#[tokio::test]
async fn expect_100_continue_gets_one_100_and_the_body_reaches_the_upstream() {
    let upstream = Scripted::spawn(Script::ContinueThenEcho).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    let mut client = TcpStream::connect(facade.proxy).await.unwrap();
    let head =
        "POST /upload HTTP/1.1\r\nHost: shop.example\r\nExpect: 100-continue\r\nContent-Length: 3000\r\n\r\n";
    client.write_all(head.as_bytes()).await.unwrap();
    // The body goes only after the 100, as curl and SDKs do.
    let mut read = Vec::new();
    let end = tokio::time::timeout(
        Duration::from_secs(5),
        read_until_head_end(&mut client, &mut read),
    )
    .await
    .expect("a 100 Continue within 5 s")
    .expect("an interim answer");
    assert!(
        read.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&read)
    );
    read.drain(..end + 4);
    client.write_all(&[b'x'; 3000]).await.unwrap();
    let (answer, _) = read_response_after(&mut client, read).await;
    assert_eq!(answer.status, 200, "a second 100 or no answer: {answer:?}");
    assert_eq!(answer.json()["body_bytes"], 3000);
    let upstream_head = upstream.only_head();
    assert_eq!(header_of(&upstream_head, "expect"), None, "{upstream_head}");
}

#[tokio::test]
async fn expect_100_continue_with_the_body_sent_at_once_always_succeeds() {
    let upstream = Scripted::spawn(Script::ContinueThenEcho).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    for attempt in 0..20 {
        let mut request =
            b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nExpect: 100-continue\r\nContent-Length: 3000\r\n\r\n"
                .to_vec();
        request.extend_from_slice(&[b'y'; 3000]);
        let mut client = TcpStream::connect(facade.proxy).await.unwrap();
        client.write_all(&request).await.unwrap();
        let (mut answer, mut rest) = read_response(&mut client).await;
        if answer.status == 100 {
            (answer, rest) = read_response_after(&mut client, rest).await;
        }
        assert_eq!(answer.status, 200, "attempt {attempt}: {answer:?}");
        assert_eq!(answer.json()["body_bytes"], 3000, "attempt {attempt}");
        assert!(
            rest.is_empty(),
            "attempt {attempt}: bytes after the answer: {rest:?}"
        );
    }
}

#[tokio::test]
async fn an_upstream_that_goes_silent_after_its_100_is_bounded_by_the_request_timeout() {
    let upstream = Scripted::spawn(Script::ContinueThenSilence).await;
    let (facade, _store) = facade_for(&upstream, "request_timeout_ms = 1000").await;
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nExpect: 100-continue\r\nContent-Length: 3000\r\n\r\n"
            .to_vec();
    request.extend_from_slice(&[b'z'; 3000]);
    let started = Instant::now();
    let mut client = TcpStream::connect(facade.proxy).await.unwrap();
    client.write_all(&request).await.unwrap();
    let (mut answer, mut rest) = read_response(&mut client).await;
    if answer.status == 100 {
        (answer, rest) = read_response_after(&mut client, rest).await;
    }
    let _ = rest;
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_http_1_1_request_needs_exactly_one_valid_host() {
    let upstream = Scripted::spawn(Script::Echo).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    let cases: [(&str, &[u8], u16); 5] = [
        ("no Host", b"GET /x HTTP/1.1\r\n\r\n", 400),
        (
            "two Host fields",
            b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            400,
        ),
        (
            "a Host with a user",
            b"GET /x HTTP/1.1\r\nHost: me@a.example\r\n\r\n",
            400,
        ),
        ("HTTP/1.0 without Host", b"GET /x HTTP/1.0\r\n\r\n", 200),
        (
            "one Host",
            b"GET /x HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
            200,
        ),
    ];
    for (case, request, status) in cases {
        let answer = raw_request(facade.proxy, request).await;
        assert_eq!(answer.status, status, "{case}: {answer:?}");
    }
    assert_eq!(
        upstream.heads().len(),
        2,
        "only the accepted requests went upstream"
    );
}

#[tokio::test]
async fn an_absolute_form_target_names_the_host_the_upstream_sees() {
    let upstream = Scripted::spawn(Script::Echo).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    let answer = raw_request(
        facade.proxy,
        b"GET http://a.example/x?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let head = upstream.only_head();
    assert_eq!(header_of(&head, "host"), Some("a.example"), "{head}");
    assert!(head.starts_with("GET /x?q=1 HTTP/1.1"), "{head}");
}

#[tokio::test]
async fn an_over_long_request_line_is_414_and_over_long_headers_431() {
    let upstream = Scripted::spawn(Script::Echo).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    // The default head limit is 64 KiB.
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nHost: a.example\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let answer = raw_request(facade.proxy, long_target.as_bytes()).await;
    assert_eq!(answer.status, 414, "{answer:?}");
    let long_header = format!(
        "GET /x HTTP/1.1\r\nHost: a.example\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70 * 1024)
    );
    let answer = raw_request(facade.proxy, long_header.as_bytes()).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(upstream.heads().is_empty());
}

#[tokio::test]
async fn the_target_goes_upstream_as_sent_unless_a_dot_segment_was_removed() {
    let upstream = Scripted::spawn(Script::Echo).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    let cases = [
        ("/%41pi/items?sig=%2B1", "/%41pi/items?sig=%2B1"),
        ("/products//7", "/products//7"),
        ("/a/%2e%2e/products/7?x=1", "/products/7?x=1"),
        ("/a/./b", "/a/b"),
    ];
    for (sent, forwarded) in cases {
        let request = format!("GET {sent} HTTP/1.1\r\nHost: a.example\r\n\r\n");
        let answer = raw_request(facade.proxy, request.as_bytes()).await;
        assert_eq!(answer.status, 200, "{sent}: {answer:?}");
        assert_eq!(
            answer.json()["request_line"],
            format!("GET {forwarded} HTTP/1.1"),
            "{sent}"
        );
    }
}

#[tokio::test]
async fn early_hints_reach_the_client_before_the_answer() {
    let upstream = Scripted::spawn(Script::EarlyHints).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    let mut client = TcpStream::connect(facade.proxy).await.unwrap();
    client
        .write_all(b"GET /page HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let (hints, rest) = read_response(&mut client).await;
    assert_eq!(hints.status, 103, "{hints:?}");
    assert_eq!(hints.header("link"), Some("</app.css>; rel=preload"));
    let (answer, _) = read_response_after(&mut client, rest).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn an_unsolicited_101_becomes_a_502() {
    let upstream = Scripted::spawn(Script::SwitchProtocols).await;
    let (facade, _store) = facade_for(&upstream, "").await;
    let answer = raw_request(facade.proxy, b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    assert_eq!(answer.status, 502, "{answer:?}");
    let body = answer.json();
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("switched protocols"),
        "{body}"
    );
}
