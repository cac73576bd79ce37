//! `clickflow process`: runs the dataflow on timely workers between a source and the
//! PostgreSQL sink.
//!
//! Owns the run loop. Every worker with a source reads it, admits each message against
//! the input's shared watermark clock, and closes an epoch every `epoch_events` messages
//! or 200 ms (reporting W); it stops reading while the dataflow is more than a few epochs
//! behind. Worker 0 also hands completed batches to the writer thread, with a progress
//! row every `progress_interval`. The figures themselves are computed only in `dataflows`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use dataflows::ingest::{Counts, Ingest, InputState};
use dataflows::pipeline::{build, Inputs, Settings};
use dataflows::rows::{Change, SourceProgress};
use dataflows::time::{format_rfc3339, Millis};
use timely::worker::Worker;

use crate::metrics::Metrics;
use crate::sink::batch::{collect, Collected};
use crate::sink::postgres::{PgSink, ProgressRow};
use crate::sink::writer::Writer;
use crate::source::file::FileSource;
use crate::source::kafka::KafkaSource;
use crate::source::Source;

/// How long an epoch stays open at most, so that results and watermarks keep moving.
const EPOCH_INTERVAL: Duration = Duration::from_millis(200);
/// Epochs read ahead of the sink at most: bounds memory when the input is faster.
const EPOCHS_IN_FLIGHT: u64 = 4;
/// Rows gathered for the next write at most while the writer is busy.
const MAX_PENDING_ROWS: usize = 50_000;

/// Where events come from.
#[derive(Clone)]
pub enum Input {
    /// A JSON Lines file, `-` for stdin: bounded.
    File(String),
    /// A Kafka topic: unbounded, or until no message arrived for `until_idle`.
    Kafka { brokers: String, topic: String, until_idle: Option<Duration> },
}

pub struct Options {
    pub input: Input,
    pub postgres: String,
    pub settings: Settings,
    pub watermark_delay: Millis,
    pub idle_timeout: Millis,
    pub workers: usize,
    pub epoch_events: usize,
    pub progress_interval: Duration,
    pub run_id: String,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<String>,
}

/// What a run did, for the closing log line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub counts: Counts,
    pub seconds: f64,
    /// False when stopped by a signal before the input ended.
    pub finished: bool,
}

/// Peak resident memory of this process in MiB (Linux), for the closing log line.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// What every worker shares.
struct Shared {
    options: Options,
    input: InputState,
    /// Messages read by all workers, for the input rate.
    read: AtomicU64,
    stop: Arc<AtomicBool>,
    /// The file source, the writer and the metrics endpoint, taken by worker 0.
    worker0: Mutex<Option<(Option<FileSource>, Writer, Option<Metrics>)>>,
    /// Partitions of the Kafka topic.
    kafka_partitions: usize,
}

/// Runs until a bounded input has ended and every row is final and written, or until
/// SIGTERM/SIGINT (then what was read is written, and open windows stay open).
pub fn run(options: Options) -> Result<Outcome> {
    let stop = crate::signals::stop_flag()?;
    let (file, kafka_partitions) = match &options.input {
        Input::File(path) => (Some(FileSource::open(path)?), 0),
        Input::Kafka { brokers, topic, .. } => {
            let n = crate::kafka::partitions(brokers, topic)?.ok_or_else(|| anyhow!("topic {topic} does not exist on {brokers}"))?;
            (None, n)
        }
    };
    let writer = Writer::spawn(PgSink::connect(&options.postgres)?);
    let metrics = options.metrics_addr.as_deref().map(Metrics::serve).transpose()?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        input: InputState::new(options.watermark_delay, options.idle_timeout),
        read: AtomicU64::new(0),
        stop,
        worker0: Mutex::new(Some((file, writer, metrics))),
        kafka_partitions,
        options,
    });
    let config = timely::Config::process(shared.options.workers.max(1));
    let guards = timely::execute(config, move |worker| work(worker, &shared)).map_err(|e| anyhow!("cannot start timely workers: {e}"))?;
    let mut outcome = None;
    for result in guards.join() {
        if let Some(o) = result.map_err(|e| anyhow!("a worker failed: {e}"))?? {
            outcome = Some(o);
        }
    }
    let (counts, finished) = outcome.ok_or_else(|| anyhow!("worker 0 reported nothing"))?;
    Ok(Outcome { counts, seconds: started.elapsed().as_secs_f64(), finished })
}

/// One worker: build the graph, read this worker's source, and on worker 0 write.
/// Returns, on worker 0, the run's totals and whether the input ended.
fn work(worker: &mut Worker, shared: &Shared) -> Result<Option<(Counts, bool)>> {
    let options = &shared.options;
    let collected = Rc::new(RefCell::new(Collected::default()));
    let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
        let (inputs, changes) = build(scope, options.settings);
        collect(changes, collected.clone());
        inputs
    });
    let (index, peers) = (worker.index(), worker.peers());
    let (file, mut sink) = if index == 0 {
        let (file, writer, metrics) = shared.worker0.lock().expect("not poisoned").take().expect("worker 0 runs once");
        (file, Some((writer, Reporter::new(options.run_id.clone(), options.progress_interval, metrics))))
    } else {
        (None, None)
    };
    let source: Option<Box<dyn Source>> = match &options.input {
        Input::File(_) => file.map(|f| Box::new(f) as Box<dyn Source>),
        Input::Kafka { brokers, topic, until_idle } => {
            KafkaSource::assign(brokers, topic, shared.kafka_partitions, index, peers, *until_idle)?.map(|k| Box::new(k) as Box<dyn Source>)
        }
    };
    let mut ended = true;
    if let Some(mut source) = source {
        let mut reading = Reading::new(source.as_ref(), shared);
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                ended = false;
                break;
            }
            let done = source.poll(EPOCH_INTERVAL, &mut |partition, bytes, position| {
                reading.admit(&mut inputs, partition, bytes, position, shared);
            })?;
            if done {
                break;
            }
            if reading.epoch_opened.elapsed() >= EPOCH_INTERVAL {
                reading.end_epoch(&mut inputs, &mut *source, shared, None, false);
            }
            let behind = inputs.epoch().saturating_sub(EPOCHS_IN_FLIGHT);
            while !collected.borrow().passed(behind) {
                worker.step_or_park(Some(Duration::from_millis(1)));
                hand_over(&mut sink, &collected, shared, false)?;
            }
            worker.step();
            hand_over(&mut sink, &collected, shared, false)?;
        }
        // A bounded input has ended: W becomes +∞, every window and session closes.
        // Stopped by a signal: the last epoch keeps W, so open windows stay open.
        reading.end_epoch(&mut inputs, &mut *source, shared, ended.then_some(Millis::MAX), true);
    }
    drop(inputs);
    while worker.step_or_park(Some(Duration::from_millis(1))) {
        hand_over(&mut sink, &collected, shared, false)?;
    }
    hand_over(&mut sink, &collected, shared, true)?;
    match sink {
        Some((mut writer, reporter)) => {
            writer.finish()?;
            Ok(Some((reporter.totals(), ended && !shared.stop.load(Ordering::Relaxed))))
        }
        None => Ok(None),
    }
}

/// Hands collected batches to the writer on worker 0; nothing elsewhere.
fn hand_over(sink: &mut Option<(Writer, Reporter)>, collected: &Rc<RefCell<Collected>>, shared: &Shared, last: bool) -> Result<()> {
    match sink {
        Some((writer, reporter)) => reporter.hand_over(collected, writer, shared.read.load(Ordering::Relaxed), last),
        None => Ok(()),
    }
}

/// A worker's admission state over its source's partitions.
struct Reading {
    names: Vec<String>,
    ingests: Vec<Ingest>,
    lags: Vec<Option<i64>>,
    lag_checked: Instant,
    in_epoch: usize,
    epoch_opened: Instant,
}

impl Reading {
    fn new(source: &dyn Source, shared: &Shared) -> Reading {
        let now = now_millis();
        let names = source.partitions().to_vec();
        let ingests = names.iter().map(|n| Ingest::new(shared.input.clone(), n, now)).collect();
        Reading {
            lags: vec![None; names.len()],
            names,
            ingests,
            lag_checked: Instant::now() - shared.options.progress_interval,
            in_epoch: 0,
            epoch_opened: Instant::now(),
        }
    }

    fn admit(&mut self, inputs: &mut Inputs, partition: usize, bytes: &[u8], position: &dyn Fn() -> String, shared: &Shared) {
        inputs.admit(&mut self.ingests[partition], bytes, now_millis(), position);
        shared.read.fetch_add(1, Ordering::Relaxed);
        self.in_epoch += 1;
        if self.in_epoch >= shared.options.epoch_events {
            self.close(inputs, shared, None);
        }
    }

    /// Ends the epoch, refreshing the consumer lag every progress interval and at the
    /// last epoch (`last`).
    fn end_epoch(&mut self, inputs: &mut Inputs, source: &mut dyn Source, shared: &Shared, watermark: Option<Millis>, last: bool) {
        if last || self.lag_checked.elapsed() >= shared.options.progress_interval {
            self.lags = source.lag();
            self.lag_checked = Instant::now();
        }
        self.close(inputs, shared, watermark);
    }

    /// Records each partition's progress and ends the epoch with the input's W now (or
    /// `watermark` when given).
    fn close(&mut self, inputs: &mut Inputs, shared: &Shared, watermark: Option<Millis>) {
        let watermark = watermark.unwrap_or_else(|| shared.input.watermark(now_millis()));
        for ((name, ingest), lag) in self.names.iter().zip(&self.ingests).zip(&self.lags) {
            inputs.record(Change::Progress(SourceProgress {
                source: name.clone(),
                counts: ingest.counts(),
                watermark,
                max_event_time: ingest.max_event_time(),
                lag: *lag,
            }));
        }
        inputs.end_epoch(watermark);
        self.in_epoch = 0;
        self.epoch_opened = Instant::now();
    }
}

/// Decides when a batch is written and when a progress row goes with it.
struct Reporter {
    run_id: String,
    interval: Duration,
    last_report: Instant,
    last_read: u64,
    last_processed: u64,
    /// The latest committed progress of each source partition.
    sources: BTreeMap<String, SourceProgress>,
    open_sessions: i64,
    metrics: Option<Metrics>,
}

impl Reporter {
    fn new(run_id: String, interval: Duration, metrics: Option<Metrics>) -> Self {
        Reporter { run_id, interval, last_report: Instant::now(), last_read: 0, last_processed: 0, sources: BTreeMap::new(), open_sessions: 0, metrics }
    }

    /// Totals over every source partition.
    fn totals(&self) -> Counts {
        let mut total = Counts::default();
        for p in self.sources.values() {
            total += p.counts;
        }
        total
    }

    /// Sends what has been collected to the writer when it is idle, with a progress row
    /// when one is due (every `interval`, and at the end when `last`). While the writer
    /// is busy, completed epochs accumulate, and several versions of a row become one
    /// write; past `MAX_PENDING_ROWS` the worker waits for the writer instead.
    fn hand_over(&mut self, collected: &Rc<RefCell<Collected>>, writer: &mut Writer, read: u64, last: bool) -> Result<()> {
        if writer.busy()? {
            if !last && collected.borrow().batch.rows() < MAX_PENDING_ROWS {
                return Ok(());
            }
            writer.wait_idle()?;
        }
        let batch = std::mem::take(&mut collected.borrow_mut().batch);
        self.open_sessions += batch.open_sessions_delta;
        for (name, p) in &batch.progress {
            self.sources.insert(name.clone(), p.clone());
        }
        let due = last || self.last_report.elapsed() >= self.interval;
        if batch.is_empty() && !due {
            return Ok(());
        }
        let progress = due.then(|| self.progress_row(read));
        writer.send(batch, progress)
    }

    fn progress_row(&mut self, read: u64) -> ProgressRow {
        let seconds = self.last_report.elapsed().as_secs_f64().max(1e-3);
        let totals = self.totals();
        let watermark = self.sources.values().map(|p| p.watermark).min().filter(|w| *w != Millis::MIN);
        let lags: Vec<i64> = self.sources.values().filter_map(|p| p.lag).collect();
        let row = ProgressRow {
            run_id: self.run_id.clone(),
            watermark,
            max_event_time: self.sources.values().filter_map(|p| p.max_event_time).max(),
            input_rows_per_second: read.saturating_sub(self.last_read) as f64 / seconds,
            processed_rows_per_second: totals.input.saturating_sub(self.last_processed) as f64 / seconds,
            open_sessions: self.open_sessions,
            kafka_lag: (!lags.is_empty()).then(|| lags.iter().sum()),
            input_events: totals.input as i64,
            late_events: totals.late as i64,
            duplicate_events: totals.duplicates as i64,
            dead_letters: totals.dead_letters as i64,
            sources: self.sources.values().cloned().collect(),
        };
        tracing::info!(
            processed = totals.input,
            rate = format!("{:.0}/s", row.processed_rows_per_second),
            watermark = watermark.map(format_rfc3339).unwrap_or_default(),
            lag = row.kafka_lag,
            open_sessions = self.open_sessions,
            late = totals.late,
            duplicates = totals.duplicates,
            dead_letters = totals.dead_letters,
            "progress"
        );
        if let Some(m) = &self.metrics {
            m.update(&row);
        }
        self.last_report = Instant::now();
        self.last_read = read;
        self.last_processed = totals.input;
        row
    }
}
