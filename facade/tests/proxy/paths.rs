//! Path normalization against route bypasses: `/public/*` goes to the
//! catalog upstream, everything else to the monolith; a request goes where
//! its normalized path says, the upstream sees the path as the client sent
//! it unless a dot segment was removed (then the normalized one), and a
//! path the facade cannot read safely is refused before any upstream sees
//! it.
//!
//! Raw connections, because an HTTP client library would normalize the
//! URL itself before sending it.

use crate::helpers::{raw_request, Shop};

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn requests_go_where_the_normalized_path_says() {
    let (_store, _shop, facade) = Shop::start("").await;

    let cases = [
        // (request target, upstream that must answer, path it must see):
        // with a dot segment removed the normalized path, else the client's.
        ("/public/../admin", "legacy", "/admin"),
        ("/public/%2e%2e/admin", "legacy", "/admin"),
        ("/public/%2E%2E/admin", "legacy", "/admin"),
        ("/public/.%2e/admin", "legacy", "/admin"),
        ("/public/x/../../admin", "legacy", "/admin"),
        ("/public/../../../../etc/passwd", "legacy", "/etc/passwd"),
        ("//public/x", "catalog", "//public/x"),
        ("/public/./x", "catalog", "/public/x"),
        ("/public//x", "catalog", "/public//x"),
        ("/public/%2e/x", "catalog", "/public/x"),
        ("/admin/../public/x", "catalog", "/public/x"),
        ("/%70ublic/x", "catalog", "/%70ublic/x"),
        ("/public/a%20b%3f", "catalog", "/public/a%20b%3f"),
        ("/public/x?next=/../admin", "catalog", "/public/x"),
    ];
    for (target, upstream, path) in cases {
        let response = raw_request(facade.proxy, &get(target)).await;
        assert_eq!(response.status, 200, "{target}: {response:?}");
        let echo = response.json();
        assert_eq!(
            echo["name"], upstream,
            "{target} reached the wrong upstream: {echo}"
        );
        assert_eq!(echo["path"], path, "{target}: the upstream saw another path");
    }
    let response = raw_request(facade.proxy, &get("/public/x?next=/../admin")).await;
    assert_eq!(
        response.json()["query"],
        "next=/../admin",
        "the query is not a path"
    );
}

#[tokio::test]
async fn unreadable_paths_are_refused_before_any_upstream() {
    let (_store, shop, facade) = Shop::start("").await;

    for target in [
        "/public%2F..%2Fadmin",
        "/public/..%2fadmin",
        "/public/%2F",
        "/public/x%5C..%5Cadmin",
        "/public/x%00",
        "/admin%00.html",
        "/public/%zz",
        "/public/%2",
        "/public/%",
        "/public/%g0",
    ] {
        let before = shop.hits();
        let response = raw_request(facade.proxy, &get(target)).await;
        assert_eq!(response.status, 400, "{target}: {response:?}");
        let body = response.json();
        assert_eq!(body["source"], "client", "{target}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("path"),
            "{target}: {body}"
        );
        assert_eq!(shop.hits(), before, "{target} reached an upstream");
    }
}
