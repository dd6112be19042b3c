//! The response body as it arrives on its connection: decoded from its
//! framing (length, chunks, or until close) straight out of the
//! connection's read buffer, in whatever task reads it, and the connection
//! given back to the pool once the body has been read to its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};

use super::head::ResponseFraming;
use super::{Connection, ConnectionPool, UpstreamError};

/// How much is read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4096;

/// The most trailer bytes accepted (they are read and dropped).
const MAX_TRAILERS: usize = 64 * 1024;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a length-delimited body.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Bytes left of the current chunk.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one; the bytes
    /// read so far.
    Trailers(usize),
    /// Everything until the upstream closes.
    UntilClose,
    /// Read to the end.
    Done,
}

/// What one decoding step found.
enum Step {
    Data(Bytes),
    Finished,
    NeedMore,
}

/// A response body from an upstream; gives its connection back to the
/// pool once read to the end. Dropped before that, it closes the
/// connection: a connection is reused only at a clean message boundary.
pub struct PooledBody {
    connection: Option<Box<Connection>>,
    pool: Arc<ConnectionPool>,
    state: State,
    reusable: bool,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("state", &self.state)
            .field("reusable", &self.reusable)
            .finish()
    }
}

impl PooledBody {
    /// The body framed by `framing` on `connection`.
    pub(super) fn new(
        connection: Option<Box<Connection>>,
        pool: Arc<ConnectionPool>,
        framing: ResponseFraming,
        reusable: bool,
    ) -> Self {
        let state = match framing {
            ResponseFraming::Empty | ResponseFraming::Length(0) => State::Done,
            ResponseFraming::Length(length) => State::Length(length),
            ResponseFraming::Chunked => State::ChunkSize,
            ResponseFraming::UntilClose => State::UntilClose,
        };
        let mut body = Self {
            connection,
            pool,
            state,
            reusable,
        };
        if body.state == State::Done {
            body.give_back();
        }
        body
    }

    /// A body with nothing in it and no connection behind it.
    pub(super) fn empty(pool: Arc<ConnectionPool>) -> Self {
        Self::new(None, pool, ResponseFraming::Empty, false)
    }

    fn give_back(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Bytes past the end of the message mean the upstream said more
            // than it framed: the connection cannot be trusted again.
            if self.reusable && connection.buffer.is_empty() {
                self.pool.checkin(connection);
            }
        }
    }

    fn fail(&mut self, error: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        self.connection = None;
        self.state = State::Done;
        Poll::Ready(Some(Err(error)))
    }

    /// Decodes what the buffer holds.
    fn step(&mut self) -> Result<Step, UpstreamError> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(Step::Finished);
        };
        let buffer = &mut connection.buffer;
        loop {
            match self.state {
                State::Done => return Ok(Step::Finished),
                State::Length(left) | State::ChunkData(left) => {
                    if buffer.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buffer.len());
                    let data = buffer.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Step::Data(data));
                }
                State::UntilClose => {
                    if buffer.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buffer.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(line) = line_length(buffer)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&buffer[..line])?;
                    buffer.advance(line + 2);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => {
                    if buffer.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buffer[..2] != b"\r\n" {
                        return Err(UpstreamError::Chunk("chunk data not followed by CRLF"));
                    }
                    buffer.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    let Some(line) = line_length(buffer)? else {
                        return Ok(Step::NeedMore);
                    };
                    buffer.advance(line + 2);
                    if line == 0 {
                        self.state = State::Done;
                    } else if seen + line > MAX_TRAILERS {
                        return Err(UpstreamError::Chunk("trailers too large"));
                    } else {
                        self.state = State::Trailers(seen + line + 2);
                    }
                }
            }
        }
    }
}

/// The length of the line at the start of `buffer`, without its CRLF, once
/// the CRLF has arrived.
fn line_length(buffer: &[u8]) -> Result<Option<usize>, UpstreamError> {
    match buffer.windows(2).position(|pair| pair == b"\r\n") {
        Some(length) if length <= MAX_LINE => Ok(Some(length)),
        Some(_) => Err(UpstreamError::Chunk("chunk line too long")),
        None if buffer.len() > MAX_LINE => Err(UpstreamError::Chunk("chunk line too long")),
        None => Ok(None),
    }
}

/// The size in a chunk-size line (`1a;ext=1`): hex digits, extensions
/// ignored.
fn chunk_size(line: &[u8]) -> Result<u64, UpstreamError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(UpstreamError::Chunk("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |size, &b| {
        let digit = (b as char)
            .to_digit(16)
            .ok_or(UpstreamError::Chunk("invalid chunk size"))?;
        Ok(size * 16 + u64::from(digit))
    })
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            match this.step() {
                Ok(Step::Data(data)) => {
                    if this.state == State::Done {
                        this.give_back();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Finished) => {
                    this.state = State::Done;
                    this.give_back();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(error) => return this.fail(error),
            }
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            if connection.buffer.capacity() - connection.buffer.len() < READ_CHUNK / 4 {
                connection.buffer.reserve(READ_CHUNK);
            }
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut connection.io),
                cx,
                &mut connection.buffer,
            ));
            match read {
                Ok(0) if this.state == State::UntilClose => {
                    this.state = State::Done;
                    this.connection = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(UpstreamError::Closed),
                Ok(_) => {}
                Err(error) => return this.fail(UpstreamError::Io(error)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunk_sizes_with_extensions() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"FF;name=value").unwrap(), 255);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b"xyz").is_err());
        assert!(chunk_size(b"1234567890abcdef0").is_err());
    }

    #[test]
    fn finds_lines_and_refuses_endless_ones() {
        assert_eq!(line_length(b"5\r\nhello").unwrap(), Some(1));
        assert_eq!(line_length(b"5").unwrap(), None);
        assert!(line_length(&[b'a'; MAX_LINE + 1]).is_err());
    }
}
