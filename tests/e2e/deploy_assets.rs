//! What `deploy/` ships, against the real thing: a facade in front of the
//! sample shop, with shadow traffic, a canary, a failing service that falls
//! back, and a reconciliation recorded in its store.
//!
//! - Every metric name that the Prometheus rules (and their promtool
//!   tests) and the Grafana dashboard query is in that facade's `/metrics`,
//!   or is a recording rule the rules define.
//! - The Kubernetes ConfigMaps hold a `strangler.toml` the facade accepts
//!   and a mapping the reconciler accepts, and the probe script the pods
//!   run passes against the facade's admin API (and fails on a wrong token).

mod metric_names;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use facade::config::FacadeConfig;
use facade::Facade;
use mapping::Mapping;
use orders_service::dual_write::DualWriteConfig;
use reconciler::{reconcile_and_record, Options, RunStore};
use serde_json::Value;
use test_harness::{workspace_path, Engine, TestDatabase};
use tokio::sync::oneshot;

use crate::helpers::spawn_stack;
use metric_names::{exposed_names, metric_names, yaml_values, Found};

/// How long the metrics may take to show every series (shadow comparisons
/// are made off the request path).
const WAIT_LIMIT: Duration = Duration::from_secs(20);

const DUAL_WRITES: DualWriteConfig = DualWriteConfig {
    enabled: true,
    fault_rate: 0.0,
};

fn read(relative: &str) -> String {
    let path = workspace_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// The files of `deploy/<folder>` whose names end in `suffix`, sorted.
fn files(folder: &str, suffix: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(workspace_path(folder))
        .unwrap_or_else(|error| panic!("listing {folder}: {error}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix))
        .map(|name| format!("{folder}/{name}"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no *{suffix} in {folder}");
    found
}

/// What `deploy/` queries: each metric name with where it is used, and the
/// names its recording rules define.
struct Queried {
    uses: BTreeMap<String, Vec<Found>>,
    recorded: BTreeSet<String>,
}

impl Queried {
    fn add(&mut self, found: &Found) {
        let names = metric_names(&found.text);
        assert!(
            !names.is_empty(),
            "{}:{}: no metric name found in `{}`",
            found.file,
            found.line,
            found.text
        );
        for name in names {
            self.uses.entry(name).or_default().push(found.clone());
        }
    }
}

fn queried() -> Queried {
    let mut queried = Queried {
        uses: BTreeMap::new(),
        recorded: BTreeSet::new(),
    };
    for file in files("deploy/prometheus", ".rules.yml") {
        let text = read(&file);
        let exprs = yaml_values(&file, &text, "expr");
        // Every rule has one `expr:`; a shape the reader missed shows here.
        let rules = text.matches("- record:").count() + text.matches("- alert:").count();
        assert_eq!(
            exprs.len(),
            rules,
            "{file}: {rules} rules but {} exprs read",
            exprs.len()
        );
        exprs.iter().for_each(|found| queried.add(found));
        queried.recorded.extend(
            yaml_values(&file, &text, "record")
                .into_iter()
                .map(|found| found.text),
        );
    }
    for file in files("deploy/prometheus/tests", ".test.yml") {
        let text = read(&file);
        let series = yaml_values(&file, &text, "series");
        assert_eq!(series.len(), text.matches("- series:").count(), "{file}");
        assert!(!series.is_empty(), "{file}: no input series");
        series.iter().for_each(|found| queried.add(found));
        yaml_values(&file, &text, "expr")
            .iter()
            .for_each(|found| queried.add(found));
    }
    for file in files("deploy/grafana", ".json") {
        let dashboard: Value =
            serde_json::from_str(&read(&file)).unwrap_or_else(|error| panic!("{file}: {error}"));
        let mut queries = Vec::new();
        collect_queries(&dashboard, &mut queries);
        assert!(
            queries.len() >= 10,
            "{file}: only {} queries found",
            queries.len()
        );
        for query in queries {
            queried.add(&Found {
                file: file.clone(),
                line: 0,
                text: query,
            });
        }
        check_panels(&file, &dashboard);
    }
    queried
}

/// Every `expr` of a panel's targets, and the metric of each
/// `label_values(metric, label)` template query.
fn collect_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    ("query" | "definition", Value::String(query)) if query.starts_with("label_values(") => {
                        let inner = &query["label_values(".len()..query.rfind(',').unwrap_or(query.len())];
                        out.push(inner.to_owned());
                    }
                    _ => collect_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_queries(item, out)),
        _ => {}
    }
}

/// The dashboard's panels have unique ids, a place, and query the
/// dashboard's data source variable.
fn check_panels(file: &str, dashboard: &Value) {
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "{file}: panel `{title}`: id repeats"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel["gridPos"][key].is_i64(),
                "{file}: panel `{title}` has no gridPos.{key}"
            );
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{file}: panel `{title}` queries another data source"
            );
        }
    }
}

/// The queried names the exposition lacks, each with where it is used.
fn unknown(queried: &Queried, exposition: &str) -> Vec<String> {
    let exposed = exposed_names(exposition);
    queried
        .uses
        .iter()
        .filter(|(name, _)| !exposed.contains(*name) && !queried.recorded.contains(*name))
        .map(|(name, uses)| {
            let places: BTreeSet<String> = uses
                .iter()
                .map(|found| match found.line {
                    0 => found.file.clone(),
                    line => format!("{}:{line}", found.file),
                })
                .collect();
            format!(
                "`{name}` (used in {})",
                places.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

#[test]
fn a_name_the_facade_does_not_export_is_reported_with_where_it_is_used() {
    let mut queried = Queried {
        uses: BTreeMap::new(),
        recorded: BTreeSet::from(["capability:x:rate5m".to_owned()]),
    };
    queried.add(&Found {
        file: "deploy/grafana/d.json".to_owned(),
        line: 0,
        text: "sum(rate(strangler_facade_requests[5m])) / capability:x:rate5m + strangler_facade_upstream_latency_seconds_bucket"
            .to_owned(),
    });
    let exposition = "# TYPE strangler_facade_requests counter\nstrangler_facade_requests_total 1\n\
                      # TYPE strangler_facade_upstream_latency_seconds histogram\n";
    assert_eq!(
        unknown(&queried, exposition),
        ["`strangler_facade_requests` (used in deploy/grafana/d.json)"]
    );
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn every_metric_deploy_queries_is_exported_by_a_running_facade() {
    let queried = queried();
    let Some(stack) = spawn_stack(Engine::Sqlite, DUAL_WRITES).await else {
        return;
    };
    let store = TestDatabase::sqlite();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("admin-token");
    let token = "deploy-assets-token";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let unreachable = closed_port();
    let config_text = format!(
        r#"
[facade]
default_backend = "legacy"
access_log = false
grace_seconds = 1
admin_token_file = "{token_file}"

[backends.legacy]
urls = ["{monolith}"]

[backends.catalog]
urls = ["{catalog}"]

[backends.orders]
urls = ["{orders}"]

[backends.unreachable]
urls = ["http://127.0.0.1:{unreachable}"]
connect_timeout_ms = 1000

[capabilities.catalog]
legacy = "legacy"
service = "catalog"
initial = "shadow"

[capabilities.orders]
legacy = "legacy"
service = "orders"
initial = "canary 50%"
sticky = "header:x-customer-id"

# A service that is down: its requests fall back to the monolith.
[capabilities.customers]
legacy = "legacy"
service = "unreachable"
initial = "service"

[[routes]]
capability = "catalog"
path = "/products/{{id}}"
methods = ["GET"]

[[routes]]
capability = "orders"
path = "/orders/{{id}}"
methods = ["GET"]

[[routes]]
capability = "customers"
path = "/customers/{{id}}"
methods = ["GET"]
"#,
        token_file = token_file.display(),
        monolith = stack.monolith,
        catalog = stack.catalog,
        orders = stack.orders,
    );
    let mut config = FacadeConfig::parse(Path::new("strangler.toml"), &config_text)
        .unwrap_or_else(|error| panic!("the test's configuration is refused: {error}"));
    config.listen = Some("127.0.0.1:0".parse().unwrap());
    config.admin_listen = "127.0.0.1:0".parse().unwrap();
    config.store_url = store.url().clone();
    let facade = Facade::build(config).await.unwrap();
    let (proxy, admin) = (facade.proxy_addr(), facade.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(facade.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = &stack.client;
    let metrics = || async {
        let response = client
            .get(format!("http://{admin}/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "/metrics: {}", response.status());
        response.text().await.unwrap()
    };
    // Bound before `build` returned: the admin API answers at once.
    metrics().await;

    // Series to exist: shadow copies of catalog, both sides of the orders
    // canary, fallbacks from the unreachable customers service.
    for id in 1..=5 {
        let url = format!("http://{proxy}/products/{id}");
        let response = client.get(&url).send().await.unwrap();
        assert!(response.status().is_success(), "{url}: {}", response.status());
    }
    for customer in 1..=10 {
        let url = format!("http://{proxy}/orders/{customer}");
        let response = client
            .get(&url)
            .header("x-customer-id", customer.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{url}: {}", response.status());
    }
    for _ in 0..3 {
        let url = format!("http://{proxy}/customers/1");
        let response = client.get(&url).send().await.unwrap();
        assert!(
            response.headers().contains_key("x-strangler-fallback"),
            "{url}: {response:?}"
        );
    }
    // A reconciliation of orders, recorded in the facade's store as the
    // reconciler's CronJob records it.
    let runs = RunStore::open(store.url()).await.unwrap();
    let mapping = Mapping::load(&workspace_path("demo/mapping.toml")).unwrap();
    reconcile_and_record(
        Some(&runs),
        mapping.capability("orders").unwrap(),
        &stack.monolith_url,
        &stack.orders_url,
        &Options::default(),
    )
    .await
    .unwrap();

    let deadline = Instant::now() + WAIT_LIMIT;
    let exposition = loop {
        let exposition = metrics().await;
        let missing = unknown(&queried, &exposition);
        if missing.is_empty() {
            break exposition;
        }
        assert!(
            Instant::now() < deadline,
            "deploy/ queries metrics that the facade does not export (after {WAIT_LIMIT:?} of traffic):\n  {}\n\
             Use the names of /metrics (counters end in _total) or define them as recording rules.\n\
             The facade's /metrics:\n{exposition}",
            missing.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The reconciliation is the recorded one, clean after the backfill.
    // Every series also carries the replica's `replica_id`.
    assert!(
        exposition.lines().any(|line| {
            line.starts_with("strangler_facade_reconciliation_divergences{")
                && line.contains("capability=\"orders\"")
                && line.contains("kind=\"missing\"")
                && line.contains("replica_id=\"")
                && line.ends_with("} 0")
        }),
        "{exposition}"
    );

    probes_pass_against(admin.port(), &token_file).await;

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

/// The pods' probe script, from the ConfigMap, against the running facade.
async fn probes_pass_against(port: u16, token_file: &Path) {
    let configmap = read("deploy/kubernetes/facade-configmap.yaml");
    let script = yaml_values("facade-configmap.yaml", &configmap, "probe.sh");
    assert_eq!(script.len(), 1, "probe.sh in the facade's ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.sh");
    std::fs::write(&path, &script[0].text).unwrap();
    let wrong_token = dir.path().join("wrong-token");
    std::fs::write(&wrong_token, "not-the-token\n").unwrap();
    let probe = |endpoint: &'static str, token: &Path| {
        tokio::process::Command::new("bash")
            .arg(&path)
            .arg(endpoint)
            .env("STRANGLER_PROBE_PORT", port.to_string())
            .env("STRANGLER_PROBE_TOKEN_FILE", token)
            .output()
    };
    for endpoint in ["/health", "/ready"] {
        let output = probe(endpoint, token_file).await.unwrap();
        assert!(
            output.status.success(),
            "probe.sh {endpoint}: {:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let output = probe(endpoint, &wrong_token).await.unwrap();
        assert!(
            !output.status.success(),
            "probe.sh {endpoint} passed with a wrong token"
        );
    }
}

#[test]
fn the_configmaps_hold_what_the_facade_and_the_reconciler_accept() {
    let configmap = read("deploy/kubernetes/facade-configmap.yaml");
    let toml = yaml_values("facade-configmap.yaml", &configmap, "strangler.toml");
    assert_eq!(toml.len(), 1, "strangler.toml in the facade's ConfigMap");
    let config = FacadeConfig::parse(Path::new("/etc/strangler/strangler.toml"), &toml[0].text)
        .unwrap_or_else(|error| panic!("deploy/kubernetes/facade-configmap.yaml, strangler.toml: {error}"));
    assert_eq!(
        config.admin_listen.port(),
        9080,
        "the probes and the Service use 9080"
    );
    assert_eq!(
        config.listen.map(|a| a.port()),
        Some(8080),
        "the Service uses 8080"
    );
    assert_eq!(
        config.admin_token_file.as_deref(),
        Some(Path::new("/var/run/secrets/strangler/admin-token")),
        "the Deployment mounts the token there"
    );

    let mapping_map = read("deploy/kubernetes/reconciler-configmap.yaml");
    let text = yaml_values("reconciler-configmap.yaml", &mapping_map, "mapping.toml");
    assert_eq!(text.len(), 1, "mapping.toml in the reconciler's ConfigMap");
    let mapping = Mapping::parse(Path::new("/etc/strangler/mapping.toml"), &text[0].text)
        .unwrap_or_else(|error| panic!("deploy/kubernetes/reconciler-configmap.yaml, mapping.toml: {error}"));

    // Each CronJob runs `reconcile run <capability>` of a mapped capability
    // that the facade routes.
    let cronjobs = read("deploy/kubernetes/reconciler-cronjobs.yaml");
    let lines: Vec<&str> = cronjobs.lines().map(str::trim).collect();
    let reconciled: Vec<&str> = lines
        .windows(3)
        .filter(|w| w[0] == "- reconcile" && w[1] == "- run")
        .map(|w| w[2].trim_start_matches("- "))
        .collect();
    assert_eq!(reconciled, ["catalog", "orders"], "the CronJobs' capabilities");
    for capability in reconciled {
        mapping
            .capability(capability)
            .unwrap_or_else(|error| panic!("CronJob for `{capability}`: {error}"));
        assert!(
            config.capabilities.iter().any(|c| c.def.name == capability),
            "CronJob for `{capability}`, which the facade's strangler.toml does not route"
        );
    }
}
