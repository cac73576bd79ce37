//! Property: for random clickstreams in any arrival order, over one to three partitions
//! (some falling idle), the dataflow's final tables equal the batch reference, whatever
//! the number of workers and the epoch size; and update mode holds on the way.
//!
//! 256 cases per property by default; `PROPTEST_CASES=N` runs more.

use std::sync::{Arc, Mutex};

use dataflows::event::EventType;
use dataflows::ingest::{Ingest, InputState};
use dataflows::pipeline::{build, Settings};
use dataflows::rows::{Change, SourceProgress};
use dataflows::time::{format_rfc3339, Millis};
use proptest::prelude::*;
use reference::{Arrival, Tables};

const NOW: Millis = 1_800_000_000_000;
const T0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z
const DELAY: Millis = 60_000;
const IDLE: Millis = 30_000;
const HORIZON: Millis = 86_400_000;

fn settings() -> Settings {
    // Short windows and gaps so that small inputs cross many boundaries.
    // Every final session in session_risk: the property covers its plumbing whatever the scores.
    Settings { session_gap: 5 * 60_000, traffic_window: 60_000, stats_window: 10 * 60_000, risk_threshold: 0 }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

fn name(partition: usize) -> String {
    format!("test/{partition}")
}

/// Runs the graph over `arrivals` on worker 0, `epoch_len` messages per epoch, as the
/// processor does: every partition declared before the first message, each admitted
/// against the shared watermark clock at its arrival's wall-clock time.
fn run(arrivals: &[Arrival], partitions: usize, workers: usize, epoch_len: usize) -> Tables {
    let arrivals = Arc::new(arrivals.to_vec());
    let updates = Arc::new(Mutex::new(Vec::new()));
    let sink = updates.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let sink = sink.clone();
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, changes) = build(scope, settings(), None);
            changes.inspect(move |update| sink.lock().unwrap().push(update.clone()));
            inputs
        });
        if worker.index() == 0 {
            let start = arrivals.first().map_or(NOW, |a| a.now);
            let input = InputState::new(DELAY, IDLE, HORIZON);
            for p in 0..partitions {
                input.register(&name(p), start);
            }
            let mut ingests: Vec<Ingest> = (0..partitions).map(|p| Ingest::new(input.clone(), &name(p), start)).collect();
            for (chunk_no, chunk) in arrivals.chunks(epoch_len).enumerate() {
                for (i, a) in chunk.iter().enumerate() {
                    inputs.admit(&mut ingests[a.partition], &a.bytes, a.now, || format!("test:{}", chunk_no * epoch_len + i + 1));
                }
                let watermark = input.watermark(chunk[chunk.len() - 1].now);
                for (p, ingest) in ingests.iter().enumerate() {
                    let progress = SourceProgress {
                        source: name(p),
                        counts: ingest.counts(),
                        watermark,
                        max_event_time: ingest.max_event_time(),
                        lag: None,
                        position: Default::default(),
                    };
                    inputs.record(Change::Progress(progress));
                }
                inputs.end_epoch(watermark);
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
    /// Event time: `day` days after the hour before T0's midnight, plus `offset_ms` (up
    /// to two hours): a stream clustered around three midnights, so that users come
    /// back on later days and out-of-order events cross a day's end.
    day: u8,
    offset_ms: u32,
    kind: u8,
    product: u8,
    category: u8,
    price_cents: u32,
    quantity: u8,
    jitter_ms: u32,
    duplicate: bool,
    device: u8,
    country: u8,
    referrer: u8,
    /// Partition weight: most go to the first partitions, few to the last, which idles.
    partition: u8,
    /// Wall-clock milliseconds since the previous arrival.
    pause_ms: u16,
}

fn spec() -> impl Strategy<Value = Spec> {
    let event = (0u8..6, (0u8..3, 0u32..7_200_000), 0u8..7, 0u8..4, 0u8..3, 0u32..100_000, 1u8..4);
    let delivery = (0u32..59_000, prop::bool::weighted(0.05), 0u8..3, 0u8..3, 0u8..3, 0u8..20, 0u16..2000);
    (event, delivery).prop_map(
        |(
            (user, (day, offset_ms), kind, product, category, price_cents, quantity),
            (jitter_ms, duplicate, device, country, referrer, partition, pause_ms),
        )| Spec {
            user,
            day,
            offset_ms,
            kind,
            product,
            category,
            price_cents,
            quantity,
            jitter_ms,
            duplicate,
            device,
            country,
            referrer,
            partition,
            pause_ms,
        },
    )
}

/// The event time of `s`.
fn time_of(s: &Spec) -> Millis {
    T0 + Millis::from(s.day) * 86_400_000 - 3_600_000 + Millis::from(s.offset_ms)
}

/// The event of `s` as the contract's JSON, at `time`.
fn line(id: &str, s: &Spec, time: Millis) -> Vec<u8> {
    let t = EventType::ALL[s.kind as usize];
    let product = match t {
        EventType::ProductView | EventType::AddToCart | EventType::RemoveFromCart | EventType::Purchase => {
            format!(r#","product_id":"P{}","category":"c{}""#, s.product, s.category)
        }
        _ => String::new(),
    };
    let price = format!(r#","price":{}.{:02},"quantity":{}"#, s.price_cents / 100, s.price_cents % 100, s.quantity);
    // A user's purchases of one day are one order (bought together), but those of one
    // unit, which are orders of their own.
    let order = match t {
        EventType::Purchase if s.quantity > 1 => format!(r#","order_id":"o{}-{}""#, s.user, s.day),
        _ => String::new(),
    };
    format!(
        r#"{{"event_id":"{id}","event_time":"{}","event_type":"{}","user_id":"u{}","page":"/p{}"{product}{price}{order},"device":"{}","country":"{}","referrer":"{}","user_agent":"ua","ip":"10.0.0.{}"}}"#,
        format_rfc3339(time),
        t.as_str(),
        s.user,
        s.kind,
        ["desktop", "mobile", "tablet"][s.device as usize],
        ["DE", "FR", "US"][s.country as usize],
        ["direct", "search", "ads"][s.referrer as usize],
        s.user
    )
    .into_bytes()
}

/// Which of `partitions` a spec's messages go to: the last partition gets about one in
/// twenty, so it often falls idle.
fn partition_of(s: &Spec, partitions: usize) -> usize {
    match partitions {
        1 => 0,
        n if s.partition == 0 => n - 1,
        n => usize::from(s.partition) % (n - 1),
    }
}

/// Events in time order, each delayed by less than the watermark delay, plus duplicates
/// and, every `probe_every` messages, probes at W − 1, W and W + 1 of the partition's own
/// watermark; wall-clock time advancing by each spec's pause.
fn arrivals(specs: &[Spec], partitions: usize, probe_every: usize) -> Vec<Arrival> {
    let mut keyed: Vec<(Millis, usize, bool)> = Vec::new();
    for (id, s) in specs.iter().enumerate() {
        keyed.push((time_of(s) + Millis::from(s.jitter_ms), id, false));
        if s.duplicate {
            keyed.push((time_of(s) + Millis::from(s.jitter_ms) + 1, id, true));
        }
    }
    keyed.sort();
    let mut out = Vec::new();
    let mut now = NOW;
    let mut largest: Vec<Option<Millis>> = vec![None; partitions];
    for (n, (_, id, _)) in keyed.into_iter().enumerate() {
        let s = &specs[id];
        let (p, time) = (partition_of(s, partitions), time_of(s));
        now += Millis::from(s.pause_ms);
        out.push(Arrival { partition: p, now, bytes: line(&format!("e{id}"), s, time) });
        largest[p] = Some(largest[p].map_or(time, |m| m.max(time)));
        if n % probe_every == probe_every - 1 {
            let w = largest[p].unwrap() - DELAY;
            for delta in [-1, 0, 1] {
                out.push(Arrival { partition: p, now, bytes: line(&format!("probe{n}{delta}"), s, w + delta) });
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn dataflow_equals_batch_reference(
        specs in prop::collection::vec(spec(), 1..120),
        epoch_len in 1usize..40,
        partitions in 1usize..=3,
        probe_every in 3usize..30,
    ) {
        let arrivals = arrivals(&specs, partitions, probe_every);
        let expected = reference::compute_partitioned(&arrivals, partitions, DELAY, IDLE, settings());
        prop_assert!(!expected.events.is_empty());
        for workers in [1, 2] {
            prop_assert_eq!(&run(&arrivals, partitions, workers, epoch_len), &expected, "-w{}", workers);
        }
    }

    #[test]
    fn late_and_bad_lines_match_too(
        specs in prop::collection::vec(spec(), 1..80),
        epoch_len in 1usize..20,
        partitions in 1usize..=3,
    ) {
        // Arbitrary order: much arrives late. Sprinkle malformed lines.
        let mut arrivals: Vec<Arrival> = Vec::new();
        let mut now = NOW;
        for (id, s) in specs.iter().enumerate() {
            now += Millis::from(s.pause_ms);
            let partition = partition_of(s, partitions);
            if id % 9 == 0 {
                arrivals.push(Arrival { partition, now, bytes: b"{\"event_id\": 1".to_vec() });
            }
            arrivals.push(Arrival { partition, now, bytes: line(&format!("e{id}"), s, time_of(s)) });
        }
        let expected = reference::compute_partitioned(&arrivals, partitions, DELAY, IDLE, settings());
        for workers in [1, 2] {
            prop_assert_eq!(&run(&arrivals, partitions, workers, epoch_len), &expected, "-w{}", workers);
        }
    }
}
