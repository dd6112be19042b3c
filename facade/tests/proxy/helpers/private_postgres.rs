//! A PostgreSQL server of the test's own, which the test may crash and
//! start again. The shared server other tests use cannot be stopped: they
//! run at the same time. This one lives in a temporary folder, listens on a
//! port of its own and is gone when dropped.
//!
//! It is made with the installed server's own `initdb` and `pg_ctl`. As
//! root, which PostgreSQL refuses to run as, they run as the `postgres`
//! user that Debian's package creates.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use test_harness::{servers_required, DatabaseUrl};
use tokio::process::Command;

/// A PostgreSQL cluster in a temporary folder.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    // Removed last, when the cluster has stopped.
    _folder: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Makes and starts a cluster; `None` when PostgreSQL's programs are
    /// not installed, outside CI (under CI that fails the test).
    pub async fn start() -> Option<Self> {
        let Some(bin) = server_programs() else {
            let what = "PostgreSQL's initdb and pg_ctl (apt-get install postgresql)";
            assert!(
                !servers_required(),
                "{what} are required (CI is set) but not installed"
            );
            eprintln!("skipping: {what} are not installed; set CI=true to make this a failure");
            return None;
        };
        let folder = tempfile::tempdir().unwrap();
        let as_postgres = running_as_root().await;
        if as_postgres {
            run("chown", &["postgres:", folder.path().to_str().unwrap()]).await;
        }
        let data = folder.path().join("data");
        let cluster = Self {
            bin,
            data,
            port: free_port(),
            as_postgres,
            _folder: folder,
        };
        let data = cluster.data.to_str().unwrap().to_owned();
        cluster
            .pg(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            )
            .await;
        cluster.up().await;
        Some(cluster)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)).unwrap()
    }

    /// Stops it the way a crash does: every process ends at once, with no
    /// checkpoint and no goodbye to its clients.
    pub async fn crash(&self) {
        let data = self.data.to_str().unwrap();
        self.pg("pg_ctl", &["stop", "-D", data, "-m", "immediate", "-w"])
            .await;
    }

    /// Starts it again on the same port, and waits until it accepts
    /// connections.
    pub async fn up(&self) {
        let data = self.data.to_str().unwrap();
        let log = self.data.with_extension("log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.parent().unwrap().display()
        );
        self.pg(
            "pg_ctl",
            &[
                "start",
                "-D",
                data,
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
            ],
        )
        .await;
    }

    /// Runs one of the server's programs, as `postgres` when root.
    async fn pg(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let path = path.to_str().unwrap();
        if self.as_postgres {
            let mut all = vec!["-u", "postgres", "--", path];
            all.extend_from_slice(args);
            run("runuser", &all).await;
        } else {
            run(path, args).await;
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Best effort: a cluster already stopped says so and that is fine.
        let data = self.data.to_str().unwrap_or_default();
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            command
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = command
            .args(["stop", "-D", data, "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The folder holding `initdb` and `pg_ctl`: the newest of Debian's
/// versioned folders, else wherever `PATH` finds them.
fn server_programs() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    })
}

async fn running_as_root() -> bool {
    let output = Command::new("id").arg("-u").output().await.unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// A port nothing listens on now. PostgreSQL cannot be told to pick one
/// and report it, so the port is found by binding and letting go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `program`; fails the test with its output if it fails.
async fn run(program: impl AsRef<Path>, args: &[&str]) {
    let program = program.as_ref();
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("running {}: {error}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
