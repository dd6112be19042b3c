//! Where a capability's mapping and its two databases are: the flags
//! `strangler backfill` and `strangler reconcile run|repair` share, and the
//! mapping file's own `legacy_database_url` and `service_database_url` when
//! a flag is not given.

use std::path::PathBuf;

use clap::Args;
use mapping::{CapabilityMapping, DatabaseSource};
use toolkit_db::DatabaseUrl;

// No doc comment: clap would show it as the subcommand's.
#[derive(Args)]
pub struct DatabaseArgs {
    /// The mapping file: each capability's tables, keys and columns, and how
    /// they are compared.
    #[arg(long, env = "STRANGLER_MAPPING", default_value = "demo/mapping.toml")]
    pub mapping: PathBuf,
    /// The monolith's database; by default the capability's
    /// `legacy_database_url` in the mapping file.
    #[arg(long, env = "STRANGLER_LEGACY_DATABASE_URL")]
    legacy_database_url: Option<DatabaseUrl>,
    /// The service's database; by default the capability's
    /// `service_database_url` in the mapping file.
    #[arg(long, env = "STRANGLER_SERVICE_DATABASE_URL")]
    service_database_url: Option<DatabaseUrl>,
}

impl DatabaseArgs {
    /// The monolith's and the service's databases of `capability`: the
    /// flags (or their environment variables), and otherwise the
    /// capability's own in the mapping file.
    pub fn resolve(&self, capability: &CapabilityMapping) -> anyhow::Result<(DatabaseUrl, DatabaseUrl)> {
        let pick =
            |given: &Option<DatabaseUrl>, mapped: &Option<DatabaseSource>, field: &str| match (given, mapped)
            {
                (Some(url), _) => Ok(url.clone()),
                (None, Some(source)) => source.resolve().map_err(|message| {
                    anyhow::anyhow!("{field} of capability `{}`: {message}", capability.name)
                }),
                (None, None) => Err(anyhow::anyhow!(
                    "no --{} given, and capability `{}` has no {field} in {}",
                    field.replace('_', "-"),
                    capability.name,
                    self.mapping.display()
                )),
            };
        Ok((
            pick(
                &self.legacy_database_url,
                &capability.legacy_database,
                "legacy_database_url",
            )?,
            pick(
                &self.service_database_url,
                &capability.service_database,
                "service_database_url",
            )?,
        ))
    }
}
