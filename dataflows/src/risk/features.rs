//! What a session's own events say about how it was made: pace, breadth, repetition and
//! amounts, as [`Features`], and the numbers the model sees ([`Features::vector`]).
//!
//! Computed from the session's clicks alone (nothing of other sessions, no label), in
//! integers so that they compare exactly; the vector's transforms (logarithms, shares)
//! are the model's concern. Owns nothing else.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::EventType;
use crate::operators::sessions::Click;
use crate::time::Millis;

/// A session's behaviour, from its events sorted by time.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Features {
    pub events: i64,
    pub duration_ms: Millis,
    /// The median time between consecutive events (0 for a single event).
    pub median_gap_ms: Millis,
    pub page_views: i64,
    pub searches: i64,
    pub product_views: i64,
    /// Distinct products viewed.
    pub products_viewed: i64,
    pub cart_adds: i64,
    pub cart_removes: i64,
    /// Distinct products added to the cart.
    pub products_carted: i64,
    /// The largest quantity of one cart add.
    pub largest_cart_add: i64,
    pub checkouts: i64,
    pub purchases: i64,
    /// Distinct products purchased.
    pub products_purchased: i64,
    pub revenue_cents: i64,
}

/// The names of [`Features::vector`]'s entries, in order.
pub const VECTOR: [&str; 12] = [
    "log_events",
    "log_median_gap_s",
    "log_events_per_minute",
    "log_products_viewed",
    "view_share",
    "log_cart_adds",
    "cart_churn",
    "log_largest_cart_add",
    "log_checkouts",
    "declined_share",
    "log_purchases",
    "log_mean_purchase",
];

impl Features {
    /// The features of one session's clicks (sorted by time, as a session holds them).
    pub fn of(clicks: &[Click]) -> Features {
        let count = |t: EventType| clicks.iter().filter(|c| c.event_type == t).count() as i64;
        let distinct = |t: EventType| {
            clicks.iter().filter(|c| c.event_type == t).filter_map(|c| c.product.as_ref()).collect::<BTreeSet<_>>().len() as i64
        };
        let mut gaps: Vec<Millis> = clicks.windows(2).map(|w| w[1].time - w[0].time).collect();
        gaps.sort_unstable();
        Features {
            events: clicks.len() as i64,
            duration_ms: clicks.last().zip(clicks.first()).map_or(0, |(l, f)| l.time - f.time),
            median_gap_ms: gaps.get(gaps.len() / 2).copied().unwrap_or(0),
            page_views: count(EventType::PageView),
            searches: count(EventType::Search),
            product_views: count(EventType::ProductView),
            products_viewed: distinct(EventType::ProductView),
            cart_adds: count(EventType::AddToCart),
            cart_removes: count(EventType::RemoveFromCart),
            products_carted: distinct(EventType::AddToCart),
            largest_cart_add: clicks.iter().filter(|c| c.event_type == EventType::AddToCart).map(|c| c.quantity).max().unwrap_or(0),
            checkouts: count(EventType::BeginCheckout),
            purchases: count(EventType::Purchase),
            products_purchased: distinct(EventType::Purchase),
            revenue_cents: clicks.iter().map(|c| c.revenue_cents).sum(),
        }
    }

    /// The numbers the model sees, named by [`VECTOR`]: counts and times on a log scale
    /// (a session of 200 events is not 100 times stranger than one of 2), shares in [0, 1].
    pub fn vector(&self) -> Vec<f64> {
        let log = |v: f64| v.max(0.0).ln_1p();
        let share = |part: i64, whole: i64| if whole > 0 { part as f64 / whole as f64 } else { 0.0 };
        let minutes = self.duration_ms as f64 / 60_000.0;
        vec![
            log(self.events as f64),
            log(self.median_gap_ms as f64 / 1000.0),
            log(self.events as f64 / minutes.max(1.0)),
            log(self.products_viewed as f64),
            share(self.product_views, self.events),
            log(self.cart_adds as f64),
            share(self.cart_removes, self.cart_adds),
            log(self.largest_cart_add as f64),
            log(self.checkouts as f64),
            share((self.checkouts - self.purchases).max(0), self.checkouts),
            log(self.purchases as f64),
            log(share(self.revenue_cents, self.purchases) / 100.0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Text;

    fn click(time: Millis, event_type: EventType, product: Option<&str>, quantity: i64, revenue_cents: i64) -> Click {
        Click {
            time,
            event_id: Text::new(format!("e{time}")),
            event_type,
            page: "/".into(),
            quantity,
            revenue_cents,
            device: "mobile".into(),
            country: "FR".into(),
            referrer: "direct".into(),
            product: product.map(Text::new),
        }
    }

    #[test]
    fn counts_breadth_pace_and_amounts() {
        use EventType::*;
        let clicks = [
            click(0, PageView, None, 0, 0),
            click(10_000, ProductView, Some("a"), 0, 0),
            click(12_000, ProductView, Some("a"), 0, 0),
            click(40_000, ProductView, Some("b"), 0, 0),
            click(41_000, AddToCart, Some("b"), 3, 0),
            click(50_000, AddToCart, Some("c"), 1, 0),
            click(51_000, RemoveFromCart, Some("c"), 1, 0),
            click(60_000, BeginCheckout, None, 0, 0),
            click(61_000, Purchase, Some("b"), 3, 2_997),
        ];
        let f = Features::of(&clicks);
        assert_eq!((f.events, f.duration_ms), (9, 61_000));
        // Gaps 10, 2, 28, 1, 9, 1, 9, 1 s: sorted 1, 1, 1, 2, 9, 9, 10, 28: the median is the fifth.
        assert_eq!(f.median_gap_ms, 9_000);
        assert_eq!((f.product_views, f.products_viewed), (3, 2), "a product viewed twice counts once");
        assert_eq!((f.cart_adds, f.cart_removes, f.products_carted, f.largest_cart_add), (2, 1, 2, 3));
        assert_eq!((f.checkouts, f.purchases, f.products_purchased, f.revenue_cents), (1, 1, 1, 2_997));
        let v = f.vector();
        assert_eq!(v.len(), VECTOR.len());
        assert!((v[VECTOR.iter().position(|n| *n == "view_share").unwrap()] - 3.0 / 9.0).abs() < 1e-12);
        assert!((v[VECTOR.iter().position(|n| *n == "cart_churn").unwrap()] - 0.5).abs() < 1e-12);
        assert_eq!(v[VECTOR.iter().position(|n| *n == "declined_share").unwrap()], 0.0);
    }

    #[test]
    fn a_single_event_has_no_gap_and_a_finite_vector() {
        let f = Features::of(&[click(5, EventType::PageView, None, 0, 0)]);
        assert_eq!((f.events, f.duration_ms, f.median_gap_ms), (1, 0, 0));
        assert!(f.vector().iter().all(|x| x.is_finite()));
    }
}
