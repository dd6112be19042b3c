//! The walkthrough is tested: this runs every command of
//! `docs/walkthrough.md` in order, against a real `strangler demo`, and
//! checks the output the document promises.
//!
//! The document's ```console blocks hold the commands (`$ ` lines) and the
//! output to expect after each. An expected line must appear in the
//! command's output, in order; `…` in it stands for text that varies (ids,
//! times, counts), so each piece around it must appear on one line, in
//! order. `cargo run -q --` and `cargo run --` run this build's `strangler`;
//! any other command runs in `sh`. The demo itself (`… -- demo …`) is
//! started in the background and awaited on its admin API's readiness.
//!
//! Everything runs in a fresh folder holding a copy of `demo/`, so the
//! walkthrough starts from nothing, exactly as a newcomer's does. It uses
//! the demo's documented ports (8080–8083, 9080), as the document does.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STRANGLER: &str = env!("CARGO_BIN_EXE_strangler");

/// One command of the document and the output it promises.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn workspace_root() -> PathBuf {
    test_harness::workspace_path("")
}

/// The steps of every ```console block, in document order.
fn steps(document: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for (index, line) in document.lines().enumerate() {
        let trimmed = line.trim_end();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_console = !in_console && info.trim() == "console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = trimmed.strip_prefix("$ ") {
            steps.push(Step {
                line: index + 1,
                command: command.to_owned(),
                expected: Vec::new(),
            });
        } else if !trimmed.trim().is_empty() {
            if let Some(step) = steps.last_mut() {
                step.expected.push(trimmed.trim().to_owned());
            }
        }
    }
    steps
}

/// The command with the document's `cargo run` replaced by this build.
fn shell_command(command: &str) -> String {
    for prefix in ["cargo run -q -- ", "cargo run -- "] {
        if let Some(rest) = command.strip_prefix(prefix) {
            return format!("{STRANGLER} {rest}");
        }
    }
    command.to_owned()
}

fn is_demo_start(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.windows(2).any(|w| w == ["--", "demo"]) && !words.contains(&"switch")
}

/// Whether `expected` (with `…` as a wildcard) matches one line of `output`.
fn line_matches(expected: &str, line: &str) -> bool {
    let mut rest = line;
    for piece in expected.split('…').map(str::trim).filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Checks the expected lines appear in order in `output`.
fn check(step: &Step, output: &str) {
    let lines: Vec<&str> = output.lines().collect();
    let mut from = 0;
    for expected in &step.expected {
        // A line of nothing but `…` only marks elided output.
        if expected.split('…').all(|piece| piece.trim().is_empty()) {
            continue;
        }
        match lines[from..].iter().position(|line| line_matches(expected, line)) {
            Some(offset) => from += offset + 1,
            None => panic!(
                "docs/walkthrough.md:{}: `{}` did not print\n    {expected}\n(in order after the lines before it). It printed:\n{output}",
                step.line, step.command
            ),
        }
    }
}

fn run(step: &Step, dir: &Path) -> String {
    let command = shell_command(&step.command);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} 2>&1"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "docs/walkthrough.md:{}: `{}` ran for 3 minutes",
                step.line, step.command
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().unwrap();
    if step.expected.is_empty() {
        assert!(
            status.success(),
            "docs/walkthrough.md:{}: `{}` failed ({status}):\n{output}",
            step.line,
            step.command
        );
    }
    output
}

/// Starts the demo in the background; returns it once its admin API is
/// ready, with what it printed by then.
fn start_demo(step: &Step, dir: &Path) -> (Child, PathBuf) {
    let log = dir.join("demo.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} > demo.log 2>&1", shell_command(&step.command)))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the demo exited early ({status}); are ports 8080-8083 and 9080 free?\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let token = fs::read_to_string(dir.join(".strangler-demo/admin-token")).unwrap_or_default();
        let ready = !token.trim().is_empty() && admin_ready(token.trim());
        if ready && fs::read_to_string(&log).unwrap_or_default().contains("Ctrl-C") {
            return (child, log);
        }
        assert!(
            Instant::now() < deadline,
            "the demo was not ready within 4 minutes:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the admin API answers `GET /ready` with 200 (a raw HTTP/1.1
/// request: the test needs nothing more).
fn admin_ready(token: &str) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", 9080)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_walkthrough_runs_as_written() {
    let root = workspace_root();
    let document = fs::read_to_string(root.join("docs/walkthrough.md")).unwrap();
    let steps = steps(&document);
    assert!(steps.len() > 20, "the walkthrough lost its commands: {steps:?}");
    assert!(
        is_demo_start(&steps[0].command),
        "the walkthrough must start the demo first"
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("demo"), &dir.path().join("demo"));

    let (mut demo, log) = start_demo(&steps[0], dir.path());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check(&steps[0], &fs::read_to_string(&log).unwrap());
        for step in &steps[1..] {
            assert!(
                !is_demo_start(&step.command),
                "line {}: one demo at a time",
                step.line
            );
            let output = run(step, dir.path());
            check(step, &output);
        }
    }));

    // Ctrl-C stops every server the demo started; nothing stays behind.
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(demo.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let status = status.expect("the demo did not stop within 30 s of Ctrl-C");
    assert!(
        status.success(),
        "the demo exited with {status} on Ctrl-C:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    for port in [8080, 8081, 8082, 8083, 9080] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after the demo stopped"
        );
    }
}

#[test]
fn expected_lines_match_with_ellipses() {
    assert!(line_matches(
        "orders: … → canary 50% (by …)",
        "orders: legacy → canary 50% (by cli)"
    ));
    assert!(!line_matches(
        "orders: … → service",
        "orders: legacy → canary 50%"
    ));
    assert!(line_matches(
        "CLEAN",
        "reconciliation of `orders` (sqlite → sqlite): CLEAN"
    ));
}
