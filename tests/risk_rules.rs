//! The reasons vocabulary against the truth: a simulated day with bots of every kind
//! (`produce --bots --labels`), its sessions split as the contract says, each scored by
//! the rules alone (`dataflows::risk::rules`), then recall per bot kind and the share of
//! shoppers' sessions flagged, from the labels the processor never reads.

mod support;

use std::collections::{BTreeMap, HashMap};

use dataflows::event::parse_event;
use dataflows::operators::sessions::Click;
use dataflows::risk::features::Features;
use dataflows::risk::rules::reasons;
use support::*;

const GAP: i64 = 30 * 60_000;

#[test]
fn the_rules_find_every_bot_kind_and_spare_shoppers() {
    let dir = scratch("risk-rules");
    let (events, labels) = (dir.join("events.jsonl"), dir.join("labels.csv"));
    let (events, labels) = (events.to_str().unwrap(), labels.to_str().unwrap());
    clickflow(&[
        "produce",
        "--days",
        "1",
        "--events-per-second",
        "1",
        "--seed",
        "12",
        "--bots",
        "0.03",
        "--labels",
        labels,
        "--out",
        events,
    ]);
    let kind_of: HashMap<String, String> = std::fs::read_to_string(labels)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|r| (r[0].to_owned(), r[2].to_owned()))
        .collect();

    let mut by_user: HashMap<String, Vec<Click>> = HashMap::new();
    for line in std::fs::read_to_string(events).unwrap().lines() {
        let event = parse_event(line.as_bytes(), i64::MAX).expect("the simulator writes valid events");
        let (user, click) = Click::of(&event);
        by_user.entry(user.to_string()).or_default().push(click);
    }
    // Per kind ("human" for shoppers): sessions, and those the rules flag.
    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (user, mut clicks) in by_user {
        clicks.sort();
        let kind = kind_of.get(&user).cloned().unwrap_or_else(|| "human".into());
        let mut start = 0;
        for i in 1..=clicks.len() {
            if i == clicks.len() || clicks[i].time - clicks[i - 1].time >= GAP {
                let flagged = !reasons(&Features::of(&clicks[start..i])).is_empty();
                let t = tally.entry(kind.clone()).or_default();
                t.0 += 1;
                t.1 += usize::from(flagged);
                start = i;
            }
        }
    }
    for (kind, (sessions, flagged)) in &tally {
        println!("{kind}: {flagged} of {sessions} sessions flagged ({:.1} %)", 100.0 * *flagged as f64 / *sessions as f64);
    }
    assert_eq!(tally.len(), 4, "shoppers and three kinds of bots: {tally:?}");
    for (kind, (sessions, flagged)) in &tally {
        if kind == "human" {
            assert!(*flagged * 100 <= *sessions, "false positives over 1 % of shoppers' sessions: {flagged} of {sessions}");
        } else {
            assert!(*sessions >= 20 && *flagged * 100 >= *sessions * 95, "{kind}: recall under 95 %: {flagged} of {sessions}");
        }
    }
}
