//! The one body type the facade hands around: a request body on its way
//! upstream and an answer on its way to the client are both a boxed stream
//! of `Bytes` frames, so a body can move from one side to the other (an
//! answer passed on, a request body sent again from its copy) without
//! being converted.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// A body as the facade sends it, either way: upstream (the client's
/// request body, or a copy of it) or to the client (the upstream's answer,
/// or the facade's own).
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// `body` as a [`ProxyBody`], its error boxed.
#[inline]
pub(crate) fn boxed<B>(body: B) -> ProxyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed_unsync()
}

/// A body with nothing in it.
#[inline]
pub(crate) fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body of `bytes`, all at hand.
#[inline]
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
