//! The live path against a real Kafka-protocol broker (librdkafka's mock cluster, run by
//! this test process): a topic processed with `-w 2` and `-w 1` equals the batch
//! reference; an idle partition stops holding the watermark back after
//! `--idle-timeout`; a partition far behind the others loses nothing to lateness; SIGTERM
//! stops cleanly.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dataflows::event::Reason;
use dataflows::pipeline::Settings;
use support::*;

const T0: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

fn dead_letter_reasons(client: &mut postgres::Client) -> BTreeMap<String, i64> {
    client.query("SELECT reason, count(*) FROM dead_letters GROUP BY reason", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[test]
fn topic_equals_reference_with_one_or_two_workers() {
    let cluster = mock_broker("clicks", 4);
    let brokers = cluster.bootstrap_servers();
    let faults = ["--seed", "5", "--duplicates", "0.02", "--out-of-order", "0.1", "--malformed", "0.003"];
    let dir = scratch("kafka-reference");
    let file = dir.join("events.jsonl");
    let file = file.to_str().unwrap();
    clickflow(&[&["produce", "--events", "15000", "--out", file][..], &faults].concat());
    clickflow(&[&["produce", "--events", "15000", "--brokers", &brokers, "--topic", "clicks"][..], &faults].concat());

    let lines = read_lines(std::path::Path::new(file));
    let expected = reference::compute(&lines, 60_000, Settings::default(), now_ms());
    assert!(expected.events.len() > 14_000 && expected.sessions.len() > 1_000, "the reference holds the topic's events");
    let mut want_reasons: BTreeMap<String, i64> = BTreeMap::new();
    for r in expected.dead_letters.values() {
        *want_reasons.entry(r.as_str().to_owned()).or_default() += 1;
    }
    assert!(!want_reasons.contains_key(Reason::Late.as_str()), "disorder within the delay: nothing is late");

    for workers in ["2", "1"] {
        let db = TestDb::new("kafka");
        clickflow(&[
            "process",
            "--brokers",
            &brokers,
            "--topic",
            "clicks",
            "--until-idle",
            "2s",
            "-w",
            workers,
            "--postgres",
            &db.url,
            "--quiet",
        ]);
        let mut client = db.client();
        assert_tables_eq(&actual_tables(&mut client), &expected_tables(&expected));
        assert_eq!(dead_letter_reasons(&mut client), want_reasons, "-w {workers}");
        let sources: Vec<String> = client.query("SELECT source FROM dead_letters", &[]).unwrap().iter().map(|r| r.get(0)).collect();
        assert!(sources.iter().all(|s| s.starts_with("kafka:clicks/") && s.contains('@')), "{sources:?}");
        let p = client
            .query_one("SELECT input_events, duplicate_events, kafka_lag FROM pipeline_progress ORDER BY id DESC LIMIT 1", &[])
            .unwrap();
        assert_eq!(p.get::<_, i64>(0) as usize, lines.len(), "every message accounted for");
        assert_eq!(p.get::<_, i64>(1) as u64, expected.duplicates);
        assert_eq!(p.get::<_, Option<i64>>(2), Some(0), "the topic was drained");
    }
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_and_sigterm_stops_cleanly() {
    let cluster = mock_broker("skewed", 2);
    let brokers = cluster.bootstrap_servers();
    // Partition 1 gets one event at the start, then nothing; partition 0 gets ten minutes
    // of event time, live, over about eight seconds.
    send(&brokers, "skewed", &[(1, page_view("b0", T0, "quiet"))]);
    let live = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            for batch in 0..40 {
                let records: Vec<(i32, String)> = (batch * 15..batch * 15 + 15)
                    .map(|i| (0, page_view(&format!("a{i}"), T0 + i * 1000, &format!("u{}", i % 7))))
                    .collect();
                send(&brokers, "skewed", &records);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let db = TestDb::new("kafka_idle");
    let mut child = Command::new(BIN)
        .args(["process", "--brokers", &brokers, "--topic", "skewed", "--idle-timeout", "3s", "--postgres", &db.url, "--quiet"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = db.client();
    // Once partition 1 is idle, W follows partition 0 alone, up to T0 + 599 s − 60 s:
    // the eight windows ending by then become final while the processor runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let final_windows = loop {
        let n: i64 = client.query_one("SELECT count(*) FROM traffic WHERE is_final", &[]).map(|r| r.get(0)).unwrap_or(0);
        if n >= 8 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    live.join().unwrap();
    assert_eq!(final_windows, 8, "windows before W are final while the processor runs");
    std::thread::sleep(Duration::from_secs(1));
    let open: i64 = client.query_one("SELECT count(*) FROM traffic WHERE NOT is_final", &[]).unwrap().get(0);
    assert_eq!(open, 2, "the windows after W stay open");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM stops cleanly: {status}");
    let open: i64 = client.query_one("SELECT count(*) FROM traffic WHERE NOT is_final", &[]).unwrap().get(0);
    assert_eq!(open, 2, "stopping does not pretend open windows are final");
    let events: i64 = client.query_one("SELECT count(*) FROM events_raw", &[]).unwrap().get(0);
    assert_eq!(events, 601);
}

#[test]
fn a_partition_far_behind_is_not_late() {
    let cluster = mock_broker("behind", 2);
    let brokers = cluster.bootstrap_servers();
    // Partition 0 is an hour ahead of partition 1.
    let mut records: Vec<(i32, String)> =
        (0..300).map(|i| (0, page_view(&format!("ahead{i}"), T0 + 3_600_000 + i * 2000, "fast"))).collect();
    records.extend((0..300).map(|i| (1, page_view(&format!("behind{i}"), T0 + i * 2000, "slow"))));
    send(&brokers, "behind", &records);

    let db = TestDb::new("kafka_behind");
    clickflow(&["process", "--brokers", &brokers, "--topic", "behind", "--until-idle", "2s", "-w", "2", "--postgres", &db.url, "--quiet"]);
    let mut client = db.client();
    assert_eq!(dead_letter_reasons(&mut client), BTreeMap::new(), "nothing late, nothing dead-lettered");
    let (events, sessions): (i64, i64) = {
        let r = client.query_one("SELECT (SELECT count(*) FROM events_raw), (SELECT count(*) FROM sessions WHERE is_final)", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((events, sessions), (600, 2));
}
