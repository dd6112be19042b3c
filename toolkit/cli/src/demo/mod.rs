//! `strangler demo`: the sample shop on a laptop, in one process.
//!
//! The monolith and both extracted services run as separate servers on their
//! documented addresses, each with its own SQLite file under one data folder,
//! in this one process so that Ctrl-C stops every one of them and nothing is
//! left behind. (In production each is its own binary and deployment.)
//! On first start the monolith is seeded and both services are backfilled
//! from it.
//!
//! The orders service dual-writes into the monolith and drops a few of those
//! writes on purpose, and the reconciler's schedule (each capability's cron
//! in `demo/mapping.toml`) compares the databases in this process too: its
//! runs go into the toolkit store the facade uses, its reports into
//! `reports/` in the data folder. That is the whole dual-write loop to try:
//! divergence, report, repair, clean run.
//!
//! The catalog service starts with a planted bug (prices rounded to whole
//! dollars in its answers; `--no-planted-bug` starts without it) for shadow
//! traffic to find, and `strangler demo switch …` ([`crate::demo::switch`])
//! flips it, a simulated orders outage and the dual-write fault rate while
//! the demo runs. `--traffic` adds a steady synthetic client
//! ([`crate::demo::traffic`]) so that there is traffic to shadow and to
//! canary.

use crate::output::say;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use backfill::{backfill, BackfillOptions};
use clap::{Args, Subcommand};
use facade::config::FacadeConfig;
use facade::Facade;
use legacy_monolith::seed::{seed_if_empty, SeedReport, SeedSize};
use mapping::DatabaseSource;
use mapping::Mapping;
use orders_service::dual_write::DualWriteConfig;
use reconciler::schedule::run_schedule;
use reconciler::RunStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use toolkit_db::DatabaseUrl;
use toolkit_telemetry::SpanSink;

use crate::backfill_command::print_reports;
mod switch;
mod traffic;

use switch::{percent, SwitchArgs, DEFAULT_CATALOG_URL, DEFAULT_ORDERS_URL};

/// The demo's mapping file, built in so the demo runs from any folder.
const DEMO_MAPPING: &str = include_str!("../../../../demo/mapping.toml");
/// The demo's facade configuration, likewise.
const DEMO_FACADE: &str = include_str!("../../../../demo/strangler.toml");
/// Marks a folder as the demo's, so `--reset` never deletes anything else.
const MARKER: &str = ".strangler-demo";

// Flags belong to starting the demo, so they conflict with a subcommand:
// `strangler demo --reset switch …` is refused rather than half-obeyed.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Folder holding every database of the demo.
    #[arg(long, env = "STRANGLER_DEMO_DATA_DIR", default_value = ".strangler-demo")]
    data_dir: PathBuf,
    /// Delete the data folder first and start from fresh sample data.
    #[arg(long)]
    reset: bool,
    /// Address of the facade.
    #[arg(long, default_value = "127.0.0.1:8080")]
    facade_listen: SocketAddr,
    /// Address of the facade's admin API.
    #[arg(long, default_value = "127.0.0.1:9080")]
    admin_listen: SocketAddr,
    /// Address of the monolith.
    #[arg(long, default_value = legacy_monolith::DEFAULT_LISTEN)]
    monolith_listen: SocketAddr,
    /// Address of the catalog service.
    #[arg(long, default_value = catalog_service::DEFAULT_LISTEN)]
    catalog_listen: SocketAddr,
    /// Address of the orders service.
    #[arg(long, default_value = orders_service::DEFAULT_LISTEN)]
    orders_listen: SocketAddr,
    /// Do not write the orders service's orders into the monolith too.
    #[arg(long)]
    no_dual_write: bool,
    /// Share of dual writes dropped on purpose (0.0 to 1.0), so that the
    /// reconciler has divergence to find and repair.
    #[arg(long, default_value_t = 0.05)]
    dual_write_fault_rate: f64,
    /// Start the catalog service without its planted bug (prices rounded to
    /// whole dollars in its answers), which is on by default for shadow
    /// traffic to find.
    #[arg(long)]
    no_planted_bug: bool,
    /// Send steady synthetic shop traffic through the facade.
    #[arg(long)]
    traffic: bool,
    /// Requests per second of `--traffic`.
    #[arg(long, requires = "traffic", default_value_t = traffic::DEFAULT_RATE, value_parser = traffic::parse_rate)]
    traffic_rate: f64,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Flip a failure switch of the running demo: the catalog's planted
    /// price bug, an orders outage, the dual-write fault rate.
    Switch(SwitchArgs),
}

impl DemoArgs {
    /// Whether this runs a short command rather than the stack.
    pub fn is_subcommand(&self) -> bool {
        self.command.is_some()
    }
}

/// Runs `strangler demo` or one of its subcommands.
pub async fn run(mut args: DemoArgs, tracing: Option<SpanSink>) -> anyhow::Result<()> {
    match args.command.take() {
        Some(DemoCommand::Switch(switch)) => switch::run(switch).await,
        None => run_stack(args, tracing).await,
    }
}

async fn run_stack(args: DemoArgs, tracing: Option<SpanSink>) -> anyhow::Result<()> {
    let data = prepare_data_dir(&args.data_dir, args.reset)?;
    let grace = Duration::from_secs(5);
    let monolith_url = DatabaseUrl::sqlite_file(&data.join("monolith.db"));
    let monolith = legacy_monolith::Application::build(legacy_monolith::Config {
        listen: args.monolith_listen,
        database_url: monolith_url,
        seed: false,
        grace_period: grace,
    })
    .await
    .context("starting the monolith")?;
    let monolith_base: reqwest::Url = format!("http://{}/", monolith.local_addr())
        .parse()
        .context("building the monolith's URL")?;
    let catalog = catalog_service::Application::build_with_settings(
        catalog_service::Config {
            listen: args.catalog_listen,
            database_url: DatabaseUrl::sqlite_file(&data.join("catalog.db")),
            monolith_url: monolith_base.clone(),
            upstream_timeout: Duration::from_secs(2),
            grace_period: grace,
        },
        catalog_service::settings::Settings {
            price_rounding_bug: !args.no_planted_bug,
        },
    )
    .await
    .context("starting the catalog service")?;
    let orders = orders_service::Application::build(orders_service::Config {
        listen: args.orders_listen,
        database_url: DatabaseUrl::sqlite_file(&data.join("orders.db")),
        monolith_url: monolith_base,
        monolith_timeout: Duration::from_secs(2),
        dual_write: DualWriteConfig {
            enabled: !args.no_dual_write,
            fault_rate: args.dual_write_fault_rate,
        },
        grace_period: grace,
    })
    .await
    .context("starting the orders service")?;

    let seeded = seed_if_empty(monolith.database(), SeedSize::default())
        .await
        .context("loading the sample data into the monolith")?;
    if let SeedReport::Loaded {
        products,
        customers,
        orders: order_count,
    } = seeded
    {
        say!("loaded sample data: {products} products, {customers} customers, {order_count} orders");
        let mapping = Mapping::parse(Path::new("demo/mapping.toml"), DEMO_MAPPING)?;
        for (name, service) in [("catalog", catalog.database()), ("orders", orders.database())] {
            let reports = backfill(
                mapping.capability(name)?,
                monolith.database(),
                service,
                BackfillOptions::default(),
            )
            .await
            .with_context(|| format!("backfilling the {name} service"))?;
            print_reports(name, &reports);
        }
    }

    let facade = build_facade(
        &data,
        &args,
        [monolith.local_addr(), catalog.local_addr(), orders.local_addr()],
        tracing,
    )
    .await
    .context("starting the facade")?;
    let addresses = Addresses {
        facade: facade.proxy_addr(),
        admin: facade.admin_addr(),
        monolith: monolith.local_addr(),
        catalog: catalog.local_addr(),
        orders: orders.local_addr(),
    };
    let mapping = demo_mapping(&data)?;
    let store = RunStore::open(&DatabaseUrl::sqlite_file(&data.join("toolkit.db")))
        .await
        .context("opening the toolkit store for the reconciler")?;
    let reports = data.join("reports");
    print_banner(&data, &addresses, &args, &mapping);

    let stop = CancellationToken::new();
    let mut servers = JoinSet::new();
    servers.spawn(named(
        "facade",
        facade.run_until_stopped(stop.clone().cancelled_owned()),
    ));
    servers.spawn(named(
        "monolith",
        monolith.run_until_stopped(stop.clone().cancelled_owned()),
    ));
    servers.spawn(named(
        "catalog service",
        catalog.run_until_stopped(stop.clone().cancelled_owned()),
    ));
    servers.spawn(named(
        "orders service",
        orders.run_until_stopped(stop.clone().cancelled_owned()),
    ));
    let signal = stop.clone();
    tokio::spawn(async move {
        crate::signals::shutdown_signal().await;
        signal.cancel();
    });
    // The servers' listeners are bound, so the first requests wait in the
    // backlog rather than fail. The generator ends when `stop` is cancelled.
    let traffic = args.traffic.then(|| {
        let seed = SeedSize::default();
        tokio::spawn(traffic::run(
            addresses.facade,
            seed.products as i64,
            seed.customers as i64,
            args.traffic_rate,
            traffic::pause_file(&data),
            stop.clone(),
        ))
    });

    let serving = async {
        let mut failure = None;
        while let Some(joined) = servers.join_next().await {
            // When one server stops for any reason, stop the others too.
            stop.cancel();
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(error))) => {
                    failure.get_or_insert_with(|| {
                        anyhow::Error::new(error).context(format!("the {name} failed"))
                    });
                }
                Err(error) => {
                    failure
                        .get_or_insert_with(|| anyhow::Error::new(error).context("a demo server panicked"));
                }
            }
        }
        failure
    };
    // The schedule's future is not `Send`, so it runs here, beside the
    // servers, rather than on a task of its own. A pass in progress finishes
    // before Ctrl-C ends it.
    let reconciling = async {
        let result = run_schedule(
            &mapping,
            Some(store),
            Some(reports),
            reconciler::Options::default(),
            None,
            stop.clone().cancelled_owned(),
        )
        .await;
        if result.is_err() {
            stop.cancel();
        }
        result.context("the reconciliation schedule failed")
    };
    let (failure, scheduled) = tokio::join!(serving, reconciling);
    if let Some(traffic) = traffic {
        // Cancelled by now; this only waits for its final log line.
        stop.cancel();
        if let Err(error) = traffic.await {
            tracing::warn!(%error, "the demo traffic task ended abnormally");
        }
    }
    match failure.or(scheduled.err()) {
        Some(error) => Err(error),
        None => {
            // Standard output may be a closed pipe by now; that is no error.
            let _ = writeln!(
                std::io::stdout(),
                "demo stopped; its data stays in {}",
                data.display()
            );
            Ok(())
        }
    }
}

async fn named<F>(name: &'static str, server: F) -> (&'static str, std::io::Result<()>)
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    (name, server.await)
}

/// The demo's mapping, with every scheduled capability pointed at the
/// databases in `data` (the file names paths under `.strangler-demo/`).
fn demo_mapping(data: &Path) -> anyhow::Result<Mapping> {
    let mut mapping = Mapping::parse(Path::new("demo/mapping.toml"), DEMO_MAPPING)?;
    for (name, service) in [("catalog", "catalog.db"), ("orders", "orders.db")] {
        let capability = mapping.capability_mut(name)?;
        capability.legacy_database = Some(DatabaseSource::Url(DatabaseUrl::sqlite_file(
            &data.join("monolith.db"),
        )));
        capability.service_database =
            Some(DatabaseSource::Url(DatabaseUrl::sqlite_file(&data.join(service))));
    }
    Ok(mapping)
}

/// Creates (or with `reset`, recreates) the data folder.
fn prepare_data_dir(dir: &Path, reset: bool) -> anyhow::Result<PathBuf> {
    if reset && dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!(
                "refusing to delete {}: it is not a strangler demo folder (no {MARKER} file in it); choose another --data-dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("deleting {}", dir.display()))?;
    }
    if dir.exists()
        && !dir.join(MARKER).exists()
        && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true)
    {
        bail!(
            "{} exists and is not a strangler demo folder; choose another --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "this folder holds the databases of `strangler demo`\n",
    )
    .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
    Ok(dir.to_path_buf())
}

/// The facade of the demo: `demo/strangler.toml` with the addresses the
/// apps really got, the store and a generated admin token in the data folder.
async fn build_facade(
    data: &Path,
    args: &DemoArgs,
    [monolith, catalog, orders]: [SocketAddr; 3],
    tracing: Option<SpanSink>,
) -> anyhow::Result<Facade> {
    let mut config = FacadeConfig::parse(Path::new("demo/strangler.toml"), DEMO_FACADE)?;
    config.listen = Some(args.facade_listen);
    config.admin_listen = args.admin_listen;
    config.store_url = DatabaseUrl::sqlite_file(&data.join("toolkit.db"));
    for backend in &mut config.backends {
        let addr = match backend.name.as_str() {
            "legacy" => monolith,
            "catalog" => catalog,
            "orders" => orders,
            other => bail!("demo/strangler.toml has an unexpected backend `{other}`"),
        };
        backend.urls = vec![format!("http://{addr}")
            .parse()
            .context("building a backend URL")?];
    }
    let token_file = data.join("admin-token");
    if !token_file.exists() {
        let token: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        write_private(&token_file, &token)?;
    }
    config.admin_token_file = Some(token_file);
    Ok(Facade::build_traced(config, tracing).await?)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

struct Addresses {
    facade: SocketAddr,
    admin: SocketAddr,
    monolith: SocketAddr,
    catalog: SocketAddr,
    orders: SocketAddr,
}

fn print_banner(data: &Path, a: &Addresses, args: &DemoArgs, mapping: &Mapping) {
    let dual = if args.no_dual_write {
        "off".to_owned()
    } else {
        format!("on, {}% dropped on purpose", percent(args.dual_write_fault_rate))
    };
    let admin_flag = if a.admin.to_string() == "127.0.0.1:9080" {
        String::new()
    } else {
        format!(" --admin-url http://{}", a.admin)
    };
    let default_data = data == Path::new(".strangler-demo");
    let token_hint = if default_data {
        String::new()
    } else {
        format!(
            "\n  (admin token: export STRANGLER_ADMIN_TOKEN=$(cat {}/admin-token))",
            data.display()
        )
    };
    let planted = if args.no_planted_bug {
        "planted price bug: off".to_owned()
    } else {
        "planted bug: prices rounded to whole dollars".to_owned()
    };
    let traffic = if args.traffic {
        format!(
            "\n  traffic           {} requests/s through the facade, a summary in the log every 10 s",
            args.traffic_rate
        )
    } else {
        String::new()
    };
    // The switches find the services at their default addresses; elsewhere
    // they must be told.
    let mut switch_flags = String::new();
    if format!("http://{}", a.catalog) != DEFAULT_CATALOG_URL {
        switch_flags.push_str(&format!(" --catalog-url http://{}", a.catalog));
    }
    let mut orders_flag = String::new();
    if format!("http://{}", a.orders) != DEFAULT_ORDERS_URL {
        orders_flag.push_str(&format!(" --orders-url http://{}", a.orders));
    }
    let schedules: Vec<String> = mapping
        .capabilities()
        .filter_map(|c| Some(format!("{} `{}`", c.name, c.schedule.as_ref()?)))
        .collect();
    // The mapping file names the default folder's databases; elsewhere they
    // must be given.
    let reconcile_flags = if default_data {
        String::new()
    } else {
        format!(
            " \\\n       --legacy-database-url {d}/monolith.db --service-database-url {d}/orders.db --store-url {d}/toolkit.db",
            d = data.display()
        )
    };
    say!(
        r#"
strangler demo is up. Data: {data}/  —  Ctrl-C stops everything.

  facade            http://{facade}   (admin API http://{admin})
  control panel     http://{admin}/?token={panel_token}
  monolith          http://{monolith}
  catalog service   http://{catalog}   ({planted})
  orders service    http://{orders}   (dual writes to the monolith: {dual})
  reconciler        {schedules}; runs in {data}/toolkit.db
                    reports in {data}/reports/<capability>/ (latest.json, latest.md, latest.html){traffic}

The step-by-step walkthrough of a whole migration: docs/walkthrough.md

Try, through the facade (every capability starts on legacy):
  curl -s http://{facade}/products/1
  curl -s -X POST http://{facade}/orders -H 'content-type: application/json' \
       -d '{{"customer_id": 1, "lines": [{{"product_id": 1, "quantity": 2}}]}}'
  cargo run -- routes list{admin_flag}
  cargo run -- routes explain GET /products/1{admin_flag}
  cargo run -- routes flip catalog --to shadow --reason "compare first"{admin_flag}
  cargo run -- routes diff catalog{admin_flag}
  cargo run -- routes history{admin_flag}{token_hint}

Dual writes, reconciled and repaired (orders placed by the orders service):
  cargo run -- routes flip orders --to canary --percent 50 --reason "first orders on the service"{admin_flag}
  cargo run -- reconcile run orders{reconcile_flags}
  cargo run -- reconcile repair orders{reconcile_flags}   # add --apply to execute the plan

Failures on demand, while it runs:
  cargo run -- demo switch catalog-price-bug on|off{switch_flags}
  cargo run -- demo switch orders-outage on|off{orders_flag}
  cargo run -- demo switch dual-write-faults 0.2{orders_flag}
"#,
        schedules = schedules.join(", "),
        panel_token = panel_token(data),
        data = data.display(),
        facade = a.facade,
        admin = a.admin,
        monolith = a.monolith,
        catalog = a.catalog,
        orders = a.orders,
    );
}

/// The token the demo's facade accepts, for the control panel's address
/// (opening it logs in and drops the token from the address bar): the
/// environment's, as the facade prefers it, else the data folder's file.
fn panel_token(data: &Path) -> String {
    std::env::var("STRANGLER_ADMIN_TOKEN")
        .ok()
        .filter(|token| !token.trim().is_empty())
        .unwrap_or_else(|| std::fs::read_to_string(data.join("admin-token")).unwrap_or_default())
        .trim()
        .to_owned()
}
