//! The command line as scripts use it: one-line errors with a non-zero status, stdin
//! input, and the same bytes for the same seed.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

/// Runs clickflow expecting failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).env_remove("DATABASE_URL").env("RUST_LOG", "warn").output().expect("run clickflow");
    assert!(!out.status.success(), "clickflow {args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line for {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn errors_are_one_line_naming_what_failed() {
    let dir = scratch("cli-errors");
    let file = dir.join("one.jsonl");
    std::fs::write(&file, "{}\n").unwrap();
    let file = file.to_str().unwrap();
    assert!(fails(&["process", "--input", file, "--postgres", "postgres://nobody@127.0.0.1:1/none"])
        .contains("cannot connect to PostgreSQL at postgres://nobody@127.0.0.1:1/none"));
    assert!(
        fails(&["process", "--input", file, "--postgres", "postgres://u:secret@127.0.0.1:1/x"]).contains("postgres://u@127.0.0.1:1/x"),
        "the password is not printed"
    );
    let db = TestDb::new("cli_errors");
    assert!(
        fails(&["process", "--input", "/no/such/file.jsonl", "--postgres", &db.url]).contains("cannot open input file /no/such/file.jsonl")
    );
    assert!(fails(&["process", "--input", file, "--postgres", &db.url, "--session-gap", "30"]).contains("has no unit"));
    assert!(fails(&["process", "--input", file]).contains("--postgres"), "no URL and no DATABASE_URL");
    assert!(fails(&["produce", "--duplicates", "1.5"]).contains("not a probability"));
    assert!(fails(&["produce", "--events", "1", "--out", "/no/such/dir/x.jsonl"]).contains("cannot create output file"));
}

#[test]
fn kafka_settings_never_show_their_values() {
    let db = TestDb::new("cli_kafka_config");
    let kafka = |extra: &[&str]| {
        let args = [&["process", "--brokers", "127.0.0.1:1", "--topic", "t", "--postgres", &db.url][..], extra].concat();
        fails(&args)
    };
    let bad_value = kafka(&["--kafka-config", "sasl.mechanisms=hunter2secret", "--kafka-config", "security.protocol=sasl_plaintext"]);
    assert!(bad_value.contains("SASL mechanism") && !bad_value.contains("hunter2secret"), "{bad_value}");
    let bad_key = kafka(&["--kafka-config", "no.such.key=hunter2secret"]);
    assert!(bad_key.contains("no.such.key") && !bad_key.contains("hunter2secret"), "{bad_key}");
    let not_a_pair = kafka(&["--kafka-config", "hunter2secret"]);
    assert!(not_a_pair.contains("--kafka-config number 1 is not key=value") && !not_a_pair.contains("hunter2secret"), "{not_a_pair}");
    let unreachable = kafka(&["--kafka-config", "sasl.password=hunter2secret"]);
    assert!(unreachable.contains("cannot reach Kafka at 127.0.0.1:1") && !unreachable.contains("hunter2secret"), "{unreachable}");
}

#[test]
fn same_seed_same_bytes_and_stdin_input() {
    let a = clickflow(&["produce", "--events", "3000", "--seed", "9", "--malformed", "0.01", "--duplicates", "0.01"]);
    let b = clickflow(&["produce", "--events", "3000", "--seed", "9", "--malformed", "0.01", "--duplicates", "0.01"]);
    assert_eq!(a, b);
    assert_ne!(a, clickflow(&["produce", "--events", "3000", "--seed", "10"]));

    let db = TestDb::new("cli_stdin");
    let mut child = Command::new(BIN)
        .args(["process", "--input", "-", "--postgres", &db.url, "--quiet"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(a.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let mut client = db.client();
    let (events, dead): (i64, i64) = {
        let r = client
            .query_one("SELECT (SELECT count(*) FROM events_raw), (SELECT count(*) FROM dead_letters WHERE source LIKE 'file:-:%')", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(events > 2900, "{events} events from stdin");
    assert!(dead > 0, "malformed lines from stdin are dead-lettered with their line");
}

#[test]
fn bots_are_labelled_beside_the_stream_and_their_sessions_are_the_processor_s() {
    let dir = scratch("cli-bots");
    let (events, labels) = (dir.join("events.jsonl"), dir.join("labels.csv"));
    let (events, labels) = (events.to_str().unwrap(), labels.to_str().unwrap());
    clickflow(&["produce", "--events", "20000", "--seed", "4", "--bots", "0.05", "--labels", labels, "--out", events]);
    let text = std::fs::read_to_string(labels).unwrap();
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some("user_id,session_start,kind"));
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    let kinds: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[2]).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["card_tester", "cart_stuffer", "scraper"]);
    // Nothing in an event names a bot: the same fields as a shopper's, no others.
    let first = std::fs::read_to_string(events).unwrap().lines().next().unwrap().to_owned();
    assert!(!first.contains("bot"), "{first}");

    // Each label is the key of a session the processor finds, all of them its user's.
    let db = TestDb::new("cli_bots");
    clickflow(&["process", "--input", events, "--postgres", &db.url, "--quiet"]);
    let mut client = db.client();
    for r in &rows {
        let sessions: Vec<String> = client
            .query(
                "SELECT to_char(session_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM sessions WHERE user_id = $1",
                &[&r[0]],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(sessions, [r[1]], "the sessions of bot {}", r[0]);
    }
    assert!(rows.len() > 20, "{} bots", rows.len());
}
