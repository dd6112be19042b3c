//! The plain listener when the facade is HTTPS-only
//! (`redirect_to_https`): every request is answered with a permanent
//! redirect to the same target over HTTPS, nothing is proxied.
//!
//! `308`, not `301`: a client repeats the request with the same method and
//! body, so a POST sent to the plain port is not turned into a GET.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

/// Serves one plain connection with redirects to HTTPS on `https_port`;
/// a request head must arrive within `head_timeout`.
pub(crate) async fn serve(stream: TcpStream, https_port: u16, head_timeout: Duration) {
    let service = service_fn(move |request: Request<Incoming>| async move {
        Ok::<_, Infallible>(redirect(&request, https_port))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The redirect for `request`: its host without the plain port, the HTTPS
/// port unless it is 443, and its target as sent.
pub(crate) fn redirect<B>(request: &Request<B>, https_port: u16) -> Response<Full<Bytes>> {
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.host().to_owned())
        .or_else(|| {
            let value = request.headers().get(header::HOST)?.to_str().ok()?;
            let authority = value.parse::<hyper::http::uri::Authority>().ok()?;
            Some(authority.host().to_owned())
        });
    let Some(host) = host else {
        return text(
            StatusCode::BAD_REQUEST,
            "a redirect to HTTPS needs the request's Host\n",
        );
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let location = if https_port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{https_port}{target}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the request's Host cannot be redirected\n",
        );
    };
    let mut response = text(StatusCode::PERMANENT_REDIRECT, "this site is served over HTTPS\n");
    response.headers_mut().insert(header::LOCATION, location);
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(request: Request<()>, port: u16) -> (StatusCode, Option<String>) {
        let response = redirect(&request, port);
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|value| value.to_str().unwrap().to_owned());
        (response.status(), location)
    }

    #[test]
    fn keeps_host_and_target_and_drops_the_plain_port() {
        let request = Request::get("/a/%41?q=1")
            .header("host", "shop.example:8080")
            .body(())
            .unwrap();
        assert_eq!(
            location(request, 8443),
            (
                StatusCode::PERMANENT_REDIRECT,
                Some("https://shop.example:8443/a/%41?q=1".to_owned())
            )
        );
        let request = Request::get("/").header("host", "shop.example").body(()).unwrap();
        assert_eq!(location(request, 443).1.as_deref(), Some("https://shop.example/"));
    }

    #[test]
    fn without_a_host_it_is_a_bad_request() {
        let request = Request::get("/").body(()).unwrap();
        assert_eq!(location(request, 443), (StatusCode::BAD_REQUEST, None));
    }
}
