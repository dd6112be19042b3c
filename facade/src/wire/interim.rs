//! Interim answers (`103 Early Hints` and other 1xx but `100` and `101`)
//! on their way from an upstream to the client, which RFC 9110 §15.2 asks
//! a proxy to forward.
//!
//! The upstream client reads them while the request's task waits for the
//! final answer; the client connection, which runs in the same task and
//! owns the socket's writing half, writes them as they come
//! ([`relay_while`]). Since a proxied request's upstream exchange runs in
//! its connection's task (ARCHITECTURE.md), a head is always queued while
//! that task polls the request: the connection looks for heads after each
//! poll and needs no waker of its own. hyper's client (`https://` backends)
//! reads them on its connection's task instead; that exchange registers
//! the request's waker ([`InterimSink::wake_on_push`]) so a head that
//! arrives there is written at once, not with the final answer.
//!
//! Only the facade's own HTTP/1.1 connections have a sink: hyper's server
//! (HTTP/2, and HTTP/1.1 connections handed to it) offers no way to send a
//! 1xx, so there they are dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::{HeaderMap, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::wire::headers::is_hop_by_hop;

/// Interim heads waiting to be written to one client connection.
///
/// Checked after every poll of the request it belongs to, so the check is
/// one atomic load; the lock is taken only when a head has arrived.
#[derive(Debug, Default)]
pub struct InterimSink {
    pending: AtomicBool,
    heads: Mutex<Vec<Bytes>>,
    /// Woken by a push from another task (hyper's client connection).
    waker: Mutex<Option<Waker>>,
}

impl InterimSink {
    /// A sink for one connection.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queues the interim answer `status` with `headers` for the client,
    /// without its hop-by-hop fields.
    pub fn push(&self, status: StatusCode, headers: &HeaderMap) {
        let mut head = BytesMut::with_capacity(64 + headers.len() * 64);
        head.put_slice(b"HTTP/1.1 ");
        head.put_slice(status.as_str().as_bytes());
        head.put_u8(b' ');
        head.put_slice(status.canonical_reason().unwrap_or("Interim").as_bytes());
        head.put_slice(b"\r\n");
        for (name, value) in headers {
            if !is_hop_by_hop(name) {
                head.put_slice(name.as_str().as_bytes());
                head.put_slice(b": ");
                head.put_slice(value.as_bytes());
                head.put_slice(b"\r\n");
            }
        }
        head.put_slice(b"\r\n");
        self.heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(head.freeze());
        self.pending.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Has the next [`push`](Self::push) wake `waker`: for an exchange whose
    /// interim answers are read on a task other than the request's.
    pub fn wake_on_push(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|kept| kept.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// The heads queued so far, if any, without waiting.
    fn take_now(&self) -> Vec<Bytes> {
        // A load first: the usual answer finds nothing and writes nothing.
        if !self.pending.load(Ordering::Acquire) || !self.pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.heads.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Awaits `answering` and writes every interim head queued in `sink`
/// meanwhile to `writer`, before the final answer. A client that cannot
/// take them is left to fail on the final answer's write.
///
/// The answer's future is borrowed, pinned where the caller made it: it
/// holds the whole request's state, and moving it in would copy all of it.
pub(crate) async fn relay_while<T, W>(
    mut answering: Pin<&mut impl Future<Output = T>>,
    sink: &InterimSink,
    writer: &mut W,
) -> T
where
    W: AsyncWrite + Unpin,
{
    let mut writable = true;
    loop {
        let next = std::future::poll_fn(|cx| match answering.as_mut().poll(cx) {
            Poll::Ready(answer) => Poll::Ready(Some(answer)),
            Poll::Pending if sink.pending.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        });
        let answer = next.await;
        let heads = sink.take_now();
        // Heads that came with the final answer still go before it.
        for head in heads {
            writable = writable && writer.write_all(&head).await.is_ok();
        }
        // Sent now, not with the final answer (a TLS session holds back
        // what it has not been told to flush).
        writable = writable && writer.flush().await.is_ok();
        if let Some(answer) = answer {
            return answer;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderValue, CONNECTION, LINK};
    use std::pin::pin;

    #[tokio::test]
    async fn interim_heads_are_written_before_the_answer_without_hop_by_hop_fields() {
        let sink = InterimSink::new();
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_static("</app.css>; rel=preload"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        let (pushed, mut written) = (Arc::clone(&sink), Vec::new());
        let answer = relay_while(
            pin!(async move {
                pushed.push(StatusCode::from_u16(103).unwrap(), &headers);
                tokio::task::yield_now().await;
                "final"
            }),
            &sink,
            &mut written,
        )
        .await;
        assert_eq!(answer, "final");
        assert_eq!(
            String::from_utf8(written).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn nothing_is_written_when_no_interim_head_comes() {
        let sink = InterimSink::new();
        let mut written = Vec::new();
        assert_eq!(relay_while(pin!(async { 7 }), &sink, &mut written).await, 7);
        assert!(written.is_empty());
    }
}
