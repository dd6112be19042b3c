//! The control panel in a real browser (headless Chromium over WebDriver):
//! login and nothing visible without it, the live overview, a flip refused
//! by a gate with its reason and then forced with a recorded override, a
//! rollback, shadowed answers that stay text, and no secret on any page.

use std::net::SocketAddr;

use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_harness::{DatabaseUrl, Engine, TestDatabase};

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
    // Keyboard: Tab reaches the first capability's link, Enter opens it.
    let focused = browser
        .run(
            "const links = [...document.querySelectorAll('#overview a')];
             links[0].focus();
             return document.activeElement === links[0] && links[0].tabIndex >= 0;",
        )
        .await;
    assert_eq!(focused, json!(true));
    browser.screenshot("overview").await;

    // A change made elsewhere (the CLI, another replica) shows without a
    // reload.
    facade
        .flip_ok(
            "orders",
            json!({"to": "canary", "percent": 25, "reason": "live", "actor": "ops", "force": true}),
        )
        .await;
    browser
        .wait_for_text(r#"[data-capability="orders"] .stage-current"#, "canary 25%")
        .await;

    // The backends page lists every instance with its health and breaker.
    browser.goto(&facade.panel("/#/backends")).await;
    let catalog = browser
        .wait_for_text(r#"[data-backend="catalog"]"#, "healthy")
        .await;
    assert!(catalog.contains("closed"), "{catalog}");
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
    browser.screenshot("capability-gate-refused").await;

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
    browser.screenshot("capability-forced").await;

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
    // The explorer names the differing path and the ignore rules.
    let shadow = browser.wait_for_text("#shadow", "$.note").await;
    assert!(shadow.contains("$.generated_at"), "{shadow}");
    browser.screenshot("shadow-diffs").await;

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
