//! What the customer analytics that run "as of the latest closed day" (CONTRACT §7) take
//! of the accepted events, and when a day closes for them: [`Sale`] records (purchases,
//! and the days holding events) and the [`Ledger`] that holds a logic's purchases until
//! their day closes and says what `as_of` has become; and the [`Emitted`] rows of such a
//! table, rewritten by difference each time. Owns no figures: `rfm` and `pairs` keep
//! those.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use super::cohorts::DAY;
use crate::event::{Event, EventType, Text};
use crate::time::{window_start, Millis};

/// An order: its `order_id`, or for a purchase without one, the purchase itself, named
/// as `events_raw` keys it (`event_id`, `event_time`): an id may come back once the
/// dedupe has forgotten it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Order {
    Id(Text),
    Event(Text, Millis),
}

/// One purchase event, as the analytics need it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Purchase {
    pub user: Text,
    pub time: Millis,
    pub order: Order,
    pub product: Option<Text>,
    pub revenue_cents: i64,
}

/// What the analytics take of the accepted events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Sale {
    Purchase(Purchase),
    /// An accepted event on the day starting here (for `as_of` once the input ends).
    Day(Millis),
}

impl Sale {
    /// What the analytics take of an event: its day, and the purchase if it is one.
    pub fn of(e: &Event) -> impl Iterator<Item = Sale> {
        let purchase = (e.event_type == EventType::Purchase).then(|| {
            let order = match &e.order_id {
                Some(id) => Order::Id(id.clone()),
                None => Order::Event(e.event_id.clone(), e.event_time),
            };
            Sale::Purchase(Purchase {
                user: e.user_id.clone(),
                time: e.event_time,
                order,
                product: e.product_id.clone(),
                revenue_cents: e.revenue_cents(),
            })
        });
        purchase.into_iter().chain([Sale::Day(window_start(e.event_time, DAY))])
    }
}

/// Keeps, of one worker's sales, the purchases and each day later than any before: the
/// [`Ledger`] only needs the latest day holding an event, and every event names one.
#[derive(Default)]
pub struct NewDays {
    latest: Option<Millis>,
}

impl NewDays {
    pub fn keeps(&mut self, sale: &Sale) -> bool {
        match sale {
            Sale::Purchase(_) => true,
            Sale::Day(day) if self.latest.is_some_and(|latest| latest >= *day) => false,
            Sale::Day(day) => {
                self.latest = Some(*day);
                true
            }
        }
    }
}

/// Purchases waiting for their day to close, and `as_of`.
#[derive(Default)]
pub struct Ledger {
    pending: BTreeMap<Millis, Vec<Purchase>>,
    latest_day: Option<Millis>,
    as_of: Option<Millis>,
}

impl Ledger {
    pub fn absorb(&mut self, sale: Sale) {
        match sale {
            Sale::Purchase(p) => self.pending.entry(window_start(p.time, DAY)).or_default().push(p),
            Sale::Day(day) => self.latest_day = Some(self.latest_day.map_or(day, |d| d.max(day))),
        }
    }

    /// When `watermark` has closed a new day: the new `as_of` (the end of the latest
    /// closed day; once the input has ended, of the latest day holding an event) and the
    /// purchases before it not handed out before.
    pub fn close(&mut self, watermark: Millis) -> Option<(Millis, Vec<Purchase>)> {
        let as_of = match watermark {
            Millis::MAX => self.latest_day.map(|d| d + DAY),
            Millis::MIN => None,
            w => Some(window_start(w, DAY)),
        }
        .filter(|a| self.as_of.is_none_or(|old| *a > old))?;
        self.as_of = Some(as_of);
        let mut counted = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= as_of {
                break;
            }
            counted.extend(entry.remove());
        }
        Some((as_of, counted))
    }
}

/// The rows of a table recomputed whole as each day closes, as last emitted.
pub struct Emitted<K, R> {
    rows: HashMap<K, R>,
}

impl<K, R> Default for Emitted<K, R> {
    fn default() -> Self {
        Emitted { rows: HashMap::new() }
    }
}

impl<K: Hash + Eq + Clone, R: PartialEq + Clone> Emitted<K, R> {
    /// Emits what turns the rows emitted so far into `rows`: a retraction for each row
    /// that left or changed, an insertion for each that entered or changed.
    pub fn replace(&mut self, rows: HashMap<K, R>, out: &mut Vec<(R, isize)>) {
        let gone: Vec<K> = self.rows.keys().filter(|k| !rows.contains_key(*k)).cloned().collect();
        for key in gone {
            out.extend(self.rows.remove(&key).map(|old| (old, -1)));
        }
        for (key, row) in rows {
            if self.rows.get(&key) != Some(&row) {
                out.extend(self.rows.insert(key, row.clone()).map(|old| (old, -1)));
                out.push((row, 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    fn purchase(day: i64) -> Sale {
        Sale::Purchase(Purchase { user: "u".into(), time: D0 + day * DAY, order: Order::Id("o".into()), product: None, revenue_cents: 1 })
    }

    #[test]
    fn only_days_later_than_any_before_go_on() {
        let mut new_days = NewDays::default();
        let kept: Vec<bool> =
            [Sale::Day(D0), Sale::Day(D0), purchase(0), Sale::Day(D0 - DAY), Sale::Day(D0 + DAY), purchase(0), Sale::Day(D0 + DAY)]
                .iter()
                .map(|s| new_days.keeps(s))
                .collect();
        assert_eq!(kept, [true, false, true, false, true, true, false]);
    }

    #[test]
    fn purchases_count_once_their_day_is_closed_and_as_of_only_moves_forward() {
        let mut ledger = Ledger::default();
        for s in [purchase(0), purchase(1), Sale::Day(D0 + DAY)] {
            ledger.absorb(s);
        }
        assert_eq!(ledger.close(Millis::MIN), None, "no day closed yet");
        let (as_of, counted) = ledger.close(D0 + DAY - 1).unwrap();
        assert_eq!((as_of, counted.len()), (D0, 0), "the day before closed: none of these purchases yet");
        let (as_of, counted) = ledger.close(D0 + DAY + 5).unwrap();
        assert_eq!((as_of, counted.len()), (D0 + DAY, 1));
        assert_eq!(ledger.close(D0 + DAY + 10), None, "the same day closes once");
        let (as_of, counted) = ledger.close(Millis::MAX).unwrap();
        assert_eq!((as_of, counted.len()), (D0 + 2 * DAY, 1), "at the end: the end of the latest day holding an event");
    }
}
