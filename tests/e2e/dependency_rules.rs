//! The dependency rules of ARCHITECTURE.md, checked against the workspace as
//! cargo sees it, so that they cannot drift.
//!
//! Every workspace crate belongs to one family, by the folder it lives in:
//! the toolkit (`facade/`, `reconciler/`, `toolkit/`), the sample shop
//! (`legacy-monolith/`, `extracted-services/`, `sample/`) or the tests
//! (`tests/`). The rules are stated once, in [`violations`], and each has a
//! case below that breaks it on purpose and expects it to be reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The family a crate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Toolkit,
    Sample,
    Tests,
}

/// The one toolkit crate the sample may use: it opens databases and holds no
/// toolkit logic (ARCHITECTURE.md says why the sample shares it).
const SHARED_WITH_SAMPLE: &str = "toolkit-db";
/// The toolkit's leaves: building blocks that know no other workspace crate
/// but `toolkit-db`.
const TOOLKIT_LEAVES: &[&str] = &["toolkit-db", "mapping", "resilience", "response-diff"];
/// The command, which nothing may depend on.
const CLI: &str = "strangler-cli";
/// The CLI feature that runs the sample in-process.
const DEMO_FEATURE: &str = "demo";

/// One workspace crate as the rules need it.
#[derive(Debug, Clone)]
struct Crate {
    name: String,
    family: Family,
    dependencies: Vec<Dependency>,
    features: BTreeMap<String, Vec<String>>,
}

/// One dependency on another workspace crate.
#[derive(Debug, Clone)]
struct Dependency {
    name: String,
    /// `None` for a normal dependency, `Some("dev")` or `Some("build")`.
    kind: Option<String>,
    optional: bool,
}

impl Dependency {
    fn is_dev(&self) -> bool {
        self.kind.as_deref() == Some("dev")
    }
}

/// Which family a crate in `relative` (its folder under the root) is in.
fn family_of(relative: &Path) -> Option<Family> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "facade" | "reconciler" | "toolkit" => Some(Family::Toolkit),
        "legacy-monolith" | "extracted-services" | "sample" => Some(Family::Sample),
        "tests" => Some(Family::Tests),
        _ => None,
    }
}

/// Runs this cargo on the workspace and returns what it printed.
fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(args)
        .current_dir(test_harness::workspace_path(""))
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "cargo {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("cargo prints UTF-8")
}

/// Reads the workspace's crates from `cargo metadata`.
fn workspace() -> Vec<Crate> {
    let output = cargo(&["metadata", "--format-version", "1", "--no-deps", "--offline"]);
    let metadata: Value = serde_json::from_str(&output).expect("cargo metadata's JSON");
    let root = Path::new(metadata["workspace_root"].as_str().expect("workspace_root"));
    let packages = metadata["packages"].as_array().expect("packages");
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("a package name").to_owned();
            let manifest = Path::new(package["manifest_path"].as_str().expect("manifest_path"));
            let relative = manifest.strip_prefix(root).expect("a member under the root");
            let family = family_of(relative).unwrap_or_else(|| {
                panic!("{name} ({}) is in no family: put it under toolkit/, sample/ or tests/ and say so in ARCHITECTURE.md", relative.display())
            });
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["name"].as_str().is_some_and(|n| members.contains(&n)))
                .map(|d| Dependency {
                    name: d["name"].as_str().unwrap_or_default().to_owned(),
                    kind: d["kind"].as_str().map(str::to_owned),
                    optional: d["optional"].as_bool().unwrap_or(false),
                })
                .collect();
            let features = serde_json::from_value(package["features"].clone()).expect("features");
            Crate {
                name,
                family,
                dependencies,
                features,
            }
        })
        .collect()
}

/// Every broken rule, one sentence each.
fn violations(crates: &[Crate]) -> Vec<String> {
    let family: BTreeMap<&str, Family> = crates.iter().map(|c| (c.name.as_str(), c.family)).collect();
    let mut broken = Vec::new();
    for krate in crates {
        let name = krate.name.as_str();
        let demo_feature = krate.features.get(DEMO_FEATURE);
        for dep in &krate.dependencies {
            let Some(&to) = family.get(dep.name.as_str()) else {
                continue;
            };
            let edge = format!("{name} -> {}", dep.name);
            // Rule 1: the toolkit never needs the sample to build or run;
            // only the CLI's optional demo feature may bring it in.
            if krate.family == Family::Toolkit && to == Family::Sample && !dep.is_dev() {
                let gated = name == CLI
                    && dep.optional
                    && demo_feature.is_some_and(|f| f.contains(&format!("dep:{}", dep.name)));
                if !gated {
                    broken.push(format!("{edge}: the toolkit may not depend on the sample (only the CLI's `{DEMO_FEATURE}` feature may, optionally)"));
                }
            }
            // Rule 2: the sample is an ordinary application; it uses nothing
            // of the toolkit but the database crate.
            if krate.family == Family::Sample && to == Family::Toolkit && dep.name != SHARED_WITH_SAMPLE {
                broken.push(format!(
                    "{edge}: the sample may not depend on the toolkit (only on {SHARED_WITH_SAMPLE})"
                ));
            }
            // Rule 3: test crates are only ever dev-dependencies.
            if krate.family != Family::Tests && to == Family::Tests && !dep.is_dev() {
                broken.push(format!("{edge}: a test crate may only be a dev-dependency"));
            }
            // Rule 4: nothing depends on the command.
            if dep.name == CLI {
                broken.push(format!(
                    "{edge}: nothing may depend on the command; move the code into a library"
                ));
            }
            // Rule 5: the leaves stay leaves.
            if TOOLKIT_LEAVES.contains(&name) && dep.name != SHARED_WITH_SAMPLE && !dep.is_dev() {
                broken.push(format!(
                    "{edge}: {name} is a leaf and may depend only on {SHARED_WITH_SAMPLE}"
                ));
            }
            // Rule 6: the facade and the reconciler are independent products.
            if matches!(
                (name, dep.name.as_str()),
                ("facade", "reconciler") | ("reconciler", "facade")
            ) {
                broken.push(format!(
                    "{edge}: the facade and the reconciler do not know each other"
                ));
            }
        }
        // Rule 7: the demo is on by default, so that `cargo run -- demo` works.
        if name == CLI {
            let default_has_demo = krate
                .features
                .get("default")
                .is_some_and(|d| d.iter().any(|f| f == DEMO_FEATURE));
            if !default_has_demo {
                broken.push(format!(
                    "{CLI}: its default features must include `{DEMO_FEATURE}`"
                ));
            }
        }
    }
    broken
}

#[test]
fn the_workspace_keeps_its_dependency_rules() {
    let crates = workspace();
    assert!(
        crates.iter().any(|c| c.name == "facade"),
        "the facade is a member"
    );
    let broken = violations(&crates);
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

/// The workspace with one more dependency, to show that a rule catches it.
fn with_edge(from: &str, to: &str, kind: Option<&str>, optional: bool) -> Vec<Crate> {
    let mut crates = workspace();
    let krate = crates
        .iter_mut()
        .find(|c| c.name == from)
        .unwrap_or_else(|| panic!("{from} is a member"));
    krate.dependencies.push(Dependency {
        name: to.to_owned(),
        kind: kind.map(str::to_owned),
        optional,
    });
    crates
}

#[test]
fn each_rule_reports_the_edge_that_breaks_it() {
    let cases = [
        (
            "facade",
            "service-runtime",
            None,
            false,
            "the toolkit may not depend on the sample",
        ),
        (
            "reconciler",
            "legacy-monolith",
            None,
            true,
            "the toolkit may not depend on the sample",
        ),
        (
            "strangler-cli",
            "shop-api",
            None,
            true,
            "the toolkit may not depend on the sample",
        ),
        (
            "legacy-monolith",
            "facade",
            None,
            false,
            "the sample may not depend on the toolkit",
        ),
        (
            "service-runtime",
            "mapping",
            Some("dev"),
            false,
            "the sample may not depend on the toolkit",
        ),
        (
            "backfill",
            "test-harness",
            None,
            false,
            "a test crate may only be a dev-dependency",
        ),
        (
            "end-to-end",
            "strangler-cli",
            Some("dev"),
            false,
            "nothing may depend on the command",
        ),
        ("mapping", "resilience", None, false, "is a leaf"),
        ("reconciler", "facade", None, false, "do not know each other"),
    ];
    for (from, to, kind, optional, expected) in cases {
        let broken = violations(&with_edge(from, to, kind, optional));
        assert!(
            broken
                .iter()
                .any(|b| b.starts_with(&format!("{from} -> {to}")) && b.contains(expected)),
            "{from} -> {to} should break `{expected}`; reported: {broken:?}"
        );
    }
}

#[test]
fn the_demo_must_stay_a_default_feature() {
    let mut crates = workspace();
    let cli = crates
        .iter_mut()
        .find(|c| c.name == CLI)
        .expect("the CLI is a member");
    cli.features.insert("default".to_owned(), Vec::new());
    let broken = violations(&crates);
    assert!(
        broken.iter().any(|b| b.contains("default features")),
        "reported: {broken:?}"
    );
}

#[test]
fn the_production_command_links_no_sample_crate() {
    let tree = cargo(&[
        "tree",
        "--offline",
        "-e",
        "normal",
        "-p",
        CLI,
        "--no-default-features",
        "--prefix",
        "none",
    ]);
    assert!(tree.contains("facade v"), "the tree lists the facade: {tree}");
    let sample: Vec<String> = workspace()
        .into_iter()
        .filter(|c| c.family == Family::Sample)
        .map(|c| c.name)
        .collect();
    for line in tree.lines() {
        let crate_name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !sample.iter().any(|s| s == crate_name),
            "`{CLI}` without the demo links the sample crate {crate_name}"
        );
    }
}
