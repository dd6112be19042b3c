//! `strangler routes …`: look at and change the facade's routing through its
//! admin API.

use crate::output::say;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use facade::admin::{ChangeBody, Explanation, Listing, ShadowReport};
use facade::route_store::Transition;
use serde_json::Value;

use crate::routes_view::{print_change, print_history, print_json, print_listing, print_shadow_report};

use crate::backfill_command::Output;

/// Where `strangler demo` leaves its admin token.
const DEMO_TOKEN_FILE: &str = ".strangler-demo/admin-token";

#[derive(Args)]
pub struct RoutesArgs {
    /// The facade's admin API.
    #[arg(
        long,
        global = true,
        env = "STRANGLER_ADMIN_URL",
        default_value = "http://127.0.0.1:9080"
    )]
    admin_url: String,
    /// File holding the admin token (else STRANGLER_ADMIN_TOKEN, else the
    /// demo's `.strangler-demo/admin-token`).
    #[arg(long, global = true, env = "STRANGLER_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Output style.
    #[arg(long, global = true, value_enum, default_value = "human")]
    output: Output,
    #[command(subcommand)]
    command: RoutesCommand,
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Every capability with its stage and routes, and every backend's
    /// circuit breaker, load and retry budget.
    List,
    /// Move a capability to another stage: legacy, shadow, canary (with
    /// --percent), service or retired. Forward moves must pass their gates.
    Flip {
        /// The capability.
        capability: String,
        /// The new stage.
        #[arg(long, value_parser = ["legacy", "shadow", "canary", "service", "retired"])]
        to: String,
        /// The canary's share of sticky keys, in percent (0.1 to 100).
        #[arg(long)]
        percent: Option<f64>,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Move even though a gate refuses; the override is recorded.
        #[arg(long)]
        force: bool,
        /// While a gate refuses, try again every 2 seconds for up to this
        /// many seconds (the evidence may still be coming in).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        /// Show the transition without making it.
        #[arg(long)]
        dry_run: bool,
        /// Refuse (409) unless the capability is at this stage when the
        /// change is written (`legacy`, `"canary 10%"`, …): for scripts and
        /// several operators, so that no one moves it on a stale read.
        #[arg(long, value_name = "STAGE")]
        from: Option<String>,
    },
    /// What shadowing found: mismatch rate, the fields that differ most
    /// often, learned noise and sample diffs.
    Diff {
        /// The capability.
        capability: String,
        /// The window, in seconds (default: the gate's window).
        #[arg(long)]
        window: Option<u64>,
        /// How many sample diffs to show.
        #[arg(long, default_value_t = 3)]
        samples: u32,
        /// Wait (up to a minute) until the window holds at least this many
        /// comparisons before showing them.
        #[arg(long, value_name = "N")]
        min_compared: Option<i64>,
    },
    /// Wait until a capability is at a stage (for example, after an
    /// automatic rollback, or on another facade replica).
    Wait {
        /// The capability.
        capability: String,
        /// The stage to wait for: legacy, shadow, canary, service, retired.
        #[arg(long, value_parser = ["legacy", "shadow", "canary", "service", "retired"])]
        stage: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// The audit log of target changes, newest first.
    History {
        /// Only this capability.
        capability: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a capability back to its previous stage.
    Rollback {
        /// The capability.
        capability: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "rollback")]
        reason: String,
        /// Move even though a gate refuses (a rollback to a later stage).
        #[arg(long)]
        force: bool,
        /// Show the transition without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Which route, capability, target and instance would serve a request.
    Explain {
        /// The request method (GET, POST, …).
        method: String,
        /// The request URL or path (`/products/1`, `http://shop/orders`).
        url: String,
        /// A request header, `Name: value` (repeatable): routes and canary
        /// keys may depend on headers.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// The client's address (a canary's last-resort sticky key).
        #[arg(long)]
        client: Option<String>,
    },
}

fn token(args: &RoutesArgs) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var("STRANGLER_ADMIN_TOKEN") {
        if !token.trim().is_empty() {
            return Ok(token.trim().to_owned());
        }
    }
    let file = match &args.token_file {
        Some(file) => file.clone(),
        None if Path::new(DEMO_TOKEN_FILE).exists() => PathBuf::from(DEMO_TOKEN_FILE),
        None => bail!("no admin token: set STRANGLER_ADMIN_TOKEN or pass --token-file"),
    };
    let token = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the admin token file {}", file.display()))?;
    Ok(token.trim().to_owned())
}

struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|error| {
            anyhow!("cannot reach the facade's admin API at {}: {error} (is `strangler facade` or `strangler demo` running?)", self.base)
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"].as_str().unwrap_or("no reason given");
            bail!("{message} ({status})");
        }
        Ok(body)
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.client.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    /// Posts and returns the status with the answer, errors included.
    async fn post_status(
        &self,
        path: &str,
        body: &ChangeBody,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| {
                anyhow!("cannot reach the facade's admin API at {}: {error} (is `strangler facade` or `strangler demo` running?)", self.base)
            })?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: &ChangeBody) -> anyhow::Result<Value> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
            .await
    }
}

pub async fn run(args: RoutesArgs) -> anyhow::Result<()> {
    let admin = Admin {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?,
        base: args.admin_url.trim_end_matches('/').to_owned(),
        token: token(&args)?,
    };
    let actor = std::env::var("USER").unwrap_or_else(|_| "cli".to_owned());
    let json = matches!(args.output, Output::Json);
    match args.command {
        RoutesCommand::List => {
            let body = admin.get("/capabilities", &[]).await?;
            if json {
                return print_json(&body);
            }
            let listing: Listing = serde_json::from_value(body)?;
            print_listing(&listing);
        }
        RoutesCommand::Flip {
            capability,
            to,
            percent,
            reason,
            force,
            wait,
            dry_run,
            from,
        } => {
            let from = from
                .map(|stage| stage.parse().map_err(|e: String| anyhow::anyhow!("--from: {e}")))
                .transpose()?;
            let body = ChangeBody {
                to: Some(to),
                percent,
                reason: Some(reason),
                actor: Some(actor),
                dry_run,
                force,
                from,
            };
            let path = format!("/capabilities/{capability}/flip");
            let deadline = std::time::Instant::now() + Duration::from_secs(wait.unwrap_or(0));
            let mut said = false;
            let outcome = loop {
                match admin.post_status(&path, &body).await? {
                    (status, answer) if status.is_success() => break answer,
                    (reqwest::StatusCode::CONFLICT, answer)
                        if std::time::Instant::now() < deadline
                            && answer["error"].as_str().is_some_and(|e| e.contains("is refused")) =>
                    {
                        if !said {
                            say!(
                                "waiting for the gates: {}",
                                answer["error"].as_str().unwrap_or("")
                            );
                            said = true;
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    (status, answer) => {
                        bail!(
                            "{} ({status})",
                            answer["error"].as_str().unwrap_or("no reason given")
                        )
                    }
                }
            };
            print_change(outcome, json)?;
        }
        RoutesCommand::Diff {
            capability,
            window,
            samples,
            min_compared,
        } => {
            let mut query = vec![("samples", samples.to_string())];
            if let Some(window) = window {
                query.push(("window_seconds", window.to_string()));
            }
            let path = format!("/capabilities/{capability}/shadow");
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let body = loop {
                let body = admin.get(&path, &query).await?;
                let compared = body["totals"]["compared"].as_i64().unwrap_or(0);
                match min_compared {
                    Some(wanted) if compared < wanted => {
                        if std::time::Instant::now() > deadline {
                            bail!(
                                "only {compared} comparisons after a minute, fewer than {wanted}; is traffic \
                                 reaching the facade, and is `{capability}` in shadow?"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    _ => break body,
                }
            };
            if json {
                return print_json(&body);
            }
            let report: ShadowReport = serde_json::from_value(body)?;
            print_shadow_report(&report);
        }
        RoutesCommand::Wait {
            capability,
            stage,
            timeout,
        } => {
            let deadline = std::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let listing: Listing = serde_json::from_value(admin.get("/capabilities", &[]).await?)?;
                let Some(current) = listing.capabilities.iter().find(|c| c.name == capability) else {
                    bail!("unknown capability `{capability}`; see `strangler routes list`");
                };
                if current.stage.name() == stage {
                    say!("{capability} is at {}", current.stage);
                    break;
                }
                if std::time::Instant::now() > deadline {
                    bail!(
                        "{capability} is still at {} after {timeout}s, not {stage}",
                        current.stage
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        RoutesCommand::Rollback {
            capability,
            reason,
            force,
            dry_run,
        } => {
            let body = ChangeBody {
                reason: Some(reason),
                actor: Some(actor),
                dry_run,
                force,
                ..ChangeBody::default()
            };
            let outcome = admin
                .post(&format!("/capabilities/{capability}/rollback"), &body)
                .await?;
            print_change(outcome, json)?;
        }
        RoutesCommand::History { capability, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(capability) = capability {
                query.push(("capability", capability));
            }
            let body = admin.get("/history", &query).await?;
            if json {
                return print_json(&body);
            }
            let transitions: Vec<Transition> = serde_json::from_value(body)?;
            print_history(&transitions);
        }
        RoutesCommand::Explain {
            method,
            url,
            headers,
            client,
        } => {
            let mut query = vec![("method", method), ("url", url)];
            if !headers.is_empty() {
                query.push(("headers", headers.join("\n")));
            }
            if let Some(client) = client {
                query.push(("client", client));
            }
            let body = admin.get("/explain", &query).await?;
            if json {
                return print_json(&body);
            }
            let e: Explanation = serde_json::from_value(body)?;
            say!("path        {}", e.normalized_path);
            say!("route       {}", e.route.as_deref().unwrap_or("(none)"));
            say!("capability  {}", e.capability.as_deref().unwrap_or("(none)"));
            say!(
                "stage       {}",
                e.stage.map_or("(none)".to_owned(), |s| s.to_string())
            );
            say!("side        {}", e.side.map_or("(none)", |s| s.as_str()));
            say!("backend     {}", e.backend.as_deref().unwrap_or("(none)"));
            say!("instance    {}", e.instance.as_deref().unwrap_or("(none)"));
            if let Some(shadow) = &e.shadow {
                say!("shadow      {shadow}");
            }
            if let Some(fallback) = &e.fallback {
                say!("fallback    {fallback}");
            }
            say!("why         {}", e.why);
        }
    }
    Ok(())
}
