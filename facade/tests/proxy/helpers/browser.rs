//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), one per test: its own chromedriver on a free port,
//! its own profile, and the whole process group killed when dropped.
//!
//! Without them, a case skips with a printed reason; under `CI=true` it
//! fails, since CI installs them (`.ci/run`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tempfile::TempDir;

use super::{eventually, WAIT_LIMIT};

/// A browser session.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (with
    /// the reason printed) when they are not installed outside CI.
    pub async fn start() -> Option<Self> {
        let driver = on_path(&["chromedriver"]);
        let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            let why =
                "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)";
            assert!(std::env::var_os("CI").is_none(), "{why}; CI must have them");
            eprintln!("skipping a browser test: {why}");
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut command = Command::new(driver);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that Chromium goes with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let webdriver = format!("http://127.0.0.1:{port}");
        let http = test_harness::http_client();
        eventually(
            "chromedriver to be ready",
            WAIT_LIMIT,
            Duration::from_millis(50),
            async || {
                let status = http.get(format!("{webdriver}/status")).send().await;
                match status {
                    Ok(response) => {
                        let body: Value = response.json().await.map_err(|e| e.to_string())?;
                        match body["value"]["ready"].as_bool() {
                            Some(true) => Ok(()),
                            _ => Err(body.to_string()),
                        }
                    }
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|error| panic!("opening a Chromium session: {error}"));
        Some(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits for the first element matching `css`.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT_LIMIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no `{css}` on the page: {error}"))
    }

    /// Waits until the text of the first `css` element contains `text`;
    /// returns that text.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> String {
        let what = format!("`{css}` to say `{text}`");
        eventually(&what, WAIT_LIMIT, Duration::from_millis(50), async || {
            let found = self.client.find(Locator::Css(css)).await;
            let now = match found {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(error) => return Err(error.to_string()),
            };
            if now.contains(text) {
                Ok(now)
            } else {
                Err(now)
            }
        })
        .await
    }

    /// Runs `script` (a function body) in the page; returns its value.
    pub async fn run(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// The page's text, as a user reads it.
    pub async fn page_text(&self) -> String {
        self.run("return document.body.innerText;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot as `<name>.png` in the folder named by
    /// `STRANGLER_PANEL_SCREENSHOTS`, when set (for the docs).
    pub async fn screenshot(&self, name: &str) {
        let Some(folder) = std::env::var_os("STRANGLER_PANEL_SCREENSHOTS") else {
            return;
        };
        self.client.set_window_size(1280, 900).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&folder).join(format!("{name}.png")), png).unwrap();
    }

    /// The controls (inputs, selects, buttons, links) without an accessible
    /// name: no label, no `aria-label`, no text.
    pub async fn unlabelled_controls(&self) -> Value {
        self.run(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, button, a')]
               .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.textContent.trim()))
               .map(e => e.outerHTML);",
        )
        .await
    }

    /// Ends the session (dropping the browser then stops the driver).
    pub async fn close(&self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its process group: the group is it and Chromium.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
