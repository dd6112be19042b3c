//! Unit tests of `strangler.toml` parsing and validation.

use super::*;

const GOOD: &str = r#"
[facade]
default_backend = "legacy"

[backends.legacy]
urls = ["http://127.0.0.1:8081"]

[backends.catalog]
urls = ["http://127.0.0.1:8082", "http://127.0.0.1:8092"]
balance = "least-outstanding"

[capabilities.catalog]
legacy = "legacy"
service = "catalog"

[[routes]]
capability = "catalog"
path = "/products/{id}"
methods = ["get", "PUT"]
"#;

fn error_of(text: &str) -> String {
    FacadeConfig::parse(Path::new("strangler.toml"), text)
        .unwrap_err()
        .to_string()
}

#[test]
fn parses_a_good_file() {
    let config = FacadeConfig::parse(Path::new("strangler.toml"), GOOD).unwrap();
    assert_eq!(config.backends.len(), 2);
    assert_eq!(config.routes[0].methods, vec![Method::GET, Method::PUT]);
    assert_eq!(config.capabilities[0].initial, Stage::Legacy);
    assert_eq!(config.listen.map(|a| a.port()), Some(8080));
}

#[test]
fn every_mistake_names_its_line() {
    let unknown_backend = GOOD.replace("service = \"catalog\"", "service = \"catalogue\"");
    assert!(
        error_of(&unknown_backend).starts_with("strangler.toml:14: unknown backend `catalogue`"),
        "{}",
        error_of(&unknown_backend)
    );
    let bad_route = GOOD.replace("/products/{id}", "/products/{id");
    assert!(
        error_of(&bad_route).starts_with("strangler.toml:18:"),
        "{}",
        error_of(&bad_route)
    );
    let unknown_capability = GOOD.replace("capability = \"catalog\"", "capability = \"billing\"");
    assert!(error_of(&unknown_capability)
        .starts_with("strangler.toml:17: route names unknown capability `billing`"));
    let duplicate = format!("{GOOD}\n[capabilities.catalog]\nlegacy = \"legacy\"\nservice = \"catalog\"\n");
    assert!(
        error_of(&duplicate).starts_with("strangler.toml:"),
        "{}",
        error_of(&duplicate)
    );
    assert!(
        error_of(&duplicate).contains("duplicate"),
        "{}",
        error_of(&duplicate)
    );
    let bad_method = GOOD.replace("\"PUT\"", "\"P T\"");
    assert!(
        error_of(&bad_method).starts_with("strangler.toml:19:"),
        "{}",
        error_of(&bad_method)
    );
    let bad_url = GOOD.replace("http://127.0.0.1:8081", "ftp://legacy");
    assert!(
        error_of(&bad_url).starts_with("strangler.toml:5:"),
        "{}",
        error_of(&bad_url)
    );
}

#[test]
fn the_admin_token_never_prints() {
    let token = AdminToken::new(" s3cret\n").unwrap();
    assert_eq!(token.as_bytes(), b"s3cret");
    assert!(!format!("{token:?}").contains("s3cret"));
}
