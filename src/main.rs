//! The `clickflow` command: `produce` simulated shoppers, `process` them into PostgreSQL.
//!
//! Owns argument parsing, logging setup and turning errors into one line and a non-zero
//! exit status. Each subcommand lives in its own module.

mod bench;
mod cli;
mod evaluate;
mod kafka;
mod metrics;
mod monitor;
mod process;
mod producer;
mod report;
mod serve;
mod signals;
mod sink;
mod source;
mod summary;

use std::process::ExitCode;

/// Events, sessions and rows are many small strings, cloned as they flow: mimalloc
/// serves them much faster than glibc's allocator (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use dataflows::pipeline::Settings;
use dataflows::time::Millis;

#[derive(Parser)]
#[command(name = "clickflow", version, about = "Real-time e-commerce clickstream analytics on timely/differential dataflow")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate shoppers and write their events as JSON Lines.
    Produce(ProduceArgs),
    /// Replay events through the dataflow into PostgreSQL.
    Process(ProcessArgs),
    /// Run a development Kafka broker in this process (librdkafka's in-memory mock
    /// cluster: no persistence, for local use and tests), until stopped.
    Broker(BrokerArgs),
    /// Show the pipeline's health from PostgreSQL, refreshing; `--once` for scripts.
    Monitor(MonitorArgs),
    /// Draw PNG charts from PostgreSQL: traffic, funnel, conversion by device, top products,
    /// revenue by RFM segment, cohort retention.
    Report(ReportArgs),
    /// Measure each stage on one file (plain batch baseline, dataflow core, parse +
    /// dataflow, file -> PostgreSQL): lines/s, peak memory, window-end -> final-row latency.
    Bench(BenchArgs),
    /// Serve the results over HTTP (JSON): /health, /metrics, /v1/users/{user_id},
    /// /v1/products/{product_id}/recommendations, POST /v1/score; until stopped.
    Serve(ServeArgs),
    /// Compare session_risk with the labels `produce --labels` wrote: recall per bot kind,
    /// false-positive rate over the shoppers' sessions, precision.
    Evaluate(EvaluateArgs),
}

#[derive(Args)]
struct EvaluateArgs {
    /// The labels file (CSV: user_id,session_start,kind).
    #[arg(long)]
    labels: String,
    /// PostgreSQL URL [default: $DATABASE_URL].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    postgres: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// PostgreSQL URL [default: $DATABASE_URL].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    postgres: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Longest wait for a database connection or query: past it, a 503.
    #[arg(long, default_value = "2s", value_parser = cli::duration)]
    db_timeout: Millis,
    /// Longest time a request may take in all: past it, a 503.
    #[arg(long, default_value = "5s", value_parser = cli::duration)]
    request_timeout: Millis,
    /// Connections to PostgreSQL at most.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// POST /v1/score: the inactivity that ends a session, as the processor's
    /// --session-gap (events further apart are refused as more than one session).
    #[arg(long, default_value = "30m", value_parser = cli::duration)]
    session_gap: Millis,
    /// POST /v1/score: "flagged" from this score on, as the processor's --risk-threshold.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(51..=100))]
    risk_threshold: u8,
}

#[derive(Args)]
struct BenchArgs {
    /// JSON Lines input [default: data/bench-<EVENTS>.jsonl, simulated once with 1 %
    /// duplicates, 5 % out of order, 0.1 % late and 0.1 % malformed lines].
    #[arg(long)]
    input: Option<std::path::PathBuf>,
    /// Events to simulate when there is no --input.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Stages to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "baseline,core,parse,file")]
    stages: Vec<bench::Stage>,
    /// Worker counts for the core and file stages, comma-separated.
    #[arg(short = 'w', long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// PostgreSQL server of the file stage, whose database clickflow_bench it drops and
    /// creates anew [default: $DATABASE_URL].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Also run Spark Structured Streaming local[2] on the same file (needs pyspark, see
    /// bench/README.md; PYSPARK_PYTHON names the Python that has it).
    #[arg(long)]
    compare_spark: bool,
    /// Print one JSON object per stage instead of the table.
    #[arg(long)]
    json: bool,
    /// Run this one stage in this process and print its result as JSON (the harness runs
    /// each stage so, for its own peak memory).
    #[arg(long, hide = true)]
    stage: Option<bench::Stage>,
}

#[derive(Args)]
struct ReportArgs {
    /// Folder for the PNG files (created if missing).
    #[arg(long)]
    out: String,
    /// PostgreSQL URL [default: $DATABASE_URL].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    postgres: String,
}

#[derive(Args)]
struct MonitorArgs {
    /// PostgreSQL URL [default: $DATABASE_URL].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    postgres: String,
    /// Print once and exit: status 0 when healthy, 1 when not.
    #[arg(long)]
    once: bool,
    /// Time between refreshes.
    #[arg(long, default_value = "2s", value_parser = cli::duration)]
    interval: Millis,
    /// Unhealthy when the last progress report of a running pipeline is older than this.
    #[arg(long, default_value = "30s", value_parser = cli::duration)]
    max_report_age: Millis,
    /// Unhealthy when a running pipeline's watermark trails the wall clock by more.
    #[arg(long, default_value = "5m", value_parser = cli::duration)]
    max_watermark_delay: Millis,
    /// Unhealthy when the consumer lag, summed over partitions, exceeds this.
    #[arg(long, default_value_t = 100_000)]
    max_lag: i64,
    /// Unhealthy when more than this fraction of input is dead-lettered.
    #[arg(long, default_value_t = 0.05, value_parser = probability)]
    max_dead_letter_ratio: f64,
}

#[derive(Args)]
struct BrokerArgs {
    /// Write the broker's address (host:port) to this file.
    #[arg(long)]
    address_file: Option<String>,
    /// Topic to create.
    #[arg(long, default_value = "clickstream")]
    topic: String,
    /// Partitions of that topic.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
}

#[derive(Args)]
struct ProduceArgs {
    /// Number of events to simulate [default: run until stopped].
    #[arg(long)]
    events: Option<u64>,
    /// Days of event time to simulate, from --start-time: shoppers come back over days
    /// and weeks as their habits say [default: run until stopped, or --events].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    days: Option<u32>,
    /// Random seed: the same seed and flags give the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file, `-` for stdout (unless --brokers is given).
    #[arg(long, default_value = "-", conflicts_with = "brokers")]
    out: String,
    /// Kafka bootstrap servers: send to Kafka instead of a file.
    #[arg(long)]
    brokers: Option<String>,
    /// Kafka topic.
    #[arg(long, default_value = "clickstream")]
    topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    partitions: u16,
    /// Event time of the first visit, RFC 3339 [default: 2026-11-01T00:00:00Z, or now with --rate].
    #[arg(long, value_parser = cli::timestamp)]
    start_time: Option<Millis>,
    /// Pace output to this many events per second (up to about 50,000 here), event time
    /// following the wall clock from --start-time [default: as fast as possible].
    #[arg(long)]
    rate: Option<f64>,
    /// Shop traffic in events per second of event time, without --rate.
    #[arg(long, default_value_t = 6.0)]
    events_per_second: f64,
    /// Traffic follows the time of day (quiet nights, an evening peak): the rate is then
    /// the day's average, from 0.4x at 02:00 UTC to 1.6x at 20:00 UTC [default: flat].
    #[arg(long)]
    daily_curve: bool,
    /// Fraction of events sent twice.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    duplicates: f64,
    /// Fraction of events delivered out of order, by less than --max-disorder.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    out_of_order: f64,
    /// Largest delay of an out-of-order event (keep it under the processor's watermark delay).
    #[arg(long, default_value = "50s", value_parser = cli::duration)]
    max_disorder: Millis,
    /// Fraction of events delivered 3 to 15 minutes late.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    late: f64,
    /// Fraction of events followed by a malformed message (each dead-letter reason in turn).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    malformed: f64,
    /// Fraction of visits made by bots (scrapers, card testers, cart stuffers), whose
    /// events look like any shopper's; the rate of events holds.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    bots: f64,
    /// Write the truth about the bots here as CSV (user_id,session_start,kind), one row
    /// per bot visit written, its session_start the time of its first event written; a
    /// processor never reads it [default: none].
    #[arg(long, value_name = "FILE")]
    labels: Option<String>,
    /// Extra Kafka client setting KEY=VALUE (e.g. security.protocol=SASL_SSL), repeatable;
    /// values are never printed [default: none].
    #[arg(long = "kafka-config", value_name = "KEY=VALUE")]
    kafka_config: Vec<String>,
}

#[derive(Args)]
#[command(disable_help_flag = true)] // -h is timely's --hostfile
struct ProcessArgs {
    /// Print help (there is no -h: it names the hostfile).
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// JSON Lines input file, `-` for stdin.
    #[arg(long, required_unless_present = "brokers", conflicts_with = "brokers")]
    input: Option<String>,
    /// Kafka bootstrap servers: consume the topic instead of a file.
    #[arg(long)]
    brokers: Option<String>,
    /// Kafka topic.
    #[arg(long, default_value = "clickstream")]
    topic: String,
    /// With --brokers: once no message has arrived for this long, finalise everything
    /// and exit [default: run until stopped].
    #[arg(long, value_parser = cli::duration)]
    until_idle: Option<Millis>,
    /// With --brokers: if the broker does not answer (or the topic is missing) at the
    /// start, keep trying for this long [default: fail at once].
    #[arg(long, value_parser = cli::duration)]
    wait_for_broker: Option<Millis>,
    /// Extra Kafka client setting KEY=VALUE (e.g. security.protocol=SASL_SSL,
    /// sasl.password=...), repeatable; values are never printed [default: none].
    #[arg(long = "kafka-config", value_name = "KEY=VALUE")]
    kafka_config: Vec<String>,
    /// Read the input from its start instead of resuming after the positions this
    /// database committed (needed to read a file other than the one it recorded); the
    /// watermark, dedupe ids, open sessions and totals carry on.
    #[arg(long)]
    from_start: bool,
    /// How long PostgreSQL may stay unreachable mid-run (retried with backoff, then the
    /// run resumes after the last commit) before the processor gives up.
    #[arg(long, default_value = "10m", value_parser = cli::duration)]
    max_retry_time: Millis,
    /// A partition with no accepted event for this long no longer holds the watermark back.
    #[arg(long, default_value = "30s", value_parser = cli::duration)]
    idle_timeout: Millis,
    /// PostgreSQL URL [default: $DATABASE_URL].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    postgres: String,
    /// How far the watermark trails the largest event time seen.
    #[arg(long, default_value = "60s", value_parser = cli::duration)]
    watermark_delay: Millis,
    /// How long an accepted event_id is remembered for dedupe: until the watermark
    /// passes its event_time plus this.
    #[arg(long, default_value = "24h", value_parser = cli::duration)]
    dedupe_horizon: Millis,
    /// Inactivity that ends a session.
    #[arg(long, default_value = "30m", value_parser = cli::duration)]
    session_gap: Millis,
    /// Length of the `traffic` windows.
    #[arg(long, default_value = "1m", value_parser = cli::duration)]
    traffic_window: Millis,
    /// Length of the `product_stats`, `funnel` and `conversion` windows.
    #[arg(long, default_value = "1h", value_parser = cli::duration)]
    stats_window: Millis,
    /// session_risk holds the final sessions whose risk score (0-100) is at least this.
    /// Over 50, so that every session held has a reason.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(51..=100))]
    risk_threshold: u8,
    /// Timely worker threads (per process).
    #[arg(short = 'w', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Processes of the run (timely's cluster; each runs this command with its own
    /// --process). Needs --brokers: Kafka partitions are spread over every worker of
    /// every process, and process 0 writes.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    processes: u16,
    /// This process's number, from 0 to --processes - 1.
    #[arg(short = 'p', long, default_value_t = 0)]
    process: u16,
    /// File of the processes' addresses, one host:port per line, process 0 first
    /// [default: 127.0.0.1:2101, 127.0.0.1:2102, ...].
    #[arg(short = 'h', long)]
    hostfile: Option<String>,
    /// Messages per epoch at most (an epoch also ends every 200 ms).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    epoch_events: u64,
    /// Time between `pipeline_progress` rows.
    #[arg(long, default_value = "5s", value_parser = cli::duration)]
    progress_interval: Millis,
    /// Name of this run in `pipeline_progress` [default: process-<start time>].
    #[arg(long)]
    run_id: Option<String>,
    /// Print no table summary at the end.
    #[arg(long)]
    quiet: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187) [default: off].
    #[arg(long)]
    metrics_addr: Option<String>,
}

/// 2026-11-01T00:00:00Z: where simulated event time starts without --rate.
const SIMULATION_START: Millis = 1_793_491_200_000;

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // Clap's first paragraph names the problem; the usage after it is noise here.
            let message = e.to_string();
            let problem: Vec<&str> = message.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            eprintln!("clickflow: {} (see --help)", problem.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clickflow: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Produce(a) => {
            let start = a.start_time.unwrap_or_else(|| if a.rate.is_some() { process::now_millis() } else { SIMULATION_START });
            let out = match a.brokers {
                Some(brokers) => producer::Output::Kafka {
                    kafka: kafka::KafkaSettings::new(&brokers, &a.kafka_config)?,
                    topic: a.topic,
                    partitions: usize::from(a.partitions),
                },
                None => producer::Output::File(a.out),
            };
            let options = producer::Options {
                events: a.events,
                until: a.days.map(|d| start + Millis::from(d) * 86_400_000),
                seed: a.seed,
                out,
                start,
                events_per_second: a.rate.unwrap_or(a.events_per_second),
                rate: a.rate,
                daily_curve: a.daily_curve,
                bots: a.bots,
                labels: a.labels,
                faults: producer::Faults {
                    duplicates: a.duplicates,
                    out_of_order: a.out_of_order,
                    max_disorder: a.max_disorder,
                    late: a.late,
                    malformed: a.malformed,
                },
            };
            let sent = producer::run(&options)?;
            tracing::info!(lines = sent.lines, failed = sent.failed, "done");
            if sent.failed > 0 {
                anyhow::bail!("Kafka did not accept {} of {} messages", sent.failed, sent.lines);
            }
            Ok(())
        }
        Command::Process(a) => {
            let run_id = a.run_id.unwrap_or_else(|| format!("process-{}", dataflows::time::format_rfc3339(process::now_millis())));
            let input = match (a.input, a.brokers) {
                (Some(path), _) => process::Input::File(path),
                (None, Some(brokers)) => process::Input::Kafka {
                    kafka: kafka::KafkaSettings::new(&brokers, &a.kafka_config)?,
                    topic: a.topic,
                    until_idle: a.until_idle.map(|ms| Duration::from_millis(ms as u64)),
                    wait_for_broker: a.wait_for_broker.map(|ms| Duration::from_millis(ms as u64)),
                },
                (None, None) => unreachable!("clap requires --input or --brokers"),
            };
            let cluster = process::Cluster::new(usize::from(a.processes), usize::from(a.process), a.hostfile.as_deref())?;
            let writes = cluster.writes();
            let options = process::Options {
                input,
                cluster,
                postgres: a.postgres.clone(),
                settings: Settings {
                    session_gap: a.session_gap,
                    traffic_window: a.traffic_window,
                    stats_window: a.stats_window,
                    risk_threshold: a.risk_threshold,
                },
                watermark_delay: a.watermark_delay,
                idle_timeout: a.idle_timeout,
                dedupe_horizon: a.dedupe_horizon,
                workers: usize::from(a.workers),
                epoch_events: a.epoch_events as usize,
                progress_interval: Duration::from_millis(a.progress_interval as u64),
                run_id,
                metrics_addr: a.metrics_addr,
                from_start: a.from_start,
                max_retry_time: Duration::from_millis(a.max_retry_time as u64),
            };
            let outcome = process::run(options)?;
            if !writes {
                tracing::info!(
                    read = outcome.read,
                    seconds = format!("{:.2}", outcome.seconds),
                    "done: process 0 writes the tables and totals"
                );
                return Ok(());
            }
            let c = outcome.counts;
            tracing::info!(
                read = outcome.read,
                input = c.input,
                accepted = c.accepted,
                duplicates = c.duplicates,
                dead_letters = c.dead_letters,
                late = c.late,
                seconds = format!("{:.2}", outcome.seconds),
                events_per_second = format!("{:.0}", outcome.read as f64 / outcome.seconds),
                peak_memory_mib = process::peak_memory_mib().map(|m| format!("{m:.0}")).unwrap_or_default(),
                "{}",
                if outcome.finished { "all rows final" } else { "stopped" }
            );
            if !a.quiet {
                summary::print(&a.postgres)?;
            }
            Ok(())
        }
        Command::Bench(a) => {
            let input = match a.input {
                Some(path) => path,
                None => bench_input(a.events)?,
            };
            match a.stage {
                Some(stage) => bench::run_stage(stage, &input, a.workers.first().copied().unwrap_or(1), a.postgres.as_deref()),
                None => bench::run(&bench::Options {
                    input,
                    postgres: a.postgres,
                    stages: a.stages,
                    workers: a.workers,
                    compare_spark: a.compare_spark,
                    json: a.json,
                }),
            }
        }
        Command::Broker(a) => kafka::serve_development_broker(a.address_file.as_deref(), &a.topic, a.partitions),
        Command::Report(a) => {
            for path in report::run(&a.postgres, std::path::Path::new(&a.out))? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Evaluate(a) => {
            let quality = evaluate::run(&a.postgres, &a.labels)?;
            if a.json {
                println!("{}", serde_json::to_string(&quality)?);
            } else {
                println!("{quality}");
            }
            Ok(())
        }
        Command::Serve(a) => {
            let ms = |v: Millis| Duration::from_millis(v.max(1) as u64);
            let options = serve::Options {
                postgres: a.postgres,
                addr: a.addr,
                db_timeout: ms(a.db_timeout),
                request_timeout: ms(a.request_timeout),
                connections: usize::from(a.connections),
                session_gap: a.session_gap,
                risk_threshold: a.risk_threshold,
            };
            serve::run(options, signals::stop_flag()?)
        }
        Command::Monitor(a) => {
            let ms = |v: Millis| Duration::from_millis(v as u64);
            let rules = monitor::Rules {
                max_report_age: ms(a.max_report_age),
                max_watermark_delay: ms(a.max_watermark_delay),
                max_lag: a.max_lag,
                max_dead_letter_ratio: a.max_dead_letter_ratio,
            };
            if monitor::run(&a.postgres, &rules, a.once, ms(a.interval))? {
                Ok(())
            } else {
                Err(anyhow::anyhow!("the pipeline is unhealthy"))
            }
        }
    }
}

/// `data/bench-N.jsonl`, simulated the first time it is asked for.
fn bench_input(events: u64) -> Result<std::path::PathBuf> {
    let path = std::path::PathBuf::from(format!("data/bench-{events}.jsonl"));
    if !path.exists() {
        std::fs::create_dir_all("data")?;
        let partial = path.with_extension("partial");
        tracing::info!(events, path = %path.display(), "simulating the benchmark input");
        let options = producer::Options {
            events: Some(events),
            until: None,
            seed: 1,
            out: producer::Output::File(partial.display().to_string()),
            start: SIMULATION_START,
            events_per_second: 6.0,
            rate: None,
            daily_curve: false,
            bots: 0.0,
            labels: None,
            faults: producer::Faults { duplicates: 0.01, out_of_order: 0.05, max_disorder: 50_000, late: 0.001, malformed: 0.001 },
        };
        producer::run(&options)?;
        std::fs::rename(&partial, &path)?;
    }
    Ok(path)
}
