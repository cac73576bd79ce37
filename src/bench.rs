//! `clickflow bench`: measures each stage of the pipeline on one JSON Lines file and
//! prints events/s, peak memory and latency per stage, with ratios to a plain batch
//! baseline (and to Spark Structured Streaming with `--compare-spark`).
//!
//! Each stage runs in a child process of its own (`clickflow bench --stage NAME`), so
//! that the peak memory it reports is its own; the parent prints the table. The stages
//! call the same code as the real commands (`dataflows`, `reference`, `process`): this
//! module owns only the measuring, never a figure of the tables.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use dataflows::event::Event;
use dataflows::event::Text;
use dataflows::ingest::{Admission, Ingest};
use dataflows::operators::by_epoch::EpochLogic;
use dataflows::operators::cohorts::DAY;
use dataflows::operators::rfm::Rfm;
use dataflows::operators::sales::{Order, Purchase, Sale};
use dataflows::pipeline::{build, Settings, RESTORE_EPOCH};
use dataflows::rows::Change;
use dataflows::time::Millis;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::{Inspect, Probe};

use crate::process::{self, now_millis, peak_memory_mib};
use crate::sink::batch::Batch;
use crate::sink::postgres::PgSink;

/// The contract's defaults, as `clickflow process` runs by default.
const WATERMARK_DELAY: Millis = 60_000;
const IDLE_TIMEOUT: Millis = 30_000;
const DEDUPE_HORIZON: Millis = 86_400_000;
const EPOCH_EVENTS: usize = 20_000;
/// Epochs fed ahead of the dataflow's output at most, as `process` does.
const EPOCHS_IN_FLIGHT: u64 = 4;
/// The database each PostgreSQL stage recreates on the server of `--postgres`.
const BENCH_DATABASE: &str = "clickflow_bench";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Stage {
    /// The plain batch job (the tests' oracle: sort, group, count on one thread) over the
    /// accepted events, parsed beforehand.
    Baseline,
    /// The dataflow over the accepted events, parsed beforehand, in memory.
    Core,
    /// Parsing, admission (watermark, lateness, dedupe) and the dataflow, from lines in
    /// memory; parsing runs on the reading worker.
    Parse,
    /// `clickflow process --input FILE` into a new database: every table and events_raw.
    File,
    /// As many events as the file has lines, simulated as the file was (seed 1, the
    /// same faults) into a development broker (`clickflow broker`, a topic of one
    /// partition per 8,000 events: it keeps about 5 MiB a partition), then drained by
    /// `clickflow process --brokers` into a new database; the 2 s idle wait that ends
    /// the drain is not counted.
    Kafka,
    /// `clickflow produce --rate 5000` piped into `clickflow process --input -` for a
    /// minute, with 1-second traffic windows and a 5-second watermark delay: the
    /// latency from a window's end to its final row in PostgreSQL (its `updated_at`).
    Paced,
    /// `customer_rfm` at 1,000,000 purchasing users (no input file): 30 days of their
    /// purchases scored once, then one more day closed, on which 10,000 of them buy:
    /// rescored by the RFM operator in memory and upserted by the sink into a new
    /// database. Its seconds are the closed day's.
    RfmDay,
}

impl Stage {
    fn title(self) -> &'static str {
        match self {
            Stage::Baseline => "plain batch baseline",
            Stage::Core => "dataflow core (pre-parsed)",
            Stage::Parse => "parse + dataflow",
            Stage::File => "file -> PostgreSQL",
            Stage::Kafka => "Kafka -> PostgreSQL",
            Stage::Paced => "paced 5000/s -> PostgreSQL",
            Stage::RfmDay => "customer_rfm day, 1M users",
        }
    }
}

/// What one stage measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Measured {
    pub stage: String,
    pub workers: usize,
    /// Messages (lines) the stage took in.
    pub events: u64,
    pub seconds: f64,
    pub peak_mib: f64,
    /// Final rows out of the dataflow (or the baseline), all tables but events_raw.
    pub final_rows: u64,
    /// From the epoch that moved the watermark past a traffic window's end to that
    /// window's final row leaving the dataflow, in milliseconds.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// What the figures are made of, printed under the row.
    #[serde(default)]
    pub note: Option<String>,
}

pub struct Options {
    pub input: PathBuf,
    pub postgres: Option<String>,
    pub stages: Vec<Stage>,
    pub workers: Vec<usize>,
    pub compare_spark: bool,
    pub json: bool,
}

/// Runs every asked stage in its own process and prints the table.
pub fn run(options: &Options) -> Result<()> {
    let lines = count_lines(&options.input)?;
    let exe = std::env::current_exe().context("cannot find the clickflow executable")?;
    let mut results = Vec::new();
    if !options.json {
        println!("{} lines of {} on {} cores", lines, options.input.display(), std::thread::available_parallelism().map_or(1, |n| n.get()));
        println!(
            "{:<28} {:>3} {:>10} {:>8} {:>12} {:>9} {:>11} {:>11}",
            "stage", "-w", "lines", "seconds", "lines/s", "peak MiB", "p50 ms", "p99 ms"
        );
    }
    for &stage in &options.stages {
        let workers: &[usize] = if matches!(stage, Stage::Baseline | Stage::Parse | Stage::Paced) { &[1] } else { &options.workers };
        for &w in workers {
            let mut child = Command::new(&exe);
            child.args(["bench", "--stage"]).arg(stage.to_possible_value().expect("named").get_name());
            child.args(["--input"]).arg(&options.input).args(["--workers", &w.to_string()]);
            if let Some(url) = &options.postgres {
                child.args(["--postgres", url]);
            }
            let out = child.output().with_context(|| format!("cannot run the {} stage", stage.title()))?;
            if !out.status.success() {
                bail!("the {} stage failed: {}", stage.title(), String::from_utf8_lossy(&out.stderr).trim());
            }
            let measured: Measured = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("the {} stage printed no result: {}", stage.title(), String::from_utf8_lossy(&out.stdout)))?;
            print_row(&measured, options.json);
            results.push(measured);
        }
    }
    if options.compare_spark {
        let spark = spark(&options.input)?;
        print_row(&spark, options.json);
        results.push(spark);
    }
    if !options.json {
        print_ratios(&results);
    }
    Ok(())
}

fn print_row(m: &Measured, json: bool) {
    if json {
        println!("{}", serde_json::to_string(m).expect("serialisable"));
        return;
    }
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let peak = if m.peak_mib > 0.0 { format!("{:.0}", m.peak_mib) } else { "-".into() };
    println!(
        "{:<28} {:>3} {:>10} {:>8.2} {:>12.0} {:>9} {:>11} {:>11}",
        m.stage,
        m.workers,
        m.events,
        m.seconds,
        m.events as f64 / m.seconds,
        peak,
        ms(m.latency_p50_ms),
        ms(m.latency_p99_ms)
    );
    if let Some(note) = &m.note {
        println!("    {note}");
    }
}

/// Ratios within this run: the dataflow against the baseline, and against Spark.
fn print_ratios(results: &[Measured]) {
    let find = |stage: Stage, w: usize| results.iter().find(|m| m.stage == stage.title() && m.workers == w);
    if let (Some(base), Some(core)) = (find(Stage::Baseline, 1), find(Stage::Core, 1)) {
        println!("dataflow core -w1 takes {:.2}x the baseline's time", core.seconds / base.seconds);
        if base.final_rows != core.final_rows {
            println!("WARNING: the baseline has {} rows and the dataflow {}: they should agree", base.final_rows, core.final_rows);
        }
    }
    if let (Some(spark), Some(file)) = (results.iter().find(|m| m.stage.starts_with("spark")), find(Stage::File, 1)) {
        println!("file -> PostgreSQL -w1 is {:.1}x faster than Spark", spark.seconds / file.seconds);
    }
}

/// Runs one stage in this process and prints its [`Measured`] as JSON.
pub fn run_stage(stage: Stage, input: &Path, workers: usize, postgres: Option<&str>) -> Result<()> {
    let settings = Settings::default();
    let measured = match stage {
        Stage::Baseline => baseline(&read_lines(input)?, settings),
        Stage::Core => {
            let lines = read_lines(input)?;
            dataflow(stage, lines.len(), Feed::Events(admitted(&lines, workers)), workers, settings)?
        }
        Stage::Parse => {
            let lines = read_lines(input)?;
            dataflow(stage, lines.len(), Feed::Lines(lines), 1, settings)?
        }
        Stage::File => file(input, workers, postgres.ok_or_else(needs_postgres)?)?,
        Stage::Kafka => kafka(count_lines(input)?, workers, postgres.ok_or_else(needs_postgres)?)?,
        Stage::Paced => paced(postgres.ok_or_else(needs_postgres)?)?,
        Stage::RfmDay => rfm_day(postgres.ok_or_else(needs_postgres)?)?,
    };
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}

fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}

/// Lines of a file, read in blocks: a stage's peak memory must not hold the file.
fn count_lines(path: &Path) -> Result<usize> {
    use std::io::Read;
    let cannot = || format!("cannot read {}", path.display());
    let mut file = std::fs::File::open(path).with_context(cannot)?;
    let mut block = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        match file.read(&mut block).with_context(cannot)? {
            0 => return Ok(lines),
            n => lines += memchr::memchr_iter(b'\n', &block[..n]).count(),
        }
    }
}

fn baseline(lines: &[Vec<u8>], settings: Settings) -> Measured {
    let arrivals: Vec<reference::Arrival> =
        lines.iter().map(|bytes| reference::Arrival { partition: 0, now: now_millis(), bytes: bytes.clone() }).collect();
    let mut tables = reference::admit(&arrivals, 1, WATERMARK_DELAY, Millis::MAX);
    let started = Instant::now();
    reference::derive(&mut tables, settings);
    let seconds = started.elapsed().as_secs_f64();
    let t = &tables;
    let final_rows = t.sessions.len() + t.traffic.len() + t.products.len() + t.funnel.len() + t.conversion.len() + t.cohorts.len();
    Measured {
        stage: Stage::Baseline.title().into(),
        workers: 1,
        events: lines.len() as u64,
        seconds,
        peak_mib: peak_memory_mib().unwrap_or(0.0),
        final_rows: final_rows as u64,
        latency_p50_ms: None,
        latency_p99_ms: None,
        note: None,
    }
}

/// Epochs of accepted events for each worker, with the watermark at each epoch's end:
/// admission as `process` does it on one partition, done before the clock starts.
type Epochs = Vec<(Vec<Event>, Millis)>;

fn admitted(lines: &[Vec<u8>], workers: usize) -> Vec<Epochs> {
    let now = now_millis();
    let mut ingest = Ingest::single(WATERMARK_DELAY, DEDUPE_HORIZON);
    let mut shares: Vec<Epochs> = vec![Vec::new(); workers];
    for chunk in lines.chunks(EPOCH_EVENTS) {
        for share in &mut shares {
            share.push((Vec::new(), Millis::MIN));
        }
        for (i, bytes) in chunk.iter().enumerate() {
            if let Admission::Accepted(event) = ingest.admit(bytes, now) {
                shares[i % workers].last_mut().expect("pushed").0.push(event);
            }
        }
        let w = ingest.watermark(now);
        for share in &mut shares {
            share.last_mut().expect("pushed").1 = w;
        }
    }
    shares
}

enum Feed {
    /// Per worker, epochs of accepted events.
    Events(Vec<Epochs>),
    /// Lines, parsed and admitted by worker 0.
    Lines(Vec<Vec<u8>>),
}

/// Feeds the graph epoch by epoch on `workers` threads and times it to the last output.
/// `lines`: the lines the feed came from.
fn dataflow(stage: Stage, lines: usize, feed: Feed, workers: usize, settings: Settings) -> Result<Measured> {
    let feeds: Vec<Mutex<Option<Feed>>> = match feed {
        Feed::Events(shares) => shares.into_iter().map(|s| Mutex::new(Some(Feed::Events(vec![s])))).collect(),
        Feed::Lines(l) => vec![Mutex::new(Some(Feed::Lines(l)))],
    };
    let feeds = Arc::new(feeds);
    let started = Instant::now();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let closed: Rc<RefCell<Vec<Instant>>> = Rc::default();
        let seen: Rc<RefCell<(u64, Vec<f64>)>> = Rc::default();
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, changes) = build(scope, settings, None);
            let (closed, seen) = (closed.clone(), seen.clone());
            let (probe, _) = changes
                .inner
                .inspect(move |(change, epoch, diff)| {
                    if *diff > 0 && change.is_final() {
                        let mut seen = seen.borrow_mut();
                        seen.0 += 1;
                        if matches!(change, Change::Traffic(_)) {
                            let at = closed.borrow()[*epoch as usize];
                            seen.1.push(at.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                })
                .probe();
            (inputs, probe)
        });
        let end_epoch = |inputs: &mut dataflows::pipeline::Inputs, w: Millis, worker: &mut timely::worker::Worker| {
            closed.borrow_mut().push(Instant::now());
            inputs.end_epoch(w);
            let behind = inputs.epoch().saturating_sub(EPOCHS_IN_FLIGHT);
            while probe.less_than(&behind) {
                worker.step();
            }
        };
        let feed = feeds.get(index).and_then(|f| f.lock().expect("not poisoned").take());
        match feed {
            Some(Feed::Events(mut shares)) => {
                for (events, w) in shares.pop().unwrap_or_default() {
                    for event in events {
                        inputs.accept(event);
                    }
                    end_epoch(&mut inputs, w, worker);
                }
            }
            Some(Feed::Lines(lines)) => {
                let now = now_millis();
                let mut ingest = Ingest::single(WATERMARK_DELAY, DEDUPE_HORIZON);
                for (n, chunk) in lines.chunks(EPOCH_EVENTS).enumerate() {
                    for (i, bytes) in chunk.iter().enumerate() {
                        inputs.admit(&mut ingest, bytes, now, || format!("bench:{}", n * EPOCH_EVENTS + i + 1));
                    }
                    end_epoch(&mut inputs, ingest.watermark(now), worker);
                }
            }
            None => {}
        }
        // The input has ended: W becomes +inf and every row final.
        end_epoch(&mut inputs, Millis::MAX, worker);
        drop(inputs);
        while worker.step_or_park(Some(Duration::from_millis(1))) {}
        Rc::try_unwrap(seen).map(RefCell::into_inner).unwrap_or_default()
    })
    .map_err(|e| anyhow!("cannot start the timely workers: {e}"))?;
    let mut final_rows = 0;
    let mut latencies = Vec::new();
    for result in guards.join() {
        let (rows, lat) = result.map_err(|e| anyhow!("a worker failed: {e}"))?;
        final_rows += rows;
        latencies.extend(lat);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| (!latencies.is_empty()).then(|| latencies[((latencies.len() - 1) as f64 * q).round() as usize]);
    Ok(Measured {
        stage: stage.title().into(),
        workers,
        events: lines as u64,
        seconds,
        peak_mib: peak_memory_mib().unwrap_or(0.0),
        final_rows,
        latency_p50_ms: quantile(0.5),
        latency_p99_ms: quantile(0.99),
        note: None,
    })
}

/// `clickflow process --input FILE` into a database made anew for the run.
fn file(input: &Path, workers: usize, postgres: &str) -> Result<Measured> {
    let outcome = process::run(process_options(process::Input::File(input.display().to_string()), fresh_database(postgres)?, workers))?;
    Ok(Measured {
        stage: Stage::File.title().into(),
        workers,
        events: outcome.read,
        seconds: outcome.seconds,
        peak_mib: peak_memory_mib().unwrap_or(0.0),
        final_rows: 0,
        latency_p50_ms: None,
        latency_p99_ms: None,
        note: None,
    })
}

/// The idle time that ends a Kafka drain.
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// A development broker filled with `events` simulated events, drained into a new database.
fn kafka(events: usize, workers: usize, postgres: &str) -> Result<Measured> {
    let url = fresh_database(postgres)?;
    let exe = std::env::current_exe()?;
    let address_file = std::env::temp_dir().join(format!("clickflow-bench-broker-{}", std::process::id()));
    let _ = std::fs::remove_file(&address_file);
    let partitions = (events / 8_000).max(4).to_string();
    let mut broker = Command::new(&exe)
        .args(["broker", "--topic", "bench", "--partitions", &partitions, "--address-file"])
        .arg(&address_file)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start the development broker")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let brokers = loop {
        match std::fs::read_to_string(&address_file) {
            Ok(a) if !a.is_empty() => break a,
            _ if Instant::now() > deadline => bail!("the development broker did not start"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let result = (|| {
        let produced = Command::new(&exe)
            .args(["produce", "--brokers", &brokers, "--topic", "bench", "--events", &events.to_string(), "--seed", "1"])
            .args(["--duplicates", "0.01", "--out-of-order", "0.05", "--late", "0.001", "--malformed", "0.001"])
            .env("RUST_LOG", "warn")
            .status()?;
        if !produced.success() {
            bail!("cannot fill the development broker");
        }
        let input = process::Input::Kafka {
            kafka: crate::kafka::KafkaSettings::new(&brokers, &[])?,
            topic: "bench".into(),
            until_idle: Some(DRAIN_IDLE),
            wait_for_broker: None,
        };
        process::run(process_options(input, url, workers))
    })();
    Command::new("kill").args(["-TERM", &broker.id().to_string()]).status()?;
    broker.wait()?;
    let _ = std::fs::remove_file(&address_file);
    let outcome = result?;
    Ok(Measured {
        stage: Stage::Kafka.title().into(),
        workers,
        events: outcome.read,
        seconds: outcome.seconds - DRAIN_IDLE.as_secs_f64(),
        peak_mib: peak_memory_mib().unwrap_or(0.0),
        final_rows: 0,
        latency_p50_ms: None,
        latency_p99_ms: None,
        note: None,
    })
}

/// What `clickflow process` runs with by default, reading `input` into `postgres`.
fn process_options(input: process::Input, postgres: String, workers: usize) -> process::Options {
    process::Options {
        input,
        cluster: process::Cluster::single(),
        postgres,
        settings: Settings::default(),
        watermark_delay: WATERMARK_DELAY,
        idle_timeout: IDLE_TIMEOUT,
        dedupe_horizon: DEDUPE_HORIZON,
        workers,
        epoch_events: EPOCH_EVENTS,
        progress_interval: Duration::from_secs(5),
        run_id: "bench".into(),
        metrics_addr: None,
        from_start: false,
        max_retry_time: Duration::from_secs(60),
    }
}

fn needs_postgres() -> anyhow::Error {
    anyhow!("the PostgreSQL stages need --postgres or DATABASE_URL")
}

/// The paced stage's rate (events/s), length, and windows.
const PACED_RATE: u32 = 5_000;
const PACED_FOR: Duration = Duration::from_secs(60);
const PACED_DELAY: &str = "5s";

/// A paced producer piped into the processor; the latency is read from the database.
fn paced(postgres: &str) -> Result<Measured> {
    let url = fresh_database(postgres)?;
    let exe = std::env::current_exe()?;
    let mut producer = Command::new(&exe)
        .args(["produce", "--rate", &PACED_RATE.to_string(), "--out", "-", "--seed", "9"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the producer")?;
    let pipe = producer.stdout.take().expect("piped");
    let processor = Command::new(&exe)
        .args(["process", "--input", "-", "--quiet", "--traffic-window", "1s", "--watermark-delay", PACED_DELAY, "--postgres", &url])
        .env("RUST_LOG", "warn")
        .stdin(pipe)
        .spawn()
        .context("cannot start the processor")?;
    let pid = processor.id();
    let started = Instant::now();
    std::thread::sleep(PACED_FOR);
    let stopped_at = now_millis();
    // SIGTERM: the producer flushes whole lines; the processor then reads to the end.
    Command::new("kill").args(["-TERM", &producer.id().to_string()]).status()?;
    producer.wait()?;
    let out = processor.wait_with_output()?;
    if !out.status.success() {
        bail!("the processor (pid {pid}) failed");
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
    // Windows that ended while the producer ran, not those closed by the end of input.
    let row = client.query_one(
        "SELECT (SELECT count(*) FROM events_raw),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.99) WITHIN GROUP (ORDER BY s), count(*)
         FROM (SELECT extract(epoch FROM updated_at - window_end)::float8 * 1000 AS s FROM traffic
               WHERE is_final AND window_end < to_timestamp($1::float8 / 1000) - interval '10 seconds') l",
        &[&(stopped_at as f64)],
    )?;
    let windows: i64 = row.get(3);
    if windows == 0 {
        bail!("no traffic window became final while the producer ran");
    }
    Ok(Measured {
        stage: Stage::Paced.title().into(),
        workers: 1,
        events: row.get::<_, i64>(0) as u64,
        seconds,
        peak_mib: 0.0, // two other processes: not measured
        final_rows: windows as u64,
        latency_p50_ms: row.get(1),
        latency_p99_ms: row.get(2),
        note: None,
    })
}

/// Purchasing users of the `rfm-day` stage, and purchases on the day it closes.
const RFM_USERS: usize = 1_000_000;
const RFM_BUYERS: usize = 10_000;

/// See [`Stage::RfmDay`]: each user has 1 to 4 orders over 30 days.
fn rfm_day(postgres: &str) -> Result<Measured> {
    const START: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    let mut rng = SmallRng::seed_from_u64(7);
    let mut purchase = |user: usize, day: i64, order: usize| {
        Sale::Purchase(Purchase {
            user: Text::new(format!("u{user:07}")),
            time: START + day * DAY + rng.random_range(0..DAY),
            order: Order::Id(Text::new(format!("o{user}-{order}"))),
            product: None,
            revenue_cents: rng.random_range(500..50_000),
        })
    };
    let mut rfm = Rfm::default();
    let mut orders = SmallRng::seed_from_u64(8);
    for user in 0..RFM_USERS {
        for order in 0..orders.random_range(1..=4) {
            rfm.absorb(purchase(user, orders.random_range(0..30), order), 1);
        }
    }
    let mut sink = PgSink::connect(&fresh_database(postgres)?)?;
    let (first_score, first_write, first_rows) = close_day(&mut rfm, START + 30 * DAY, &mut sink)?;
    for order in 0..RFM_BUYERS {
        rfm.absorb(purchase(orders.random_range(0..RFM_USERS), 30, 100 + order), 1);
    }
    let (score, write, rows) = close_day(&mut rfm, START + 31 * DAY, &mut sink)?;
    Ok(Measured {
        stage: Stage::RfmDay.title().into(),
        workers: 1,
        events: RFM_USERS as u64,
        seconds: score + write,
        peak_mib: peak_memory_mib().unwrap_or(0.0),
        final_rows: rows,
        latency_p50_ms: None,
        latency_p99_ms: None,
        note: Some(format!(
            "the closed day: {score:.2} s rescoring, {write:.2} s upserting {rows} rows ({:.0} rows/s); \
             the first scoring: {first_score:.2} s, and {first_write:.2} s inserting {first_rows} rows",
            rows as f64 / write
        )),
    })
}

/// Closes the day before `watermark` in `rfm` and writes what changed as the processor
/// does; returns the seconds of each and the rows written.
fn close_day(rfm: &mut Rfm, watermark: Millis, sink: &mut PgSink) -> Result<(f64, f64, u64)> {
    let started = Instant::now();
    let mut out = Vec::new();
    rfm.close_epoch(watermark, &mut out);
    let score = started.elapsed().as_secs_f64();
    let mut batch = Batch::default();
    batch.apply_epoch(RESTORE_EPOCH + 1, out.into_iter().map(|(row, diff)| (Change::Rfm(row), diff)).collect());
    let rows = batch.rows() as u64;
    let started = Instant::now();
    sink.write(&batch, None)?;
    Ok((score, started.elapsed().as_secs_f64(), rows))
}

/// Drops and creates [`BENCH_DATABASE`] on the server of `url`; returns its URL.
fn fresh_database(url: &str) -> Result<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .with_context(|| format!("cannot connect to PostgreSQL at {}", crate::sink::postgres::redact(url)))?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"))?;
    client.batch_execute(&format!("CREATE DATABASE {BENCH_DATABASE}"))?;
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    Ok(format!("{server}/{BENCH_DATABASE}{}", query.map(|q| format!("?{q}")).unwrap_or_default()))
}

/// Spark Structured Streaming `local[2]` on the same file (`bench/spark_replay.py`).
fn spark(input: &Path) -> Result<Measured> {
    let python = std::env::var("PYSPARK_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/spark_replay.py");
    let out = Command::new(&python).arg(&script).arg(input).output().with_context(|| format!("cannot run {python}"))?;
    if !out.status.success() {
        bail!("Spark did not run ({}): {}", script.display(), String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).with_context(|| format!("Spark printed no result: {last}"))
}
