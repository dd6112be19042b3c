//! `strangler demo switch …`: flips the running demo's failure switches.
//!
//! Each switch is one `PUT /internal/settings` on a sample service (see
//! `catalog_service::settings` and `orders_service::settings`), at the
//! demo's documented addresses unless `--catalog-url`/`--orders-url` say
//! otherwise. What is printed is what the service reports as now in force,
//! not what was asked, so the line is true even if the service adjusted it.

use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Url;
use serde_json::{json, Value};

use crate::output::say;

/// The catalog service's address in `strangler demo`.
pub const DEFAULT_CATALOG_URL: &str = "http://127.0.0.1:8082";
/// The orders service's address in `strangler demo`.
pub const DEFAULT_ORDERS_URL: &str = "http://127.0.0.1:8083";
/// The most one switch may take, connecting included; the services answer
/// a settings change at once, so anything longer means something is wrong.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct SwitchArgs {
    #[command(subcommand)]
    switch: Switch,
}

#[derive(Subcommand)]
enum Switch {
    /// The catalog service's planted bug: prices rounded to whole dollars
    /// in what it serves (its database keeps the exact prices).
    CatalogPriceBug {
        /// `on` or `off`.
        state: OnOff,
        /// Base URL of the catalog service.
        #[arg(long, env = "STRANGLER_CATALOG_URL", default_value = DEFAULT_CATALOG_URL)]
        catalog_url: Url,
    },
    /// A simulated outage of the orders service: 503 on every route but
    /// `/internal/`, `/health` included.
    OrdersOutage {
        /// `on` or `off`.
        state: OnOff,
        /// Base URL of the orders service.
        #[arg(long, env = "STRANGLER_ORDERS_URL", default_value = DEFAULT_ORDERS_URL)]
        orders_url: Url,
    },
    /// The demo's synthetic shopper (`strangler demo --traffic`): `off`
    /// pauses it and returns once nothing of it is in flight.
    Traffic {
        /// `on` or `off`.
        state: OnOff,
        /// The demo's data folder.
        #[arg(long, env = "STRANGLER_DEMO_DATA_DIR", default_value = ".strangler-demo")]
        data_dir: std::path::PathBuf,
    },
    /// The share of the orders service's dual writes dropped on purpose.
    DualWriteFaults {
        /// From 0.0 (none) to 1.0 (every one).
        #[arg(value_parser = parse_rate)]
        rate: f64,
        /// Base URL of the orders service.
        #[arg(long, env = "STRANGLER_ORDERS_URL", default_value = DEFAULT_ORDERS_URL)]
        orders_url: Url,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn is_on(self) -> bool {
        self == Self::On
    }
}

/// A switch that is on or off: the service setting it flips, and what each
/// state means.
struct Flag {
    switch: &'static str,
    setting: &'static str,
    off: &'static str,
    on: &'static str,
}

const PRICE_BUG: Flag = Flag {
    switch: "catalog-price-bug",
    setting: "price_rounding_bug",
    off: "the catalog service now serves exact prices",
    on: "the catalog service now serves prices rounded to whole dollars; shadow traffic will show the difference",
};

const OUTAGE: Flag = Flag {
    switch: "orders-outage",
    setting: "outage",
    off: "the orders service serves again",
    on: "the orders service now answers 503 to everything but /internal/, its /health included",
};

impl Flag {
    /// Sets the switch in `service` to `state`, and says what is now in force.
    async fn flip(&self, client: &reqwest::Client, service: Service, state: OnOff) -> anyhow::Result<()> {
        let on = service
            .set(client, self.setting, state.is_on(), Value::as_bool)
            .await?;
        let (now, meaning) = if on { ("on", self.on) } else { ("off", self.off) };
        say!("{}: {now} ({meaning})", self.switch);
        Ok(())
    }
}

/// A share from 0.0 to 1.0, refused by clap (exit 2) otherwise.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number; give a share from 0.0 to 1.0, such as 0.2"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "{text} is out of range; give a share from 0.0 (none dropped) to 1.0 (all dropped)"
        ));
    }
    Ok(rate)
}

/// Flips one switch and says what is now in force.
pub async fn run(args: SwitchArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|error| anyhow!("cannot build the HTTP client: {error}"))?;
    match args.switch {
        Switch::Traffic { state, data_dir } => traffic(state, &data_dir).await?,
        Switch::CatalogPriceBug { state, catalog_url } => {
            PRICE_BUG
                .flip(&client, Service::catalog(catalog_url), state)
                .await?;
        }
        Switch::OrdersOutage { state, orders_url } => {
            OUTAGE.flip(&client, Service::orders(orders_url), state).await?;
        }
        Switch::DualWriteFaults { rate, orders_url } => {
            let rate = Service::orders(orders_url)
                .set(&client, "dual_write_fault_rate", rate, Value::as_f64)
                .await?;
            say!("dual-write-faults: {rate} ({})", describe_rate(rate));
        }
    }
    Ok(())
}

/// Pauses or resumes the demo's traffic through a file in its data folder
/// (the traffic runs inside the demo process, which has no control API).
async fn traffic(state: OnOff, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if !data_dir.is_dir() {
        anyhow::bail!(
            "{} is not the demo's data folder; run this where `strangler demo` runs, or give --data-dir",
            data_dir.display()
        );
    }
    let pause = crate::demo::traffic::pause_file(data_dir);
    let ack = crate::demo::traffic::paused_ack(&pause);
    if state.is_on() {
        for file in [&pause, &ack] {
            match std::fs::remove_file(file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => anyhow::bail!("cannot remove {}: {error}", file.display()),
            }
        }
        say!("traffic: on (the demo's shopper sends requests again)");
        return Ok(());
    }
    let _ = std::fs::remove_file(&ack);
    std::fs::write(&pause, b"paused\n")
        .map_err(|error| anyhow!("cannot write {}: {error}", pause.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ack.exists() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the traffic did not acknowledge the pause within 10 s; is `strangler demo --traffic` running with this data folder?"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    say!("traffic: off (the demo's shopper is paused, and none of its requests is in flight)");
    Ok(())
}

fn describe_rate(rate: f64) -> String {
    if rate == 0.0 {
        "the orders service now drops no dual writes".to_owned()
    } else {
        format!(
            "the orders service now drops {}% of its dual writes on purpose",
            percent(rate)
        )
    }
}

/// A share as a percentage with at most one decimal, without float noise
/// (0.07 is `7`, not `7.000000000000001`).
pub fn percent(rate: f64) -> f64 {
    (rate * 1000.0).round() / 10.0
}

/// One sample service's settings endpoint, and how to talk about it.
struct Service {
    name: &'static str,
    flag: &'static str,
    base: Url,
}

impl Service {
    /// The catalog service at `base`.
    fn catalog(base: Url) -> Self {
        Self {
            name: "catalog service",
            flag: "--catalog-url",
            base,
        }
    }

    /// The orders service at `base`.
    fn orders(base: Url) -> Self {
        Self {
            name: "orders service",
            flag: "--orders-url",
            base,
        }
    }

    /// Sets the setting `name` to `value`; what is now in force, as `read`
    /// reads it from the answer.
    async fn set<T>(
        &self,
        client: &reqwest::Client,
        name: &str,
        value: impl Into<Value>,
        read: impl Fn(&Value) -> Option<T>,
    ) -> anyhow::Result<T> {
        let now = self.put_settings(client, json!({ name: value.into() })).await?;
        self.field(&now, name, read)
    }

    /// `PUT /internal/settings`; every failure is one line saying what to do.
    async fn put_settings(&self, client: &reqwest::Client, body: Value) -> anyhow::Result<Value> {
        let base = self.base.as_str().trim_end_matches('/');
        let url = format!("{base}/internal/settings");
        let response = client.put(&url).json(&body).send().await.map_err(|error| {
            let why = if error.is_timeout() {
                format!("no answer within {} s", TIMEOUT.as_secs())
            } else if error.is_connect() {
                "nothing answers there".to_owned()
            } else {
                "the request failed".to_owned()
            };
            anyhow!(
                "cannot reach the {} at {base} ({why}); is `strangler demo` running? (if it runs elsewhere, give {})",
                self.name,
                self.flag
            )
        })?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "{base} has no /internal/settings; is that the demo's {}? (give its address with {})",
                self.name,
                self.flag
            );
        }
        if !status.is_success() {
            let reason = answer["error"].as_str().unwrap_or("no reason given");
            bail!(
                "the {} at {base} refused the change: {reason} ({status})",
                self.name
            );
        }
        Ok(answer)
    }

    /// A field of the settings answer, or a one-line error naming it.
    fn field<T>(
        &self,
        settings: &Value,
        name: &str,
        read: impl Fn(&Value) -> Option<T>,
    ) -> anyhow::Result<T> {
        read(&settings[name]).ok_or_else(|| {
            anyhow!(
                "the {} at {} answered without `{name}`: {settings}; is it the demo's {}?",
                self.name,
                self.base,
                self.name
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_urls_are_the_services_default_addresses() {
        assert_eq!(
            DEFAULT_CATALOG_URL,
            format!("http://{}", catalog_service::DEFAULT_LISTEN)
        );
        assert_eq!(
            DEFAULT_ORDERS_URL,
            format!("http://{}", orders_service::DEFAULT_LISTEN)
        );
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert_eq!(parse_rate("1"), Ok(1.0));
        assert!(parse_rate("1.5").unwrap_err().contains("out of range"));
        assert!(parse_rate("-0.1").unwrap_err().contains("out of range"));
        assert!(parse_rate("NaN").unwrap_err().contains("out of range"));
        assert!(parse_rate("lots").unwrap_err().contains("not a number"));
    }

    #[test]
    fn rates_are_described_in_percent() {
        assert_eq!(percent(0.07), 7.0);
        assert_eq!(percent(0.333), 33.3);
        assert_eq!(describe_rate(0.0), "the orders service now drops no dual writes");
        assert_eq!(
            describe_rate(0.2),
            "the orders service now drops 20% of its dual writes on purpose"
        );
    }
}
