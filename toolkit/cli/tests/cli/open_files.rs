//! `strangler facade` under an open-file limit too small for its
//! `max_connections`: it says so at start and serves what fits, so a flood
//! gets 503s and never runs the process out of file descriptors (which
//! would leave clients hanging in the listen queue).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::strangler;

/// The limit the facade runs under, and what fits in it: half of 200 is
/// kept for everything but client connections, and a connection may hold
/// two descriptors.
const OPEN_FILES: u32 = 200;
const FITTING: usize = 50;

/// A keep-alive upstream answering every request with a small 200.
fn spawn_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    // The head ends at an empty line; the requests have no body.
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// The status of one request on `stream`, or `None` if the connection
/// closed or hung without an answer.
fn status_of(stream: &mut TcpStream) -> Option<u16> {
    stream.write_all(b"GET /x HTTP/1.1\r\nHost: shop\r\n\r\n").ok()?;
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

struct Facade {
    child: Child,
    proxy: SocketAddr,
    lines: mpsc::Receiver<String>,
    logged: Vec<String>,
}

impl Drop for Facade {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Facade {
    /// Starts `strangler facade` under `prlimit`, and waits for the line
    /// saying where it listens.
    fn start(dir: &std::path::Path, upstream: SocketAddr) -> Self {
        let config = dir.join("strangler.toml");
        std::fs::write(
            &config,
            format!(
                "[facade]\ndefault_backend = \"legacy\"\n\n\
                 [backends.legacy]\nurls = [\"http://{upstream}\"]\n"
            ),
        )
        .unwrap();
        let strangler = strangler();
        let mut command = std::process::Command::new("prlimit");
        command
            .arg(format!("--nofile={OPEN_FILES}:{OPEN_FILES}"))
            .arg(strangler.get_program())
            .args(["--log-format", "json", "facade", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--store-url")
            .arg(dir.join("store.db"))
            .env("STRANGLER_ADMIN_TOKEN", "open-files-test")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("running prlimit (util-linux): {error}"));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut facade = Self {
            child,
            proxy: "127.0.0.1:1".parse().unwrap(),
            lines,
            logged: Vec::new(),
        };
        let listening = facade.wait_for("facade listening");
        let line: serde_json::Value = serde_json::from_str(&listening).unwrap();
        facade.proxy = line["proxy"].as_str().unwrap().parse().unwrap();
        facade
    }

    /// The first line logged so far, or from now on, that contains `text`.
    fn wait_for(&mut self, text: &str) -> String {
        if let Some(line) = self.logged.iter().find(|line| line.contains(text)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.logged.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {text:?}; logged {:#?}", self.logged),
            }
        }
    }

    /// Everything logged until now.
    fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.logged.push(line);
        }
        &self.logged
    }
}

#[test]
fn a_facade_short_of_file_descriptors_serves_what_fits_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = spawn_upstream();
    let mut facade = Facade::start(dir.path(), upstream);
    let warning = facade.wait_for("more file descriptors");
    let warning: serde_json::Value = serde_json::from_str(&warning).unwrap();
    let fields = if warning["fields"].is_object() {
        &warning["fields"]
    } else {
        &warning
    };
    assert_eq!(fields["open_file_limit"], OPEN_FILES, "{warning}");
    assert_eq!(fields["serving_at_most"], FITTING as u64, "{warning}");

    // Twice as many clients as fit in the limit, each holding its
    // connection open: those that fit are served, the rest are answered
    // 503 at once. None is left without an answer.
    let mut held = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for n in 0..(OPEN_FILES as usize + 50) {
        let mut stream = TcpStream::connect(facade.proxy).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match status_of(&mut stream) {
            Some(200) => served += 1,
            Some(503) => refused += 1,
            other => panic!("client {n} got {other:?}; logged {:#?}", facade.drain()),
        }
        held.push(stream);
    }
    assert_eq!(served, FITTING);
    assert_eq!(refused, OPEN_FILES as usize + 50 - FITTING);
    assert!(
        !facade
            .drain()
            .iter()
            .any(|line| line.contains("accepting a connection failed")),
        "the facade ran out of descriptors: {:#?}",
        facade.logged
    );

    // When the clients leave, new ones are served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(facade.proxy).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if status_of(&mut stream) == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again after the clients left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
