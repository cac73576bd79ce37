//! Exactly-once across crashes: a processor killed at random instants (some inside a
//! commit) and restarted, sometimes with another `-w`, ends with the same tables and
//! running totals as the batch reference, with every message accounted for, reading
//! only what it had not committed; the same when PostgreSQL restarts mid-run and when
//! the Kafka broker goes away and comes back. A file other than the one a database
//! recorded is refused unless `--from-start`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use dataflows::pipeline::Settings;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use support::*;

const FAULTS: [&str; 8] = ["--duplicates", "0.02", "--out-of-order", "0.1", "--malformed", "0.003", "--max-disorder", "50s"];

/// A data file from the simulator, and the reference tables for it.
fn data(dir: &Path, events: &str, seed: &str, late: bool) -> (String, Vec<Vec<u8>>, reference::Tables) {
    let file = dir.join("events.jsonl");
    let mut args = vec!["produce", "--events", events, "--seed", seed, "--out", file.to_str().unwrap()];
    args.extend(FAULTS);
    if late {
        args.extend(["--late", "0.003"]);
    }
    clickflow(&args);
    let lines = read_lines(&file);
    let expected = reference::compute(&lines, 60_000, Settings::default(), now_ms());
    (file.to_str().unwrap().to_owned(), lines, expected)
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn wait(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Messages whose results `url` has committed.
fn committed(url: &str) -> i64 {
    postgres::Client::connect(url, postgres::NoTls)
        .and_then(|mut c| c.query_one("SELECT coalesce(sum(input_events), 0)::bigint FROM source_positions", &[]))
        .map_or(0, |r| r.get(0))
}

/// Waits until the run of `child` has committed messages beyond what `url` held before
/// it started (so it is mid-run), or until it ends; false if it ended.
fn wait_for_commit(child: &mut Child, url: &str, before: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(url) <= before {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(Instant::now() < deadline, "the run committed nothing within a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Kills `child` with SIGKILL `after` its run first commits messages; true if it was
/// still running then.
fn kill_mid_run(child: &mut Child, url: &str, after: Duration) -> bool {
    let before = committed(url);
    let running = wait_for_commit(child, url, before) && {
        std::thread::sleep(after);
        child.try_wait().unwrap().is_none()
    };
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    running
}

/// Asserts what every restart test checks at the end: the reference's tables, and every
/// message accounted for exactly once.
fn assert_exactly_once(client: &mut postgres::Client, expected: &reference::Tables, lines: usize) {
    assert_tables_eq(&actual_tables(client), &expected_tables(expected));
    assert_eq!(derived_column_breaches(client), Vec::<String>::new());
    let (input, duplicates, dead, late, _) = last_progress(client);
    assert_eq!(input as usize, lines, "running totals survive restarts: every message counted once");
    assert_eq!(duplicates as u64, expected.duplicates);
    assert_eq!(dead as usize, expected.dead_letters.len());
    assert_eq!(late as usize, expected.dead_letters.values().filter(|r| **r == dataflows::event::Reason::Late).count());
    let rows: i64 = client.query_one("SELECT count(*) FROM dead_letters", &[]).unwrap().get(0);
    assert_eq!(rows, dead, "one dead_letters row per dead letter counted");
    assert_eq!(input as usize, expected.events.len() + duplicates as usize + dead as usize, "accounting identity");
}

/// The last run resumed: it read less than the input.
fn assert_last_run_resumed(client: &mut postgres::Client, lines: usize) {
    let last_run = last_progress(client).4 as usize;
    assert!(last_run < lines, "the last run read {last_run} of {lines} messages");
}

/// Before the final run: some positions were committed and the database has open rows
/// a restart must continue, so the test exercised a resume rather than a fresh start.
fn assert_mid_run(client: &mut postgres::Client) {
    let r = client
        .query_one("SELECT (SELECT coalesce(sum(input_events), 0)::bigint FROM source_positions), (SELECT count(*) FROM sessions WHERE NOT is_final)", &[])
        .unwrap();
    let (committed, open): (i64, i64) = (r.get(0), r.get(1));
    assert!(committed > 0 && open > 0, "the killed runs committed {committed} messages and left {open} open sessions");
}

/// Runs `process ARGS -w W` once per entry of `workers`, ending each run mid-way: odd
/// rounds crash inside the first or second commit carrying messages (the failpoint),
/// even rounds are killed with SIGKILL up to 150 ms after a commit, while commits are
/// slowed so that the kill often lands in one. Instants come from a seed, printed.
fn interrupted_runs(args: &[&str], workers: &[&str], url: &str, dir: &Path) {
    let seed = now_ms() as u64;
    let mut rng = SmallRng::seed_from_u64(seed);
    eprintln!("kill instants from seed {seed}");
    for (round, w) in workers.iter().enumerate() {
        let args = [args, &["-w", w]].concat();
        if round % 2 == 1 {
            let n = rng.random_range(1..3u32).to_string();
            let mut child = spawn_clickflow(&args, &[("CLICKFLOW_TEST_CRASH_IN_COMMIT", n.clone())], dir, "crash");
            let status = wait(&mut child, Duration::from_secs(120), "a run asked to crash");
            assert!(!status.success(), "the run crashed in commit {n}: {}", stderr_of(dir, "crash"));
        } else {
            let mut child = spawn_clickflow(&args, &[("CLICKFLOW_TEST_COMMIT_DELAY_MS", "20".into())], dir, "kill");
            let after = Duration::from_millis(rng.random_range(0..150));
            assert!(kill_mid_run(&mut child, url, after), "killed mid-run: {}", stderr_of(dir, "kill"));
        }
    }
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    assert_mid_run(&mut client);
}

/// A data file spanning about 22 hours of event time (so that a restart reads back only
/// the last hours), where every 10th line comes again 25 lines later, within the
/// watermark delay: many duplicate pairs straddle a commit, and so a restart.
fn sparse_data_with_resent_copies(dir: &Path) -> (String, Vec<Vec<u8>>, reference::Tables) {
    let file = dir.join("events.jsonl");
    let mut args = vec!["produce", "--events", "60000", "--seed", "11", "--events-per-second", "0.5", "--out", file.to_str().unwrap()];
    args.extend(FAULTS);
    args.extend(["--late", "0.003"]);
    clickflow(&args);
    let original = read_lines(&file);
    let mut lines = Vec::new();
    for (i, line) in original.iter().enumerate() {
        lines.push(line.clone());
        if i >= 25 && (i - 25) % 10 == 0 {
            lines.push(original[i - 25].clone());
        }
    }
    std::fs::write(&file, lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect::<Vec<u8>>()).unwrap();
    let expected = reference::compute(&lines, 60_000, Settings::default(), now_ms());
    assert!(expected.duplicates > 3_000, "the re-sent copies are duplicates: {}", expected.duplicates);
    (file.to_str().unwrap().to_owned(), lines, expected)
}

#[test]
fn a_file_replay_killed_at_random_resumes_with_identical_tables() {
    let dir = scratch("restart-file");
    let (file, lines, expected) = sparse_data_with_resent_copies(&dir);
    let db = TestDb::new("restart_file");
    let args = ["process", "--input", &file, "--postgres", &db.url, "--quiet", "--epoch-events", "500"];
    interrupted_runs(&args, &["1", "2", "1", "2"], &db.url, &dir);
    let mut client = db.client();
    let mut child = spawn_clickflow(&["process", "--input", &file, "--postgres", &db.url, "--quiet"], &[], &dir, "last");
    assert!(wait(&mut child, Duration::from_secs(120), "the last run").success(), "{}", stderr_of(&dir, "last"));
    let log = stderr_of(&dir, "last");
    let restored: usize = log.split("open_state_events=").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).expect(&log);
    assert!(restored < expected.events.len() / 2, "a restart reads back the open rows' events, not the history: {restored}");
    assert_exactly_once(&mut client, &expected, lines.len());
    assert_last_run_resumed(&mut client, lines.len());

    // A finished file read again changes nothing and reads nothing.
    clickflow(&["process", "--input", &file, "--postgres", &db.url, "--quiet"]);
    assert_eq!(last_progress(&mut client).4, 0, "nothing left to read");
    assert_tables_eq(&actual_tables(&mut client), &expected_tables(&expected));
}

#[test]
fn a_kafka_drain_killed_at_random_resumes_with_identical_tables() {
    let dir = scratch("restart-kafka");
    let (_, lines, expected) = data(&dir, "30000", "12", false);
    let cluster = mock_broker("restart", 8);
    let brokers = cluster.bootstrap_servers();
    let mut args = vec!["produce", "--events", "30000", "--seed", "12", "--brokers", &brokers, "--topic", "restart"];
    args.extend(FAULTS);
    clickflow(&args);

    let db = TestDb::new("restart_kafka");
    let args = [
        "process",
        "--brokers",
        &brokers,
        "--topic",
        "restart",
        "--until-idle",
        "3s",
        "--postgres",
        &db.url,
        "--quiet",
        "--epoch-events",
        "400",
    ];
    interrupted_runs(&args, &["2", "1", "3", "2"], &db.url, &dir);
    let mut client = db.client();
    let last = ["process", "--brokers", &brokers, "--topic", "restart", "--until-idle", "3s", "--postgres", &db.url, "--quiet", "-w", "2"];
    let mut child = spawn_clickflow(&last, &[], &dir, "last");
    assert!(wait(&mut child, Duration::from_secs(120), "the last run").success(), "{}", stderr_of(&dir, "last"));
    assert_exactly_once(&mut client, &expected, lines.len());
    assert_last_run_resumed(&mut client, lines.len());
    let lag: Option<i64> = client.query_one("SELECT kafka_lag FROM pipeline_progress ORDER BY id DESC LIMIT 1", &[]).unwrap().get(0);
    assert_eq!(lag, Some(0), "the topic was drained");
}

#[test]
fn postgres_restarting_mid_run_loses_and_doubles_nothing() {
    let dir = scratch("restart-postgres");
    // More rows than the processor buffers for a busy writer (50,000): with slow commits
    // the reader waits for the database, so an outage lands mid-run.
    let (file, lines, expected) = data(&dir, "100000", "13", true);
    let server = PgServer::start("restart");
    let mut admin = postgres::Client::connect(&server.url("postgres"), postgres::NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE gives_up").unwrap();
    admin.batch_execute("CREATE DATABASE rides_out").unwrap();
    admin.batch_execute("CREATE DATABASE from_start").unwrap();
    drop(admin);
    let delay = [("CLICKFLOW_TEST_COMMIT_DELAY_MS", "1000".to_owned())];

    // Down for longer than --max-retry-time: one clear line and a failure.
    let url = server.url("gives_up");
    let mut child =
        spawn_clickflow(&["process", "--input", &file, "--postgres", &url, "--quiet", "--max-retry-time", "2s"], &delay, &dir, "gives_up");
    assert!(wait_for_commit(&mut child, &url, 0), "mid-run: {}", stderr_of(&dir, "gives_up"));
    server.down();
    let status = wait(&mut child, Duration::from_secs(60), "a run without its database");
    let log = stderr_of(&dir, "gives_up");
    assert!(!status.success(), "{log}");
    let last_line = log.lines().last().unwrap_or_default();
    assert!(last_line.starts_with("clickflow: PostgreSQL at ") && last_line.contains("more than --max-retry-time"), "{log}");
    assert!(log.matches("is unavailable").count() >= 2, "one line per attempt: {log}");
    server.up();

    // Restarted mid-run: the run rides it out and resumes after the last commit.
    let url = server.url("rides_out");
    let mut child = spawn_clickflow(&["process", "--input", &file, "--postgres", &url, "--quiet", "-w", "2"], &delay, &dir, "rides_out");
    assert!(wait_for_commit(&mut child, &url, 0), "mid-run: {}", stderr_of(&dir, "rides_out"));
    server.down();
    std::thread::sleep(Duration::from_secs(2));
    server.up();
    let status = wait(&mut child, Duration::from_secs(120), "a run whose database restarted");
    let log = stderr_of(&dir, "rides_out");
    assert!(status.success(), "{log}");
    assert!(log.contains("is unavailable") && log.contains("answers again"), "the outage was seen and ridden out: {log}");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    assert_exactly_once(&mut client, &expected, lines.len());

    // `--from-start` holds until the run's first commit: after an outage the run resumes
    // after that commit, not from the start again. The database first holds part of the
    // file, then the file under another name is read from its start.
    let url = server.url("from_start");
    let mut child = spawn_clickflow(
        &["process", "--input", &file, "--postgres", &url, "--quiet"],
        &[("CLICKFLOW_TEST_CRASH_IN_COMMIT", "1".into())],
        &dir,
        "first_part",
    );
    assert!(!wait(&mut child, Duration::from_secs(60), "a run asked to crash").success(), "{}", stderr_of(&dir, "first_part"));
    let before = committed(&url);
    let again = dir.join("again.jsonl");
    std::fs::copy(&file, &again).unwrap();
    let args = ["process", "--input", again.to_str().unwrap(), "--postgres", &url, "--quiet", "--from-start"];
    let mut child = spawn_clickflow(&args, &delay, &dir, "from_start");
    assert!(wait_for_commit(&mut child, &url, before), "mid-run: {}", stderr_of(&dir, "from_start"));
    server.down();
    std::thread::sleep(Duration::from_secs(1));
    server.up();
    assert!(
        wait(&mut child, Duration::from_secs(120), "a --from-start run whose database restarted").success(),
        "{}",
        stderr_of(&dir, "from_start")
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let (input, duplicates, dead, _, _) = last_progress(&mut client);
    assert_eq!(input, before + lines.len() as i64, "every line of the second file counted once: {}", stderr_of(&dir, "from_start"));
    let rows: i64 = client.query_one("SELECT (SELECT count(*) FROM events_raw) + (SELECT count(*) FROM dead_letters)", &[]).unwrap().get(0);
    assert_eq!(rows + duplicates, input, "accounting identity");
    assert!(dead > 0);

    // The run that gave up is finished by the next one.
    let url = server.url("gives_up");
    clickflow(&["process", "--input", &file, "--postgres", &url, "--quiet"]);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    assert_exactly_once(&mut client, &expected, lines.len());
    assert_last_run_resumed(&mut client, lines.len());
}

#[test]
fn a_broker_going_away_and_back_loses_nothing() {
    let dir = scratch("restart-broker");
    let (_, lines, expected) = data(&dir, "12000", "14", false);
    let cluster = mock_broker("flaky", 4);
    let brokers = cluster.bootstrap_servers();
    // Line i to partition i % 4.
    let records: Vec<(i32, &[u8])> = lines.iter().enumerate().map(|(i, line)| ((i % 4) as i32, line.as_slice())).collect();
    let half = records.len() / 2;
    send(&brokers, "flaky", &records[..half]);

    let db = TestDb::new("restart_broker");
    let args = ["process", "--brokers", &brokers, "--topic", "flaky", "--postgres", &db.url, "--quiet", "-w", "2"];
    let mut child = spawn_clickflow(&args, &[], &dir, "flaky");
    assert!(wait_for_commit(&mut child, &db.url, 0), "{}", stderr_of(&dir, "flaky"));
    cluster.broker_down(1).expect("take the broker down");
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "the processor waits for the broker: {}", stderr_of(&dir, "flaky"));
    cluster.broker_up(1).expect("bring the broker back");
    send(&brokers, "flaky", &records[half..]);
    // The same process reads every message once the broker is back (librdkafka retries
    // its stalled requests by itself, which can take a while), then stops on SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(90);
    while committed(&db.url) < lines.len() as i64 {
        assert!(child.try_wait().unwrap().is_none(), "the processor ended: {}", stderr_of(&dir, "flaky"));
        assert!(Instant::now() < deadline, "not every message was read after the broker came back: {}", stderr_of(&dir, "flaky"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(wait(&mut child, Duration::from_secs(60), "a run stopped by SIGTERM").success(), "{}", stderr_of(&dir, "flaky"));
    // A last run finds nothing new and finalises.
    clickflow(&["process", "--brokers", &brokers, "--topic", "flaky", "--postgres", &db.url, "--quiet", "--until-idle", "1s"]);
    let mut client = db.client();
    assert_tables_eq(&actual_tables(&mut client), &expected_tables(&expected));
    let (input, duplicates, dead, _, last_run) = last_progress(&mut client);
    assert_eq!(
        (input as usize, duplicates as u64, dead as usize, last_run),
        (lines.len(), expected.duplicates, expected.dead_letters.len(), 0)
    );
}

#[test]
fn another_file_is_refused_unless_from_start() {
    let dir = scratch("restart-identity");
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    clickflow(&["produce", "--events", "3000", "--seed", "1", "--out", a.to_str().unwrap()]);
    clickflow(&["produce", "--events", "3000", "--seed", "2", "--start-time", "2026-11-02T00:00:00Z", "--out", b.to_str().unwrap()]);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let db = TestDb::new("restart_identity");
    clickflow(&["process", "--input", a, "--postgres", &db.url, "--quiet"]);

    let out = std::process::Command::new(BIN)
        .args(["process", "--input", b, "--postgres", &db.url, "--quiet"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("file:{a}")) && stderr.contains(&format!("file:{b}")) && stderr.contains("--from-start"),
        "names both: {stderr}"
    );

    // Rewritten in place under the same name: not the file recorded either.
    std::fs::copy(b, a).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["process", "--input", a, "--postgres", &db.url, "--quiet"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not the file this database read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    clickflow(&["process", "--input", b, "--postgres", &db.url, "--quiet", "--from-start"]);
    let mut client = db.client();
    let sources: BTreeMap<String, i64> =
        client.query("SELECT source, lines_read FROM source_positions", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(sources.values().all(|n| *n == 3000), "{sources:?}");
    let input: i64 = last_progress(&mut client).0;
    assert_eq!(input, 6000, "totals since the first run cover both files");
}

#[test]
fn customer_analytics_survive_a_restart_in_the_middle_of_a_day() {
    let dir = scratch("restart-cohorts");
    // Three days of shoppers coming back; the processor is stopped on the second day,
    // with that day's cohort rows open, its purchases not yet in customer_rfm or
    // product_pairs and sessions open (product_similar is restored from the final
    // sessions before them and the events after; session_risk from the stored model
    // versions and the sampled sessions), and started again for the rest.
    let file = dir.join("events.jsonl");
    let mut args =
        vec!["produce", "--days", "3", "--events-per-second", "0.05", "--bots", "0.03", "--seed", "21", "--out", file.to_str().unwrap()];
    args.extend(FAULTS);
    clickflow(&args);
    let lines = read_lines(&file);
    let expected = reference::compute(&lines, 60_000, Settings::default(), now_ms());
    assert!(expected.cohorts.keys().filter(|(_, offset)| *offset > 0).count() >= 3, "shoppers come back on later days");
    assert!(expected.rfm.len() > 50 && expected.pairs.len() >= 4, "{} customers, {} pairs", expected.rfm.len(), expected.pairs.len());
    assert!(expected.similar.len() > 100, "{} similar products", expected.similar.len());
    let forests: Vec<&String> = expected.models.values().filter(|m| m.sessions >= 256).map(|m| &m.model).collect();
    assert!(forests.len() >= 2 && expected.risk.len() > 20, "{} forest versions, {} sessions at risk", forests.len(), expected.risk.len());
    let cut = lines.len() * 11 / 20; // in the second day
    let broker = mock_broker("cohorts", 1);
    let brokers = broker.bootstrap_servers();
    send(&brokers, "cohorts", &lines[..cut].iter().map(|l| (0, l.clone())).collect::<Vec<_>>());

    let db = TestDb::new("restart_cohorts");
    let mut client = db.client();
    let live = ["process", "--brokers", &brokers, "--topic", "cohorts", "--postgres", &db.url, "--quiet"];
    let mut first = spawn_clickflow(&live, &[], &dir, "first");
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_progress_input(&mut client) < cut as i64 {
        assert!(Instant::now() < deadline, "the first part was not processed: {}", stderr_of(&dir, "first"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::process::Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap().success());
    assert!(wait(&mut first, Duration::from_secs(30), "the first run").success());
    let open: i64 = client.query_one("SELECT count(*) FROM cohort_retention WHERE NOT is_final", &[]).unwrap().get(0);
    assert!(open > 0, "the second day's rows are open at the stop");
    let mut stored = |sql: &str| -> i64 { client.query_one(sql, &[]).unwrap().get(0) };
    assert!(stored("SELECT count(*) FROM session_risk") > 0, "sessions at risk before the stop");
    assert_eq!(stored("SELECT count(*) FROM risk_models WHERE jsonb_typeof(model->'forest') = 'object'"), 1, "the second day's version");

    send(&brokers, "cohorts", &lines[cut..].iter().map(|l| (0, l.clone())).collect::<Vec<_>>());
    clickflow(&["process", "--brokers", &brokers, "--topic", "cohorts", "--until-idle", "2s", "--postgres", &db.url, "--quiet"]);
    assert_tables_eq(&actual_tables(&mut client), &expected_tables(&expected));
}

#[test]
fn a_restart_keeps_the_model_version_of_a_day_before_the_open_rows() {
    // With the watermark two hours behind and sessions ending after 30 minutes, a session
    // can become final after a restart on a day before the earliest open row's. The first
    // part ends just after midnight: W is still on the first day, whose sessions are final
    // and were scored with its version (trained on no session), and nothing before
    // midnight is open. The second part brings a session late on the first day: it is
    // scored with that stored version, not one trained again on that day's sessions.
    let dir = scratch("restart-version-day");
    const DAY1: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    const MIN: i64 = 60_000;
    let views = |user: &str, from: i64| (0..4).map(|k| page_view(&format!("{user}-{k}"), from + k * MIN, user)).collect::<Vec<_>>();
    let mut first: Vec<String> = (0..20).flat_map(|u| views(&format!("shopper{u}"), DAY1 + 8 * 60 * MIN + u * 20 * MIN)).collect();
    first.extend(views("midnight", DAY1 + 24 * 60 * MIN));
    let second: Vec<String> = [views("owl", DAY1 + 23 * 60 * MIN), views("early", DAY1 + 28 * 60 * MIN)].concat();
    let lines: Vec<Vec<u8>> = first.iter().chain(&second).map(|l| l.clone().into_bytes()).collect();
    let expected = reference::compute(&lines, 120 * MIN, Settings::default(), now_ms());
    let day1: Vec<&str> = expected.models.values().filter(|m| m.valid_from == DAY1).map(|m| &*m.model_version).collect();
    assert_eq!(day1, ["rules-2026-11-01"], "the first day has a version: {:?}", expected.models.keys());

    let broker = mock_broker("version-day", 1);
    let brokers = broker.bootstrap_servers();
    send(&brokers, "version-day", &first.iter().map(|l| (0, l)).collect::<Vec<_>>());
    let db = TestDb::new("restart_version_day");
    let mut client = db.client();
    let live = ["process", "--brokers", &brokers, "--topic", "version-day", "--watermark-delay", "2h", "--postgres", &db.url, "--quiet"];
    let mut run = spawn_clickflow(&live, &[], &dir, "first");
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_progress_input(&mut client) < first.len() as i64 {
        assert!(Instant::now() < deadline, "the first part was not processed: {}", stderr_of(&dir, "first"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::process::Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap().success());
    assert!(wait(&mut run, Duration::from_secs(30), "the first run").success());
    let open: Vec<String> =
        client.query("SELECT user_id FROM sessions WHERE NOT is_final", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(open, ["midnight"], "only the session after midnight is open at the stop");

    send(&brokers, "version-day", &second.iter().map(|l| (0, l)).collect::<Vec<_>>());
    let rest = ["process", "--brokers", &brokers, "--topic", "version-day", "--watermark-delay", "2h", "--until-idle", "2s"];
    clickflow(&[&rest[..], &["--postgres", &db.url, "--quiet"]].concat());
    assert_tables_eq(&actual_tables(&mut client), &expected_tables(&expected));
}

/// `input_events` of the newest progress report, 0 before the first.
fn last_progress_input(client: &mut postgres::Client) -> i64 {
    client.query_opt("SELECT input_events FROM pipeline_progress ORDER BY id DESC LIMIT 1", &[]).ok().flatten().map_or(0, |r| r.get(0))
}
