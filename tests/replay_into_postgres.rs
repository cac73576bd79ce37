//! produce → process into a real PostgreSQL → every table equals the batch reference;
//! replaying the same file changes nothing; `-w 2` writes the same tables as `-w 1`.

mod support;

use dataflows::event::Reason;
use dataflows::pipeline::Settings;
use support::*;

const DELAY_MS: i64 = 60_000;

#[test]
fn replay_matches_reference_and_is_idempotent() {
    let dir = scratch("replay");
    let file = dir.join("events.jsonl");
    let file = file.to_str().unwrap();
    clickflow(&[
        "produce",
        "--events",
        "20000",
        "--seed",
        "7",
        "--out",
        file,
        "--duplicates",
        "0.02",
        "--out-of-order",
        "0.1",
        "--late",
        "0.003",
        "--malformed",
        "0.003",
    ]);
    let lines = read_lines(std::path::Path::new(file));
    let expected = reference::compute(&lines, DELAY_MS, Settings::default(), now_ms());
    assert!(expected.duplicates > 0 && expected.dead_letters.values().any(|r| *r == Reason::Late), "the sample exercises faults");

    let db = TestDb::new("replay");
    let summary = clickflow(&["process", "--input", file, "--postgres", &db.url]);
    assert!(summary.contains("events_raw"), "a summary is printed: {summary}");
    let mut client = db.client();
    assert_tables_eq(&actual_tables(&mut client), &expected_tables(&expected));
    assert_eq!(derived_column_breaches(&mut client), Vec::<String>::new());

    // Every line is accounted for exactly once.
    let want_dead: Vec<(usize, String)> = expected.dead_letters.iter().map(|(l, r)| (*l, r.as_str().to_owned())).collect();
    let got_dead: Vec<(usize, String)> = dead_letters(&mut client).into_iter().collect();
    assert_eq!(got_dead, want_dead);
    let progress = client
        .query_one(
            "SELECT input_events, duplicate_events, dead_letters, late_events, watermark = 'infinity', open_sessions
             FROM pipeline_progress ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    let (input, duplicates, dead, late): (i64, i64, i64, i64) = (progress.get(0), progress.get(1), progress.get(2), progress.get(3));
    assert_eq!(input as usize, lines.len());
    assert_eq!(duplicates as u64, expected.duplicates);
    assert_eq!(dead as usize, expected.dead_letters.len());
    assert_eq!(late as usize, expected.dead_letters.values().filter(|r| **r == Reason::Late).count());
    assert_eq!(input as usize, expected.events.len() + duplicates as usize + dead as usize, "accounting identity");
    assert!(progress.get::<_, bool>(4), "the last report has W = +infinity");
    assert_eq!(progress.get::<_, i64>(5), 0, "no session left open");

    // Replaying the same file changes nothing, not even update times.
    let before = snapshot(&mut client);
    clickflow(&["process", "--input", file, "--postgres", &db.url, "--quiet"]);
    assert_eq!(snapshot(&mut client), before);

    // Two workers write the same tables.
    let db2 = TestDb::new("replay_w2");
    clickflow(&["process", "--input", file, "--postgres", &db2.url, "-w", "2", "--epoch-events", "777", "--quiet"]);
    assert_tables_eq(&actual_tables(&mut db2.client()), &expected_tables(&expected));
}

/// Every row of every result table, including update times, as one digest per table.
fn snapshot(client: &mut postgres::Client) -> Vec<(String, String)> {
    ["events_raw", "sessions", "traffic", "product_stats", "funnel", "conversion", "dead_letters"]
        .iter()
        .map(|t| {
            let digest: String = client
                .query_one(&format!("SELECT coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {t} x"), &[])
                .unwrap()
                .get(0);
            (t.to_string(), digest)
        })
        .collect()
}
