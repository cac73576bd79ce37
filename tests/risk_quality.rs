//! The quality targets of session_risk, end to end and as a user measures them: a
//! simulated stream with bots (`produce --bots --labels`), replayed by the processor,
//! then `clickflow evaluate --json` against the labels, which the processor never reads.
//! Targets: recall of at least 95 % for every bot kind, false positives on at most 1 %
//! of the shoppers' sessions; at the low and the high end of the bot fractions.

mod support;

use serde_json::Value;
use support::*;

fn quality(bots: &str, seed: &str) -> Value {
    let dir = scratch(&format!("risk-quality-{bots}"));
    let (events, labels) = (dir.join("events.jsonl"), dir.join("labels.csv"));
    let (events, labels) = (events.to_str().unwrap(), labels.to_str().unwrap());
    // Two days: the second is scored by a forest trained on the first.
    let produce =
        ["produce", "--days", "2", "--events-per-second", "0.4", "--seed", seed, "--bots", bots, "--labels", labels, "--out", events];
    clickflow(&produce);
    let db = TestDb::new("risk_quality");
    clickflow(&["process", "--input", events, "--postgres", &db.url, "--quiet"]);
    let mut client = db.client();
    let forests: i64 =
        client.query_one("SELECT count(*) FROM risk_models WHERE jsonb_typeof(model->'forest') = 'object'", &[]).unwrap().get(0);
    assert!(forests >= 1, "the second day is scored by a forest");
    serde_json::from_str(&clickflow(&["evaluate", "--labels", labels, "--postgres", &db.url, "--json"])).unwrap()
}

fn assert_targets(q: &Value) {
    let kinds = q["kinds"].as_object().unwrap();
    assert_eq!(kinds.len(), 3, "every bot kind has sessions: {q}");
    for (kind, t) in kinds {
        let (sessions, flagged) = (t["sessions"].as_u64().unwrap(), t["flagged"].as_u64().unwrap());
        assert!(sessions >= 10, "{kind}: {sessions} sessions");
        assert!(flagged * 100 >= sessions * 95, "{kind}: recall {flagged} of {sessions}");
    }
    let (humans, false_positives) = (q["humans"]["sessions"].as_u64().unwrap(), q["humans"]["flagged"].as_u64().unwrap());
    assert!(humans > 5_000, "{humans} shoppers' sessions");
    assert!(false_positives * 100 <= humans, "false positives: {false_positives} of {humans}");
    assert_eq!(q["labels_without_session"], 0, "every labelled visit is a session of the processor's");
}

#[test]
fn few_bots_are_found_and_shoppers_spared() {
    assert_targets(&quality("0.005", "31"));
}

#[test]
fn many_bots_are_found_and_shoppers_spared() {
    assert_targets(&quality("0.05", "32"));
}
