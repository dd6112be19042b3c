//! A configuration is refused at load with the file and line of the
//! mistake, and a facade does not start without an admin token.

use std::path::Path;

use facade::config::FacadeConfig;
use facade::Facade;
use test_harness::DatabaseUrl;

use crate::helpers::{error_chain, parse_config};

/// A good file; every line number below counts from its first line.
const GOOD: &str = r#"[facade]
default_backend = "legacy"

[backends.legacy]
urls = ["http://127.0.0.1:8081"]

[backends.catalog]
urls = ["http://127.0.0.1:8082"]

[capabilities.catalog]
legacy = "legacy"
service = "catalog"

[[routes]]
capability = "catalog"
path = "/products/{id}"
methods = ["GET"]
"#;

fn error_of(text: &str) -> String {
    match FacadeConfig::parse(Path::new("conf/strangler.toml"), text) {
        Ok(_) => panic!("the configuration was accepted:\n{text}"),
        Err(error) => error.to_string(),
    }
}

fn assert_refused_at(text: &str, line: usize, mentions: &str) {
    let error = error_of(text);
    let prefix = format!("conf/strangler.toml:{line}:");
    assert!(error.starts_with(&prefix), "expected `{prefix}`, got: {error}");
    assert!(
        error.contains(mentions),
        "expected a mention of `{mentions}`, got: {error}"
    );
}

#[test]
fn the_good_file_parses() {
    let config = FacadeConfig::parse(Path::new("conf/strangler.toml"), GOOD).unwrap();
    assert_eq!(config.backends.len(), 2);
    assert_eq!(config.capabilities.len(), 1);
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.default_backend.as_deref(), Some("legacy"));
}

#[test]
fn an_unknown_backend_is_refused_with_its_line() {
    assert_refused_at(
        &GOOD.replace("service = \"catalog\"", "service = \"catalogue\""),
        12,
        "catalogue",
    );
    assert_refused_at(
        &GOOD.replace("default_backend = \"legacy\"", "default_backend = \"monolith\""),
        2,
        "monolith",
    );
}

#[test]
fn a_bad_route_pattern_is_refused_with_its_line() {
    for bad in [
        "/products/{id",
        "products/{id}",
        "/products/*/x",
        "/products/{id}/*",
        "/a/../b",
    ] {
        assert_refused_at(&GOOD.replace("/products/{id}", bad), 16, bad);
    }
    assert_refused_at(
        &GOOD.replace("capability = \"catalog\"", "capability = \"billing\""),
        15,
        "billing",
    );
}

#[test]
fn a_duplicate_capability_is_refused_with_its_line() {
    let duplicate = format!("{GOOD}\n[capabilities.catalog]\nlegacy = \"legacy\"\nservice = \"catalog\"\n");
    assert_refused_at(&duplicate, 19, "catalog");
}

#[tokio::test]
async fn a_facade_does_not_start_without_an_admin_token() {
    assert!(
        std::env::var_os("STRANGLER_ADMIN_TOKEN").is_none(),
        "this test needs STRANGLER_ADMIN_TOKEN unset"
    );
    let folder = tempfile::tempdir().unwrap();
    let store_file = folder.path().join("state.db");
    let mut config = parse_config(GOOD);
    config.store_url = DatabaseUrl::sqlite_file(&store_file);
    config.admin_token_file = None;
    let error = match Facade::build(config.clone()).await {
        Ok(_) => panic!("a facade started without an admin token"),
        Err(error) => error_chain(&error),
    };
    assert!(error.contains("no admin token"), "{error}");

    // A token file that is empty or missing is no better.
    let empty = folder.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    config.admin_token_file = Some(empty);
    let error = match Facade::build(config.clone()).await {
        Ok(_) => panic!("a facade started with an empty admin token"),
        Err(error) => error_chain(&error),
    };
    assert!(
        error.contains("empty-token is empty; put the token in it"),
        "{error}"
    );
    config.admin_token_file = Some(folder.path().join("missing-token"));
    let error = match Facade::build(config).await {
        Ok(_) => panic!("a facade started with a missing admin token file"),
        Err(error) => error_chain(&error),
    };
    assert!(error.contains("missing-token"), "{error}");
    assert!(
        !store_file.exists(),
        "the store was touched before the token was checked"
    );
}
