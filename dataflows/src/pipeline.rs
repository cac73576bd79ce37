//! The clickflow graph: accepted events and watermarks in, table changes out.
//!
//! ```text
//! events ──┬─ Click ── Sessionize ──┬─ Funnel ─────┐
//!          │                        ├─ Conversion ─┤
//!          │                        └──────────────┤
//!          ├─ Hit ──── Traffic ────────────────────┤
//!          ├─ ProductHit ─ ProductStats ───────────┼──▶ Change
//!          └───────────────────────────────────────┘   (events_raw)
//! watermarks ─ broadcast ─▶ every stateful operator
//! ```
//! Owns the wiring and the partitioning keys; no state of its own, no I/O.

use std::hash::{DefaultHasher, Hash, Hasher};

use differential_dataflow::VecCollection;
use timely::dataflow::operators::vec::Broadcast;

use crate::event::Event;
use crate::operators::aggregates::{dimensions, Conversion, Funnel, Hit, ProductHit, ProductStats, SessionOutcome, Traffic};
use crate::operators::by_epoch::{ByEpoch, Watermarks};
use crate::operators::sessions::{Click, Sessionize};
use crate::operators::windows::Windowed;
use crate::rows::Change;
use crate::time::{window_start, Millis};

/// The knobs of CONTRACT §2–3, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub session_gap: Millis,
    pub traffic_window: Millis,
    pub stats_window: Millis,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { session_gap: 30 * 60_000, traffic_window: 60_000, stats_window: 3_600_000 }
    }
}

/// Worker routing for a key: a fixed hash, the same in every process.
pub fn route<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Builds the graph. `events` must hold only accepted events (valid, on time, new),
/// each inserted once; `watermarks` carries `(epoch, W)` from the sources.
pub fn clickstream<'scope>(
    events: VecCollection<'scope, u64, Event>,
    watermarks: Watermarks<'scope>,
    settings: Settings,
) -> VecCollection<'scope, u64, Change> {
    let Settings { session_gap, traffic_window, stats_window } = settings;
    let watermarks = watermarks.broadcast();

    let sessions = events
        .clone()
        .map(|e| Click::of(&e))
        .by_epoch(watermarks.clone(), |(user, _)| route(user), "Sessions", Sessionize::new(session_gap));

    let traffic = events
        .clone()
        .map(move |e| (window_start(e.event_time, traffic_window), (), Hit::of(&e)))
        .by_epoch(watermarks.clone(), |(start, _, _)| route(start), "Traffic", Windowed::<Traffic>::new(traffic_window));

    let products = events
        .clone()
        .flat_map(move |e| ProductHit::of(&e).map(|(product, hit)| (window_start(hit.time, stats_window), product, hit)))
        .by_epoch(watermarks.clone(), |(start, product, _)| route(&(start, product)), "ProductStats", Windowed::<ProductStats>::new(stats_window));

    let funnel = sessions
        .clone()
        .map(move |s| (window_start(s.session_start, stats_window), (), s))
        .by_epoch(watermarks.clone(), |(start, _, _)| route(start), "Funnel", Windowed::<Funnel>::new(stats_window));

    let conversion = sessions
        .clone()
        .flat_map(move |s| {
            let start = window_start(s.session_start, stats_window);
            let outcome = SessionOutcome::of(&s);
            dimensions(&s).map(|(dimension, value)| (start, (dimension.to_owned(), value), outcome.clone()))
        })
        .by_epoch(watermarks, |(start, group, _)| route(&(start, group)), "Conversion", Windowed::<Conversion>::new(stats_window));

    events.map(Change::Event).concatenate([
        sessions.map(Change::Session),
        traffic.map(Change::Traffic),
        products.map(Change::Product),
        funnel.map(Change::Funnel),
        conversion.map(Change::Conversion),
    ])
}
