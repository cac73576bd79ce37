//! `clickflow process`: runs the dataflow on timely workers between a source and the
//! PostgreSQL sink.
//!
//! Owns the run loop: worker 0 reads the source, admits messages, closes an epoch every
//! `epoch_events` messages or 200 ms, throttles reading on the dataflow's progress, and
//! hands completed batches to the writer thread, which owns the database connection.
//! The figures themselves are computed only in `dataflows`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use dataflows::ingest::{Counts, Ingest};
use dataflows::pipeline::{build, Settings};
use dataflows::rows::{Change, SourceProgress};
use dataflows::time::Millis;

use crate::sink::batch::{collect, Batch, Collected};
use crate::sink::postgres::{PgSink, ProgressRow};
use crate::source;

/// How long an epoch stays open at most, so that a slow input still moves.
const EPOCH_INTERVAL: Duration = Duration::from_millis(200);
/// Epochs read ahead of the sink at most: bounds memory when the input is faster.
const EPOCHS_IN_FLIGHT: u64 = 4;
/// Rows gathered for the next write at most while the writer is busy.
const MAX_PENDING_ROWS: usize = 50_000;

pub struct Options {
    pub input: String,
    pub postgres: String,
    pub settings: Settings,
    pub watermark_delay: Millis,
    pub workers: usize,
    pub epoch_events: usize,
    pub progress_interval: Duration,
    pub run_id: String,
}

/// What a run did, for the closing summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub counts: Counts,
    pub seconds: f64,
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

/// Replays a bounded input into PostgreSQL; returns once every row is final and written.
pub fn run(options: Options) -> Result<Outcome> {
    let lines = source::file::open(&options.input)?;
    let sink = PgSink::connect(&options.postgres)?;
    let started = Instant::now();
    let writer = Writer::spawn(sink);
    let handoff = Arc::new(Mutex::new(Some((lines, writer))));
    let options = Arc::new(options);
    let config = timely::Config::process(options.workers.max(1));
    let guards = timely::execute(config, move |worker| -> Result<Option<Counts>> {
        let collected = Rc::new(RefCell::new(Collected::default()));
        let settings = options.settings;
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, changes) = build(scope, settings);
            collect(changes, collected.clone());
            inputs
        });
        if worker.index() != 0 {
            drop(inputs);
            while worker.step_or_park(None) {}
            return Ok(None);
        }
        let (lines, mut writer) = handoff.lock().expect("not poisoned").take().expect("worker 0 runs once");
        let source = format!("file:{}", options.input);
        let mut ingest = Ingest::new(options.watermark_delay);
        let mut reporter = Reporter::new(options.run_id.clone(), options.progress_interval);
        let mut in_epoch = 0usize;
        let mut epoch_opened = Instant::now();
        let end_epoch = |inputs: &mut dataflows::pipeline::Inputs, ingest: &Ingest, watermark: Millis| {
            let counts = ingest.counts();
            inputs.record(Change::Progress(SourceProgress {
                source: source.clone(),
                counts,
                watermark,
                max_event_time: ingest.max_event_time(),
            }));
            inputs.end_epoch(watermark);
        };
        loop {
            match lines.recv_timeout(EPOCH_INTERVAL) {
                Ok(batch) => {
                    let batch = batch.with_context(|| format!("reading {} failed", options.input))?;
                    let now = now_millis();
                    for line in batch {
                        inputs.admit(&mut ingest, &line.bytes, now, || format!("{source}:{}", line.number));
                        in_epoch += 1;
                        if in_epoch >= options.epoch_events {
                            end_epoch(&mut inputs, &ingest, ingest.watermark());
                            in_epoch = 0;
                            epoch_opened = Instant::now();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if in_epoch > 0 && epoch_opened.elapsed() >= EPOCH_INTERVAL {
                end_epoch(&mut inputs, &ingest, ingest.watermark());
                in_epoch = 0;
                epoch_opened = Instant::now();
            }
            let behind = inputs.epoch().saturating_sub(EPOCHS_IN_FLIGHT);
            while !collected.borrow().passed(behind) {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            worker.step();
            reporter.hand_over(&collected, &mut writer, ingest.counts(), false)?;
        }
        // The input has ended: W becomes +∞ and every window and session closes.
        end_epoch(&mut inputs, &ingest, Millis::MAX);
        drop(inputs);
        while worker.step_or_park(Some(Duration::from_millis(1))) {
            reporter.hand_over(&collected, &mut writer, ingest.counts(), false)?;
        }
        reporter.hand_over(&collected, &mut writer, ingest.counts(), true)?;
        writer.finish()?;
        Ok(Some(ingest.counts()))
    })
    .map_err(|e| anyhow!("cannot start timely workers: {e}"))?;
    let mut counts = None;
    for result in guards.join() {
        if let Some(c) = result.map_err(|e| anyhow!("a worker failed: {e}"))?? {
            counts = Some(c);
        }
    }
    let counts = counts.ok_or_else(|| anyhow!("worker 0 reported nothing"))?;
    Ok(Outcome { counts, seconds: started.elapsed().as_secs_f64() })
}

/// Decides when a batch is written and when a progress row goes with it.
struct Reporter {
    run_id: String,
    interval: Duration,
    last_report: Instant,
    /// Totals at the last report, for rates.
    last_input: u64,
    last_processed: u64,
    processed: Counts,
    watermark: Option<Millis>,
    max_event_time: Option<Millis>,
    open_sessions: i64,
}

impl Reporter {
    fn new(run_id: String, interval: Duration) -> Self {
        Reporter {
            run_id,
            interval,
            last_report: Instant::now(),
            last_input: 0,
            last_processed: 0,
            processed: Counts::default(),
            watermark: None,
            max_event_time: None,
            open_sessions: 0,
        }
    }

    /// Sends what has been collected to the writer when it is idle, with a progress row
    /// when one is due (every `interval`, and at the end when `last`). While the writer
    /// is busy, completed epochs accumulate, and several versions of a row become one
    /// write; past `MAX_PENDING_ROWS` the worker waits for the writer instead.
    fn hand_over(&mut self, collected: &Rc<RefCell<Collected>>, writer: &mut Writer, read: Counts, last: bool) -> Result<()> {
        if writer.busy()? {
            if !last && collected.borrow().batch.rows() < MAX_PENDING_ROWS {
                return Ok(());
            }
            writer.wait_idle()?;
        }
        let batch = std::mem::take(&mut collected.borrow_mut().batch);
        self.open_sessions += batch.open_sessions_delta;
        if let Some(p) = batch.progress.values().next() {
            // One source today: its totals are the run's.
            self.processed = p.counts;
            self.watermark = (p.watermark != Millis::MIN).then_some(p.watermark);
            self.max_event_time = p.max_event_time;
        }
        let due = last || self.last_report.elapsed() >= self.interval;
        if batch.is_empty() && !due {
            return Ok(());
        }
        let progress = due.then(|| self.progress_row(read));
        writer.send(batch, progress)
    }

    fn progress_row(&mut self, read: Counts) -> ProgressRow {
        let seconds = self.last_report.elapsed().as_secs_f64().max(1e-3);
        let row = ProgressRow {
            run_id: self.run_id.clone(),
            watermark: self.watermark,
            max_event_time: self.max_event_time,
            input_rows_per_second: (read.input - self.last_input) as f64 / seconds,
            processed_rows_per_second: (self.processed.input - self.last_processed) as f64 / seconds,
            open_sessions: self.open_sessions,
            kafka_lag: None,
            input_events: self.processed.input as i64,
            late_events: self.processed.late as i64,
            duplicate_events: self.processed.duplicates as i64,
            dead_letters: self.processed.dead_letters as i64,
        };
        tracing::info!(
            processed = self.processed.input,
            rate = format!("{:.0}/s", row.processed_rows_per_second),
            watermark = self.watermark.map(dataflows::time::format_rfc3339).unwrap_or_default(),
            open_sessions = self.open_sessions,
            late = self.processed.late,
            duplicates = self.processed.duplicates,
            dead_letters = self.processed.dead_letters,
            "progress"
        );
        self.last_report = Instant::now();
        self.last_input = read.input;
        self.last_processed = self.processed.input;
        row
    }
}

/// The writer thread: owns the connection and writes batches in order, one at a time.
struct Writer {
    jobs: Option<Sender<(Batch, Option<ProgressRow>)>>,
    written: Receiver<()>,
    in_flight: usize,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Writer {
    fn spawn(mut sink: PgSink) -> Writer {
        let (jobs, queue) = channel::<(Batch, Option<ProgressRow>)>();
        let (done, written) = channel();
        let thread = std::thread::Builder::new()
            .name("postgres-writer".into())
            .spawn(move || -> Result<()> {
                for (batch, progress) in queue {
                    sink.write(&batch, progress.as_ref())?;
                    let _ = done.send(());
                }
                Ok(())
            })
            .expect("spawn the writer thread");
        Writer { jobs: Some(jobs), written, in_flight: 0, thread: Some(thread) }
    }

    /// Whether a batch is still being written.
    fn busy(&mut self) -> Result<bool> {
        loop {
            match self.written.try_recv() {
                Ok(()) => self.in_flight -= 1,
                Err(TryRecvError::Empty) => return Ok(self.in_flight > 0),
                Err(TryRecvError::Disconnected) => return self.stopped().map(|_| false),
            }
        }
    }

    fn wait_idle(&mut self) -> Result<()> {
        while self.in_flight > 0 {
            match self.written.recv() {
                Ok(()) => self.in_flight -= 1,
                Err(_) => return self.stopped(),
            }
        }
        Ok(())
    }

    fn send(&mut self, batch: Batch, progress: Option<ProgressRow>) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("writer is open");
        if jobs.send((batch, progress)).is_err() {
            return self.stopped();
        }
        self.in_flight += 1;
        Ok(())
    }

    /// The writer ended early: only an error ends it, and it says why.
    fn stopped(&mut self) -> Result<()> {
        self.finish()?;
        Err(anyhow!("the PostgreSQL writer stopped"))
    }

    /// Waits for every batch to be written.
    fn finish(&mut self) -> Result<()> {
        self.jobs.take();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow!("the PostgreSQL writer panicked"))?,
            None => Ok(()),
        }
    }
}
