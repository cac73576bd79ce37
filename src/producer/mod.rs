//! `clickflow produce`: writes the simulated shop's events as JSON Lines, with optional
//! faults (duplicates, disorder, late events, malformed messages), optionally paced.
//!
//! Owns encoding events to the contract's wire format and delivering them in order of
//! arrival. The shopper model is `shop`; the same seed gives the same bytes.

pub mod kafka;
pub mod shop;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dataflows::time::{format_rfc3339, Millis};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use shop::{BotKind, Shop, SimEvent};

/// Probabilities, per event, of each fault.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// The same message is sent again a little later.
    pub duplicates: f64,
    /// The event is delivered up to `max_disorder` late: out of order, not late.
    pub out_of_order: f64,
    pub max_disorder: Millis,
    /// The event is delivered minutes late, after the watermark has passed it.
    pub late: f64,
    /// A malformed message is sent besides the event (one of each dead-letter kind in turn).
    pub malformed: f64,
}

pub struct Options {
    pub events: Option<u64>,
    /// Stop at this event time (`--days`), if not stopped before.
    pub until: Option<Millis>,
    pub seed: u64,
    pub out: Output,
    pub start: Millis,
    /// Events per second of event time the shop generates.
    pub events_per_second: f64,
    /// Wall-clock pacing at about this many events per second: event time then advances
    /// with the wall clock.
    pub rate: Option<f64>,
    /// Traffic follows the time of day (quiet nights, an evening peak), averaging the
    /// rate over a day, instead of holding it.
    pub daily_curve: bool,
    /// The fraction of visits made by bots.
    pub bots: f64,
    /// Where to write the labels of the bots' visits (CSV), if anywhere.
    pub labels: Option<String>,
    pub faults: Faults,
}

/// Paced output sleeps only once the next event is due this much later: events due
/// sooner go out at once, so that high rates are not bound by sleeps and flushes.
const PACE_TICK: Duration = Duration::from_millis(5);
/// How long a paced shop has been open when output starts: most visits last a few
/// minutes (see `Shop`), so by then the rate has reached its level.
const PACED_WARM_UP: Millis = 5 * 60_000;
const WARM_UP_EVENTS: f64 = 3_000_000.0;
/// The shop's rate counts the returns of its users hours later, which a paced run of
/// minutes mostly does not reach yet: measured, the first hour carries 0.77 of it.
const PACED_RATE_CORRECTION: f64 = 1.0 / 0.77;

/// Where the lines go.
pub enum Output {
    /// A file, `-` for stdout.
    File(String),
    /// A Kafka topic, created with `partitions` if missing.
    Kafka { kafka: crate::kafka::KafkaSettings, topic: String, partitions: usize },
}

/// What a run sent.
pub struct Sent {
    pub lines: u64,
    /// Messages Kafka did not accept (always 0 for files).
    pub failed: u64,
}

/// Writes events until `events` have been written or event time reaches `until`, forever,
/// or until SIGTERM/SIGINT (then what is in flight is flushed).
pub fn run(options: &Options) -> Result<Sent> {
    let mut out: Box<dyn Sink> = match &options.out {
        Output::File(path) => Box::new(FileSink::create(path)?),
        Output::Kafka { kafka, topic, partitions } => Box::new(kafka::KafkaSink::connect(kafka, topic, *partitions)?),
    };
    let stop = crate::signals::stop_flag()?;
    // Paced, the shop opens warm: visits under way as if it had been open for a while, so
    // that the asked rate holds from the first second instead of ramping up over minutes.
    let (opened, events_per_second) = match options.rate {
        // Warm-up is bounded in events too: generating it takes time at high rates.
        Some(rate) => (options.start - PACED_WARM_UP.min((WARM_UP_EVENTS / rate * 1000.0) as Millis), rate * PACED_RATE_CORRECTION),
        None => (options.start, options.events_per_second),
    };
    let mut shop = Shop::new(options.seed, opened, events_per_second, options.daily_curve).with_bots(options.bots);
    let mut labels = options.labels.as_deref().map(Labels::create).transpose()?;
    let mut delivery = Delivery::new(options.seed, options.faults);
    let started = Instant::now();
    let mut last_log = Instant::now();
    let mut generated = 0u64;
    let mut line = String::with_capacity(512);
    while options.events.is_none_or(|n| generated < n) && !stop.load(Ordering::Relaxed) {
        let event = shop.next_event();
        if event.time < options.start {
            continue;
        }
        if options.until.is_some_and(|end| event.time >= end) {
            break;
        }
        generated += 1;
        if let (Some(labels), Some(kind)) = (&mut labels, event.bot) {
            labels.record(shop.user_fields(event.user).0, event.time, kind)?;
        }
        line.clear();
        encode(&shop, &event, &mut line);
        let key = shop.user_fields(event.user).0;
        while let Some((ready, ready_key)) = delivery.pop_ready(event.time) {
            out.send(&ready_key, &ready)?;
        }
        if !delivery.push(event.time, key, &line) {
            out.send(key, &line)?;
        }
        if options.rate.is_some() {
            // Paced: event time advances with the wall clock from the start time.
            let due = started + Duration::from_millis((event.time - options.start).max(0) as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()).filter(|w| *w >= PACE_TICK) {
                out.flush()?;
                std::thread::sleep(wait);
            }
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            let rate = generated as f64 / started.elapsed().as_secs_f64();
            tracing::info!(
                events = generated,
                rate = format!("{rate:.0}/s"),
                event_time = format_rfc3339(event.time),
                status = out.status(),
                "producing"
            );
            last_log = Instant::now();
        }
    }
    while let Some((ready, key)) = delivery.pop_ready(Millis::MAX) {
        out.send(&key, &ready)?;
    }
    if let Some(labels) = &mut labels {
        labels.out.flush().context("cannot write the labels")?;
    }
    out.finish()
}

/// The labels file: a row for each bot, at its first event written.
struct Labels {
    out: BufWriter<File>,
    labelled: HashSet<String>,
}

impl Labels {
    fn create(path: &str) -> Result<Labels> {
        let file = File::create(path).with_context(|| format!("cannot create labels file {path}"))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "user_id,session_start,kind").context("cannot write the labels")?;
        Ok(Labels { out, labelled: HashSet::new() })
    }

    fn record(&mut self, user_id: &str, time: Millis, kind: BotKind) -> Result<()> {
        if self.labelled.insert(user_id.to_owned()) {
            writeln!(self.out, "{user_id},{},{}", format_rfc3339(time), kind.as_str()).context("cannot write the labels")?;
        }
        Ok(())
    }
}

/// A destination for lines.
trait Sink {
    fn send(&mut self, key: &str, line: &str) -> Result<()>;
    /// Pushes out what is buffered.
    fn flush(&mut self) -> Result<()>;
    /// One phrase for the progress line.
    fn status(&self) -> String;
    /// Flushes and reports what was sent.
    fn finish(&mut self) -> Result<Sent>;
}

struct FileSink {
    out: BufWriter<Box<dyn Write>>,
    lines: u64,
}

impl FileSink {
    fn create(path: &str) -> Result<FileSink> {
        let out: Box<dyn Write> = if path == "-" {
            Box::new(io::stdout().lock())
        } else {
            Box::new(File::create(path).with_context(|| format!("cannot create output file {path}"))?)
        };
        Ok(FileSink { out: BufWriter::with_capacity(1 << 20, out), lines: 0 })
    }
}

impl Sink for FileSink {
    fn send(&mut self, _key: &str, line: &str) -> Result<()> {
        self.out.write_all(line.as_bytes()).and_then(|_| self.out.write_all(b"\n")).context("cannot write events")?;
        self.lines += 1;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("cannot write events")
    }
    fn status(&self) -> String {
        format!("{} lines written", self.lines)
    }
    fn finish(&mut self) -> Result<Sent> {
        self.flush()?;
        Ok(Sent { lines: self.lines, failed: 0 })
    }
}

/// Appends the event as one JSON object, fields in the contract's order.
pub fn encode(shop: &Shop, e: &SimEvent, out: &mut String) {
    use std::fmt::Write as _;
    let (user_id, device, country, user_agent, ip) = shop.user_fields(e.user);
    let _ = write!(
        out,
        r#"{{"event_id":"{}","event_time":"{}","event_type":"{}","user_id":"{}","page":"{}""#,
        e.event_id,
        format_rfc3339(e.time),
        e.event_type.as_str(),
        user_id,
        e.page
    );
    match e.product {
        Some(p) => {
            let (id, category, price) = shop.product_fields(p);
            let _ = write!(out, r#","product_id":"{id}","category":"{category}""#);
            if matches!(e.event_type, dataflows::event::EventType::AddToCart | dataflows::event::EventType::Purchase) {
                let _ = write!(out, r#","price":{}.{:02}"#, price / 100, price % 100);
            } else {
                out.push_str(r#","price":null"#);
            }
        }
        None => out.push_str(r#","product_id":null,"category":null,"price":null"#),
    }
    match e.quantity {
        Some(q) => {
            let _ = write!(out, r#","quantity":{q}"#);
        }
        None => out.push_str(r#","quantity":null"#),
    }
    match &e.order_id {
        Some(o) => {
            let _ = write!(out, r#","order_id":"{o}""#);
        }
        None => out.push_str(r#","order_id":null"#),
    }
    let _ =
        write!(out, r#","device":"{device}","country":"{country}","referrer":"{}","user_agent":"{user_agent}","ip":"{ip}"}}"#, e.referrer);
}

/// Orders lines by when they are delivered, applying the faults.
struct Delivery {
    rng: SmallRng,
    faults: Faults,
    queue: BinaryHeap<Reverse<(Millis, u64, String, String)>>,
    sequence: u64,
    malformed_kind: usize,
}

impl Delivery {
    fn new(seed: u64, faults: Faults) -> Self {
        // A separate stream, so that faults do not change the shop's events.
        Delivery { rng: SmallRng::seed_from_u64(seed ^ 0x5eed_fa17), faults, queue: BinaryHeap::new(), sequence: 0, malformed_kind: 0 }
    }

    fn enqueue(&mut self, at: Millis, key: &str, line: String) {
        self.sequence += 1;
        self.queue.push(Reverse((at, self.sequence, line, key.to_owned())));
    }

    /// Schedules the line, with its faults; returns false when it is due now with
    /// nothing queued before it, for the caller to write straight away.
    fn push(&mut self, time: Millis, key: &str, line: &str) -> bool {
        let f = self.faults;
        let mut at = time;
        if f.out_of_order > 0.0 && self.rng.random_bool(f.out_of_order) && f.max_disorder > 1 {
            at += self.rng.random_range(1..f.max_disorder);
        } else if f.late > 0.0 && self.rng.random_bool(f.late) {
            at += self.rng.random_range(3 * 60_000..15 * 60_000);
        }
        if f.duplicates > 0.0 && self.rng.random_bool(f.duplicates) {
            let again = at + self.rng.random_range(0..2000);
            self.enqueue(again, key, line.to_owned());
        }
        if f.malformed > 0.0 && self.rng.random_bool(f.malformed) {
            let bad = self.malformed(line);
            self.enqueue(time, key, bad);
        }
        if at == time && self.queue.is_empty() {
            return false;
        }
        self.enqueue(at, key, line.to_owned());
        true
    }

    /// Each dead-letter reason in turn, made from a good line.
    fn malformed(&mut self, line: &str) -> String {
        self.malformed_kind = (self.malformed_kind + 1) % 6;
        match self.malformed_kind {
            0 => line[..line.len() / 2].to_owned(),
            1 => line.replacen(r#""user_id":"#, r#""user":"#, 1),
            2 => {
                let start = line.find(r#""event_type":""#).map_or(0, |i| i + 14);
                let end = line[start..].find('"').map_or(start, |i| start + i);
                format!("{}refund{}", &line[..start], &line[end..])
            }
            3 => line.replacen(r#""device":""#, r#""device":"smart-fridge-"#, 1),
            4 => format!(r#"{{"padding":"{}",{}"#, "x".repeat(70 * 1024), &line[1..]),
            _ => {
                let start = line.find(r#""event_time":""#).map_or(0, |i| i + 14);
                format!("{}2999-01-01T00:00:00.000Z{}", &line[..start], &line[start + 24..])
            }
        }
    }

    /// The next line due by `time`, and its key, in delivery order.
    fn pop_ready(&mut self, time: Millis) -> Option<(String, String)> {
        match self.queue.peek() {
            Some(Reverse((at, _, _, _))) if *at <= time => self.queue.pop().map(|Reverse((_, _, line, key))| (line, key)),
            _ => None,
        }
    }
}
