//! What people look at, on real pipeline output: `clickflow report` PNGs, `clickflow
//! monitor --once` verdicts, and the processor's Prometheus endpoint.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Width and height from a PNG's IHDR chunk, checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()))
}

fn replayed_db(label: &str, events: &str) -> TestDb {
    let dir = scratch(label);
    let file = dir.join("events.jsonl");
    let file = file.to_str().unwrap();
    clickflow(&["produce", "--events", events, "--seed", "11", "--out", file, "--malformed", "0.002", "--late", "0.002", "--bots", "0.05"]);
    let db = TestDb::new(label);
    clickflow(&["process", "--input", file, "--postgres", &db.url, "--quiet"]);
    db
}

#[test]
fn report_writes_six_pngs_of_the_expected_size() {
    let db = replayed_db("report", "8000");
    let out = scratch("report-out");
    let listed = clickflow(&["report", "--out", out.to_str().unwrap(), "--postgres", &db.url]);
    for name in ["traffic.png", "funnel.png", "conversion_by_device.png", "top_products.png", "segments.png", "retention.png"] {
        let path = out.join(name);
        assert!(listed.contains(path.to_str().unwrap()), "{name} is listed");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(png_size(&bytes), (1000, 600), "{name}");
        assert!(bytes.len() > 10_000, "{name} has content ({} bytes)", bytes.len());
    }
}

fn monitor(url: &str, extra: &[&str]) -> (bool, String) {
    let out =
        Command::new(BIN).args([&["monitor", "--once", "--postgres", url][..], extra].concat()).env("RUST_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn monitor_once_judges_health() {
    let done = replayed_db("monitor_done", "3000");
    let (ok, text) = monitor(&done.url, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("HEALTHY (input ended, every row final)") && text.contains("dead letters by reason:"), "{text}");
    let flagged: i64 = done.client().query_one("SELECT count(*) FROM session_risk", &[]).unwrap().get(0);
    assert!(flagged > 0 && text.contains(&format!("risk: {flagged} sessions flagged (latest became final ")), "{text}");
    let (ok, text) = monitor(&done.url, &["--max-dead-letter-ratio", "0.0001"]);
    assert!(!ok && text.contains("dead-lettered"), "{text}");

    let empty = TestDb::new("monitor_empty");
    let (ok, text) = monitor(&empty.url, &[]);
    assert!(!ok && text.contains("has `clickflow process` run on this database?"), "{text}");

    // A run stopped before its input ended stops reporting: stalled.
    let stopped = TestDb::new("monitor_stopped");
    let mut child = Command::new(BIN)
        .args(["process", "--input", "-", "--postgres", &stopped.url, "--quiet", "--progress-interval", "200ms"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(clickflow(&["produce", "--events", "500"]).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, text) = monitor(&stopped.url, &["--max-watermark-delay", "100000d"]);
    assert!(ok, "a live run reporting on time is healthy: {text}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    drop(stdin);
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, text) = monitor(&stopped.url, &["--max-report-age", "1s", "--max-watermark-delay", "100000d"]);
    assert!(!ok && text.contains("stalled"), "{text}");
}

#[test]
fn prometheus_endpoint_serves_the_progress_figures() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let db = TestDb::new("metrics");
    let mut child = Command::new(BIN)
        .args(["process", "--input", "-", "--postgres", &db.url, "--quiet", "--progress-interval", "200ms", "--metrics-addr", &addr])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(clickflow(&["produce", "--events", "1000"]).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = TcpStream::connect(&addr).ok().and_then(|mut s| {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text)
        });
        match body {
            Some(b) if b.contains("clickflow_input_events_total 1000") || Instant::now() > deadline => break b,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for needle in [
        "clickflow_input_events_total 1000",
        "# TYPE clickflow_open_sessions gauge",
        "clickflow_watermark_delay_seconds",
        "clickflow_dead_letters_total 0",
    ] {
        assert!(body.contains(needle), "{needle} missing from:\n{body}");
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
