//! The control panel in a real browser (headless Chromium over WebDriver):
//! login (by the form and by the token link) and nothing visible without
//! it, the live overview, keyboard use, labels and WCAG AA contrast on
//! every view, a flip refused by a gate with its reason and then forced
//! with a recorded override, a rollback, shadowed answers that stay text,
//! and no secret on any page. What the overview reads is checked without a
//! browser too (a shard's reconciliation run is not the capability's).
//!
//! The flip by the real `strangler` binary, followed live on the demo's own
//! capabilities, is the CLI's test (`toolkit/cli/tests/cli/panel_live.rs`):
//! only that crate can run the binary.

use std::net::SocketAddr;

use axum::routing::get;
use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_harness::browser::fantoccini::key::Key;
use test_harness::{on_each_engine, DatabaseUrl, Engine, TestDatabase};
use toolkit_db::Database;

use crate::gates::record_reconciliation;
use crate::helpers::{start_facade, Browser, Cutover, Settings, Shop, TestFacade, CAPABILITY};

impl TestFacade {
    /// The panel's address, `path` appended.
    fn panel(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Logs `browser` in the way a link from the operator does.
    async fn log_in(&self, browser: &Browser) {
        browser
            .goto(&self.panel(&format!("/?token={}", self.token)))
            .await;
        browser.wait_for("#overview").await;
    }

    /// A session cookie (`strangler_panel=…`), from the login form's POST
    /// as a browser sends it, for the data endpoints without a browser.
    async fn session_cookie(&self) -> String {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = http
            .post(self.panel("/login"))
            .form(&[("token", self.token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set = response.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    /// `GET /panel/api{path}` with `cookie`, as JSON.
    async fn panel_json(&self, cookie: &str, path: &str) -> Value {
        let response = test_harness::http_client()
            .get(self.panel(&format!("/panel/api{path}")))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }
}

/// Asserts every text on the page meets WCAG AA contrast (4.5:1, 3:1 for
/// large text); prints the lowest ratio, the figure docs/panel.md quotes.
async fn assert_contrast(browser: &Browser, view: &str) {
    let contrast = browser.contrast().await;
    assert!(contrast.measured > 0, "{view}: no text measured");
    assert!(
        contrast.failures.is_empty(),
        "{view}: text below WCAG AA contrast: {:#?}",
        contrast.failures
    );
    let lowest: Vec<String> = contrast
        .lowest
        .iter()
        .take(3)
        .map(|t| {
            let ratio = t["ratio"].as_f64().unwrap_or_default();
            format!(
                "{} on {} {ratio:.2}:1 ({})",
                t["color"], t["background"], t["element"]
            )
        })
        .collect();
    eprintln!(
        "{view}: {} texts, lowest contrast {:.2}:1; lowest: {}",
        contrast.measured,
        contrast.min_ratio(),
        lowest.join("; ")
    );
}

#[tokio::test]
async fn nothing_is_shown_without_a_login_and_the_token_leaves_the_address() {
    let (_store, _shop, facade) = Shop::start("").await;
    let http = test_harness::http_client();

    // Without a session: the login page, and no data from any endpoint.
    let page = http.get(facade.panel("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let body = page.text().await.unwrap();
    assert!(body.contains("login-form"), "{body}");
    assert!(!body.contains("orders") && !body.contains("catalog"), "{body}");
    for path in [
        "/panel/api/overview",
        "/panel/api/events",
        "/panel/api/backends",
        "/panel/api/capabilities/orders",
    ] {
        let response = http.get(facade.panel(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("orders\""), "{path}: {text}");
    }
    let flip = http
        .post(facade.panel("/panel/api/capabilities/orders/flip"))
        .json(&json!({"to": "service", "reason": "no session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(flip.status(), StatusCode::UNAUTHORIZED);
    // The admin API's bearer token is not a panel session either way round.
    let bearer = http
        .get(facade.panel("/panel/api/overview"))
        .bearer_auth(&facade.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);

    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.goto(&facade.panel("/?token=wrong")).await;
    browser
        .wait_for_text("#login-message", "not the admin token")
        .await;
    browser.goto(&facade.panel("/")).await;
    browser.wait_for("#login-form").await;
    assert_eq!(browser.unlabelled_controls().await, json!([]));
    assert_contrast(&browser, "login").await;
    browser.screenshot("login").await;

    facade.log_in(&browser).await;
    // The token is gone from the address (and so from the history).
    let address = browser.client.current_url().await.unwrap();
    assert_eq!(address.as_str(), facade.panel("/"), "{address}");
    assert!(!address.as_str().contains(&facade.token));
    browser.wait_for(r#"[data-capability="orders"]"#).await;
    // The session cookie is HttpOnly: the page's scripts cannot read it.
    assert_eq!(browser.run("return document.cookie;").await, json!(""));
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "strangler_panel").unwrap();
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");

    // With the cookie, data flows; an action without the CSRF token does not.
    let cookie = format!("strangler_panel={}", session.value());
    let overview = http
        .get(facade.panel("/panel/api/overview"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), StatusCode::OK);
    let forged = http
        .post(facade.panel("/panel/api/capabilities/orders/flip"))
        .header("cookie", &cookie)
        .json(&json!({"to": "shadow", "reason": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(facade.target_of("orders").await, "legacy");

    // Logging out ends the session.
    browser.wait_for("#logout button").await.click().await.unwrap();
    browser.wait_for("#login-form").await;
    let after = http
        .get(facade.panel("/panel/api/overview"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    browser.close().await;
}

#[tokio::test]
async fn the_login_form_logs_in_as_the_token_link_does() {
    let (_store, _shop, facade) = Shop::start("").await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.goto(&facade.panel("/")).await;
    // A wrong token: the form again, with the reason, and no session.
    let token = browser.wait_for("#token").await;
    token.send_keys("not-the-token").await.unwrap();
    browser.wait_for("#login-button").await.click().await.unwrap();
    browser
        .wait_for_text("#login-message", "not the admin token")
        .await;
    assert_contrast(&browser, "login, refused").await;
    // The right one, typed and sent with Enter as a person does.
    let token = browser.wait_for("#token").await;
    token.clear().await.unwrap();
    token.send_keys(&facade.token).await.unwrap();
    browser.press(Key::Enter).await;
    browser.wait_for(r#"#overview [data-capability="orders"]"#).await;
    let address = browser.client.current_url().await.unwrap();
    assert_eq!(address.as_str(), facade.panel("/"), "{address}");
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "strangler_panel").unwrap();
    assert_eq!(session.http_only(), Some(true));
    browser.close().await;
}

// The shop's capabilities are the demo's (`catalog`, `orders`) and one
// more; the demo's own configuration is loaded, by `strangler demo`, in the
// CLI's panel test, which this crate cannot run (it needs the binary).
#[tokio::test]
async fn the_overview_shows_every_capability_and_follows_changes_live() {
    let (_store, _shop, facade) = Shop::start("").await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    facade.log_in(&browser).await;
    for (name, stage) in [
        ("catalog", "service"),
        ("orders", "legacy"),
        ("assets", "service"),
    ] {
        let card = format!(r#"[data-capability="{name}"] .stage-current"#);
        browser.wait_for_text(&card, stage).await;
    }
    let orders = browser
        .wait_for_text(r#"[data-capability="orders"]"#, "next move to shadow")
        .await;
    assert!(orders.contains("reconciliation"), "{orders}");
    assert!(orders.contains("breaker"), "{orders}");
    assert_eq!(browser.unlabelled_controls().await, json!([]));
    assert_contrast(&browser, "overview").await;
    browser.screenshot("overview").await;

    // A change made elsewhere (here the admin API; the CLI's own test flips
    // with the binary) shows without a reload: the page's own state
    // survives it.
    browser.run("window.__noReload = 1; return null;").await;
    facade
        .flip_ok(
            "orders",
            json!({"to": "canary", "percent": 25, "reason": "live", "actor": "ops", "force": true}),
        )
        .await;
    browser
        .wait_for_text(r#"[data-capability="orders"] .stage-current"#, "canary 25%")
        .await;
    assert_eq!(browser.run("return window.__noReload;").await, json!(1));

    // Keyboard: Tab (real key presses) reaches the first capability's link
    // past the header's links, and Enter opens it. The live updates keep
    // rebuilding the cards meanwhile; the focus must survive them.
    let mut reached = Value::Null;
    for _ in 0..12 {
        browser.press(Key::Tab).await;
        reached = browser
            .run(
                "const a = document.activeElement;
                 return a && a.closest('#overview') && a.tagName === 'A' ? a.getAttribute('href') : null;",
            )
            .await;
        if !reached.is_null() {
            break;
        }
    }
    let href = reached
        .as_str()
        .expect("Tab never reached a capability's link")
        .to_owned();
    let first = browser
        .run("return document.querySelector('#overview a').getAttribute('href');")
        .await;
    assert_eq!(json!(href), first, "Tab skipped the first capability");
    let pushed = browser
        .run("return document.getElementById('live').textContent;")
        .await;
    browser
        .wait_until(
            "the next live update",
            &format!("return document.getElementById('live').textContent !== {pushed};"),
        )
        .await;
    let still = browser
        .run("return document.activeElement.getAttribute('href');")
        .await;
    assert_eq!(still, json!(href), "a live update took the focus away");
    browser.press(Key::Enter).await;
    browser.wait_for("#actions").await;
    assert_eq!(browser.run("return window.location.hash;").await, json!(href));
    let name = href.trim_start_matches("#/capability/");
    browser
        .wait_for_text(&format!(r#"[data-capability="{name}"] h2"#), name)
        .await;

    // The backends page lists every instance with its health and breaker.
    browser.goto(&facade.panel("/#/backends")).await;
    let catalog = browser
        .wait_for_text(r#"[data-backend="catalog"]"#, "healthy")
        .await;
    assert!(catalog.contains("closed"), "{catalog}");
    assert_eq!(browser.unlabelled_controls().await, json!([]));
    assert_contrast(&browser, "backends").await;
    browser.screenshot("backends").await;
    browser.close().await;
}

#[tokio::test]
async fn a_gate_refusal_is_shown_and_an_override_takes_a_second_confirmation() {
    let (_store, _cutover, facade) = Cutover::start(Settings::default()).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    facade.log_in(&browser).await;
    browser
        .goto(&facade.panel(&format!("/#/capability/{CAPABILITY}")))
        .await;
    browser.wait_for("#actions").await;

    // Legacy straight to service: the reconciliation gate refuses.
    browser
        .wait_for("#move-to")
        .await
        .select_by_value("service")
        .await
        .unwrap();
    browser.wait_for("#check").await.click().await.unwrap();
    let refusal = browser
        .wait_for_text("#refusals", "no reconciliation of `orders` has finished")
        .await;
    assert!(refusal.contains("strangler reconcile run orders"), "{refusal}");
    let move_button = browser.wait_for("#move").await;
    assert!(
        !move_button.is_enabled().await.unwrap(),
        "Move is enabled past a refusal"
    );
    assert_eq!(browser.unlabelled_controls().await, json!([]));
    assert_contrast(&browser, "capability, gate refused").await;
    // The top of the page: the capability's card, then the refusal.
    browser.screenshot_at("capability-gate-refused", "header").await;

    // Override: the reason, the box, Move, and only then the confirmation.
    browser
        .wait_for("#reason")
        .await
        .send_keys("the nightly reconciliation is late; approved by the owner")
        .await
        .unwrap();
    browser.wait_for("#who").await.send_keys("ann").await.unwrap();
    browser.wait_for("#override").await.click().await.unwrap();
    move_button.click().await.unwrap();
    let confirm = browser.wait_for("#confirm-override").await;
    assert!(confirm.is_displayed().await.unwrap());
    assert_eq!(
        facade.target_of(CAPABILITY).await,
        "legacy",
        "moved before the confirmation"
    );
    confirm.click().await.unwrap();
    browser.wait_for_text("#action-done", "gates overridden").await;
    assert_eq!(facade.target_of(CAPABILITY).await, "service");

    // Recorded like the CLI's override, and shown in the timeline.
    let history = facade.history().await;
    let forced = &history[0];
    assert_eq!(forced["actor"], "panel:ann", "{forced}");
    assert_eq!(forced["forced"], true, "{forced}");
    assert_eq!(forced["to"], "service", "{forced}");
    assert_eq!(
        forced["reason"],
        "the nightly reconciliation is late; approved by the owner"
    );
    assert!(forced["detail"]["overridden"][0]
        .as_str()
        .unwrap()
        .contains("no reconciliation"));
    browser
        .wait_for_text("#history tbody tr", "[forced past a gate]")
        .await;
    // Every chart is drawn by now, with its name.
    browser.wait_for("#charts svg[aria-label]").await;
    assert_eq!(browser.unlabelled_controls().await, json!([]));
    assert_contrast(&browser, "capability, forced").await;
    browser.screenshot_at("capability-forced", "#history").await;

    // Rollback is an action too, never gated.
    browser
        .wait_for("#rollback-reason")
        .await
        .send_keys("back while we reconcile")
        .await
        .unwrap();
    browser.wait_for("#rollback").await.click().await.unwrap();
    browser.wait_for_text("#action-done", "Rolled back").await;
    assert_eq!(facade.target_of(CAPABILITY).await, "legacy");
    let history = facade.history().await;
    assert_eq!(history[0]["actor"], "panel", "{}", history[0]);
    assert_eq!(history[0]["reason"], "back while we reconcile");
    browser.close().await;
}

/// A service whose answers carry markup: what a compromised or buggy
/// service might send, and the panel must show as text.
const HOSTILE: &str = r#"<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">"#;

async fn spawn_json(body: Value) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(get(move || {
        let body = body.clone();
        async move { axum::Json(body) }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn shadowed_answers_render_as_text_and_no_secret_appears() {
    let legacy = spawn_json(json!({"id": 1, "note": "plain"})).await;
    let service = spawn_json(json!({"id": 1, "note": HOSTILE})).await;
    // A store URL with a password (PostgreSQL trusts this machine, so any
    // password opens it): it must appear on no page.
    let store: Option<TestDatabase> = TestDatabase::fresh(Engine::Postgres).await;
    let Some(store) = store else {
        return;
    };
    let with_password =
        store
            .url()
            .expose()
            .replacen("postgres://postgres@", "postgres://postgres:s3cret-Passw0rd@", 1);
    assert_ne!(with_password, store.url().expose(), "the test URL changed shape");
    let store_url = DatabaseUrl::parse(&with_password).unwrap();
    let config = format!(
        r#"
[facade]
default_backend = "legacy"
access_log = false

[backends.legacy]
urls = ["http://{legacy}"]

[backends.service]
urls = ["http://{service}"]

[[routes]]
capability = "orders"
path = "/orders/*"

[capabilities.orders]
legacy = "legacy"
service = "service"
initial = "shadow"
shadow = {{ ignore = ["$.generated_at", "x-request-id"] }}
"#
    );
    let facade = start_facade(&config, &store_url).await;
    for n in 0..5 {
        let answer = facade
            .client
            .get(facade.url(&format!("/orders/{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let Some(browser) = Browser::start().await else {
        return;
    };
    facade.log_in(&browser).await;
    browser.goto(&facade.panel("/#/capability/orders")).await;
    let samples = browser.wait_for_text("#samples", "window.__xss=1").await;
    assert!(
        samples.contains(r#"<script>window.__xss=1</script>"#),
        "{samples}"
    );
    assert!(samples.contains(r#"<img src=x onerror="#), "{samples}");
    // Shown as text: no element came out of it, and nothing ran.
    let made = browser
        .run("return document.querySelectorAll('#samples script, #samples img').length;")
        .await;
    assert_eq!(made, json!(0));
    assert_eq!(
        browser.run("return typeof window.__xss;").await,
        json!("undefined")
    );
    // The pairs side by side, row beside row: as many rows on each side,
    // and a removed line beside an added one or a gap, never beside an
    // unchanged line.
    let rows = browser
        .run(
            "const l = [...document.querySelectorAll('#samples .legacy-side')];
             const r = [...document.querySelectorAll('#samples .service-side')];
             const kind = (c) => ['del', 'add', 'pad', 'hunk', 'same'].find((k) => c.classList.contains(k));
             return { left: l.length, right: r.length,
                      pairs: l.map((c, i) => kind(c) + '|' + kind(r[i])) };",
        )
        .await;
    let (left, right) = (rows["left"].as_u64().unwrap(), rows["right"].as_u64().unwrap());
    assert_eq!(left, right, "{rows}");
    let pairs: Vec<&str> = rows["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(pairs.iter().any(|p| p.starts_with("del|")), "{rows}");
    for pair in &pairs {
        assert!(
            ["del|add", "del|pad", "pad|add", "hunk|hunk", "same|same"].contains(pair),
            "unaligned row {pair}: {rows}"
        );
    }
    // The explorer names the differing path and the ignore rules.
    let shadow = browser.wait_for_text("#shadow", "$.note").await;
    assert!(shadow.contains("$.generated_at"), "{shadow}");
    assert_contrast(&browser, "capability, shadow diffs").await;
    browser.screenshot_at("shadow-diffs", "#shadow").await;

    // No secret on any page or in any answer the pages read.
    let mut seen = String::new();
    for view in ["/#/", "/#/capability/orders", "/#/backends"] {
        browser.goto(&facade.panel(view)).await;
        browser.wait_for("main h2, main section").await;
        seen.push_str(&browser.client.source().await.unwrap());
        seen.push_str(&browser.page_text().await);
    }
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let cookie = cookies.iter().find(|c| c.name() == "strangler_panel").unwrap();
    let http = test_harness::http_client();
    for path in [
        "/panel/api/overview",
        "/panel/api/backends",
        "/panel/api/capabilities/orders",
    ] {
        let response = http
            .get(facade.panel(path))
            .header("cookie", format!("strangler_panel={}", cookie.value()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        seen.push_str(&response.text().await.unwrap());
    }
    for secret in ["s3cret-Passw0rd", "postgres://", facade.token.as_str()] {
        assert!(!seen.contains(secret), "`{secret}` appears in the panel");
    }
    browser.close().await;
}

on_each_engine!(a_shard_of_a_sharded_run_is_not_the_capability_s_reconciliation);

/// One shard of a sharded run compared part of the keys: the overview's
/// card and the capability's trend show the latest whole run, as the gate
/// judges by it, never a newer shard.
async fn a_shard_of_a_sharded_run_is_not_the_capability_s_reconciliation(engine: Engine) {
    let Some(store) = TestDatabase::fresh(engine).await else {
        return;
    };
    let settings = Settings {
        initial: "canary 50%",
        ..Settings::default()
    };
    let (_cutover, facade) = Cutover::start_on(store.url(), settings).await;
    record_reconciliation(store.url(), CAPABILITY, "diverged", 60).await;
    let db = Database::open(store.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO reconciliation_runs (capability, status, started_at, finished_at, rows_compared, \
         missing, extra, changed, run_group, shard_index, shard_count, report) \
         VALUES ($1, 'clean', $2, $2, 25, 0, 0, 0, 'nightly', 1, 4, '{\"status\": \"clean\"}')",
    )
    .bind(CAPABILITY)
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true))
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;

    let cookie = facade.session_cookie().await;
    let overview = facade.panel_json(&cookie, "/overview").await;
    let card = overview["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|card| card["name"] == CAPABILITY)
        .unwrap_or_else(|| panic!("no `{CAPABILITY}` card: {overview}"));
    let shown = &card["reconciliation"];
    assert_eq!(shown["status"], "diverged", "a shard's run shows: {shown}");
    assert_eq!(shown["missing"], 2, "{shown}");
    // The card and the gate agree: the next move (to service) is refused
    // over the whole run's divergence.
    assert_eq!(card["next"]["to"], "service", "{card}");
    let refusals = card["next"]["refusals"].to_string();
    assert!(refusals.contains("diverged: 2 missing"), "{card}");

    let detail = facade
        .panel_json(&cookie, &format!("/capabilities/{CAPABILITY}"))
        .await;
    let trend: Vec<&Value> = detail["reconciliations"].as_array().unwrap().iter().collect();
    assert_eq!(trend.len(), 1, "the trend lists a shard: {trend:?}");
    assert_eq!(trend[0]["status"], "diverged");
    // The shard's report is not the latest report either.
    assert!(detail["latest_report"].is_null(), "{detail}");
}
