//! The clickflow graph: accepted events and watermarks in, table changes out.
//!
//! ```text
//! accepted event ─┬─ Click ────── Sessionize ──┬─ Funnel ───────────────────┐
//!  (Inputs::      │                            ├─ Conversion ───────────────┤
//!   accept)       │                            ├─ final: Similar (1 worker) ┤
//!                 │                            └────────────────────────────┤
//!                 ├─ Hit ──────── Traffic ──────────────────────────────────┤
//!                 ├─ ProductHit ─ ProductStats ─────────────────────────────┼──▶ Change
//!                 ├─ activity ─── Cohorts ─── Retention ────────────────────┤
//!                 ├─ purchases, days ─┬─ Rfm (one worker) ──────────────────┤
//!                 │                   └─ Pairs (one worker) ────────────────┤
//!                 └─ the event itself ──────────────────────────────────────┘   (events_raw)
//! watermarks ─ broadcast ─▶ every stateful operator
//! ```
//! An event is split into what each operator needs as it enters, so that no stream of
//! whole events is copied for each consumer. Owns the wiring and the partitioning keys;
//! no state of its own, no I/O.
//!
//! Built for a cluster of processes ([`build`] with an [`InputState`]), two more paths
//! carry what one process's admission cannot see: each partition's clock (and a stop) is
//! broadcast as a [`Notice`] to every worker, which takes it into its process's
//! [`InputState`]; and an
//! accepted event first goes, as a [`Candidate`], to the worker owning its id
//! ([`Dedupe`]), and is split only if no other process accepted it first.

use std::hash::{DefaultHasher, Hash, Hasher};

use differential_dataflow::input::{Input as _, InputSession};
use differential_dataflow::VecCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Input as _;
use timely::dataflow::operators::Inspect;
use timely::dataflow::{InputHandle, Scope};

use crate::event::{Event, Text};
use crate::ingest::{Admission, Ingest, InputState, Notice};
use crate::operators::aggregates::{dimensions, Conversion, Funnel, Hit, ProductHit, ProductStats, SessionOutcome, Traffic};
use crate::operators::by_epoch::{ByEpoch, Watermarks};
use crate::operators::cohorts::{Cohorts, Retention, Seen, DAY};
use crate::operators::dedupe::{Candidate, Dedupe, Verdict};
use crate::operators::pairs::Pairs;
use crate::operators::rfm::Rfm;
use crate::operators::risk::{Assess, Assessed, FinalSession, Risk};
use crate::operators::sales::{NewDays, Order, Purchase, Sale};
use crate::operators::sessions::{Click, Sessionize};
use crate::operators::similar::{Similar, Viewed};
use crate::operators::windows::Windowed;
use crate::risk::features::Features;
use crate::rows::{Change, DeadLetter, ModelRow};
use crate::time::{window_start, Millis};

/// The epoch in which a restarted processor feeds back the events its open rows were
/// computed from, with the committed watermark: it rebuilds every operator's state, and
/// what it emits is already in the database. Live input starts at the next epoch.
pub const RESTORE_EPOCH: u64 = 0;

/// The knobs of CONTRACT §2–3, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub session_gap: Millis,
    pub traffic_window: Millis,
    pub stats_window: Millis,
    /// `session_risk` holds the final sessions scoring at least this (0–100).
    pub risk_threshold: u8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { session_gap: 30 * 60_000, traffic_window: 60_000, stats_window: 3_600_000, risk_threshold: 70 }
    }
}

/// Worker routing for a key: a fixed hash, the same in every process.
pub fn route<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// What the operators take of the accepted events (each inserted once; see
/// [`Inputs::accept`]).
pub struct Feeds<'scope> {
    pub clicks: VecCollection<'scope, u64, (Text, Click)>,
    /// By traffic window.
    pub hits: VecCollection<'scope, u64, (Millis, (), Hit)>,
    /// By stats window and product.
    pub product_hits: VecCollection<'scope, u64, (Millis, Text, ProductHit)>,
    /// By user: their active days (and, restored, their first day).
    pub activity: VecCollection<'scope, u64, (Text, Seen)>,
    /// Purchases and the days that hold events, all to one worker.
    pub sales: VecCollection<'scope, u64, Sale>,
    /// The products viewed in final sessions a restart does not rebuild (see
    /// [`Inputs::restore_viewed`]); the others come from the sessions.
    pub viewed: VecCollection<'scope, u64, Viewed>,
    /// Restored: stored model versions and the sample's final sessions (see
    /// [`Inputs::restore_risk_version`], [`Inputs::restore_risk_sample`]).
    pub risk: VecCollection<'scope, u64, Assess>,
}

/// What the traffic operator takes of an event.
fn hit(event: &Event, settings: Settings) -> (Millis, (), Hit) {
    (window_start(event.event_time, settings.traffic_window), (), Hit::of(event))
}

/// What the product operator takes of an event, if it names a product.
fn product_hit(event: &Event, settings: Settings) -> Option<(Millis, Text, ProductHit)> {
    ProductHit::of(event).map(|(product, hit)| (window_start(hit.time, settings.stats_window), product, hit))
}

/// What the cohort operator takes of an event.
fn seen(event: &Event) -> (Text, Seen) {
    (event.user_id.clone(), Seen::Active { day: window_start(event.event_time, DAY), revenue_cents: event.revenue_cents() })
}

/// Builds the operators; `watermarks` carries `(epoch, W)` from the sources, broadcast.
pub fn clickstream<'scope>(feeds: Feeds<'scope>, watermarks: Watermarks<'scope>, settings: Settings) -> VecCollection<'scope, u64, Change> {
    let Settings { session_gap, traffic_window, stats_window, risk_threshold } = settings;

    let sessions = feeds.clicks.by_epoch(watermarks.clone(), |(user, _)| route(user), "Sessions", Sessionize::new(session_gap));

    let traffic =
        feeds.hits.by_epoch(watermarks.clone(), |(start, _, _)| route(start), "Traffic", Windowed::<Traffic>::new(traffic_window));

    let products = feeds.product_hits.by_epoch(
        watermarks.clone(),
        |(start, product, _)| route(&(start, product)),
        "ProductStats",
        Windowed::<ProductStats>::new(stats_window),
    );

    let funnel = sessions.clone().map(move |s| (window_start(s.session_start, stats_window), (), s)).by_epoch(
        watermarks.clone(),
        |(start, _, _)| route(start),
        "Funnel",
        Windowed::<Funnel>::new(stats_window),
    );

    let conversion = sessions
        .clone()
        .flat_map(move |s| {
            let start = window_start(s.session_start, stats_window);
            let outcome = SessionOutcome::of(&s);
            dimensions(&s).map(|(dimension, value)| (start, (Text::new_static(dimension), value), outcome.clone()))
        })
        .by_epoch(watermarks.clone(), |(start, group, _)| route(&(start, group)), "Conversion", Windowed::<Conversion>::new(stats_window));

    let members = feeds.activity.by_epoch(watermarks.clone(), |(user, _)| route(user), "Cohorts", Cohorts::default());
    let cohorts = members.by_epoch(watermarks.clone(), |m| route(&m.cohort()), "Retention", Retention::default());
    // Scores are ranks over every purchasing user: one worker holds them all.
    let mut new_days = NewDays::default();
    let sales = feeds.sales.filter(move |sale| new_days.keeps(sale));
    let rfm = sales.clone().by_epoch(watermarks.clone(), |_| 0, "Rfm", Rfm::default());
    // So do pairs: the count of all orders is in every lift.
    let pairs = sales.by_epoch(watermarks.clone(), |_| 0, "Pairs", Pairs::default());
    // The similar products and the risk scoring take the final sessions, each once.
    let finals = sessions.clone().flat_map(move |s| {
        let features = *s.features?;
        let (user_id, session_start, session_end) = (s.user_id, s.session_start, s.session_end);
        Some((FinalSession { final_at: session_end + session_gap, user_id, session_start, session_end, features }, s.viewed))
    });
    // A session's products are counted together.
    let viewed = finals.clone().flat_map(|(s, viewed)| (!viewed.is_empty()).then_some((s.final_at, viewed))).concat(feeds.viewed);
    let similar = viewed.by_epoch(watermarks.clone(), |_| 0, "Similar", Similar::default());
    // Each day's model version learns from a sample of them all.
    let risk = finals.map(|(s, _)| Assess::Final(s)).concat(feeds.risk).by_epoch(watermarks, |_| 0, "Risk", Risk::new(risk_threshold));

    sessions.map(Change::Session).concatenate([
        cohorts.map(Change::Cohort),
        rfm.map(Change::Rfm),
        pairs.map(Change::Pair),
        similar.map(Change::Similar),
        risk.map(|a| match a {
            Assessed::Risk(r) => Change::Risk(r),
            Assessed::Version(m) => Change::RiskModel(m),
        }),
        traffic.map(Change::Traffic),
        products.map(Change::Product),
        funnel.map(Change::Funnel),
        conversion.map(Change::Conversion),
    ])
}

/// A purchase as `events_raw` holds it, fed back by a restart.
pub struct RestoredPurchase {
    pub user: Text,
    pub time: Millis,
    pub order_id: Option<Text>,
    pub event_id: Text,
    pub product: Option<Text>,
    pub revenue_cents: i64,
}

/// The handles a source feeds: accepted events, the records that bypass aggregation
/// (dead letters, progress), and the watermark at the end of each epoch.
pub struct Inputs {
    clicks: InputSession<u64, (Text, Click), isize>,
    hits: InputSession<u64, (Millis, (), Hit), isize>,
    product_hits: InputSession<u64, (Millis, Text, ProductHit), isize>,
    activity: InputSession<u64, (Text, Seen), isize>,
    sales: InputSession<u64, Sale, isize>,
    viewed: InputSession<u64, Viewed, isize>,
    risk: InputSession<u64, Assess, isize>,
    records: InputSession<u64, Change, isize>,
    watermarks: InputHandle<u64, CapacityContainerBuilder<Vec<(u64, Millis)>>>,
    settings: Settings,
    /// In a cluster: accepted events on their way to [`Dedupe`], and notices (partition
    /// clocks, a stop) on their way to every process.
    cluster: Option<(InputSession<u64, Candidate, isize>, NoticeInput)>,
}

type NoticeInput = InputHandle<u64, CapacityContainerBuilder<Vec<Notice>>>;

impl Inputs {
    /// The epoch being filled.
    pub fn epoch(&self) -> u64 {
        *self.records.time()
    }

    /// An accepted event (see [`crate::ingest::Ingest`]).
    pub fn accept(&mut self, event: Event) {
        self.activity.insert(seen(&event));
        for record in Sale::of(&event) {
            self.sales.insert(record);
        }
        self.restore(event);
    }

    /// In the [`RESTORE_EPOCH`]: an event the open rows were computed from, for every
    /// operator but the cohorts, RFM and pairs, which are restored apart
    /// ([`Inputs::restore_user`], [`Inputs::restore_purchase`]). The similar products
    /// count the final sessions these events rebuild, and the earlier ones apart
    /// ([`Inputs::restore_viewed`]).
    pub fn restore(&mut self, event: Event) {
        self.clicks.insert(Click::of(&event));
        self.hits.insert(hit(&event, self.settings));
        if let Some(product_hit) = product_hit(&event, self.settings) {
            self.product_hits.insert(product_hit);
        }
        self.records.insert(Change::Event(event));
    }

    /// In the [`RESTORE_EPOCH`], for the cohorts (CONTRACT §7): `user`'s first accepted
    /// event was at `first`, and they were active on each of the open `days` (day start,
    /// revenue in cents that day).
    pub fn restore_user(&mut self, user: Text, first: Millis, days: impl IntoIterator<Item = (Millis, i64)>) {
        for (day, revenue_cents) in days {
            self.activity.insert((user.clone(), Seen::Active { day, revenue_cents }));
        }
        self.activity.insert((user, Seen::First { day: window_start(first, DAY) }));
    }

    /// In the [`RESTORE_EPOCH`], for the daily analytics (CONTRACT §7): a purchase,
    /// `order_id` or else its `event_id` naming its order.
    pub fn restore_purchase(&mut self, purchase: RestoredPurchase) {
        let RestoredPurchase { user, time, order_id, event_id, product, revenue_cents } = purchase;
        let order = order_id.map_or(Order::Event(event_id, time), Order::Id);
        self.sales.insert(Sale::Purchase(Purchase { user, time, order, product, revenue_cents }));
    }

    /// In the [`RESTORE_EPOCH`], for `product_similar`: the products viewed by a final
    /// session that the restored events do not rebuild (one that ended before the
    /// earliest open row: the restore feeds back every event from there on), and the
    /// time of its last event.
    pub fn restore_viewed(&mut self, session_end: Millis, viewed: impl IntoIterator<Item = Text>) {
        let viewed: std::collections::BTreeSet<Text> = viewed.into_iter().collect();
        if !viewed.is_empty() {
            self.viewed.insert((session_end + self.settings.session_gap, viewed.into_iter().collect()));
        }
    }

    /// In the [`RESTORE_EPOCH`], for `session_risk`: a stored model version, from the
    /// day of the earliest session the restore may make final again on.
    pub fn restore_risk_version(&mut self, version: ModelRow) {
        self.risk.insert(Assess::Version(version));
    }

    /// In the [`RESTORE_EPOCH`], for `session_risk`: a final session the restored events
    /// do not rebuild, among the [`crate::risk::score::SAMPLE`] with the smallest
    /// [`crate::risk::score::sample_key`] (the ones that can be in the sample), with its
    /// events.
    pub fn restore_risk_sample(&mut self, events: &[Event]) {
        let mut clicks: Vec<(Text, Click)> = events.iter().map(Click::of).collect();
        clicks.sort_by(|(_, a), (_, b)| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)));
        let (Some((user_id, first)), Some((_, last))) = (clicks.first(), clicks.last()) else { return };
        let session = FinalSession {
            final_at: last.time + self.settings.session_gap,
            user_id: user_id.clone(),
            session_start: first.time,
            session_end: last.time,
            features: Features::of(&clicks.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()),
        };
        self.risk.insert(Assess::Sampled(session));
    }

    /// In the [`RESTORE_EPOCH`], for the daily analytics: the latest event time accepted.
    pub fn restore_latest(&mut self, time: Millis) {
        self.sales.insert(Sale::Day(window_start(time, DAY)));
    }

    /// Decides one message with `ingest` and feeds the outcome: an accepted event, a
    /// dead letter from `source()` (called only then), or nothing for a duplicate. In a
    /// cluster an accepted event is a candidate for the dedupe between processes.
    pub fn admit(&mut self, ingest: &mut Ingest, bytes: &[u8], now: Millis, source: impl FnOnce() -> String) {
        match ingest.admit(bytes, now) {
            Admission::Accepted(event) => match &mut self.cluster {
                Some((candidates, _)) => {
                    candidates.insert(Candidate { source: ingest.partition().into(), number: ingest.counts().input, event })
                }
                None => self.accept(event),
            },
            Admission::Duplicate => {}
            Admission::Rejected(rejection) => self.record(Change::DeadLetter(DeadLetter::new(source(), rejection, bytes, now))),
        }
    }

    /// A dead letter or progress record, written with this epoch's rows.
    pub fn record(&mut self, change: Change) {
        self.records.insert(change);
    }

    /// Tells every process of a cluster how a partition read here stands, or that this
    /// one stops (nothing to do in a single process, whose workers share one clock).
    pub fn share(&mut self, notice: Notice) {
        if let Some((_, notices)) = &mut self.cluster {
            notices.send(notice);
        }
    }

    /// Ends the current epoch with the watermark as of its end and opens the next one.
    /// A source that has nothing to say still ends epochs, so that frontiers advance.
    pub fn end_epoch(&mut self, watermark: Millis) {
        let epoch = self.epoch();
        self.watermarks.send((epoch, watermark));
        self.clicks.advance_to(epoch + 1);
        self.hits.advance_to(epoch + 1);
        self.product_hits.advance_to(epoch + 1);
        self.activity.advance_to(epoch + 1);
        self.sales.advance_to(epoch + 1);
        self.viewed.advance_to(epoch + 1);
        self.risk.advance_to(epoch + 1);
        self.records.advance_to(epoch + 1);
        self.watermarks.advance_to(epoch + 1);
        if let Some((candidates, notices)) = &mut self.cluster {
            candidates.advance_to(epoch + 1);
            candidates.flush();
            notices.advance_to(epoch + 1);
        }
        self.clicks.flush();
        self.hits.flush();
        self.product_hits.flush();
        self.activity.flush();
        self.sales.flush();
        self.viewed.flush();
        self.risk.flush();
        self.records.flush();
    }
}

/// Builds the graph with its inputs: what every source and every test feeds. `cluster`
/// is this process's watermark clock when the run spans processes (`-n` > 1), `None`
/// otherwise; every process of a run must pass the same.
pub fn build<'scope>(
    scope: Scope<'scope, u64>,
    settings: Settings,
    cluster: Option<InputState>,
) -> (Inputs, VecCollection<'scope, u64, Change>) {
    let (clicks, mut click_collection) = scope.new_collection();
    let (hits, mut hit_collection) = scope.new_collection();
    let (product_hits, mut product_hit_collection) = scope.new_collection();
    let (activity, mut activity_collection) = scope.new_collection();
    let (sales, mut sale_collection) = scope.new_collection();
    let (viewed, viewed_collection) = scope.new_collection();
    let (risk, risk_collection) = scope.new_collection();
    let (records, mut record_collection) = scope.new_collection();
    let (watermarks, watermark_stream) = scope.new_input();
    let watermark_stream = watermark_stream.broadcast();
    let cluster = match cluster {
        None => None,
        Some(input) => {
            let (notices, notice_stream) = scope.new_input::<Vec<Notice>>();
            let observer = input.clone();
            notice_stream.broadcast().inspect(move |notice| observer.observe(notice));
            let (candidates, candidate_collection) = scope.new_collection();
            let verdicts = candidate_collection.by_epoch(
                watermark_stream.clone(),
                |c: &Candidate| route(&c.event.event_id),
                "Dedupe",
                Dedupe::new(input.dedupe_horizon()),
            );
            let accepted = verdicts.clone().flat_map(|v| if let Verdict::Accepted(e) = v { Some(e) } else { None });
            click_collection = click_collection.concat(accepted.clone().map(|e| Click::of(&e)));
            hit_collection = hit_collection.concat(accepted.clone().map(move |e| hit(&e, settings)));
            product_hit_collection = product_hit_collection.concat(accepted.clone().flat_map(move |e| product_hit(&e, settings)));
            activity_collection = activity_collection.concat(accepted.clone().map(|e| seen(&e)));
            sale_collection = sale_collection.concat(accepted.clone().flat_map(|e| Sale::of(&e).collect::<Vec<_>>()));
            let found =
                verdicts.clone().flat_map(|v| if let Verdict::Duplicate(source) = v { Some(Change::Duplicate(source)) } else { None });
            record_collection = record_collection.concat(accepted.map(Change::Event)).concat(found);
            Some((candidates, notices))
        }
    };
    let feeds = Feeds {
        clicks: click_collection,
        hits: hit_collection,
        product_hits: product_hit_collection,
        activity: activity_collection,
        sales: sale_collection,
        viewed: viewed_collection,
        risk: risk_collection,
    };
    let changes = clickstream(feeds, watermark_stream, settings).concat(record_collection);
    (Inputs { clicks, hits, product_hits, activity, sales, viewed, risk, records, watermarks, settings, cluster }, changes)
}
