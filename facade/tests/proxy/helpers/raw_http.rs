//! A raw HTTP/1.1 client, for requests that an HTTP library would tidy up
//! (normalize the path, merge or refuse headers) before sending.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT_LIMIT;

/// A response read off the wire, headers as sent.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "status {}: the body is not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` as bytes on a new connection and reads one response.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let (response, _) = read_response(&mut stream).await;
    response
}

/// Reads one response head and its body (by `Content-Length`, chunked, or
/// to the end of the stream; none for a 1xx); also returns the bytes read
/// past the response. A connection reset after a complete head ends the body.
pub async fn read_response(stream: &mut TcpStream) -> (RawResponse, Vec<u8>) {
    read_response_after(stream, Vec::new()).await
}

/// [`read_response`] for a response that may have begun in `read`, bytes
/// already taken off the stream (what the previous read returned as past
/// its response).
pub async fn read_response_after(stream: &mut TcpStream, read: Vec<u8>) -> (RawResponse, Vec<u8>) {
    tokio::time::timeout(WAIT_LIMIT, read_response_inner(stream, read))
        .await
        .expect("no complete response in time")
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn read_response_inner(stream: &mut TcpStream, mut buffer: Vec<u8>) -> (RawResponse, Vec<u8>) {
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        assert!(
            read_more(stream, &mut buffer).await,
            "the connection ended before a response head: {:?}",
            String::from_utf8_lossy(&buffer)
        );
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut rest = buffer.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return (response, rest);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line_end = loop {
                if let Some(end) = find(&rest, b"\r\n") {
                    break end;
                }
                assert!(read_more(stream, &mut rest).await, "a chunked body was cut short");
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            while rest.len() < line_end + 2 + size + 2 {
                assert!(read_more(stream, &mut rest).await, "a chunk was cut short");
            }
            response
                .body
                .extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return (response, rest);
            }
        }
    }
    if let Some(length) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        while rest.len() < length {
            assert!(read_more(stream, &mut rest).await, "a body was cut short");
        }
        let leftover = rest.split_off(length);
        response.body = rest;
        return (response, leftover);
    }
    while read_more(stream, &mut rest).await {}
    response.body = rest;
    (response, Vec::new())
}
