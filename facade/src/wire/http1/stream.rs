//! A client connection as the facade's HTTP/1.1 connection reads and
//! writes it: plain TCP or TLS, split into a read half (which a request
//! body borrows while it is read) and a write half, and put back together
//! when the connection is handed to hyper.
//!
//! An enum rather than a type parameter: the request body that carries the
//! read half is one type all the way up to the flow's handler, and a match
//! per read costs less than a boxed reader's virtual call.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client connection.
#[derive(Debug)]
pub(crate) enum ClientStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP, its handshake done (boxed: its state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read side of a client connection.
#[derive(Debug)]
pub(crate) enum ClientReader {
    /// Plain TCP: the socket's own read half, with no lock.
    Tcp(OwnedReadHalf),
    /// TLS: one half of the session, which the halves share.
    Tls(ReadHalf<Box<TlsStream<TcpStream>>>),
}

/// The write side of a client connection.
#[derive(Debug)]
pub(crate) enum ClientWriter {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS.
    Tls(WriteHalf<Box<TlsStream<TcpStream>>>),
}

impl ClientStream {
    /// The two halves.
    pub(crate) fn split(self) -> (ClientReader, ClientWriter) {
        match self {
            ClientStream::Tcp(tcp) => {
                let (read, write) = tcp.into_split();
                (ClientReader::Tcp(read), ClientWriter::Tcp(write))
            }
            ClientStream::Tls(tls) => {
                let (read, write) = tokio::io::split(tls);
                (ClientReader::Tls(read), ClientWriter::Tls(write))
            }
        }
    }

    /// The connection again from its halves; `None` if they are not two
    /// halves of one connection.
    pub(crate) fn reunite(reader: ClientReader, writer: ClientWriter) -> Option<Self> {
        match (reader, writer) {
            (ClientReader::Tcp(read), ClientWriter::Tcp(write)) => {
                read.reunite(write).ok().map(ClientStream::Tcp)
            }
            (ClientReader::Tls(read), ClientWriter::Tls(write)) => {
                if read.is_pair_of(&write) {
                    Some(ClientStream::Tls(read.unsplit(write)))
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

impl AsyncRead for ClientReader {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientReader::Tcp(read) => Pin::new(read).poll_read(cx, buf),
            ClientReader::Tls(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientWriter {
    #[inline]
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientWriter::Tcp(write) => Pin::new(write).poll_write(cx, buf),
            ClientWriter::Tls(write) => Pin::new(write).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientWriter::Tcp(write) => Pin::new(write).poll_write_vectored(cx, bufs),
            ClientWriter::Tls(write) => Pin::new(write).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            ClientWriter::Tcp(write) => write.is_write_vectored(),
            ClientWriter::Tls(write) => write.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientWriter::Tcp(write) => Pin::new(write).poll_flush(cx),
            ClientWriter::Tls(write) => Pin::new(write).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientWriter::Tcp(write) => Pin::new(write).poll_shutdown(cx),
            ClientWriter::Tls(write) => Pin::new(write).poll_shutdown(cx),
        }
    }
}
