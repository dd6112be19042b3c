//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), one per test: its own chromedriver on a free port,
//! its own profile, and the whole process group killed when dropped.
//!
//! It lives here, behind the `browser` feature, because two test crates
//! drive the control panel: the facade's (the panel's own cases) and the
//! CLI's (a flip by the real `strangler` binary, which only that crate can
//! run). Crates without browser tests do not build fantoccini.
//!
//! Without chromium and chromedriver, a case skips with a printed reason;
//! under CI ([`crate::servers_required`]) it fails instead, since CI
//! installs them (`.ci/run`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use fantoccini;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long any wait on the page may take before it counts as a failure.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The window the screenshots are taken in (the height grows to the page's
/// for a full-page one).
const WINDOW: (u32, u32) = (1280, 900);

/// The tallest full-page screenshot: past it, the page's top part.
const MAX_HEIGHT: u32 = 4000;

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

/// Calls `attempt` every `every` until it returns `Ok`, and returns that;
/// panics with `what` and the last `Err` once [`WAIT_LIMIT`] has passed.
async fn eventually<T>(
    what: &str,
    every: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {WAIT_LIMIT:?} waiting for {what}: {last}"
            ),
        }
        tokio::time::sleep(every).await;
    }
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
            assert!(!crate::servers_required(), "{why}; CI must have them");
            // Straight to the standard error stream: the test runner hides
            // `eprintln!` of a passing test, and a skip must be visible.
            let _ = writeln!(
                std::io::stderr().lock(),
                "skipping a browser test: {why}; set CI=true to make this a failure"
            );
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
        let http = crate::http_client();
        eventually(
            "chromedriver to be ready",
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
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
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
        eventually(&what, Duration::from_millis(50), async || {
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

    /// Waits until `script` (a function body) returns `true` in the page.
    pub async fn wait_until(&self, what: &str, script: &str) {
        eventually(what, Duration::from_millis(50), async || {
            match self.client.execute(script, Vec::new()).await {
                Ok(Value::Bool(true)) => Ok(()),
                Ok(other) => Err(other.to_string()),
                Err(error) => Err(error.to_string()),
            }
        })
        .await;
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

    /// Presses and releases `key` on the keyboard, as a person does: the
    /// key goes to whatever has the focus (unlike `Element::send_keys`,
    /// which first focuses its element).
    pub async fn press(&self, key: Key) {
        let keys = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key.into() })
            .then(KeyAction::Up { value: key.into() });
        self.client.perform_actions(keys).await.unwrap();
        self.client.release_actions().await.unwrap();
    }

    /// Saves a screenshot of the whole page (up to [`MAX_HEIGHT`] pixels
    /// tall) as `<name>.png` in the folder named by
    /// `STRANGLER_PANEL_SCREENSHOTS`, when set (for the docs).
    pub async fn screenshot(&self, name: &str) {
        let Some(folder) = screenshot_folder() else {
            return;
        };
        self.client.set_window_size(WINDOW.0, WINDOW.1).await.unwrap();
        // The window's height is the page's plus the browser's own frame.
        let needed = self
            .run(
                "return Math.ceil(document.documentElement.scrollHeight + window.outerHeight - window.innerHeight);",
            )
            .await
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .unwrap_or(WINDOW.1)
            .clamp(WINDOW.1, MAX_HEIGHT);
        self.client.set_window_size(WINDOW.0, needed).await.unwrap();
        self.save(&folder, name).await;
        self.client.set_window_size(WINDOW.0, WINDOW.1).await.unwrap();
    }

    /// Saves a screenshot of one window's height with the first `css`
    /// element at its top, for a view whose subject is far down the page.
    pub async fn screenshot_at(&self, name: &str, css: &str) {
        let Some(folder) = screenshot_folder() else {
            return;
        };
        self.client.set_window_size(WINDOW.0, WINDOW.1).await.unwrap();
        self.wait_for(css).await;
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'start'});",
                vec![json!(css)],
            )
            .await
            .unwrap();
        self.save(&folder, name).await;
    }

    async fn save(&self, folder: &std::path::Path, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(folder).unwrap();
        std::fs::write(folder.join(format!("{name}.png")), png).unwrap();
    }

    /// The controls (inputs, selects, buttons, links) without an accessible
    /// name (no label, no `aria-label`, no text), and the images
    /// (`role="img"`, such as the charts) without `aria-label`,
    /// `aria-labelledby` or a `<title>`: an image takes no name from the
    /// text inside it.
    pub async fn unlabelled_controls(&self) -> Value {
        self.run(
            "const named = (e) => e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
             const controls = [...document.querySelectorAll('input:not([type=hidden]), select, button, a')]
               .filter(e => !((e.labels && e.labels.length) || named(e) || e.textContent.trim()));
             const images = [...document.querySelectorAll('[role=img]')]
               .filter(e => !(named(e) || (e.querySelector(':scope > title') || {}).textContent));
             return [...controls, ...images].map(e => e.outerHTML.slice(0, 200));",
        )
        .await
    }

    /// Every visible text whose contrast falls short of WCAG AA (4.5:1, or
    /// 3:1 for large text: 24px, or 18.66px bold), and the lowest ratio
    /// seen: `{"lowest": …, "failures": [...]}`, each entry with the text,
    /// its colours and ratio (unrounded, so that 4.497 is not passed as
    /// 4.50). See [`CONTRAST`].
    pub async fn contrast(&self) -> Contrast {
        let value = self.run(CONTRAST).await;
        let list = |key: &str| value[key].as_array().cloned().unwrap_or_default();
        Contrast {
            measured: value["measured"].as_u64().unwrap_or(0),
            lowest: list("lowest"),
            failures: list("failures"),
        }
    }

    /// Ends the session (dropping the browser then stops the driver).
    pub async fn close(&self) {
        let _ = self.client.clone().close().await;
    }
}

fn screenshot_folder() -> Option<PathBuf> {
    std::env::var_os("STRANGLER_PANEL_SCREENSHOTS").map(PathBuf::from)
}

/// What [`Browser::contrast`] measured on a page.
#[derive(Debug)]
pub struct Contrast {
    /// How many texts were measured.
    pub measured: u64,
    /// The texts with the lowest ratios, lowest first, one per pair of
    /// colours (at most ten).
    pub lowest: Vec<Value>,
    /// The texts below their threshold.
    pub failures: Vec<Value>,
}

impl Contrast {
    /// The lowest ratio measured (`f64::INFINITY` with no text).
    pub fn min_ratio(&self) -> f64 {
        self.lowest
            .first()
            .and_then(|entry| entry["ratio"].as_f64())
            .unwrap_or(f64::INFINITY)
    }
}

/// The contrast check, run in the page. For every rendered element with
/// text of its own (a non-blank direct text node), the ratio between its
/// computed colour (`fill` for SVG text) and its effective background: the
/// background colours of it and its ancestors, composited from the first
/// opaque one (or the white canvas) up. Disabled controls are left out, as
/// WCAG leaves out inactive components; so are `<option>`s, which the
/// system draws, and `<title>`s, which are not drawn.
const CONTRAST: &str = r##"
const parse = (text) => {
  const m = /rgba?\(([^)]*)\)/.exec(text || "");
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
};
const over = (top, bottom) => ({
  r: top.r * top.a + bottom.r * (1 - top.a),
  g: top.g * top.a + bottom.g * (1 - top.a),
  b: top.b * top.a + bottom.b * (1 - top.a),
  a: 1,
});
const background = (element) => {
  const layers = [];
  for (let e = element; e && e.nodeType === 1; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) {
      layers.push(c);
      if (c.a >= 1) break;
    }
  }
  let color = { r: 255, g: 255, b: 255, a: 1 };
  for (const layer of layers.reverse()) color = over(layer, color);
  return color;
};
const luminance = (c) => {
  const channel = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
};
const hex = (c) => "#" + [c.r, c.g, c.b].map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
const results = [];
for (const e of document.body.querySelectorAll("*")) {
  if (["SCRIPT", "STYLE", "OPTION", "TITLE", "title"].includes(e.tagName)) continue;
  const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || !e.getClientRects().length) continue;
  const style = getComputedStyle(e);
  if (style.visibility !== "visible" || Number(style.opacity) === 0) continue;
  if (e.closest(":disabled")) continue;
  const isSvg = e instanceof SVGElement;
  const ink = parse(isSvg ? style.fill : style.color);
  if (!ink) continue;
  const back = background(e);
  const fore = ink.a < 1 ? over(ink, back) : ink;
  const [hi, lo] = [luminance(fore), luminance(back)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
  results.push({
    text: [...e.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim().slice(0, 60),
    element: e.tagName.toLowerCase() + (e.className && typeof e.className === "string" ? "." + e.className.trim().split(/\s+/).join(".") : ""),
    color: hex(fore),
    background: hex(back),
    ratio: ratio,
    large: large,
    required: large ? 3 : 4.5,
  });
}
results.sort((a, b) => a.ratio - b.ratio);
const pairs = new Set();
const lowest = results.filter((r) => {
  const pair = r.color + " on " + r.background;
  return pairs.has(pair) ? false : pairs.add(pair);
});
return {
  measured: results.length,
  lowest: lowest.slice(0, 10),
  failures: results.filter((r) => r.ratio < r.required),
};
"##;

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its process group: the group is it and Chromium.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
