//! `product_pairs` (CONTRACT §7), frequently bought together, as an [`EpochLogic`]: for
//! each product, the 10 products in the most orders with it (at least 2), as of the end
//! of the latest closed day.
//!
//! Counts move by what changed: a purchase line new to its order adds the order to its
//! product's count and one to each pair it makes with the order's other products (and
//! a new order to the count of all orders). Confidence and lift are derived by the sink
//! from the counts a row carries; since the count of all orders is in every lift, each
//! closed day that brings orders re-ranks the pairs and rewrites the rows whose figures
//! changed, by retraction and insertion. Runs on one worker (all orders count in every
//! lift). Owns nothing else.

use std::collections::{BTreeSet, HashMap};

use super::by_epoch::EpochLogic;
use super::sales::{Emitted, Ledger, Order, Sale};
use crate::event::Text;
use crate::rows::PairRow;
use crate::time::Millis;

/// Rows kept per product.
pub const TOP: usize = 10;
/// Orders a pair needs to count at all.
pub const MIN_ORDERS: i64 = 2;

/// Every pair bought together, keyed by nothing (one worker).
#[derive(Default)]
pub struct Pairs {
    ledger: Ledger,
    /// The products of each order so far.
    orders: HashMap<Order, BTreeSet<Text>>,
    /// Orders holding each product.
    product_orders: HashMap<Text, i64>,
    /// Orders holding both, both ways round.
    together: HashMap<(Text, Text), i64>,
    emitted: Emitted<(Text, Text), PairRow>,
}

impl Pairs {
    /// Each product's best pairs, from the counts.
    fn rows(&self) -> HashMap<(Text, Text), PairRow> {
        let all_orders = self.orders.len() as i64;
        let mut by_product: HashMap<&Text, Vec<(&Text, i64)>> = HashMap::new();
        for ((p, q), n) in &self.together {
            if *n >= MIN_ORDERS {
                by_product.entry(p).or_default().push((q, *n));
            }
        }
        let mut rows = HashMap::new();
        for (p, mut others) in by_product {
            others.sort_unstable_by(|(q1, n1), (q2, n2)| n2.cmp(n1).then_with(|| q1.cmp(q2)));
            for (q, n) in others.into_iter().take(TOP) {
                let row = PairRow {
                    product_id: p.clone(),
                    other_product_id: q.clone(),
                    orders_together: n,
                    product_orders: self.product_orders[p],
                    other_orders: self.product_orders[q],
                    all_orders,
                };
                rows.insert((p.clone(), q.clone()), row);
            }
        }
        rows
    }
}

impl EpochLogic for Pairs {
    type In = Sale;
    type Out = PairRow;

    fn absorb(&mut self, sale: Sale, diff: isize) {
        debug_assert!(diff > 0, "events are only ever inserted");
        for _ in 0..diff {
            self.ledger.absorb(sale.clone());
        }
    }

    fn close_epoch(&mut self, watermark: Millis, out: &mut Vec<(PairRow, isize)>) {
        let Some((_, purchases)) = self.ledger.close(watermark) else { return };
        if purchases.is_empty() {
            return;
        }
        for p in purchases {
            let products = self.orders.entry(p.order).or_default();
            let Some(product) = p.product else { continue };
            if products.contains(&product) {
                continue;
            }
            *self.product_orders.entry(product.clone()).or_default() += 1;
            for other in products.iter() {
                *self.together.entry((product.clone(), other.clone())).or_default() += 1;
                *self.together.entry((other.clone(), product.clone())).or_default() += 1;
            }
            products.insert(product);
        }
        let rows = self.rows();
        self.emitted.replace(rows, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::cohorts::DAY;
    use crate::operators::sales::Purchase;

    const D0: Millis = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    fn line(order: &str, product: &str, day: i64) -> Sale {
        let order = Order::Id(order.into());
        Sale::Purchase(Purchase { user: "u".into(), time: D0 + day * DAY, order, product: Some(product.into()), revenue_cents: 100 })
    }

    fn close(pairs: &mut Pairs, sales: Vec<Sale>, w: Millis) -> Vec<(PairRow, isize)> {
        for s in sales {
            pairs.absorb(s, 1);
        }
        let mut out = Vec::new();
        pairs.close_epoch(w, &mut out);
        out
    }

    #[test]
    fn pairs_in_two_orders_or_more_both_ways_with_their_counts() {
        let mut pairs = Pairs::default();
        let out = close(
            &mut pairs,
            vec![line("o1", "a", 0), line("o1", "b", 0), line("o2", "a", 0), line("o2", "b", 0), line("o2", "c", 0), line("o3", "a", 0)],
            D0 + DAY,
        );
        let rows: Vec<(String, String, i64, i64, i64, i64)> = out
            .iter()
            .map(|(r, d)| {
                assert_eq!(*d, 1);
                (
                    r.product_id.to_string(),
                    r.other_product_id.to_string(),
                    r.orders_together,
                    r.product_orders,
                    r.other_orders,
                    r.all_orders,
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(rows, [("a".into(), "b".into(), 2, 3, 2, 3), ("b".into(), "a".into(), 2, 2, 3, 3)], "a-c and b-c are in one order only");
    }

    #[test]
    fn the_top_ten_change_by_retraction_and_insertion() {
        let mut pairs = Pairs::default();
        // Product "p" bought twice with each of eleven others: only ten are kept, by name.
        let mut sales = Vec::new();
        for i in 0..11 {
            for o in 0..2 {
                let order = format!("o{i}-{o}");
                sales.extend([line(&order, "p", 0), line(&order, &format!("q{i:02}"), 0)]);
            }
        }
        let out = close(&mut pairs, sales, D0 + DAY);
        let p_rows: Vec<String> = out.iter().filter(|(r, _)| r.product_id == "p").map(|(r, _)| r.other_product_id.to_string()).collect();
        assert_eq!(p_rows.len(), TOP);
        assert!(!p_rows.contains(&"q10".to_owned()), "ties broken by other_product_id: q10 is eleventh");
        // A third order with q10 on the next day puts it first and pushes q09 out.
        let out = close(&mut pairs, vec![line("late", "p", 1), line("late", "q10", 1)], D0 + 2 * DAY);
        let inserted: Vec<String> =
            out.iter().filter(|(r, d)| *d > 0 && r.product_id == "p").map(|(r, _)| r.other_product_id.to_string()).collect();
        let retracted: Vec<String> =
            out.iter().filter(|(r, d)| *d < 0 && r.product_id == "p").map(|(r, _)| r.other_product_id.to_string()).collect();
        assert!(inserted.contains(&"q10".to_owned()) && !inserted.contains(&"q09".to_owned()), "{inserted:?}");
        assert!(retracted.contains(&"q09".to_owned()), "{retracted:?}");
    }
}
