//! The test oracle: every table of docs/contract.md computed from a whole bounded input as a
//! plain batch job (sort, group, count), written apart from the dataflow's operators.
//!
//! It shares only the row types with `dataflows`: messages are read by its own parser
//! ([`parse`]), and admission, sessions, funnels and windows are computed here again,
//! the simple way. All rows are final, as after a bounded input ends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub mod parse;

use dataflows::event::{Event, EventType, Reason, Text};
use dataflows::operators::risk;
use dataflows::operators::sessions::Click;
use dataflows::pipeline::Settings;
use dataflows::risk::features::Features;
use dataflows::risk::score::{sample_key, Model, SAMPLE};
use dataflows::rows::{
    Change, CohortRow, ConversionRow, FunnelRow, ModelRow, PairRow, ProductRow, RfmRow, RiskRow, SessionRow, SimilarRow, TrafficRow,
};
use dataflows::time::Millis;

/// The tables, keyed as in PostgreSQL.
#[derive(Debug, Default, PartialEq)]
pub struct Tables {
    /// Keyed by `(event_id, event_time)`, as `events_raw`.
    pub events: BTreeMap<(Text, Millis), Event>,
    pub sessions: BTreeMap<(Text, Millis), SessionRow>,
    pub traffic: BTreeMap<Millis, TrafficRow>,
    pub products: BTreeMap<(Millis, Text), ProductRow>,
    pub funnel: BTreeMap<Millis, FunnelRow>,
    pub conversion: BTreeMap<(Millis, Text, Text), ConversionRow>,
    /// Keyed by `(cohort_date, day_offset)`.
    pub cohorts: BTreeMap<(Millis, i64), CohortRow>,
    /// `customer_rfm`, keyed by `user_id`.
    pub rfm: BTreeMap<Text, RfmRow>,
    /// `product_pairs`, keyed by `(product_id, other_product_id)`.
    pub pairs: BTreeMap<(Text, Text), PairRow>,
    /// `product_similar`, keyed by `(product_id, other_product_id)`.
    pub similar: BTreeMap<(Text, Text), SimilarRow>,
    /// `session_risk`, keyed by `(user_id, session_start)`.
    pub risk: BTreeMap<(Text, Millis), RiskRow>,
    /// `risk_models`, keyed by `model_version`.
    pub models: BTreeMap<Text, ModelRow>,
    /// Dead letters by input line number (1-based) with their reason.
    pub dead_letters: BTreeMap<usize, Reason>,
    pub duplicates: u64,
}

/// `--dedupe-horizon`'s default: an accepted id is remembered until W passes its
/// event time plus this.
pub const DEDUPE_HORIZON: Millis = 86_400_000;

/// Computes every table from the messages of one partition, in order.
pub fn compute(messages: &[Vec<u8>], watermark_delay: Millis, settings: Settings, now: Millis) -> Tables {
    let arrivals: Vec<Arrival> = messages.iter().map(|bytes| Arrival { partition: 0, now, bytes: bytes.clone() }).collect();
    compute_partitioned(&arrivals, 1, watermark_delay, Millis::MAX, settings)
}

/// One message as a processor receives it: from which partition, at which wall-clock time.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub partition: usize,
    pub now: Millis,
    pub bytes: Vec<u8>,
}

/// Computes every table from messages of `partitions` partitions in the order they are
/// admitted, all partitions declared at the first arrival's wall-clock time. Dead letters
/// are keyed by the message's position in `arrivals` (1-based).
///
/// The watermark, as the contract defines it: a partition's own is the largest event
/// time it accepted minus the delay; W is the smallest over the partitions that accepted
/// an event within `idle_timeout` of wall-clock time (a partition that has accepted none
/// counts from its declaration, holding W back at the start), and never goes back.
pub fn compute_partitioned(
    arrivals: &[Arrival],
    partitions: usize,
    watermark_delay: Millis,
    idle_timeout: Millis,
    settings: Settings,
) -> Tables {
    let mut t = admit(arrivals, partitions, watermark_delay, idle_timeout);
    derive(&mut t, settings);
    t
}

/// Admission alone, as [`compute_partitioned`] does it: the accepted events, dead letters
/// and duplicates, without the result tables ([`derive`] adds them).
pub fn admit(arrivals: &[Arrival], partitions: usize, watermark_delay: Millis, idle_timeout: Millis) -> Tables {
    let mut t = Tables::default();
    let start = arrivals.first().map_or(0, |a| a.now);
    // Per partition: the largest accepted event time, and when it last accepted one.
    let mut largest: Vec<Option<Millis>> = vec![None; partitions];
    let mut last_accepted: Vec<Millis> = vec![start; partitions];
    let mut watermark: Option<Millis> = None;
    let mut seen: HashMap<Text, Millis> = HashMap::new();
    for (line, arrival) in (1..).zip(arrivals) {
        let event = match parse::event(&arrival.bytes, arrival.now) {
            Ok(e) => e,
            Err(reason) => {
                t.dead_letters.insert(line, reason);
                continue;
            }
        };
        let active = (0..partitions).filter(|p| arrival.now - last_accepted[*p] <= idle_timeout);
        let candidate = active.map(|p| largest[p].map(|m| m - watermark_delay)).min();
        // `None` inside: an active partition without data holds W where it is.
        if let Some(Some(w)) = candidate {
            watermark = Some(watermark.map_or(w, |old| old.max(w)));
        }
        let remembered = seen.get(&event.event_id).is_some_and(|first| watermark.is_none_or(|w| first + DEDUPE_HORIZON >= w));
        if watermark.is_some_and(|w| event.event_time < w) {
            t.dead_letters.insert(line, Reason::Late);
        } else if remembered {
            t.duplicates += 1;
        } else {
            seen.insert(event.event_id.clone(), event.event_time);
            let p = arrival.partition;
            largest[p] = Some(largest[p].map_or(event.event_time, |m| m.max(event.event_time)));
            last_accepted[p] = arrival.now;
            t.events.insert((event.event_id.clone(), event.event_time), event);
        }
    }
    t
}

/// Fills the result tables of `t` from its accepted events: a plain batch job, also the
/// baseline `clickflow bench` measures the dataflow against.
pub fn derive(t: &mut Tables, settings: Settings) {
    t.sessions = sessions(&t.events, settings.session_gap);
    t.traffic = traffic(&t.events, settings.traffic_window);
    t.products = products(&t.events, settings.stats_window);
    t.funnel = funnel(&t.sessions, settings.stats_window);
    t.conversion = conversion(&t.sessions, settings.stats_window);
    t.cohorts = cohorts(&t.events);
    t.rfm = rfm(&t.events);
    t.pairs = pairs(&t.events);
    t.similar = similar(&t.sessions);
    (t.risk, t.models) = risk(&t.sessions, settings.session_gap, settings.risk_threshold);
}

/// CONTRACT §7 `session_risk` once the input has ended (every session is final), and
/// the model versions it used: each session is scored by the version of the UTC day it
/// became final in (its end plus the gap), trained on the [`SAMPLE`] sessions with the
/// smallest [`sample_key`] among all those final before that day.
fn risk(
    sessions: &BTreeMap<(Text, Millis), SessionRow>,
    gap: Millis,
    threshold: u8,
) -> (BTreeMap<(Text, Millis), RiskRow>, BTreeMap<Text, ModelRow>) {
    const DAY: Millis = 86_400_000;
    let final_at = |s: &SessionRow| s.session_end + gap;
    let days: BTreeSet<Millis> = sessions.values().map(|s| start_of(final_at(s), DAY)).collect();
    let (mut flagged, mut models) = (BTreeMap::new(), BTreeMap::new());
    for day in days {
        let mut before: Vec<&SessionRow> = sessions.values().filter(|s| final_at(s) < day).collect();
        before.sort_by_cached_key(|s| (sample_key(&s.user_id, s.session_start), s.user_id.clone(), s.session_start));
        let sample: Vec<&Features> = before.iter().take(SAMPLE).map(|s| s.features.as_deref().expect("final")).collect();
        let model = Model::train(day, &sample);
        let version = Text::from(model.version());
        for s in sessions.values().filter(|s| start_of(final_at(s), DAY) == day) {
            let a = model.assess(s.features.as_deref().expect("final"));
            if a.score >= threshold {
                let row = risk::flagged(&s.user_id, (s.session_start, s.session_end), &a, &version, final_at(s));
                flagged.insert((s.user_id.clone(), s.session_start), row);
            }
        }
        let model_json = serde_json::to_string(&model).expect("a model serialises");
        models.insert(
            version.clone(),
            ModelRow { model_version: version, valid_from: day, sessions: model.sessions as i64, model: model_json },
        );
    }
    (flagged, models)
}

/// CONTRACT §7 `product_similar` once the input has ended (every session is final): for
/// each product, the other products viewed in at least 2 of the sessions viewing it,
/// best 10 by `together / sqrt(n_p × n_q)`, then by id. Similarities are compared as
/// exact fractions: `t1/√(n_p·n1) > t2/√(n_p·n2)` exactly when `t1²·n2 > t2²·n1`.
fn similar(sessions: &BTreeMap<(Text, Millis), SessionRow>) -> BTreeMap<(Text, Text), SimilarRow> {
    let mut viewing: HashMap<&str, i64> = HashMap::new();
    let mut together: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for s in sessions.values() {
        let products: BTreeSet<&str> = s.viewed.iter().map(|p| p.as_str()).collect();
        for p in &products {
            *viewing.entry(p).or_default() += 1;
            for q in products.iter().filter(|q| *q != p) {
                *together.entry((p, q)).or_default() += 1;
            }
        }
    }
    let mut best: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for ((p, q), t) in together.into_iter().filter(|(_, t)| *t >= 2) {
        best.entry(p).or_default().push((t, q));
    }
    let mut rows = BTreeMap::new();
    for (p, mut others) in best {
        // Descending t²/n_q, as a cross-multiplied comparison; then ascending id.
        others.sort_by(|(t1, q1), (t2, q2)| {
            let (a, b) = (i128::from(*t1).pow(2) * i128::from(viewing[q2]), i128::from(*t2).pow(2) * i128::from(viewing[q1]));
            b.cmp(&a).then(q1.cmp(q2))
        });
        for (t, q) in others.into_iter().take(10) {
            let row = SimilarRow {
                product_id: Text::new(p),
                other_product_id: Text::new(q),
                sessions_together: t,
                product_sessions: viewing[p],
                other_sessions: viewing[q],
            };
            rows.insert((Text::new(p), Text::new(q)), row);
        }
    }
    rows
}

/// An order (CONTRACT §7): its `order_id`, or a purchase without one, named as
/// `events_raw` keys it.
type OrderKey = (Option<Text>, Option<(Text, Millis)>);

fn order_key(e: &Event) -> OrderKey {
    match &e.order_id {
        Some(id) => (Some(id.clone()), None),
        None => (None, Some((e.event_id.clone(), e.event_time))),
    }
}

/// CONTRACT §7 `product_pairs` once the input has ended (every order counts): for each
/// product, the other products sharing at least 2 orders with it, best 10 by orders
/// together, then by id.
fn pairs(events: &BTreeMap<(Text, Millis), Event>) -> BTreeMap<(Text, Text), PairRow> {
    // Each order's products.
    let mut orders: HashMap<OrderKey, BTreeSet<&str>> = HashMap::new();
    for e in events.values().filter(|e| e.event_type == EventType::Purchase) {
        let products = orders.entry(order_key(e)).or_default();
        products.extend(e.product_id.as_deref());
    }
    let holding = |p: &str| orders.values().filter(|ps| ps.contains(p)).count() as i64;
    let mut shared: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for products in orders.values() {
        for p in products {
            for q in products.iter().filter(|q| *q != p) {
                *shared.entry((p, q)).or_default() += 1;
            }
        }
    }
    let mut best: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for ((p, q), n) in shared.into_iter().filter(|(_, n)| *n >= 2) {
        best.entry(p).or_default().push((-n, q));
    }
    let mut rows = BTreeMap::new();
    for (p, mut others) in best {
        others.sort();
        for (minus_n, q) in others.into_iter().take(10) {
            let row = PairRow {
                product_id: Text::new(p),
                other_product_id: Text::new(q),
                orders_together: -minus_n,
                product_orders: holding(p),
                other_orders: holding(q),
                all_orders: orders.len() as i64,
            };
            rows.insert((Text::new(p), Text::new(q)), row);
        }
    }
    rows
}

/// The segment grid of CONTRACT §7: `GRID[r - 1][f - 1]`.
const GRID: [[&str; 5]; 5] = [
    ["Lost", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
    ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
    ["About to Sleep", "About to Sleep", "Need Attention", "Loyal Customers", "Loyal Customers"],
    ["Promising", "Potential Loyalist", "Potential Loyalist", "Loyal Customers", "Loyal Customers"],
    ["New Customers", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"],
];

/// CONTRACT §7 `customer_rfm` once the input has ended: `as_of` is the end of the latest
/// day holding an accepted event, so every purchase counts. A score counts, for each
/// user, the users with a strictly worse value.
fn rfm(events: &BTreeMap<(Text, Millis), Event>) -> BTreeMap<Text, RfmRow> {
    const DAY: Millis = 86_400_000;
    let Some(latest) = events.values().map(|e| e.event_time).max() else { return BTreeMap::new() };
    let as_of = start_of(latest, DAY) + DAY;
    // Per user: last purchase, orders, revenue.
    type Customer = (Millis, HashSet<OrderKey>, i64);
    let mut users: BTreeMap<Text, Customer> = BTreeMap::new();
    for e in events.values().filter(|e| e.event_type == EventType::Purchase) {
        let u = users.entry(e.user_id.clone()).or_insert((Millis::MIN, HashSet::new(), 0));
        u.0 = u.0.max(e.event_time);
        u.1.insert(order_key(e));
        u.2 += revenue(e);
    }
    let n = users.len() as i64;
    let figures: Vec<(i64, i64, i64)> = users.values().map(|(last, orders, m)| ((as_of - last) / DAY, orders.len() as i64, *m)).collect();
    // How many users have each value: a user's "worse" count sums the counts beyond it.
    let mut by_recency: BTreeMap<i64, i64> = BTreeMap::new();
    let mut by_frequency: BTreeMap<i64, i64> = BTreeMap::new();
    let mut by_monetary: BTreeMap<i64, i64> = BTreeMap::new();
    for (r, f, m) in &figures {
        *by_recency.entry(*r).or_default() += 1;
        *by_frequency.entry(*f).or_default() += 1;
        *by_monetary.entry(*m).or_default() += 1;
    }
    // Users with a smaller value than each value, by a running sum over the sorted values.
    let smaller = |counts: &BTreeMap<i64, i64>| -> HashMap<i64, i64> {
        let mut below = 0;
        counts
            .iter()
            .map(|(v, c)| {
                below += c;
                (*v, below - c)
            })
            .collect()
    };
    let (r_below, f_below, m_below) = (smaller(&by_recency), smaller(&by_frequency), smaller(&by_monetary));
    let score = |worse: i64| (1 + 5 * worse / n) as u8;
    users
        .into_iter()
        .zip(figures)
        .map(|((user, (last, _, _)), (r, f, m))| {
            let r_score = score(n - r_below[&r] - by_recency[&r]);
            let f_score = score(f_below[&f]);
            let m_score = score(m_below[&m]);
            let row = RfmRow {
                user_id: user.clone(),
                as_of,
                last_purchase_at: last,
                recency_days: r,
                frequency: f,
                monetary_cents: m,
                r_score,
                f_score,
                m_score,
                segment: Text::new(GRID[r_score as usize - 1][f_score as usize - 1]),
            };
            (user, row)
        })
        .collect()
}

fn start_of(t: Millis, len: Millis) -> Millis {
    t - t.rem_euclid(len)
}

fn sessions(events: &BTreeMap<(Text, Millis), Event>, gap: Millis) -> BTreeMap<(Text, Millis), SessionRow> {
    let mut by_user: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events.values() {
        by_user.entry(&e.user_id).or_default().push(e);
    }
    let mut out = BTreeMap::new();
    for (user, mut evs) in by_user {
        evs.sort_by(|a, b| (a.event_time, &a.event_id).cmp(&(b.event_time, &b.event_id)));
        let mut current: Vec<&Event> = Vec::new();
        for e in evs {
            if let Some(last) = current.last() {
                if e.event_time - last.event_time >= gap {
                    let row = session(user, &current);
                    out.insert((Text::from(user), row.session_start), row);
                    current.clear();
                }
            }
            current.push(e);
        }
        let row = session(user, &current);
        out.insert((Text::from(user), row.session_start), row);
    }
    out
}

fn session(user: &str, evs: &[&Event]) -> SessionRow {
    let count = |t: EventType| evs.iter().filter(|e| e.event_type == t).count() as i64;
    let purchases: Vec<&&Event> = evs.iter().filter(|e| e.event_type == EventType::Purchase).collect();
    let first = evs[0];
    let last = evs[evs.len() - 1];
    SessionRow {
        user_id: Text::from(user),
        session_start: first.event_time,
        session_end: last.event_time,
        counts: EventType::ALL.map(count),
        units: purchases.iter().map(|e| e.quantity.unwrap()).sum(),
        revenue_cents: purchases.iter().map(|e| e.price_cents.unwrap() * e.quantity.unwrap()).sum(),
        landing_page: first.page.clone(),
        exit_page: last.page.clone(),
        device: first.device.clone(),
        country: first.country.clone(),
        referrer: first.referrer.clone(),
        funnel_step: funnel_step(evs),
        viewed: evs
            .iter()
            .filter(|e| e.event_type == EventType::ProductView)
            .filter_map(|e| e.product_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        features: {
            let clicks: Vec<Click> = evs.iter().map(|e| Click::of(e).1).collect();
            Some(Box::new(Features::of(&clicks)))
        },
        is_final: true,
    }
}

/// The ordered funnel (contract §3), computed another way than "for each step, the
/// earliest event of its type at or after the previous step": walk the session's
/// distinct event times in order, and at each one take as many next steps as have an
/// event of their type at that very time (several steps can share a millisecond).
fn funnel_step(evs: &[&Event]) -> u8 {
    let order = [EventType::ProductView, EventType::AddToCart, EventType::BeginCheckout, EventType::Purchase];
    let mut types_at: BTreeMap<Millis, HashSet<EventType>> = BTreeMap::new();
    for e in evs {
        types_at.entry(e.event_time).or_default().insert(e.event_type);
    }
    let mut reached = 1u8;
    for types in types_at.values() {
        while let Some(next) = order.get(usize::from(reached) - 1) {
            if !types.contains(next) {
                break;
            }
            reached += 1;
        }
    }
    reached
}

fn revenue(e: &Event) -> i64 {
    if e.event_type == EventType::Purchase {
        e.price_cents.unwrap() * e.quantity.unwrap()
    } else {
        0
    }
}

fn traffic(events: &BTreeMap<(Text, Millis), Event>, len: Millis) -> BTreeMap<Millis, TrafficRow> {
    let mut groups: BTreeMap<Millis, Vec<&Event>> = BTreeMap::new();
    for e in events.values() {
        groups.entry(start_of(e.event_time, len)).or_default().push(e);
    }
    groups
        .into_iter()
        .map(|(start, evs)| {
            let users: HashSet<&str> = evs.iter().map(|e| e.user_id.as_str()).collect();
            let row = TrafficRow {
                window_start: start,
                window_end: start + len,
                counts: EventType::ALL.map(|t| evs.iter().filter(|e| e.event_type == t).count() as i64),
                active_users: users.len() as i64,
                revenue_cents: evs.iter().map(|e| revenue(e)).sum(),
                is_final: true,
            };
            (start, row)
        })
        .collect()
}

/// CONTRACT §6: a user's cohort is the UTC day of their first accepted event; a row per
/// cohort and day on which some of its users had an accepted event (all final: the input
/// has ended).
fn cohorts(events: &BTreeMap<(Text, Millis), Event>) -> BTreeMap<(Millis, i64), CohortRow> {
    const DAY: Millis = 86_400_000;
    let mut first: HashMap<&str, Millis> = HashMap::new();
    for e in events.values() {
        let f = first.entry(e.user_id.as_str()).or_insert(e.event_time);
        *f = (*f).min(e.event_time);
    }
    let mut size: HashMap<Millis, i64> = HashMap::new();
    for f in first.values() {
        *size.entry(start_of(*f, DAY)).or_default() += 1;
    }
    let mut days: BTreeMap<(Millis, Millis), (HashSet<&str>, i64)> = BTreeMap::new();
    for e in events.values() {
        let cohort = start_of(first[e.user_id.as_str()], DAY);
        let day = days.entry((cohort, start_of(e.event_time, DAY))).or_default();
        day.0.insert(e.user_id.as_str());
        day.1 += revenue(e);
    }
    days.into_iter()
        .map(|((cohort, day), (users, revenue_cents))| {
            let offset = (day - cohort) / DAY;
            let row = CohortRow {
                cohort_date: cohort,
                day_offset: offset,
                cohort_users: size[&cohort],
                active_users: users.len() as i64,
                revenue_cents,
                is_final: true,
            };
            ((cohort, offset), row)
        })
        .collect()
}

fn products(events: &BTreeMap<(Text, Millis), Event>, len: Millis) -> BTreeMap<(Millis, Text), ProductRow> {
    use EventType::*;
    let mut groups: BTreeMap<(Millis, Text), Vec<&Event>> = BTreeMap::new();
    for e in events.values().filter(|e| matches!(e.event_type, ProductView | AddToCart | RemoveFromCart | Purchase)) {
        groups.entry((start_of(e.event_time, len), e.product_id.clone().unwrap())).or_default().push(e);
    }
    groups
        .into_iter()
        .map(|((start, product), mut evs)| {
            evs.sort_by(|a, b| (a.event_time, &a.event_id).cmp(&(b.event_time, &b.event_id)));
            let n = |t: EventType| evs.iter().filter(|e| e.event_type == t).count() as i64;
            let row = ProductRow {
                window_start: start,
                window_end: start + len,
                product_id: product.clone(),
                category: evs[0].category.clone().unwrap(),
                views: n(ProductView),
                cart_adds: n(AddToCart),
                cart_removes: n(RemoveFromCart),
                purchases: n(Purchase),
                units: evs.iter().filter(|e| e.event_type == Purchase).map(|e| e.quantity.unwrap()).sum(),
                revenue_cents: evs.iter().map(|e| revenue(e)).sum(),
                is_final: true,
            };
            ((start, product), row)
        })
        .collect()
}

fn funnel(sessions: &BTreeMap<(Text, Millis), SessionRow>, len: Millis) -> BTreeMap<Millis, FunnelRow> {
    let mut groups: BTreeMap<Millis, Vec<&SessionRow>> = BTreeMap::new();
    for s in sessions.values() {
        groups.entry(start_of(s.session_start, len)).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(start, ss)| {
            let n = |f: &dyn Fn(&SessionRow) -> bool| ss.iter().filter(|s| f(s)).count() as i64;
            let row = FunnelRow {
                window_start: start,
                window_end: start + len,
                sessions: ss.len() as i64,
                product_view_sessions: n(&|s| s.funnel_step >= 2),
                cart_sessions: n(&|s| s.funnel_step >= 3),
                checkout_sessions: n(&|s| s.funnel_step >= 4),
                purchase_sessions: n(&|s| s.funnel_step >= 5),
                sessions_with_cart_adds: n(&|s| s.counts[EventType::AddToCart.index()] > 0),
                abandoned_sessions: n(&|s| s.counts[EventType::AddToCart.index()] > 0 && s.counts[EventType::Purchase.index()] == 0),
                bounced_sessions: n(&|s| s.counts.iter().sum::<i64>() == 1),
                total_duration_ms: ss.iter().map(|s| s.session_end - s.session_start).sum(),
                revenue_cents: ss.iter().map(|s| s.revenue_cents).sum(),
                is_final: true,
            };
            (start, row)
        })
        .collect()
}

fn conversion(sessions: &BTreeMap<(Text, Millis), SessionRow>, len: Millis) -> BTreeMap<(Millis, Text, Text), ConversionRow> {
    let mut out: BTreeMap<(Millis, Text, Text), ConversionRow> = BTreeMap::new();
    for s in sessions.values() {
        let start = start_of(s.session_start, len);
        for (dimension, value) in [("device", &s.device), ("country", &s.country), ("referrer", &s.referrer)] {
            let row = out.entry((start, Text::from(dimension), value.clone())).or_insert_with(|| ConversionRow {
                window_start: start,
                window_end: start + len,
                dimension: Text::from(dimension),
                value: value.clone(),
                sessions: 0,
                converted_sessions: 0,
                revenue_cents: 0,
                is_final: true,
            });
            row.sessions += 1;
            row.converted_sessions += i64::from(s.counts[EventType::Purchase.index()] > 0);
            row.revenue_cents += s.revenue_cents;
        }
    }
    out
}

impl Tables {
    /// The tables a stream of `(change, diff)` updates leaves behind once consolidated,
    /// with dead letters keyed by the line number that ends their `source` (`…:17`).
    /// Panics on what a correct dataflow never emits: a row whose diffs do not sum to
    /// 0 or 1, or two live versions of one key.
    pub fn from_changes(updates: impl IntoIterator<Item = (Change, isize)>) -> Tables {
        let mut net: BTreeMap<Change, isize> = BTreeMap::new();
        for (change, diff) in updates {
            *net.entry(change).or_default() += diff;
        }
        let mut t = Tables::default();
        // Each source's duplicates as of its latest report (the counts only grow).
        let mut duplicates: HashMap<String, u64> = HashMap::new();
        // Plus those the dataflow found between processes, which no report counts.
        let mut found = 0;
        for (change, n) in net {
            match &change {
                Change::Progress(p) => {
                    let d = duplicates.entry(p.source.clone()).or_default();
                    *d = (*d).max(p.counts.duplicates);
                    continue;
                }
                Change::Duplicate(_) => {
                    found += n as u64;
                    continue;
                }
                _ => {}
            }
            assert!(n == 0 || n == 1, "{change:?} has multiplicity {n}");
            if n == 0 {
                continue;
            }
            let fresh = match change {
                Change::Event(e) => t.events.insert((e.event_id.clone(), e.event_time), e).is_none(),
                Change::Session(r) => t.sessions.insert((r.user_id.clone(), r.session_start), r).is_none(),
                Change::Traffic(r) => t.traffic.insert(r.window_start, r).is_none(),
                Change::Product(r) => t.products.insert((r.window_start, r.product_id.clone()), r).is_none(),
                Change::Funnel(r) => t.funnel.insert(r.window_start, r).is_none(),
                Change::Conversion(r) => t.conversion.insert((r.window_start, r.dimension.clone(), r.value.clone()), r).is_none(),
                Change::Cohort(r) => t.cohorts.insert((r.cohort_date, r.day_offset), r).is_none(),
                Change::Rfm(r) => t.rfm.insert(r.user_id.clone(), r).is_none(),
                Change::Pair(r) => t.pairs.insert((r.product_id.clone(), r.other_product_id.clone()), r).is_none(),
                Change::Similar(r) => t.similar.insert((r.product_id.clone(), r.other_product_id.clone()), r).is_none(),
                Change::Risk(r) => t.risk.insert((r.user_id.clone(), r.session_start), r).is_none(),
                Change::RiskModel(m) => t.models.insert(m.model_version.clone(), m).is_none(),
                Change::DeadLetter(d) => {
                    let line = d.source.rsplit(':').next().and_then(|n| n.parse().ok()).expect("source ends in a line number");
                    t.dead_letters.insert(line, d.reason).is_none()
                }
                Change::Progress(_) | Change::Duplicate(_) => unreachable!("handled above"),
            };
            assert!(fresh, "two live versions of one key");
        }
        t.duplicates = duplicates.values().sum::<u64>() + found;
        t
    }
}

/// The table and key a change belongs to; `None` for records without a key.
fn key_of(change: &Change) -> Option<String> {
    Some(match change {
        Change::Session(r) => format!("sessions {} {}", r.user_id, r.session_start),
        Change::Traffic(r) => format!("traffic {}", r.window_start),
        Change::Product(r) => format!("product_stats {} {}", r.window_start, r.product_id),
        Change::Funnel(r) => format!("funnel {}", r.window_start),
        Change::Conversion(r) => format!("conversion {} {} {}", r.window_start, r.dimension, r.value),
        Change::Cohort(r) => format!("cohort_retention {} {}", r.cohort_date, r.day_offset),
        Change::Rfm(r) => format!("customer_rfm {}", r.user_id),
        Change::Pair(r) => format!("product_pairs {} {}", r.product_id, r.other_product_id),
        Change::Similar(r) => format!("product_similar {} {}", r.product_id, r.other_product_id),
        Change::Risk(r) => format!("session_risk {} {}", r.user_id, r.session_start),
        Change::RiskModel(m) => format!("risk_models {}", m.model_version),
        Change::Event(_) | Change::DeadLetter(_) | Change::Progress(_) | Change::Duplicate(_) => return None,
    })
}

/// Checks update mode over `(change, epoch, diff)`: in each epoch a key gets at most one
/// insertion and one retraction, and once a final version of a key is inserted, no later
/// epoch touches that key. Returns the first breach.
pub fn check_finality(updates: &[(Change, u64, isize)]) -> Result<(), String> {
    let mut sorted: Vec<&(Change, u64, isize)> = updates.iter().collect();
    sorted.sort_by_key(|u| u.1);
    let mut finalised: HashMap<String, u64> = HashMap::new();
    let mut per_epoch: HashMap<(String, u64, bool), u32> = HashMap::new();
    for (change, epoch, diff) in sorted {
        let Some(key) = key_of(change) else { continue };
        if let Some(at) = finalised.get(&key) {
            if at < epoch {
                return Err(format!("{key} changed in epoch {epoch} after it became final in epoch {at}"));
            }
        }
        let n = per_epoch.entry((key.clone(), *epoch, *diff > 0)).or_default();
        *n += 1;
        if *n > 1 || diff.abs() != 1 {
            return Err(format!("{key} has more than one {} in epoch {epoch}", if *diff > 0 { "insertion" } else { "retraction" }));
        }
        if *diff > 0 && change.is_final() {
            finalised.insert(key, *epoch);
        }
    }
    Ok(())
}
