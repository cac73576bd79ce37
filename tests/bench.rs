//! `clickflow bench` in the short mode CI runs: every stage reports well-formed figures,
//! and the plain baseline and the dataflow agree on the rows they produced. Nothing
//! here asserts a speed: figures are read by people, from the README's commands.

mod support;

use serde_json::Value;
use support::*;

#[test]
fn every_stage_reports_its_figures_and_the_dataflow_agrees_with_the_baseline() {
    let dir = scratch("bench");
    let file = dir.join("events.jsonl");
    let file = file.to_str().unwrap();
    clickflow(&[
        "produce",
        "--events",
        "20000",
        "--seed",
        "5",
        "--out",
        file,
        "--duplicates",
        "0.01",
        "--late",
        "0.002",
        "--malformed",
        "0.002",
    ]);
    let lines = read_lines(std::path::Path::new(file)).len() as u64;
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");

    let out = clickflow(&["bench", "--input", file, "--json", "-w", "1,2", "--postgres", &server]);
    let results: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let stages: Vec<(String, u64)> =
        results.iter().map(|r| (r["stage"].as_str().unwrap().to_owned(), r["workers"].as_u64().unwrap())).collect();
    let expected = [
        ("plain batch baseline", 1),
        ("dataflow core (pre-parsed)", 1),
        ("dataflow core (pre-parsed)", 2),
        ("parse + dataflow", 1),
        ("file -> PostgreSQL", 1),
        ("file -> PostgreSQL", 2),
    ];
    assert_eq!(stages, expected.map(|(s, w)| (s.to_owned(), w)), "the stages, in order");
    for r in &results {
        assert_eq!(r["events"].as_u64(), Some(lines), "every stage reads the whole file: {r}");
        assert!(r["seconds"].as_f64().unwrap() > 0.0 && r["peak_mib"].as_f64().unwrap() > 0.0, "figures are measured: {r}");
    }
    let rows: Vec<u64> = results[..4].iter().map(|r| r["final_rows"].as_u64().unwrap()).collect();
    assert!(rows[0] > 100 && rows.iter().all(|n| *n == rows[0]), "baseline, core -w1, -w2 and parse give the same rows: {rows:?}");
    for r in &results[1..4] {
        let (p50, p99) = (r["latency_p50_ms"].as_f64().unwrap(), r["latency_p99_ms"].as_f64().unwrap());
        assert!(0.0 <= p50 && p50 <= p99, "window end -> final row latency is measured: {r}");
    }

    // The file stage wrote every table of a real database.
    let mut client =
        postgres::Client::connect(&format!("{}/clickflow_bench", server.rsplit_once('/').unwrap().0), postgres::NoTls).unwrap();
    let final_rows: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM sessions WHERE is_final) + (SELECT count(*) FROM traffic WHERE is_final)
                  + (SELECT count(*) FROM product_stats WHERE is_final) + (SELECT count(*) FROM funnel WHERE is_final)
                  + (SELECT count(*) FROM conversion WHERE is_final) + (SELECT count(*) FROM cohort_retention WHERE is_final)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(final_rows as u64, rows[0], "the file stage's tables hold the baseline's rows, all final");
}
