//! Headers on the way through: hop-by-hop headers dropped both ways,
//! `X-Forwarded-*` set, `Host` preserved or rewritten, correlation ids
//! kept, minted and returned, `traceparent` passed through.
//!
//! Requests are written byte for byte on a raw connection, so that the test
//! decides exactly which headers the facade receives.

use serde_json::Value;

use crate::helpers::{raw_request, RawResponse, Shop};

/// The values the upstream received for header `name`.
fn received<'v>(echo: &'v Value, name: &str) -> Vec<&'v str> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default()
}

fn assert_no_hop_by_hop_in_response(response: &RawResponse) {
    for (name, value) in &response.headers {
        assert!(
            !matches!(
                name.as_str(),
                "keep-alive" | "te" | "trailer" | "x-upstream-hop" | "upgrade"
            ) && !name.starts_with("proxy-"),
            "the response carries the upstream's hop-by-hop header {name}: {value}"
        );
        if name == "connection" {
            assert!(
                !value.to_ascii_lowercase().contains("x-upstream-hop"),
                "the upstream's Connection header came back: {value}"
            );
        }
    }
}

#[tokio::test]
async fn hop_by_hop_headers_stop_at_the_facade_both_ways() {
    let (_store, _shop, facade) = Shop::start("").await;

    let request = "GET /orders/1?hop_headers=1 HTTP/1.1\r\n\
                   Host: shop.example\r\n\
                   Connection: keep-alive, X-Hop-A, x-hop-b\r\n\
                   X-Hop-A: secret-a\r\n\
                   X-Hop-B: secret-b\r\n\
                   Keep-Alive: timeout=30\r\n\
                   TE: trailers\r\n\
                   Trailer: X-Checksum\r\n\
                   Proxy-Authorization: Basic c2VjcmV0\r\n\
                   Proxy-Connection: keep-alive\r\n\
                   Proxy-Anything: 1\r\n\
                   X-End-To-End: kept\r\n\
                   \r\n";
    let response = raw_request(facade.proxy, request.as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.json();
    assert_eq!(echo["name"], "legacy");
    for name in [
        "connection",
        "x-hop-a",
        "x-hop-b",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "proxy-anything",
        "upgrade",
    ] {
        assert!(
            received(&echo, name).is_empty(),
            "the upstream received hop-by-hop header {name}: {:?}",
            received(&echo, name)
        );
    }
    assert_eq!(received(&echo, "x-end-to-end"), ["kept"]);

    // What the upstream answered with for its own hop only is not returned.
    assert_no_hop_by_hop_in_response(&response);
    assert_eq!(response.header("x-upstream-kept"), Some("yes"));
}

#[tokio::test]
async fn forwarded_headers_are_set_and_host_is_kept_or_rewritten() {
    let (_store, shop, facade) = Shop::start("").await;

    // The legacy backend keeps the client's Host.
    let response = raw_request(
        facade.proxy,
        b"GET /orders/1 HTTP/1.1\r\nHost: Shop.Example:8080\r\nX-Forwarded-For: 203.0.113.7\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let echo = response.json();
    assert_eq!(echo["name"], "legacy");
    assert_eq!(received(&echo, "host"), ["Shop.Example:8080"]);
    assert_eq!(received(&echo, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(received(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(received(&echo, "x-forwarded-host"), ["Shop.Example:8080"]);

    // The catalog backend (`host_header = "rewrite"`) gets its own address.
    let response = raw_request(
        facade.proxy,
        b"GET /products/1 HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let echo = response.json();
    assert_eq!(echo["name"], "catalog");
    assert_eq!(received(&echo, "host"), [shop.catalog.addr.to_string().as_str()]);
    assert_eq!(received(&echo, "x-forwarded-host"), ["shop.example"]);
    assert_eq!(received(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(received(&echo, "x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn x_forwarded_for_keeps_every_earlier_hop() {
    let (_store, _shop, facade) = Shop::start("").await;

    // Two field lines of one header are one list (RFC 9110 §5.3).
    let response = raw_request(
        facade.proxy,
        b"GET /orders/1 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.7\r\n\
          X-Forwarded-For: 198.51.100.2\r\nConnection: close\r\n\r\n",
    )
    .await;
    let echo = response.json();
    assert_eq!(
        received(&echo, "x-forwarded-for").join(", "),
        "203.0.113.7, 198.51.100.2, 127.0.0.1",
        "an earlier hop was lost from X-Forwarded-For"
    );
}

#[tokio::test]
async fn correlation_ids_are_kept_minted_and_returned() {
    let (_store, _shop, facade) = Shop::start("").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    // Sent: passed upstream and returned; traceparent untouched.
    let response = facade
        .client
        .get(facade.url("/products/5"))
        .header("x-request-id", "req-abc-123")
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-abc-123");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(received(&echo, "x-request-id"), ["req-abc-123"]);
    assert_eq!(received(&echo, "traceparent"), [traceparent]);

    // Absent: one is minted, sent upstream and returned.
    let response = facade.client.get(facade.url("/products/5")).send().await.unwrap();
    let minted = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(minted.len(), 36, "a UUID, got {minted}");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(received(&echo, "x-request-id"), [minted.as_str()]);
    let again = facade.client.get(facade.url("/products/5")).send().await.unwrap();
    assert_ne!(
        again.headers()["x-request-id"],
        minted.as_str(),
        "ids must differ"
    );

    // Absent with a traceparent: the trace id correlates the request.
    let response = facade
        .client
        .get(facade.url("/orders/5"))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let echo: Value = response.json().await.unwrap();
    assert_eq!(received(&echo, "traceparent"), [traceparent]);
    assert_eq!(
        received(&echo, "x-request-id"),
        ["4bf92f3577b34da6a3ce929d0e0e4736"]
    );

    // An error the facade makes itself carries the id too.
    let response = raw_request(
        facade.proxy,
        b"GET /a%2Fb HTTP/1.1\r\nHost: shop.example\r\nX-Request-Id: bad-path-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.header("x-request-id"), Some("bad-path-1"));
    assert_eq!(response.json()["request_id"], "bad-path-1");
}
