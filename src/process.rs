//! `clickflow process`: runs the dataflow on timely workers between a source and the
//! PostgreSQL sink, resuming after the last committed transaction.
//!
//! Owns the run loop and restarts. A run is a series of attempts. Each attempt reads the
//! checkpoint (`sink::checkpoint`), feeds the open rows' events back in the restore epoch
//! to rebuild the operators' state, restores admission (watermark, dedupe ids, totals),
//! and reads every source partition from its committed position. When PostgreSQL goes
//! away the attempt is abandoned, since nothing uncommitted counts, and a new one starts
//! once the database answers again (bounded exponential backoff, `--max-retry-time`).
//!
//! Within an attempt every worker with a source reads it, admits each message against
//! the input's shared watermark clock, and closes an epoch every `epoch_events` messages
//! or 200 ms (reporting W and its partitions' positions); it stops reading while the
//! dataflow is more than a few epochs behind. Worker 0 also hands completed batches to
//! the writer thread, with a progress row every `progress_interval`. The figures
//! themselves are computed only in `dataflows`.
//!
//! A run can span processes (`-n`, timely's cluster): every process reads the checkpoint,
//! its workers read their share of the Kafka partitions, and process 0 alone restores the
//! open state and writes. What admission needs of the other processes' partitions comes
//! through the dataflow (`dataflows::pipeline`), and so does a stop: a signal to any
//! process stops every process's reading at its next epoch, and the run commits what was
//! read and exits 0 everywhere. An attempt is not retried within the processes: a
//! failure (a database outage, an error, a panic) ends the failing process at once, its
//! peers end on the lost connection, and the next start of every process resumes after
//! the last commit.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use dataflows::event::Text;
use dataflows::ingest::{Counts, Ingest, InputState, Notice};
use dataflows::pipeline::{build, Inputs, Settings};
use dataflows::rows::{Change, Position, SourceProgress};
use dataflows::time::{format_rfc3339, Millis};
use timely::worker::Worker;

use crate::kafka::KafkaSettings;
use crate::metrics::Metrics;
use crate::sink::batch::{collect, Collected};
use crate::sink::checkpoint::{Checkpoint, OpenState};
use crate::sink::postgres::{is_unavailable, redact, PgSink, ProgressRow};
use crate::sink::writer::Writer;
use crate::source::file::{self, FileSource};
use crate::source::kafka::{self, KafkaSource};
use crate::source::Source;

/// How long an epoch stays open at most, so that results and watermarks keep moving.
const EPOCH_INTERVAL: Duration = Duration::from_millis(200);
/// Epochs read ahead of the sink at most: bounds memory when the input is faster.
const EPOCHS_IN_FLIGHT: u64 = 4;
/// Rows gathered for the next write at most while the writer is busy.
const MAX_PENDING_ROWS: usize = 50_000;
/// The first and the longest wait between attempts to reach PostgreSQL again.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where events come from.
#[derive(Clone)]
pub enum Input {
    /// A JSON Lines file, `-` for stdin: bounded.
    File(String),
    /// A Kafka topic: unbounded, or until no message arrived for `until_idle`.
    Kafka { kafka: KafkaSettings, topic: String, until_idle: Option<Duration>, wait_for_broker: Option<Duration> },
}

/// The processes of one run (timely's cluster): `processes` of them, this one numbered
/// `process`, at `addresses` (`host:port`, one per process, in order).
#[derive(Clone, Debug)]
pub struct Cluster {
    pub processes: usize,
    pub process: usize,
    pub addresses: Vec<String>,
}

impl Cluster {
    /// One process alone.
    pub fn single() -> Self {
        Cluster { processes: 1, process: 0, addresses: Vec::new() }
    }

    /// `processes` processes, this one `process`, at the addresses in `hostfile` (one
    /// `host:port` per line, process 0 first) or else at 127.0.0.1:2101, :2102, ….
    pub fn new(processes: usize, process: usize, hostfile: Option<&str>) -> Result<Self> {
        if process >= processes {
            bail!("--process {process} is not one of the {processes} processes of --processes (numbered from 0)");
        }
        let addresses: Vec<String> = match hostfile {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow!("cannot read --hostfile {path}: {e}"))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect(),
            None => (0..processes).map(|i| format!("127.0.0.1:{}", 2101 + i)).collect(),
        };
        if addresses.len() < processes {
            bail!("--hostfile names {} addresses for {processes} processes", addresses.len());
        }
        Ok(Cluster { processes, process, addresses: addresses[..processes].to_vec() })
    }

    fn is_cluster(&self) -> bool {
        self.processes > 1
    }

    /// Whether this process writes (and restores the open state).
    pub fn writes(&self) -> bool {
        self.process == 0
    }

    fn timely(&self, workers: usize) -> timely::Config {
        if !self.is_cluster() {
            return timely::Config::process(workers);
        }
        let communication = timely::CommunicationConfig::Cluster {
            threads: workers,
            process: self.process,
            addresses: self.addresses.clone(),
            report: false,
            zerocopy: false,
        };
        timely::Config { communication, worker: timely::WorkerConfig::default() }
    }
}

#[derive(Clone)]
pub struct Options {
    pub input: Input,
    pub cluster: Cluster,
    pub postgres: String,
    pub settings: Settings,
    pub watermark_delay: Millis,
    pub idle_timeout: Millis,
    pub dedupe_horizon: Millis,
    pub workers: usize,
    pub epoch_events: usize,
    pub progress_interval: Duration,
    pub run_id: String,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<String>,
    /// Read the input from its start, not from the committed positions.
    pub from_start: bool,
    /// How long PostgreSQL may stay unreachable mid-run before the run gives up.
    pub max_retry_time: Duration,
}

/// What a run did, for the closing log line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Running totals since the pipeline first started on this database.
    pub counts: Counts,
    /// Messages read by this run.
    pub read: u64,
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

/// What worker 0 takes for itself: the file source (if any), the writer and the metrics
/// endpoint.
type Worker0 = (Option<FileSource>, Writer, Option<Metrics>);

/// What every worker of one attempt shares.
struct Shared {
    options: Options,
    checkpoint: Checkpoint,
    /// Every source partition of the input (each read by some worker), and where it
    /// resumes: its committed position, or its start with `--from-start`.
    starts: BTreeMap<String, Position>,
    input: InputState,
    /// What the restore epoch feeds, taken by worker 0.
    restore: Mutex<Option<OpenState>>,
    /// Messages read by all workers in this run, for the input rate.
    read: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// Set when a worker fails: the others stop reading and the attempt is abandoned.
    failed: AtomicBool,
    /// The file source, the writer and the metrics endpoint, taken by worker 0.
    worker0: Mutex<Option<Worker0>>,
    /// Partitions of the Kafka topic.
    kafka_partitions: usize,
}

/// Runs until a bounded input has ended and every row is final and written, or until
/// SIGTERM/SIGINT (then what was read is written, and open windows stay open).
/// PostgreSQL must answer at the start; later outages are ridden out.
pub fn run(options: Options) -> Result<Outcome> {
    let stop = crate::signals::stop_flag()?;
    if let Input::File(path) = &options.input {
        if options.cluster.is_cluster() {
            bail!("a file is one partition, read by one worker: a run of several processes (--processes) reads Kafka (--brokers)");
        }
        file::identity(path)?; // a missing file is named before the database
    }
    let metrics = options.metrics_addr.as_deref().filter(|_| options.cluster.writes()).map(Metrics::serve).transpose()?;
    let started = Instant::now();
    let read = Arc::new(AtomicU64::new(0));
    let mut sink = if options.cluster.writes() { PgSink::connect(&options.postgres)? } else { PgSink::connect_reader(&options.postgres)? };
    let mut options = options;
    let at_start = sink.checkpoint()?;
    let mut checkpoint = at_start.clone();
    loop {
        match attempt(&options, sink, checkpoint, &stop, &metrics, &read) {
            Err(e) if is_unavailable(&e) && matches!(&options.input, Input::File(path) if path == "-") => {
                return Err(e.context(
                    "PostgreSQL went away while reading standard input, which cannot be read again; a file resumes after the last commit",
                ));
            }
            Err(e) if is_unavailable(&e) && options.cluster.is_cluster() => {
                return Err(e.context("PostgreSQL went away: start every process again to resume after the last commit"));
            }
            Err(e) if is_unavailable(&e) => {
                sink = reconnect(&options, &stop, e)?;
                checkpoint = sink.checkpoint()?;
                // `--from-start` holds until this run's first commit; from then on the
                // positions it committed are where to resume.
                if checkpoint != at_start {
                    options.from_start = false;
                }
            }
            result => {
                let (counts, finished) = result?;
                let read = read.load(Ordering::Relaxed);
                return Ok(Outcome { counts, read, seconds: started.elapsed().as_secs_f64(), finished });
            }
        }
    }
}

/// Waits for PostgreSQL to answer again after `error`, with exponential backoff and one
/// log line per attempt, for at most `--max-retry-time`.
fn reconnect(options: &Options, stop: &AtomicBool, error: anyhow::Error) -> Result<PgSink> {
    let url = redact(&options.postgres);
    let since = Instant::now();
    let mut delay = FIRST_BACKOFF;
    let mut last = error;
    for attempt in 1.. {
        let left = options.max_retry_time.saturating_sub(since.elapsed());
        if left.is_zero() {
            bail!("PostgreSQL at {url} has been unavailable for {:.0?}, more than --max-retry-time: {last:#}", since.elapsed());
        }
        let wait = delay.min(left);
        tracing::warn!(attempt, retry_in = format!("{wait:.1?}"), error = format!("{last:#}"), "PostgreSQL at {url} is unavailable");
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                bail!("stopped while PostgreSQL at {url} was unavailable: the next run resumes after the last commit");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        match PgSink::connect(&options.postgres) {
            Ok(sink) => {
                tracing::info!(attempt, "PostgreSQL at {url} answers again: resuming after the last commit");
                return Ok(sink);
            }
            Err(e) if is_unavailable(&e) => last = e,
            Err(e) => return Err(e),
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
    unreachable!("the loop only ends by returning")
}

/// One attempt: restore from `checkpoint` (what `sink`'s database committed last), then
/// read and write until the input ends, a signal stops it, or something fails. Returns
/// the running totals and whether the input ended.
fn attempt(
    options: &Options,
    mut sink: PgSink,
    checkpoint: Checkpoint,
    stop: &Arc<AtomicBool>,
    metrics: &Option<Metrics>,
    read: &Arc<AtomicU64>,
) -> Result<(Counts, bool)> {
    let (file, kafka_partitions, starts) = match &options.input {
        Input::File(path) => {
            let identity = file::identity(path)?;
            let start = file_start(path, identity.as_deref(), &checkpoint, options.from_start)?;
            if let Some(identity) = identity {
                sink.set_identity(&file::name(path), identity);
            }
            (Some(FileSource::open(path, start)?), 0, BTreeMap::from([(file::name(path), start)]))
        }
        Input::Kafka { kafka, topic, wait_for_broker, .. } => {
            let n = topic_partitions(kafka, topic, *wait_for_broker, stop)?;
            let start = |name: &str| checkpoint.sources.get(name).filter(|_| !options.from_start).map(|c| c.position).unwrap_or_default();
            let starts = (0..n as i32).map(|p| kafka::name(topic, p)).map(|name| {
                let position = start(&name);
                (name, position)
            });
            (None, n, starts.collect())
        }
    };
    let restore =
        if options.cluster.writes() { sink.open_state(options.settings.session_gap, checkpoint.watermark)? } else { OpenState::default() };
    let input = InputState::new(options.watermark_delay, options.idle_timeout, options.dedupe_horizon);
    let now = now_millis();
    for name in starts.keys() {
        input.register(name, now);
    }
    let partitions = starts.keys().filter_map(|n| Some((n.clone(), checkpoint.sources.get(n)?.max_event_time?)));
    input.restore(checkpoint.watermark, partitions, sink.recent_ids(checkpoint.watermark, options.dedupe_horizon)?);
    if checkpoint.watermark != Millis::MIN {
        tracing::info!(
            watermark = format_rfc3339(checkpoint.watermark),
            open_state_events = restore.events.len(),
            users = restore.first_seen.len(),
            remembered_ids = input.remembered_ids(),
            "resuming after the last commit"
        );
    }
    let notices = input.clone();
    let shared = Arc::new(Shared {
        options: options.clone(),
        checkpoint,
        starts,
        input,
        restore: Mutex::new(Some(restore)),
        read: read.clone(),
        stop: stop.clone(),
        failed: AtomicBool::new(false),
        worker0: Mutex::new(options.cluster.writes().then(|| (file, Writer::spawn(sink), metrics.clone()))),
        kafka_partitions,
    });
    let config = options.cluster.timely(options.workers.max(1));
    if options.cluster.is_cluster() {
        exit_on_panic();
    }
    let guards = timely::execute(config, move |worker| {
        let result = work(worker, &shared);
        if let Err(e) = &result {
            if shared.options.cluster.is_cluster() && !e.is::<Abandoned>() {
                exit_cluster(e);
            }
        }
        result
    })
    .map_err(|e| anyhow!("cannot start timely workers: {e}"))?;
    let mut outcome = None;
    let mut errors = Vec::new();
    for result in guards.join() {
        match result {
            Ok(Ok(Some(o))) => outcome = Some(o),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => errors.push(e),
            Err(panic) => errors.push(anyhow!("a timely worker panicked: {panic}")),
        }
    }
    // The failure that stopped the others, rather than theirs.
    if let Some(i) = errors.iter().position(|e| !e.is::<Abandoned>()).or(errors.len().checked_sub(1)) {
        return Err(errors.swap_remove(i));
    }
    match outcome {
        Some(outcome) => Ok(outcome),
        // Process 0 holds the totals; this one read its share.
        None if !options.cluster.writes() => Ok((Counts::default(), !stop.load(Ordering::Relaxed) && !notices.stopping())),
        None => Err(anyhow!("worker 0 reported nothing")),
    }
}

/// Ends this process of a cluster on a worker's error, at once: its workers cannot stop
/// the other processes' dataflow, which would wait for them for ever. The peers end on
/// the lost connection, and nothing uncommitted counts.
fn exit_cluster(error: &anyhow::Error) -> ! {
    if is_unavailable(error) {
        eprintln!("clickflow: {error:#}: start every process again to resume after the last commit");
    } else {
        eprintln!("clickflow: {error:#}");
    }
    std::process::exit(1)
}

/// In a cluster, a panic anywhere (a worker, or timely's network threads when a peer is
/// gone) ends the process after its message, for the same reason.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("clickflow: a process of the cluster failed: start every process again to resume after the last commit");
        std::process::exit(1)
    }));
}

/// A worker's error when another worker failed first.
#[derive(Debug)]
struct Abandoned;

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("another worker failed")
    }
}

impl std::error::Error for Abandoned {}

/// Marks the attempt failed when dropped armed: on any early return or panic of a worker.
/// Declared after the worker's inputs, it is dropped before them, so that the others
/// know of the failure before the epoch those inputs held open can complete: an epoch
/// cut short is never written.
struct FailGuard<'a> {
    failed: &'a AtomicBool,
    armed: bool,
}

impl Drop for FailGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.failed.store(true, Ordering::SeqCst);
        }
    }
}

/// Where to read the file at `path` from: its committed position, if the database
/// recorded this very file; its start for stdin, with `--from-start`, or on a database
/// that holds no file's results. Another file is an error naming both.
/// `identity` is the file's own now (see `file::identity`).
fn file_start(path: &str, identity: Option<&str>, checkpoint: &Checkpoint, from_start: bool) -> Result<Position> {
    if path == "-" || from_start {
        return Ok(Position::default());
    }
    let name = file::name(path);
    let now = identity.unwrap_or_default();
    match checkpoint.sources.get(&name) {
        Some(c) => match &c.identity {
            Some(recorded) if !file::is_same(path, recorded, c.position.offset)? => {
                bail!("{path} is not the file this database read under that name (then {recorded}, now {now}): pass --from-start to read it from its start")
            }
            _ => Ok(c.position),
        },
        None => match checkpoint.sources.iter().find(|(n, _)| n.starts_with("file:") && *n != "file:-") {
            Some((other, c)) => bail!(
                "this database holds the results of {other} ({}), not of {name} ({now}): pass --from-start to read {path} from its start into it",
                c.identity.as_deref().unwrap_or("no identity")
            ),
            None => Ok(Position::default()),
        },
    }
}

/// The partition count of `topic`; while the broker does not answer (or the topic is
/// missing), retried for up to `wait` if given.
fn topic_partitions(kafka: &KafkaSettings, topic: &str, wait: Option<Duration>, stop: &AtomicBool) -> Result<usize> {
    let since = Instant::now();
    loop {
        let found = crate::kafka::partitions(kafka, topic)
            .and_then(|n| n.ok_or_else(|| anyhow!("topic {topic} does not exist on {}", kafka.brokers)));
        match found {
            Ok(n) => return Ok(n),
            Err(e) if wait.is_some_and(|w| since.elapsed() < w) && !stop.load(Ordering::Relaxed) => {
                tracing::warn!(error = format!("{e:#}"), "waiting for Kafka (--wait-for-broker)");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One worker: build the graph, feed the restore epoch (worker 0), read this worker's
/// source, and on worker 0 write. Returns, on worker 0, the run's totals and whether
/// the input ended.
fn work(worker: &mut Worker, shared: &Shared) -> Result<Option<(Counts, bool)>> {
    let options = &shared.options;
    if !options.cluster.writes() && worker.index().is_multiple_of(options.workers.max(1)) {
        same_checkpoint(shared)?;
    }
    let collected = Rc::new(RefCell::new(Collected::default()));
    let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
        let (inputs, changes) = build(scope, options.settings, options.cluster.is_cluster().then(|| shared.input.clone()));
        collect(changes, collected.clone());
        inputs
    });
    let mut guard = FailGuard { failed: &shared.failed, armed: true };
    let (index, peers) = (worker.index(), worker.peers());
    let (file, mut sink) = if index == 0 {
        let (file, writer, metrics) = shared.worker0.lock().expect("not poisoned").take().expect("worker 0 runs once");
        let reporter = Reporter::new(options.run_id.clone(), options.progress_interval, metrics, &shared.checkpoint, &shared.starts);
        let restore = shared.restore.lock().expect("not poisoned").take().unwrap_or_default();
        let mut active: HashMap<Text, Vec<(Millis, i64)>> = HashMap::new();
        for (user, day, revenue_cents) in restore.activity {
            active.entry(user).or_default().push((day, revenue_cents));
        }
        for (user, first) in restore.first_seen {
            let days = active.remove(&user).unwrap_or_default();
            inputs.restore_user(user, first, days);
        }
        for purchase in restore.purchases {
            inputs.restore_purchase(purchase);
        }
        for (session_end, viewed) in restore.viewed {
            inputs.restore_viewed(session_end, viewed);
        }
        if let Some(latest) = restore.latest {
            inputs.restore_latest(latest);
        }
        for version in restore.risk_versions {
            inputs.restore_risk_version(version);
        }
        for events in restore.risk_sample {
            inputs.restore_risk_sample(&events);
        }
        for event in restore.events {
            inputs.restore(event);
        }
        (file, Some((writer, reporter)))
    } else {
        (None, None)
    };
    let source: Option<Box<dyn Source>> = match &options.input {
        Input::File(_) => file.map(|f| Box::new(f) as Box<dyn Source>),
        Input::Kafka { kafka, topic, until_idle, .. } => {
            let start = |name: &str| shared.starts.get(name).map(|p| p.offset);
            KafkaSource::assign(kafka, topic, shared.kafka_partitions, (index, peers), &start, *until_idle)?
                .map(|k| Box::new(k) as Box<dyn Source>)
        }
    };
    let failed = || shared.failed.load(Ordering::SeqCst);
    let mut ended = true;
    if let Some(mut source) = source {
        let mut reading = Reading::new(source.as_ref(), shared);
        // The restore epoch ends with the committed W, as the operators had it.
        reading.close(&mut inputs, shared, Some(shared.checkpoint.watermark));
        loop {
            if shared.stop.load(Ordering::Relaxed) || shared.input.stopping() || failed() {
                ended = false;
                break;
            }
            let done = source.poll(EPOCH_INTERVAL, &mut |partition, bytes, next, label| {
                reading.admit(&mut inputs, partition, bytes, next, label, shared);
            })?;
            if done {
                break;
            }
            if reading.epoch_opened.elapsed() >= EPOCH_INTERVAL {
                reading.end_epoch(&mut inputs, &mut *source, shared, None, false);
            }
            let behind = inputs.epoch().saturating_sub(EPOCHS_IN_FLIGHT);
            while !collected.borrow().passed(behind) && !failed() {
                worker.step_or_park(Some(Duration::from_millis(1)));
                hand_over(&mut sink, &collected, shared, false)?;
            }
            worker.step();
            hand_over(&mut sink, &collected, shared, false)?;
        }
        // A bounded input has ended: W becomes +∞, every window and session closes.
        // Stopped by a signal: the last epoch keeps W, so open windows stay open.
        // Failed: nothing more is written; the next attempt resumes after the last commit.
        if !failed() {
            if shared.stop.load(Ordering::Relaxed) {
                inputs.share(Notice::Stop); // the other processes stop too (a cluster)
            }
            reading.end_epoch(&mut inputs, &mut *source, shared, ended.then_some(Millis::MAX), true);
        }
    }
    drop(inputs);
    while worker.step_or_park(Some(Duration::from_millis(1))) {
        hand_over(&mut sink, &collected, shared, false)?;
    }
    if failed() {
        return Err(Abandoned.into());
    }
    hand_over(&mut sink, &collected, shared, true)?;
    let result = match sink {
        Some((mut writer, reporter)) => {
            writer.finish()?;
            Some((reporter.totals(), ended && !shared.stop.load(Ordering::Relaxed) && !shared.input.stopping()))
        }
        None => None,
    };
    guard.armed = false;
    Ok(result)
}

/// Checks, in a process that does not write, that the checkpoint it started from is still
/// the last commit, now that every process is connected: process 0 holds the writer lock
/// by then, so no earlier run can commit any more, and this run cannot commit before this
/// process has joined its dataflow. A process restarted while the previous run was still
/// committing would otherwise resume from an older commit than process 0.
fn same_checkpoint(shared: &Shared) -> Result<()> {
    let now = PgSink::connect_reader(&shared.options.postgres)?.checkpoint()?;
    if now != shared.checkpoint {
        bail!("the database committed while this process started (was the previous run still writing?): start every process again");
    }
    Ok(())
}

/// Hands collected batches to the writer on worker 0; nothing elsewhere, and nothing
/// once the attempt has failed (the next one resumes after the last commit).
fn hand_over(sink: &mut Option<(Writer, Reporter)>, collected: &Rc<RefCell<Collected>>, shared: &Shared, last: bool) -> Result<()> {
    if shared.failed.load(Ordering::SeqCst) {
        return Ok(());
    }
    match sink {
        Some((writer, reporter)) => reporter.hand_over(collected, writer, shared.read.load(Ordering::Relaxed), last),
        None => Ok(()),
    }
}

/// A worker's admission state over its source's partitions.
struct Reading {
    names: Vec<String>,
    ingests: Vec<Ingest>,
    /// Where each partition resumes after the messages admitted so far.
    positions: Vec<Position>,
    lags: Vec<Option<i64>>,
    lag_checked: Instant,
    in_epoch: usize,
    epoch_opened: Instant,
}

impl Reading {
    /// Admission for the source's partitions, carrying on from their committed totals,
    /// at the positions they resume from.
    fn new(source: &dyn Source, shared: &Shared) -> Reading {
        let now = now_millis();
        shared.input.start_reading(now);
        let names = source.partitions().to_vec();
        let mut ingests = Vec::new();
        for name in &names {
            let mut ingest = Ingest::new(shared.input.clone(), name, now);
            if let Some(c) = shared.checkpoint.sources.get(name) {
                ingest.resume(c.counts, c.max_event_time);
            }
            ingests.push(ingest);
        }
        let positions = names.iter().map(|n| shared.starts.get(n).copied().unwrap_or_default()).collect();
        Reading {
            lags: vec![None; names.len()],
            names,
            ingests,
            positions,
            lag_checked: Instant::now() - shared.options.progress_interval,
            in_epoch: 0,
            epoch_opened: Instant::now(),
        }
    }

    fn admit(&mut self, inputs: &mut Inputs, partition: usize, bytes: &[u8], next: Position, label: &dyn Fn() -> String, shared: &Shared) {
        inputs.admit(&mut self.ingests[partition], bytes, now_millis(), label);
        self.positions[partition] = next;
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

    /// Records each partition's progress and position and ends the epoch with the
    /// input's W now (or `watermark` when given).
    fn close(&mut self, inputs: &mut Inputs, shared: &Shared, watermark: Option<Millis>) {
        let watermark = watermark.unwrap_or_else(|| shared.input.watermark(now_millis()));
        for (i, name) in self.names.iter().enumerate() {
            inputs.record(Change::Progress(SourceProgress {
                source: name.clone(),
                counts: self.ingests[i].counts(),
                watermark,
                max_event_time: self.ingests[i].max_event_time(),
                lag: self.lags[i],
                position: self.positions[i],
            }));
            if let Some(clock) = shared.input.clock(name) {
                inputs.share(Notice::Clock(clock));
            }
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
    /// Totals of the partitions this database recorded that this run does not read.
    earlier: Counts,
    /// The latest progress of each source partition read by this run.
    sources: BTreeMap<String, SourceProgress>,
    /// The watermark the operators reached, as last handed to the writer.
    watermark: Option<Millis>,
    open_sessions: i64,
    metrics: Option<Metrics>,
}

impl Reporter {
    fn new(
        run_id: String,
        interval: Duration,
        metrics: Option<Metrics>,
        checkpoint: &Checkpoint,
        current: &BTreeMap<String, Position>,
    ) -> Self {
        let mut earlier = Counts::default();
        let mut committed = Counts::default();
        for (name, c) in &checkpoint.sources {
            committed += c.counts;
            if !current.contains_key(name) {
                earlier += c.counts;
            }
        }
        Reporter {
            run_id,
            interval,
            last_report: Instant::now(),
            last_read: 0,
            last_processed: committed.input,
            earlier,
            sources: BTreeMap::new(),
            watermark: None,
            open_sessions: 0,
            metrics,
        }
    }

    /// Running totals since the pipeline first started on this database.
    fn totals(&self) -> Counts {
        let mut total = self.earlier;
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
        self.watermark = batch.watermark.or(self.watermark);
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
        let watermark = self.watermark.filter(|w| *w != Millis::MIN);
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
            run_input_events: read as i64,
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
