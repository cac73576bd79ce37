//! Session windows per user (CONTRACT §3) as an [`EpochLogic`].
//!
//! Owns each user's events that do not yet belong to a final session. Every epoch it
//! re-splits the users it touched (and those whose earliest open session may have
//! closed) and reports session rows that appeared, changed or became final; final
//! sessions' events are then released. It must only see events that passed the
//! lateness check: then no event can join a session once it is final.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventType, Text};
use crate::operators::by_epoch::EpochLogic;
use crate::risk::features::Features;
use crate::rows::SessionRow;
use crate::time::Millis;

/// What a session needs to know of one event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Click {
    pub time: Millis,
    pub event_id: Text,
    pub event_type: EventType,
    pub page: Text,
    /// The event's `quantity`, 0 without one.
    pub quantity: i64,
    pub revenue_cents: i64,
    pub device: Text,
    pub country: Text,
    pub referrer: Text,
    /// The event's `product_id`, for `product_similar` and the risk features.
    pub product: Option<Text>,
}

impl Click {
    /// The user and the click of one event.
    pub fn of(e: &Event) -> (Text, Click) {
        let click = Click {
            time: e.event_time,
            event_id: e.event_id.clone(),
            event_type: e.event_type,
            page: e.page.clone(),
            quantity: e.quantity.unwrap_or(0),
            revenue_cents: e.revenue_cents(),
            device: e.device.clone(),
            country: e.country.clone(),
            referrer: e.referrer.clone(),
            product: e.product_id.clone(),
        };
        (e.user_id.clone(), click)
    }
}

#[derive(Default)]
struct User {
    /// Events of the user's open sessions; sorted by (time, event_id) after each epoch.
    clicks: Vec<Click>,
    /// The rows last reported for the open sessions, oldest first.
    open: Vec<SessionRow>,
    /// `last event + gap` of the oldest open session: when it may become final.
    deadline: Option<Millis>,
}

/// Splits each user's events into sessions at gaps `≥ gap`.
pub struct Sessionize {
    gap: Millis,
    users: HashMap<Text, User>,
    touched: BTreeSet<Text>,
    deadlines: BTreeSet<(Millis, Text)>,
}

impl Sessionize {
    pub fn new(gap: Millis) -> Self {
        Sessionize { gap, users: HashMap::new(), touched: BTreeSet::new(), deadlines: BTreeSet::new() }
    }

    /// Users whose state is held (open sessions), for progress figures and tests.
    pub fn open_users(&self) -> usize {
        self.users.len()
    }

    fn refresh(&mut self, user_id: &Text, watermark: Millis, out: &mut Vec<(SessionRow, isize)>) {
        let Some(user) = self.users.get_mut(user_id) else { return };
        if let Some(d) = user.deadline.take() {
            self.deadlines.remove(&(d, user_id.clone()));
        }
        user.clicks.sort();
        let mut rows = Vec::new();
        let mut start = 0;
        for i in 1..=user.clicks.len() {
            if i == user.clicks.len() || user.clicks[i].time - user.clicks[i - 1].time >= self.gap {
                let clicks = &user.clicks[start..i];
                let is_final = clicks[clicks.len() - 1].time.saturating_add(self.gap) <= watermark;
                rows.push((i, session_row(user_id, clicks, is_final)));
                start = i;
            }
        }
        for old in &user.open {
            if !rows.iter().any(|(_, r)| r == old) {
                out.push((old.clone(), -1));
            }
        }
        for (_, row) in &rows {
            if !user.open.contains(row) {
                out.push((row.clone(), 1));
            }
        }
        // Final sessions are a prefix: their events can never be joined again.
        let released = rows.iter().take_while(|(_, r)| r.is_final).last().map_or(0, |(end, _)| *end);
        user.clicks.drain(..released);
        user.open = rows.into_iter().filter(|(_, r)| !r.is_final).map(|(_, r)| r).collect();
        match user.open.first() {
            Some(first) => {
                let d = first.session_end + self.gap;
                user.deadline = Some(d);
                self.deadlines.insert((d, user_id.clone()));
            }
            None => {
                self.users.remove(user_id);
            }
        }
    }
}

/// The row of one session from its events, sorted by (time, event_id).
fn session_row(user_id: &Text, clicks: &[Click], is_final: bool) -> SessionRow {
    let first = &clicks[0];
    let last = &clicks[clicks.len() - 1];
    let mut counts = [0i64; 7];
    for c in clicks {
        counts[c.event_type.index()] += 1;
    }
    SessionRow {
        user_id: user_id.clone(),
        session_start: first.time,
        session_end: last.time,
        counts,
        units: clicks.iter().filter(|c| c.event_type == EventType::Purchase).map(|c| c.quantity).sum(),
        revenue_cents: clicks.iter().map(|c| c.revenue_cents).sum(),
        landing_page: first.page.clone(),
        exit_page: last.page.clone(),
        device: first.device.clone(),
        country: first.country.clone(),
        referrer: first.referrer.clone(),
        funnel_step: funnel_step(clicks),
        viewed: if is_final {
            let views = clicks.iter().filter(|c| c.event_type == EventType::ProductView);
            views.filter_map(|c| c.product.clone()).collect::<BTreeSet<_>>().into_iter().collect()
        } else {
            Vec::new()
        },
        features: is_final.then(|| Box::new(Features::of(clicks))),
        is_final,
    }
}

/// Highest ordered funnel step reached: step k ≥ 2 is the earliest event of its type at
/// or after the time step k−1 was reached.
pub fn funnel_step(clicks: &[Click]) -> u8 {
    let steps = [EventType::ProductView, EventType::AddToCart, EventType::BeginCheckout, EventType::Purchase];
    let mut reached_at = clicks[0].time;
    let mut step = 1;
    for wanted in steps {
        match clicks.iter().find(|c| c.event_type == wanted && c.time >= reached_at) {
            Some(c) => {
                reached_at = c.time;
                step += 1;
            }
            None => break,
        }
    }
    step
}

impl EpochLogic for Sessionize {
    type In = (Text, Click);
    type Out = SessionRow;

    fn absorb(&mut self, (user_id, click): (Text, Click), diff: isize) {
        debug_assert!(diff > 0, "events are never retracted");
        self.users.entry(user_id.clone()).or_default().clicks.push(click);
        self.touched.insert(user_id);
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(SessionRow, isize)>) {
        let mut due = std::mem::take(&mut self.touched);
        while let Some(first) = self.deadlines.first() {
            if first.0 > watermark {
                break;
            }
            let (_, user) = self.deadlines.pop_first().expect("just seen");
            due.insert(user);
        }
        for user in due {
            self.refresh(&user, watermark, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Millis = 30 * 60 * 1000;

    fn click(id: &str, time: Millis, t: EventType) -> (Text, Click) {
        let c = Click {
            time,
            event_id: id.into(),
            event_type: t,
            page: format!("/{id}").into(),
            quantity: if t == EventType::Purchase { 1 } else { 0 },
            revenue_cents: if t == EventType::Purchase { 1000 } else { 0 },
            device: "mobile".into(),
            country: "FR".into(),
            referrer: "ads".into(),
            product: (t == EventType::ProductView).then(|| format!("p-{id}").into()),
        };
        ("u".into(), c)
    }

    fn run(clicks: Vec<(Text, Click)>, watermark: Millis) -> Vec<SessionRow> {
        let mut s = Sessionize::new(GAP);
        for c in clicks {
            s.absorb(c, 1);
        }
        let mut out = Vec::new();
        s.close_epoch(watermark, &mut out);
        assert!(out.iter().all(|(_, d)| *d == 1));
        out.into_iter().map(|(r, _)| r).collect()
    }

    #[test]
    fn splits_exactly_at_the_gap() {
        let pv = EventType::PageView;
        let same = run(vec![click("a", 0, pv), click("b", GAP - 1, pv)], 0);
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].duration_ms(), GAP - 1);
        let split = run(vec![click("a", 0, pv), click("b", GAP, pv)], 0);
        assert_eq!(split.iter().map(|r| r.session_start).collect::<Vec<_>>(), vec![0, GAP]);
    }

    #[test]
    fn funnel_steps_must_come_in_order() {
        use EventType::*;
        let purchase_first = run(vec![click("a", 0, Purchase), click("b", 1000, ProductView)], 0);
        assert_eq!(purchase_first[0].funnel_step, 2);
        assert!(purchase_first[0].converted(), "converted counts purchases, in any order");
        let full = run(
            vec![
                click("a", 0, PageView),
                click("b", 10, ProductView),
                click("c", 20, AddToCart),
                click("d", 30, BeginCheckout),
                click("e", 40, Purchase),
            ],
            0,
        );
        assert_eq!(full[0].funnel_step, 5);
        // Ties count: steps reached at the same millisecond follow each other.
        let tied =
            run(vec![click("z", 5, Purchase), click("y", 5, BeginCheckout), click("x", 5, AddToCart), click("w", 5, ProductView)], 0);
        assert_eq!(tied[0].funnel_step, 5);
        assert_eq!(tied[0].landing_page, "/w", "ties are ordered by event_id");
    }

    #[test]
    fn finalises_when_the_watermark_passes_last_event_plus_gap_and_releases_state() {
        let mut s = Sessionize::new(GAP);
        s.absorb(click("a", 0, EventType::PageView), 1);
        let mut out = Vec::new();
        s.close_epoch(GAP - 1, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].0.is_final);
        out.clear();
        s.close_epoch(GAP, &mut out);
        assert_eq!(out.len(), 2, "retract the open row, insert the final one: {out:?}");
        assert_eq!((out[0].0.is_final, out[0].1), (false, -1));
        assert_eq!((out[1].0.is_final, out[1].1), (true, 1));
        assert_eq!(s.open_users(), 0);
    }

    #[test]
    fn an_admitted_event_can_merge_two_open_sessions() {
        let mut s = Sessionize::new(GAP);
        let mut out = Vec::new();
        s.absorb(click("a", 0, EventType::PageView), 1);
        s.absorb(click("c", 2 * GAP - 2, EventType::PageView), 1);
        s.close_epoch(0, &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        s.absorb(click("b", GAP - 1, EventType::PageView), 1);
        s.close_epoch(0, &mut out);
        let mut retracted: Vec<_> = out.iter().filter(|(_, d)| *d < 0).map(|(r, _)| r.session_start).collect();
        retracted.sort();
        let inserted: Vec<_> = out.iter().filter(|(_, d)| *d > 0).map(|(r, _)| (r.session_start, r.event_count())).collect();
        assert_eq!(retracted, vec![0, 2 * GAP - 2]);
        assert_eq!(inserted, vec![(0, 3)]);
    }
}
