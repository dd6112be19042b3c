//! The monolith's request spans and logs, from its binary: spans exported
//! over OTLP/HTTP to a real receiver started by the test, each continuing
//! the caller's trace, named and sampled as the standard `OTEL_*` variables
//! say; JSON log lines that carry the trace's ids; human lines without
//! colour when standard error is a pipe.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shop_test_support::AppProcess;
use test_harness::otlp::OtlpReceiver;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const MONOLITH_BINARY: &str = env!("CARGO_BIN_EXE_legacy-monolith");
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";
/// How long the binary may take to start, log or stop.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_request_span_continues_the_callers_trace() {
    let receiver = OtlpReceiver::start().await;
    let database = test_harness::TestDatabase::sqlite();
    let endpoint = receiver.base_url();
    let app = AppProcess::start_with_env(
        MONOLITH_BINARY,
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database.url().expose(),
            "--seed",
            "--log-format",
            "json",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    )
    .await;

    let response = test_harness::http_client()
        .get(format!("{}/products/1", app.url))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let spans = receiver
        .wait_for("the request's span", |spans| {
            spans.iter().any(|span| span.name == "GET /products/{id}")
        })
        .await;
    let span = spans
        .iter()
        .find(|span| span.name == "GET /products/{id}")
        .unwrap();
    assert_eq!(span.service, "legacy-monolith");
    assert_eq!(span.resource_attribute("deployment.environment"), Some("test"));
    assert_eq!(span.kind, 2, "a server span");
    assert_eq!(span.trace_id, CLIENT_TRACE);
    assert_eq!(span.parent_span_id, CLIENT_SPAN);
    assert_eq!(span.attribute("http.route"), Some("/products/{id}"));
    assert_eq!(span.attribute("http.response.status_code"), Some("200"));

    let logged = app.logged();
    let finished = logged
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["message"] == "finished processing request" && line["span"]["path"] == "/products/1"
        })
        .unwrap_or_else(|| panic!("no answer logged in {logged:#?}"));
    assert_eq!(finished["trace_id"], CLIENT_TRACE, "{finished}");
    assert_eq!(finished["span_id"], span.span_id.as_str(), "{finished}");
    app.kill().await;
}

/// The monolith's binary on a fresh seeded SQLite file, its standard error
/// piped and kept; stopped with SIGTERM as a deployment stops it.
struct Monolith {
    child: Child,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
    _database: test_harness::TestDatabase,
}

impl Monolith {
    /// Starts it with `format` logs and `env`, and waits until it listens
    /// and is healthy.
    async fn start(format: &str, env: &[(&str, &str)]) -> Self {
        let database = test_harness::TestDatabase::sqlite();
        let mut child = Command::new(MONOLITH_BINARY)
            .args(["--listen", "127.0.0.1:0", "--seed", "--log-format", format])
            .arg("--database-url")
            .arg(database.url().expose())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn({
            let lines = Arc::clone(&lines);
            async move {
                while let Ok(Some(line)) = stderr.next_line().await {
                    eprintln!("[legacy-monolith] {line}");
                    lines.lock().unwrap().push(line);
                }
            }
        });
        let mut monolith = Self {
            child,
            url: String::new(),
            lines,
            _database: database,
        };
        let listening = monolith
            .wait_for_line("the monolith to listen", |line| {
                line.contains("legacy monolith listening")
            })
            .await;
        if format == "json" {
            let line: serde_json::Value = serde_json::from_str(&listening).unwrap();
            monolith.url = format!("http://{}", line["addr"].as_str().unwrap());
            test_harness::wait_until_healthy(&monolith.url).await;
        }
        monolith
    }

    fn logged(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Polls its log until a line satisfies `found`.
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

    /// `GET path`, with `traceparent` if given; answered 200.
    async fn get(&self, path: &str, traceparent: Option<&str>) {
        let mut request = test_harness::http_client().get(format!("{}{path}", self.url));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
    }

    /// SIGTERM, then waits until it has exported its last spans and exited.
    async fn terminate(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
        assert!(killed.unwrap().success());
        let status = tokio::time::timeout(WAIT_LIMIT, self.child.wait())
            .await
            .expect("the monolith stops on SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}: {:#?}", self.logged());
    }
}

/// `OTEL_SERVICE_NAME` names the exported service;
/// `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` is accepted; and a
/// parent-based ratio sampler at 0 keeps only the traces a caller kept:
/// a root request exports nothing.
#[tokio::test]
async fn the_standard_variables_name_the_service_and_choose_the_traces() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.base_url();
    let monolith = Monolith::start(
        "json",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "shop-monolith"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    monolith.get("/products/2", None).await;
    let kept = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    monolith.get("/products/1", Some(&kept)).await;
    let spans = receiver
        .wait_for("the kept request's span", |spans| {
            spans.iter().any(|span| span.kind == 2)
        })
        .await;
    let span = spans.iter().find(|span| span.kind == 2).unwrap();
    assert_eq!(span.service, "shop-monolith");
    assert_eq!(span.resource_attribute("deployment.environment"), Some("test"));
    assert_eq!(span.trace_id, CLIENT_TRACE);

    // Everything queued is exported on the way out: the root request's
    // trace never is.
    monolith.terminate().await;
    let spans = receiver.spans();
    assert!(
        spans.iter().all(|span| span.trace_id == CLIENT_TRACE),
        "only the caller's kept trace: {spans:#?}"
    );
}

/// gRPC export is not built into the sample apps: the binary refuses to
/// start and names the variable.
#[tokio::test]
async fn a_grpc_protocol_is_refused_naming_the_variable() {
    let database = test_harness::TestDatabase::sqlite();
    let output = Command::new(MONOLITH_BINARY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database.url().expose(),
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT_LIMIT, output)
        .await
        .expect("the monolith exits at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL is `grpc`") && stderr.contains("http/protobuf"),
        "{stderr}"
    );
}

/// Human lines into a pipe (a file, a log collector) carry no colour codes.
#[tokio::test]
async fn human_logs_into_a_pipe_carry_no_colour() {
    let monolith = Monolith::start("human", &[]).await;
    let logged = monolith.logged().join("\n");
    assert!(logged.contains("INFO"), "{logged}");
    assert!(!logged.contains("\x1b["), "colour codes in {logged:?}");
}
