//! `strangler routes …`: look at and change the facade's routing through its
//! admin API.

use crate::output::say;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use facade::admin::{CapabilityView, ChangeBody, ChangeOutcome, Explanation};
use facade::route_store::Transition;
use facade::routing::Target;
use serde_json::Value;

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
    /// Every capability, its target and its routes.
    List,
    /// Send a capability's traffic to `legacy` or `service`.
    Flip {
        /// The capability.
        capability: String,
        /// The new target.
        #[arg(long, value_parser = parse_target)]
        to: Target,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Show the transition without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// The audit log of target changes, newest first.
    History {
        /// Only this capability.
        capability: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a capability back to its previous target.
    Rollback {
        /// The capability.
        capability: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "rollback")]
        reason: String,
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
    },
}

fn parse_target(text: &str) -> Result<Target, String> {
    Target::parse(text).ok_or_else(|| format!("`{text}` is not a target; use `legacy` or `service`"))
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
            let capabilities: Vec<CapabilityView> = serde_json::from_value(body["capabilities"].clone())?;
            say!(
                "{:<14} {:<8} {:<10} {:<10} ROUTES",
                "CAPABILITY",
                "TARGET",
                "LEGACY",
                "SERVICE"
            );
            for c in capabilities {
                say!(
                    "{:<14} {:<8} {:<10} {:<10} {}",
                    c.name,
                    c.target.as_str(),
                    c.legacy_backend,
                    c.service_backend,
                    c.routes.join(", ")
                );
            }
            say!(
                "(route table revision {}; unmatched requests go to {})",
                body["revision"],
                body["default_backend"].as_str().unwrap_or("nowhere: 404")
            );
            if body["store_reachable"] == Value::Bool(false) {
                say!("warning: the route store is unreachable; the facade serves its last good table");
            }
        }
        RoutesCommand::Flip {
            capability,
            to,
            reason,
            dry_run,
        } => {
            let body = ChangeBody {
                to: Some(to),
                reason: Some(reason),
                actor: Some(actor),
                dry_run,
            };
            let outcome = admin
                .post(&format!("/capabilities/{capability}/flip"), &body)
                .await?;
            print_change(outcome, json)?;
        }
        RoutesCommand::Rollback {
            capability,
            reason,
            dry_run,
        } => {
            let body = ChangeBody {
                to: None,
                reason: Some(reason),
                actor: Some(actor),
                dry_run,
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
            say!(
                "{:<25} {:<14} {:<20} {:<14} REASON",
                "AT",
                "CAPABILITY",
                "CHANGE",
                "ACTOR"
            );
            for t in transitions {
                let change = format!("{} → {}", t.from.map_or("(new)", Target::as_str), t.to);
                say!(
                    "{:<25} {:<14} {:<20} {:<14} {}",
                    t.at,
                    t.capability,
                    change,
                    t.actor,
                    t.reason
                );
            }
        }
        RoutesCommand::Explain { method, url } => {
            let body = admin.get("/explain", &[("method", method), ("url", url)]).await?;
            if json {
                return print_json(&body);
            }
            let e: Explanation = serde_json::from_value(body)?;
            say!("path        {}", e.normalized_path);
            say!("route       {}", e.route.as_deref().unwrap_or("(none)"));
            say!("capability  {}", e.capability.as_deref().unwrap_or("(none)"));
            say!("target      {}", e.target.map_or("(none)", Target::as_str));
            say!("backend     {}", e.backend.as_deref().unwrap_or("(none)"));
            say!("instance    {}", e.instance.as_deref().unwrap_or("(none)"));
            say!("why         {}", e.why);
        }
    }
    Ok(())
}

fn print_json(body: &Value) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(body)?);
    Ok(())
}

fn print_change(body: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&body);
    }
    let outcome: ChangeOutcome = serde_json::from_value(body)?;
    let t = &outcome.transition;
    let from = t.from.map_or("(new)", Target::as_str);
    if outcome.applied {
        say!(
            "{}: {from} → {} (by {}{})",
            t.capability,
            t.to,
            t.actor,
            reason_suffix(&t.reason)
        );
    } else {
        say!(
            "dry run: would move {}: {from} → {}; nothing changed",
            t.capability,
            t.to
        );
    }
    Ok(())
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}
