//! The Prometheus endpoint of `clickflow process --metrics-addr`: the figures of the
//! latest progress report, in Prometheus' text format, at `GET /metrics`.
//!
//! Owns the HTTP listener (one thread, one short request at a time) and the rendering.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::sink::postgres::ProgressRow;

/// The text served, replaced at every progress report.
#[derive(Clone)]
pub struct Metrics {
    text: Arc<Mutex<String>>,
}

impl Metrics {
    /// Listens on `addr` (e.g. `127.0.0.1:9187`) on a background thread.
    pub fn serve(addr: &str) -> Result<Metrics> {
        let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
        let metrics = Metrics { text: Arc::new(Mutex::new(String::new())) };
        let served = metrics.clone();
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = served.answer(stream) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
        })?;
        Ok(metrics)
    }

    fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request)?;
        let (status, body) = if request.starts_with("GET /metrics ") || request.starts_with("GET / ") {
            ("200 OK", self.text.lock().map(|t| t.clone()).unwrap_or_default())
        } else {
            ("404 Not Found", "only /metrics is served\n".to_owned())
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// Publishes the figures of a progress report.
    pub fn update(&self, p: &ProgressRow) {
        let mut t = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(t, "# HELP clickflow_{name} {help}\n# TYPE clickflow_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(t, "clickflow_{name}{labels} {value}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        metric("input_events_total", "counter", "Messages read since the run started.", &one(p.input_events as f64));
        metric("late_events_total", "counter", "Events dead-lettered as late.", &one(p.late_events as f64));
        metric("duplicate_events_total", "counter", "Messages dropped as duplicates.", &one(p.duplicate_events as f64));
        metric("dead_letters_total", "counter", "Messages written to dead_letters (late included).", &one(p.dead_letters as f64));
        metric("input_rows_per_second", "gauge", "Rate at which messages were read.", &one(p.input_rows_per_second));
        metric(
            "processed_rows_per_second",
            "gauge",
            "Rate at which messages were committed to PostgreSQL.",
            &one(p.processed_rows_per_second),
        );
        metric("open_sessions", "gauge", "Sessions not yet final.", &one(p.open_sessions as f64));
        if let Some(w) = p.watermark.filter(|w| *w != i64::MAX) {
            metric("watermark_seconds", "gauge", "Event-time watermark, Unix seconds.", &one(w as f64 / 1000.0));
            let now = crate::process::now_millis();
            metric("watermark_delay_seconds", "gauge", "How far the watermark trails the wall clock.", &one((now - w) as f64 / 1000.0));
        }
        let lags: Vec<(String, f64)> =
            p.sources.iter().filter_map(|s| s.lag.map(|l| (format!("{{partition=\"{}\"}}", s.source), l as f64))).collect();
        if !lags.is_empty() {
            metric("kafka_lag", "gauge", "Messages in the partition not yet read.", &lags);
        }
        if let Ok(mut text) = self.text.lock() {
            *text = t;
        }
    }
}
