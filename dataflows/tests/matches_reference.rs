//! Property: for random clickstreams in any arrival order, the dataflow's final tables
//! equal the batch reference, whatever the number of workers and the epoch size.

use std::sync::{Arc, Mutex};

use dataflows::event::EventType;
use dataflows::ingest::Ingest;
use dataflows::pipeline::{build, Settings};
use dataflows::rows::{Change, SourceProgress};
use dataflows::time::{format_rfc3339, Millis};
use proptest::prelude::*;
use reference::Tables;

const NOW: Millis = 1_800_000_000_000;
const T0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z
const DELAY: Millis = 60_000;

fn settings() -> Settings {
    // Short windows and gaps so that small inputs cross many boundaries.
    Settings { session_gap: 5 * 60_000, traffic_window: 60_000, stats_window: 10 * 60_000 }
}

/// Runs the graph over `lines` as one partition, `epoch_len` lines per epoch.
fn run(lines: Vec<Vec<u8>>, workers: usize, epoch_len: usize) -> Tables {
    let lines = Arc::new(lines);
    let updates = Arc::new(Mutex::new(Vec::new()));
    let sink = updates.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let sink = sink.clone();
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, changes) = build(scope, settings());
            changes.inspect(move |update| sink.lock().unwrap().push(update.clone()));
            inputs
        });
        if worker.index() == 0 {
            let mut ingest = Ingest::single(DELAY, 86_400_000);
            for (chunk_no, chunk) in lines.chunks(epoch_len).enumerate() {
                for (i, line) in chunk.iter().enumerate() {
                    inputs.admit(&mut ingest, line, NOW, || format!("test:{}", chunk_no * epoch_len + i + 1));
                }
                let progress = SourceProgress { source: "test".into(), counts: ingest.counts(), watermark: ingest.watermark(NOW), max_event_time: ingest.max_event_time(), lag: None, position: Default::default() };
                inputs.record(Change::Progress(progress));
                inputs.end_epoch(ingest.watermark(NOW));
                worker.step();
            }
            inputs.end_epoch(Millis::MAX);
        }
        drop(inputs);
        while worker.step_or_park(None) {}
    })
    .expect("timely runs");
    let updates = std::mem::take(&mut *updates.lock().unwrap());
    if let Err(breach) = reference::check_finality(&updates) {
        panic!("update mode broken: {breach}");
    }
    Tables::from_changes(updates.into_iter().map(|(change, _, diff)| (change, diff)))
}

#[derive(Debug, Clone)]
struct Spec {
    user: u8,
    offset_s: u32,
    kind: u8,
    product: u8,
    price_cents: u32,
    quantity: u8,
    jitter_s: u32,
    duplicate: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (0u8..6, 0u32..7200, 0u8..7, 0u8..4, 0u32..100_000, 1u8..4, 0u32..59, prop::bool::weighted(0.05)).prop_map(
        |(user, offset_s, kind, product, price_cents, quantity, jitter_s, duplicate)| Spec { user, offset_s, kind, product, price_cents, quantity, jitter_s, duplicate },
    )
}

fn line(id: usize, s: &Spec) -> Vec<u8> {
    let t = EventType::ALL[s.kind as usize];
    let time = format_rfc3339(T0 + Millis::from(s.offset_s) * 1000 + (id as Millis % 7));
    let product = match t {
        EventType::ProductView | EventType::AddToCart | EventType::RemoveFromCart | EventType::Purchase => {
            format!(r#","product_id":"P{}","category":"c{}""#, s.product, s.product % 2)
        }
        _ => String::new(),
    };
    let price = format!(r#","price":{}.{:02},"quantity":{}"#, s.price_cents / 100, s.price_cents % 100, s.quantity);
    let devices = ["desktop", "mobile", "tablet"];
    format!(
        r#"{{"event_id":"e{id}","event_time":"{time}","event_type":"{}","user_id":"u{}","page":"/p{}"{product}{price},"device":"{}","country":"DE","referrer":"direct","user_agent":"ua","ip":"10.0.0.{}"}}"#,
        t.as_str(),
        s.user,
        s.kind,
        devices[(s.user % 3) as usize],
        s.user
    )
    .into_bytes()
}

/// Events in time order, each delayed by less than the watermark delay, plus duplicates.
fn arrivals(specs: &[Spec]) -> Vec<Vec<u8>> {
    let mut keyed: Vec<(u32, usize, Vec<u8>)> = Vec::new();
    for (id, s) in specs.iter().enumerate() {
        keyed.push((s.offset_s + s.jitter_s, id, line(id, s)));
        if s.duplicate {
            keyed.push((s.offset_s + s.jitter_s + 1, id, line(id, s)));
        }
    }
    keyed.sort();
    keyed.into_iter().map(|(_, _, l)| l).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn dataflow_equals_batch_reference(specs in prop::collection::vec(spec(), 1..120), epoch_len in 1usize..40) {
        let lines = arrivals(&specs);
        let expected = reference::compute(&lines, DELAY, settings(), NOW);
        prop_assert!(expected.dead_letters.is_empty(), "disorder within the delay makes nothing late");
        let one = run(lines.clone(), 1, epoch_len);
        prop_assert_eq!(&one, &expected);
        let two = run(lines, 2, epoch_len);
        prop_assert_eq!(&two, &expected);
    }

    #[test]
    fn late_and_bad_lines_match_too(specs in prop::collection::vec(spec(), 1..80), epoch_len in 1usize..20) {
        // Arbitrary order: much arrives late. Sprinkle malformed lines.
        let mut lines: Vec<Vec<u8>> = specs.iter().enumerate().map(|(id, s)| line(id, s)).collect();
        for i in (0..lines.len()).step_by(9) {
            lines.insert(i, b"{\"event_id\": 1".to_vec());
        }
        let expected = reference::compute(&lines, DELAY, settings(), NOW);
        prop_assert_eq!(&run(lines.clone(), 2, epoch_len), &expected);
    }
}
