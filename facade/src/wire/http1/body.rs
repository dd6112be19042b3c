//! A request body of known length read straight from the client's
//! connection. The body owns the connection's read half while the request
//! is served and hands it back, with whatever it read past its end (the
//! next pipelined request), when it is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use super::stream::ClientReader;

/// How much a body read asks the socket for at once.
const READ_CHUNK: usize = 16 * 1024;

/// The read half of a connection and its buffer, handed back by a body.
#[derive(Debug)]
pub(super) struct ReadSide {
    /// The connection's read half.
    pub reader: ClientReader,
    /// Bytes read and not yet used: after a whole body, the start of the
    /// next request.
    pub buffer: BytesMut,
    /// Body bytes the handler left unread; the connection cannot carry
    /// another request unless this is 0.
    pub unread: u64,
}

/// A request body on the facade's HTTP/1.1 connection.
#[derive(Debug)]
pub struct FastBody {
    side: Option<ReadSide>,
    back: Option<oneshot::Sender<ReadSide>>,
}

impl FastBody {
    /// No body.
    pub(super) fn empty() -> Self {
        Self {
            side: None,
            back: None,
        }
    }

    /// A body of `length` bytes read from `reader`, starting with what
    /// `buffer` already holds; the read side comes back on the receiver
    /// once the body is dropped.
    pub(super) fn new(
        reader: ClientReader,
        buffer: BytesMut,
        length: u64,
    ) -> (Self, oneshot::Receiver<ReadSide>) {
        let (back, returned) = oneshot::channel();
        let body = Self {
            side: Some(ReadSide {
                reader,
                buffer,
                unread: length,
            }),
            back: Some(back),
        };
        (body, returned)
    }

    fn remaining(&self) -> u64 {
        self.side.as_ref().map_or(0, |side| side.unread)
    }
}

impl Drop for FastBody {
    fn drop(&mut self) {
        if let (Some(side), Some(back)) = (self.side.take(), self.back.take()) {
            // The connection may be gone already; then so is the read side.
            let _ = back.send(side);
        }
    }
}

impl Body for FastBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(side) = self.get_mut().side.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            if side.unread == 0 {
                return Poll::Ready(None);
            }
            if !side.buffer.is_empty() {
                let take =
                    usize::try_from(side.unread).map_or(side.buffer.len(), |n| n.min(side.buffer.len()));
                side.unread -= take as u64;
                return Poll::Ready(Some(Ok(Frame::data(side.buffer.split_to(take).freeze()))));
            }
            side.buffer.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut side.reader), cx, &mut side.buffer) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the client closed the connection before the end of its request body",
                    ))))
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}
