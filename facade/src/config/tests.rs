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

#[test]
fn the_head_timeout_is_thirty_seconds_unless_set_within_its_range() {
    let config = FacadeConfig::parse(Path::new("strangler.toml"), GOOD).unwrap();
    assert_eq!(config.connections.header_read_timeout, Duration::from_secs(30));
    let set = GOOD.replace("[facade]\n", "[facade]\nheader_read_timeout_ms = 2500\n");
    let config = FacadeConfig::parse(Path::new("strangler.toml"), &set).unwrap();
    assert_eq!(
        config.connections.header_read_timeout,
        Duration::from_millis(2500)
    );
    let too_short = GOOD.replace("[facade]\n", "[facade]\nheader_read_timeout_ms = 5\n");
    let error = error_of(&too_short);
    assert!(
        error.starts_with("strangler.toml:3: header_read_timeout_ms must be between 100 and 3600000, got 5"),
        "{error}"
    );
}

#[test]
fn a_token_file_that_cannot_be_read_names_the_line_that_names_it() {
    if std::env::var_os("STRANGLER_ADMIN_TOKEN").is_some() {
        return; // The environment's token would be taken first.
    }
    let folder = tempfile::tempdir().unwrap();
    let text = GOOD.replace("[facade]\n", "[facade]\nadmin_token_file = \"no-such-token\"\n");
    let config = FacadeConfig::parse(&folder.path().join("strangler.toml"), &text).unwrap();
    let error = config.admin_token().unwrap_err().to_string();
    assert!(
        error.contains("strangler.toml:3: cannot read the admin token file"),
        "{error}"
    );
    assert!(error.contains("no-such-token"), "{error}");
    std::fs::write(folder.path().join("no-such-token"), " \n").unwrap();
    let error = config.admin_token().unwrap_err().to_string();
    assert!(
        error.contains("strangler.toml:3: the admin token file"),
        "{error}"
    );
    assert!(error.contains("is empty"), "{error}");
}
