//! `customer_rfm` (CONTRACT §7) as an [`EpochLogic`]: recency, frequency and monetary
//! value of every purchasing user, scored by rank and named by segment, as of the end of
//! the latest closed day.
//!
//! Scores are ranks over all purchasing users, so a newly closed day changes every row
//! (`as_of` and `recency_days` at least): the logic runs on one worker, keeps per user
//! only the figures (last purchase, the set of their orders, revenue) and the row it
//! emitted, and on each newly closed day re-scores everyone in one sort per metric
//! (O(n log n)), emitting the rows that changed. Purchases on open days wait in its
//! [`Ledger`] until their day closes. Owns nothing else.

use std::collections::{HashMap, HashSet};

use super::by_epoch::EpochLogic;
use super::cohorts::DAY;
use super::sales::{Emitted, Ledger, Order, Sale};
use crate::event::Text;
use crate::rows::RfmRow;
use crate::time::Millis;

struct Customer {
    last_purchase_at: Millis,
    orders: HashSet<Order>,
    monetary_cents: i64,
}

impl Default for Customer {
    fn default() -> Self {
        Customer { last_purchase_at: Millis::MIN, orders: HashSet::new(), monetary_cents: 0 }
    }
}

/// The segment of CONTRACT §7 for recency and frequency scores.
pub fn segment(r: u8, f: u8) -> &'static str {
    match (r, f) {
        (5, 4..=5) => "Champions",
        (3..=4, 4..=5) => "Loyal Customers",
        (4..=5, 2..=3) => "Potential Loyalist",
        (5, 1) => "New Customers",
        (4, 1) => "Promising",
        (3, 3) => "Need Attention",
        (3, 1..=2) => "About to Sleep",
        (1..=2, 5) => "Can't Lose Them",
        (1..=2, 3..=4) => "At Risk",
        (1, 1) => "Lost",
        _ => "Hibernating",
    }
}

/// `1 + floor(5 × worse / n)`.
fn score(worse: usize, n: usize) -> u8 {
    1 + (5 * worse / n) as u8
}

/// Every purchasing user's row, keyed by nothing (one worker).
#[derive(Default)]
pub struct Rfm {
    ledger: Ledger,
    customers: HashMap<Text, Customer>,
    emitted: Emitted<Text, RfmRow>,
}

impl Rfm {
    /// The rows as of `as_of`, from the customers' figures.
    fn rows(&self, as_of: Millis) -> HashMap<Text, RfmRow> {
        let n = self.customers.len();
        let mut recency: Vec<i64> = Vec::with_capacity(n);
        let mut frequency: Vec<i64> = Vec::with_capacity(n);
        let mut monetary: Vec<i64> = Vec::with_capacity(n);
        for c in self.customers.values() {
            recency.push((as_of - c.last_purchase_at).div_euclid(DAY));
            frequency.push(c.orders.len() as i64);
            monetary.push(c.monetary_cents);
        }
        recency.sort_unstable();
        frequency.sort_unstable();
        monetary.sort_unstable();
        self.customers
            .iter()
            .map(|(user, c)| {
                let recency_days = (as_of - c.last_purchase_at).div_euclid(DAY);
                let frequency_n = c.orders.len() as i64;
                // Worse: a larger recency, a smaller frequency or monetary value.
                let r = score(n - recency.partition_point(|v| *v <= recency_days), n);
                let f = score(frequency.partition_point(|v| *v < frequency_n), n);
                let m = score(monetary.partition_point(|v| *v < c.monetary_cents), n);
                let row = RfmRow {
                    user_id: user.clone(),
                    as_of,
                    last_purchase_at: c.last_purchase_at,
                    recency_days,
                    frequency: frequency_n,
                    monetary_cents: c.monetary_cents,
                    r_score: r,
                    f_score: f,
                    m_score: m,
                    segment: Text::new_static(segment(r, f)),
                };
                (user.clone(), row)
            })
            .collect()
    }
}

impl EpochLogic for Rfm {
    type In = Sale;
    type Out = RfmRow;

    fn absorb(&mut self, sale: Sale, diff: isize) {
        debug_assert!(diff > 0, "events are only ever inserted");
        for _ in 0..diff {
            self.ledger.absorb(sale.clone());
        }
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(RfmRow, isize)>) {
        let Some((as_of, purchases)) = self.ledger.close(watermark) else { return };
        for p in purchases {
            let c = self.customers.entry(p.user).or_default();
            c.last_purchase_at = c.last_purchase_at.max(p.time);
            c.orders.insert(p.order);
            c.monetary_cents += p.revenue_cents;
        }
        let rows = self.rows(as_of);
        self.emitted.replace(rows, out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::operators::sales::Purchase;

    const D0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    fn bought(user: &str, time: Millis, order: Order, revenue_cents: i64) -> Sale {
        Sale::Purchase(Purchase { user: user.into(), time, order, product: None, revenue_cents })
    }

    fn purchase(user: &str, day: i64, order: &str, revenue_cents: i64) -> Sale {
        bought(user, D0 + day * DAY + 3_600_000, Order::Id(order.into()), revenue_cents)
    }

    fn close(rfm: &mut Rfm, records: Vec<Sale>, w: Millis) -> Vec<(RfmRow, isize)> {
        for r in records {
            rfm.absorb(r, 1);
        }
        let mut out = Vec::new();
        rfm.close_epoch(w, &mut out);
        out
    }

    #[test]
    fn every_segment_of_the_grid() {
        let expected = [
            "Lost Hibernating At Risk At Risk Can't Lose Them",
            "Hibernating Hibernating At Risk At Risk Can't Lose Them",
            "About to Sleep About to Sleep Need Attention Loyal Customers Loyal Customers",
            "Promising Potential Loyalist Potential Loyalist Loyal Customers Loyal Customers",
            "New Customers Potential Loyalist Potential Loyalist Champions Champions",
        ];
        for (r, line) in (1..=5).zip(expected) {
            let names: Vec<&str> = (1..=5).map(|f| segment(r, f)).collect();
            assert_eq!(names.join(" "), line, "r = {r}");
        }
    }

    #[test]
    fn scores_are_ranks_over_all_purchasing_users_as_of_the_latest_closed_day() {
        let mut rfm = Rfm::default();
        // Nothing before the first day closes; the purchases of the open day wait.
        let out =
            close(&mut rfm, vec![purchase("a", 0, "o1", 1000), purchase("b", 0, "o2", 500), purchase("b", 1, "o3", 500)], D0 + DAY - 1);
        assert!(out.is_empty());
        let out = close(&mut rfm, vec![], D0 + DAY);
        let rows: BTreeMap<String, (i64, i64, i64, u8, u8, u8)> = out
            .iter()
            .map(|(r, _)| (r.user_id.to_string(), (r.recency_days, r.frequency, r.monetary_cents, r.r_score, r.f_score, r.m_score)))
            .collect();
        // as_of = end of day 0: b's day-1 purchase does not count yet; equal values tie.
        assert_eq!(rows["a"], (0, 1, 1000, 1, 1, 3));
        assert_eq!(rows["b"], (0, 1, 500, 1, 1, 1));
        // Day 1 closes: every row is re-scored (as_of moved), b now has two orders.
        let out = close(&mut rfm, vec![Sale::Day(D0 + 2 * DAY)], Millis::MAX);
        let live: Vec<&RfmRow> = out.iter().filter(|(_, d)| *d > 0).map(|(r, _)| r).collect();
        assert_eq!(live.len(), 2);
        assert!(live.iter().all(|r| r.as_of == D0 + 3 * DAY), "at the end: the end of the latest day holding an event");
        let b = live.iter().find(|r| r.user_id == "b").unwrap();
        assert_eq!((b.recency_days, b.frequency, b.monetary_cents, b.r_score, b.f_score, b.m_score), (1, 2, 1000, 3, 3, 1));
        assert_eq!(out.iter().filter(|(_, d)| *d < 0).count(), 2, "the old versions are retracted");
    }

    #[test]
    fn a_purchase_without_an_order_id_is_an_order_of_its_own() {
        let mut rfm = Rfm::default();
        let lines = |id: &str| bought("a", D0, Order::Event(id.into(), D0), 100);
        let out = close(
            &mut rfm,
            vec![lines("e1"), lines("e2"), purchase("a", 0, "o1", 100), purchase("a", 0, "o1", 100), Sale::Day(D0)],
            Millis::MAX,
        );
        assert_eq!(out[0].0.frequency, 3);
    }

    #[test]
    fn an_event_id_back_after_the_dedupe_forgot_it_is_another_order() {
        let mut rfm = Rfm::default();
        let again = |time: Millis| bought("a", time, Order::Event("e1".into(), time), 100);
        let out = close(&mut rfm, vec![again(D0), again(D0 + 3_600_000), Sale::Day(D0)], Millis::MAX);
        assert_eq!(out[0].0.frequency, 2);
    }

    #[test]
    fn purchases_before_1970_are_the_last_purchase_too() {
        let mut rfm = Rfm::default();
        let before_1970 = -10 * DAY + 5;
        let out = close(&mut rfm, vec![bought("a", before_1970, Order::Id("o".into()), 100), Sale::Day(-10 * DAY)], Millis::MAX);
        let row = &out[0].0;
        assert_eq!((row.last_purchase_at, row.as_of, row.recency_days), (before_1970, -9 * DAY, 0));
    }
}
