//! Traces and logs of the `strangler` command as a real process, exported
//! over OTLP/HTTP to a real receiver started by the test:
//!
//! - `reconcile run`: one span per table, with the rows compared and the
//!   differences found, under the run's span; and JSON log lines that carry
//!   the trace's ids;
//! - `facade`: the standard `OTEL_*` variables read by the facade itself
//!   (service name, resource attributes, sampler and its argument,
//!   protocol), and its access log lines joined to its spans;
//! - human log lines without colour when standard error is a pipe.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::Json;
use test_harness::otlp::{OtlpReceiver, ReceivedSpan};
use test_harness::workspace_path;

use super::{databases, run, strangler, with_databases};

/// How long a facade may take to start, answer or stop.
const WAIT_LIMIT: Duration = Duration::from_secs(20);
/// The admin token the facades under test use.
const ADMIN_TOKEN: &str = "telemetry-test-token";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// The client's trace the facade keeps (its sampled flag is set).
const KEPT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The client's trace the facade does not keep (its sampled flag is clear).
const UNKEPT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test]
async fn a_reconciliation_exports_one_span_per_table_and_its_logs_join_them() {
    let receiver = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Twelve products in the monolith, none yet in the catalog service.
    let (monolith, catalog) = databases(dir.path()).await;
    let mut command = with_databases(
        &[
            "--log-format",
            "json",
            "reconcile",
            "run",
            "catalog",
            "--output",
            "json",
        ],
        &workspace_path("demo/mapping.toml"),
        monolith.expose(),
        catalog.expose(),
    );
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())
        .env("OTEL_TRACES_SAMPLER", "always_on")
        .env("RUST_LOG", "info,sqlx=warn");
    // The receiver answers on this runtime while the command runs.
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap();
    assert_eq!(code, 1, "diverged: {stdout}{stderr}");

    // The command exports what is queued before it exits.
    let spans = receiver.spans();
    let run_span = spans
        .iter()
        .find(|span| span.name == "reconcile")
        .unwrap_or_else(|| panic!("no run span in {spans:#?}"));
    assert_eq!(run_span.service, "strangler-reconciler");
    assert_eq!(run_span.attribute("capability"), Some("catalog"));
    let tables: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "reconcile_table")
        .collect();
    assert_eq!(tables.len(), 1, "one table in the catalog's mapping: {spans:#?}");
    let table = tables[0];
    assert_eq!(table.trace_id, run_span.trace_id);
    assert_eq!(table.parent_span_id, run_span.span_id);
    assert_eq!(table.attribute("table"), Some("products"));
    assert_eq!(table.attribute("differences"), Some("12"));
    assert!(table.attribute("rows_compared").is_some(), "{table:?}");
    assert!(table.attribute("strategy").is_some(), "{table:?}");

    // The run's summary line was logged inside the run's span.
    let finished = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "reconciliation finished")
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    assert_eq!(finished["trace_id"], run_span.trace_id.as_str(), "{finished}");
    assert_eq!(finished["span_id"], run_span.span_id.as_str(), "{finished}");
}

/// An upstream that answers every request with the `traceparent` it got.
async fn echo_upstream() -> SocketAddr {
    async fn echo(headers: HeaderMap) -> Json<serde_json::Value> {
        let traceparent = headers.get("traceparent").and_then(|value| value.to_str().ok());
        Json(serde_json::json!({ "traceparent": traceparent }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// `strangler facade` as a child process in front of one upstream, every
/// request to the default backend, on a fresh SQLite store; its standard
/// error read line by line on a thread of its own.
struct FacadeProcess {
    child: Child,
    /// `http://proxy`.
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl FacadeProcess {
    /// Starts it with `format` logs and `env`, and waits until its admin
    /// API says it is ready.
    async fn start(upstream: SocketAddr, format: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("strangler.toml");
        std::fs::write(
            &config,
            format!(
                "[facade]\ndefault_backend = \"legacy\"\ngrace_seconds = 5\n\n\
                 [backends.legacy]\nurls = [\"http://{upstream}\"]\n"
            ),
        )
        .unwrap();
        let mut command = strangler();
        command
            .args(["--log-format", format, "facade", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--store-url")
            .arg(dir.path().join("store.db"))
            .env("STRANGLER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn({
            let lines = Arc::clone(&lines);
            move || {
                for line in stderr.lines().map_while(Result::ok) {
                    eprintln!("[strangler facade] {line}");
                    lines.lock().unwrap().push(line);
                }
            }
        });
        let mut facade = Self {
            child,
            url: String::new(),
            lines,
            _dir: dir,
        };
        let listening =
            facade.wait_for_line("the facade to listen", |line| line.contains("facade listening"));
        let listening = listening.await;
        if format == "json" {
            let line: serde_json::Value = serde_json::from_str(&listening).unwrap();
            facade.url = format!("http://{}", line["proxy"].as_str().unwrap());
            let admin = format!("http://{}/ready", line["admin"].as_str().unwrap());
            wait_until_ready(&admin).await;
        }
        facade
    }

    /// Everything it logged so far.
    fn logged(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Polls the log until a line satisfies `found`; panics with `what` and
    /// the log after [`WAIT_LIMIT`] or when the process has exited.
    async fn wait_for_line(&mut self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(line) = self.logged().into_iter().find(|line| found(line)) {
                return line;
            }
            let exited = self.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no line for {what} (exit: {exited:?}); logged {:#?}",
                self.logged()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The JSON access line of the request whose answer carried
    /// `request_id`, once logged.
    async fn access_line(&mut self, request_id: &str) -> serde_json::Value {
        let line = self
            .wait_for_line(&format!("the access line of {request_id}"), |line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|line| line["message"] == "proxied" && line["request_id"] == request_id)
            })
            .await;
        serde_json::from_str(&line).unwrap()
    }

    /// Stops it as a deployment does (SIGTERM) and waits until it has
    /// exported what it queued and exited.
    async fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + WAIT_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the facade did not stop on SIGTERM");
            // The receiver, on this runtime, answers the last export meanwhile.
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{status}: {:#?}", self.logged());
    }
}

impl Drop for FacadeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the admin API's `/ready` until it answers 200.
async fn wait_until_ready(url: &str) {
    let client = test_harness::http_client();
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let response = client.get(url).bearer_auth(ADMIN_TOKEN).send().await;
        if response.as_ref().is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never answered 200: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` through the facade with `traceparent`: the request id the
/// facade gave it, and the `traceparent` the upstream got.
async fn get(facade: &FacadeProcess, path: &str, traceparent: Option<&str>) -> (String, Option<String>) {
    let mut request = test_harness::http_client().get(format!("{}{path}", facade.url));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let echo: serde_json::Value = response.json().await.unwrap();
    (request_id, echo["traceparent"].as_str().map(str::to_owned))
}

fn server_spans(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    spans.iter().filter(|span| span.kind == 2).collect()
}

/// The variables as a deployment sets them, read by `strangler facade`
/// itself: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, and a parent-based ratio
/// sampler at 0, which keeps only the traces a client kept. The access log
/// joins the traces: a kept request's line carries its trace id and the
/// request span's id; a client's trace the facade did not keep still
/// labels the line with the client's trace id, but no span id (the facade
/// recorded none); a new trace not kept leaves the line without either.
#[tokio::test]
async fn the_facade_reads_the_standard_variables_and_its_access_log_joins_its_traces() {
    let receiver = OtlpReceiver::start().await;
    let upstream = echo_upstream().await;
    let endpoint = receiver.base_url();
    let mut facade = FacadeProcess::start(
        upstream,
        "json",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "edge-facade"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,service.namespace=shop",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;

    // A root request: the ratio 0 keeps none, and nothing is announced.
    let (root_id, sent) = get(&facade, "/root", None).await;
    assert_eq!(sent, None);
    // A client's trace it did not keep goes on unchanged.
    let unkept = format!("00-{UNKEPT_TRACE}-{CLIENT_SPAN}-00");
    let (unkept_id, sent) = get(&facade, "/unkept", Some(&unkept)).await;
    assert_eq!(sent.as_deref(), Some(unkept.as_str()));
    // A client's kept trace is continued: the parent decides.
    let kept = format!("00-{KEPT_TRACE}-{CLIENT_SPAN}-01");
    let (kept_id, sent) = get(&facade, "/kept", Some(&kept)).await;
    let sent = sent.expect("the kept trace went upstream");
    assert!(sent.starts_with(&format!("00-{KEPT_TRACE}-")), "{sent}");

    let spans = receiver
        .wait_for("the kept request's span", |spans| {
            spans.iter().any(|span| span.kind == 2)
        })
        .await;
    let server = server_spans(&spans)[0];
    assert_eq!(server.service, "edge-facade");
    assert_eq!(server.resource_attribute("service.name"), Some("edge-facade"));
    assert_eq!(server.resource_attribute("deployment.environment"), Some("test"));
    assert_eq!(server.resource_attribute("service.namespace"), Some("shop"));
    assert_eq!(server.attribute("url.path"), Some("/kept"));
    assert_eq!(server.trace_id, KEPT_TRACE);
    assert_eq!(server.parent_span_id, CLIENT_SPAN);

    let line = facade.access_line(&kept_id).await;
    assert_eq!(line["trace_id"], KEPT_TRACE, "{line}");
    // Who asked, and how, as an operator reading the log wants to know.
    assert_eq!(line["client"], "127.0.0.1", "{line}");
    assert_eq!(line["tls"], false, "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["span_id"], server.span_id.as_str(), "{line}");
    let line = facade.access_line(&unkept_id).await;
    assert_eq!(line["trace_id"], UNKEPT_TRACE, "{line}");
    assert!(line.get("span_id").is_none(), "{line}");
    let line = facade.access_line(&root_id).await;
    assert!(
        line.get("trace_id").is_none() && line.get("span_id").is_none(),
        "{line}"
    );

    // Once the facade has exported everything and exited, only the kept
    // request's trace arrived.
    facade.terminate().await;
    let spans = receiver.spans();
    assert!(
        spans.iter().all(|span| span.trace_id == KEPT_TRACE),
        "only the client's kept trace: {spans:#?}"
    );
    assert_eq!(server_spans(&spans).len(), 1, "{spans:#?}");
}

/// `OTEL_TRACES_SAMPLER=traceidratio` with `OTEL_TRACES_SAMPLER_ARG=1`
/// keeps every root request; the service name defaults to the facade's.
#[tokio::test]
async fn a_ratio_of_1_keeps_root_requests() {
    let receiver = OtlpReceiver::start().await;
    let upstream = echo_upstream().await;
    let endpoint = receiver.traces_url();
    let facade = FacadeProcess::start(
        upstream,
        "json",
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let (_, sent) = get(&facade, "/root", None).await;
    let sent = sent.expect("a kept trace is announced upstream");
    let spans = receiver
        .wait_for("the root request's span", |spans| {
            spans.iter().any(|span| span.kind == 2)
        })
        .await;
    let server = server_spans(&spans)[0];
    assert_eq!(server.service, "strangler-facade");
    assert_eq!(server.parent_span_id, "", "a root span");
    assert_eq!(server.attribute("url.path"), Some("/root"));
    assert!(
        sent.starts_with(&format!("00-{}-", server.trace_id)) && sent.ends_with("-01"),
        "{sent}"
    );
}

/// gRPC export is not built: the facade refuses to start and names the
/// variable, before it binds anything.
#[test]
fn a_grpc_protocol_is_refused_naming_the_variable() {
    for variable in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        let (code, _, stderr) = run(strangler()
            .args(["facade", "--config", "no-such-strangler.toml"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
            .env(variable, "grpc"));
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("{variable} is `grpc`")) && stderr.contains("http/protobuf"),
            "{stderr}"
        );
    }
}

/// Human lines into a pipe (a file, a log collector) carry no colour codes.
#[tokio::test]
async fn human_logs_into_a_pipe_carry_no_colour() {
    let upstream = echo_upstream().await;
    let facade = FacadeProcess::start(upstream, "human", &[]).await;
    let logged = facade.logged().join("\n");
    assert!(logged.contains("INFO"), "{logged}");
    assert!(!logged.contains("\x1b["), "colour codes in {logged:?}");
}
