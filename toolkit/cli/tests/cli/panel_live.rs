//! The control panel follows a flip made by the real `strangler` binary,
//! live and without a reload, on the demo's own capabilities: `strangler
//! demo` (its built-in `demo/strangler.toml`) on free ports, the panel
//! opened in headless Chromium at the address the demo prints, and
//! `strangler routes flip` run as a user runs it.
//!
//! It lives here rather than with the panel's other browser tests
//! (`facade/tests/proxy/panel.rs`) because only this crate's tests can run
//! the binary (`CARGO_BIN_EXE_strangler`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::json;
use test_harness::browser::Browser;

use crate::{demo_on_free_ports, run, stop_with_ctrl_c, strangler};

/// The demo, killed if the test ends before stopping it.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Demo {
    /// Stops it as Ctrl-C does, and waits for it to exit cleanly.
    fn stop(mut self) {
        let status = stop_with_ctrl_c(&mut self.0);
        assert!(status.success(), "{status}");
    }
}

/// Starts the demo in `data` on free ports; returns it with the control
/// panel's address as its banner prints it (`http://<admin>/?token=…`).
fn start_demo(data: &std::path::Path) -> (Demo, String) {
    let mut child = demo_on_free_ports(data)
        .env_remove("STRANGLER_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let demo = Demo(child);
    let mut banner = String::new();
    let panel = loop {
        let Some(line) = lines.next() else {
            panic!("the demo exited before printing the control panel's address:\n{banner}");
        };
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.trim().strip_prefix("control panel") {
            break rest.trim().to_owned();
        }
    };
    // Keep reading, so that the demo never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        panel.starts_with("http://") && panel.contains("/?token="),
        "{banner}"
    );
    (demo, panel)
}

/// The capabilities `demo/strangler.toml` declares (`[capabilities.<name>]`).
fn demo_capabilities() -> Vec<String> {
    let config = std::fs::read_to_string(test_harness::workspace_path("demo/strangler.toml")).unwrap();
    let mut names: Vec<String> = config
        .lines()
        .filter_map(|line| line.trim().strip_prefix("[capabilities.")?.strip_suffix(']'))
        .filter(|name| !name.contains('.'))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[test]
fn the_panel_shows_a_cli_flip_live_without_a_reload() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(browser) = runtime.block_on(Browser::start()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (demo, panel) = start_demo(&dir.path().join("demo"));
    let (admin, token) = panel.split_once("/?token=").unwrap();
    let (admin, token) = (admin.to_owned(), token.to_owned());

    runtime.block_on(async {
        // The address the demo prints logs in and drops the token.
        browser.goto(&panel).await;
        browser.wait_for("#overview").await;
        let address = browser.client.current_url().await.unwrap();
        assert_eq!(address.as_str(), format!("{admin}/"), "{address}");

        // The overview shows the demo's capabilities, every one on legacy.
        let expected = demo_capabilities();
        assert!(expected.contains(&"orders".to_owned()), "{expected:?}");
        for name in &expected {
            browser
                .wait_for_text(&format!(r#"[data-capability="{name}"] .stage-current"#), "legacy")
                .await;
        }
        let shown = browser
            .run(
                "return [...document.querySelectorAll('#overview [data-capability]')]
                   .map(e => e.dataset.capability).sort();",
            )
            .await;
        assert_eq!(shown, json!(expected));

        // A mark in the page: a reload would wipe it.
        browser.run("window.__noReload = 1; return null;").await;

        // The flip, by the binary, as the walkthrough does it.
        let mut flip = strangler();
        flip.args([
            "routes",
            "flip",
            "orders",
            "--to",
            "shadow",
            "--reason",
            "compare first",
            "--admin-url",
            &admin,
        ])
        .env("STRANGLER_ADMIN_TOKEN", &token);
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run(&mut flip)).await.unwrap();
        assert_eq!(code, 0, "{stdout}{stderr}");

        browser
            .wait_for_text(r#"[data-capability="orders"] .stage-current"#, "shadow")
            .await;
        assert_eq!(
            browser.run("return window.__noReload;").await,
            json!(1),
            "the page reloaded"
        );
        // The other capability did not move.
        browser
            .wait_for_text(r#"[data-capability="catalog"] .stage-current"#, "legacy")
            .await;
        browser.close().await;
    });
    drop(browser);
    demo.stop();
}
