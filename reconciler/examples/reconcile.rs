//! `strangler reconcile run` without the rest of the CLI, for
//! `bench/reconcile.sh`: compares one capability and prints the JSON report.
//! It builds in a fraction of the CLI's time and does not depend on the
//! facade.
//!
//! ```sh
//! cargo run --release -p reconciler --example reconcile -- \
//!     <mapping.toml> <capability> <legacy-url> <service-url> [auto|merge|bisect]
//! ```
//! Exit code 0 clean, 1 diverged, 2 error, as the CLI's.

use std::path::Path;
use std::process::ExitCode;

use mapping::Mapping;
use reconciler::{reconcile, Options, Status};
use toolkit_db::DatabaseUrl;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run()) {
        Ok(Status::Clean) => ExitCode::from(0),
        Ok(Status::Diverged) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<Status, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mapping, capability, legacy, service, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: reconcile <mapping.toml> <capability> <legacy-url> <service-url> [auto|merge|bisect]"
                .into(),
        );
    };
    let mapping = Mapping::load(Path::new(mapping))?;
    let capability = mapping.capability(capability)?;
    let options = Options {
        strategy: rest.first().map_or(Ok(Default::default()), |s| s.parse())?,
        ..Options::default()
    };
    let legacy: DatabaseUrl = legacy.parse()?;
    let service: DatabaseUrl = service.parse()?;
    let report = reconcile(capability, &legacy, &service, &options).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(report.status)
}
