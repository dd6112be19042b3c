//! One of the shop's apps as a real process, to be killed with SIGKILL:
//! what a crash looks like from outside (no drain, no answer, no cleanup).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use test_harness::wait_until_healthy;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long a process may take to log the address it listens on.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// An app's binary running as a child process. Dropping it kills the
/// process.
pub struct AppProcess {
    /// Its base URL, without a trailing slash.
    pub url: String,
    child: Child,
    log: JoinHandle<()>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl AppProcess {
    /// Starts `program` with `args`, which must make it log JSON
    /// (`--log-format json`) and may listen on port 0: the address is read
    /// from the first log line with an `addr` field. Waits until `/health`
    /// answers. Its log lines are copied to the test's output.
    pub async fn start(program: &str, args: &[&str]) -> Self {
        Self::start_with_env(program, args, &[]).await
    }

    /// [`AppProcess::start`] with more environment variables.
    pub async fn start_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let name = std::path::Path::new(program)
            .file_name()
            .map_or_else(|| program.to_owned(), |name| name.to_string_lossy().into_owned());
        let stderr = child.stderr.take().expect("the child's stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("reading the child's log") {
                eprintln!("[{name}] {line}");
                let parsed: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if let Some(addr) = parsed["addr"].as_str() {
                    return addr.to_owned();
                }
            }
            panic!("{program} exited before logging its address");
        })
        .await
        .unwrap_or_else(|_| panic!("{program} logged no address within {START_TIMEOUT:?}"));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let log = tokio::spawn({
            let kept = Arc::clone(&kept);
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[{name}] {line}");
                    kept.lock().expect("the log lines").push(line);
                }
            }
        });
        let url = format!("http://{addr}");
        wait_until_healthy(&url).await;
        Self {
            url,
            child,
            log,
            lines: kept,
        }
    }

    /// The lines it logged since it listened.
    pub fn logged(&self) -> Vec<String> {
        self.lines.lock().expect("the log lines").clone()
    }

    /// Kills the process with SIGKILL and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("killing the child process");
        self.log.abort();
    }
}
