//! The reasons a session can be flagged for: a fixed, documented vocabulary, each reason a
//! rule over the session's [`Features`] with the points it adds to the risk score.
//!
//! A rule names a behaviour people can check in the session's events; the model's own
//! reason, [`Reason::UnusualBehaviour`], is given by the scorer, not by a rule here.
//! Owns the vocabulary, the thresholds and their order of importance.

use super::features::Features;

/// Why a session is risky, most important first in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Several purchases of one product, each small: cards being tried.
    RepeatedSmallPurchases,
    /// Checkouts not followed by a purchase, again and again: cards declined.
    DeclinedCheckouts,
    /// Many cart adds and no checkout: stock held, not bought.
    CartStuffing,
    /// Many distinct products viewed and nothing put in the cart: a catalogue read through.
    CatalogueSweep,
    /// Many events, the typical one a few seconds after the last: no one reads that fast.
    MachinePace,
    /// Cart adds of unusually large quantities.
    BulkCartAdds,
    /// Unlike the sessions the model learned from (the Isolation Forest's score).
    UnusualBehaviour,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::RepeatedSmallPurchases,
        Reason::DeclinedCheckouts,
        Reason::CartStuffing,
        Reason::CatalogueSweep,
        Reason::MachinePace,
        Reason::BulkCartAdds,
        Reason::UnusualBehaviour,
    ];

    /// The name stored in `session_risk.reasons`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RepeatedSmallPurchases => "repeated_small_purchases",
            Reason::DeclinedCheckouts => "declined_checkouts",
            Reason::CartStuffing => "cart_stuffing",
            Reason::CatalogueSweep => "catalogue_sweep",
            Reason::MachinePace => "machine_pace",
            Reason::BulkCartAdds => "bulk_cart_adds",
            Reason::UnusualBehaviour => "unusual_behaviour",
        }
    }

    /// Points towards the score (0–100) when the reason holds.
    pub fn points(self) -> u8 {
        match self {
            Reason::RepeatedSmallPurchases | Reason::DeclinedCheckouts | Reason::CartStuffing | Reason::CatalogueSweep => 80,
            Reason::MachinePace => 70,
            Reason::BulkCartAdds => 40,
            Reason::UnusualBehaviour => 0, // the model's score stands for itself
        }
    }
}

/// Mean purchase under this many cents counts as small.
pub const SMALL_PURCHASE_CENTS: i64 = 2_000;

/// The rules' reasons for a session, most important first.
pub fn reasons(f: &Features) -> Vec<Reason> {
    let holds = |r: Reason| match r {
        Reason::RepeatedSmallPurchases => {
            f.purchases >= 3 && f.products_purchased == 1 && f.revenue_cents < SMALL_PURCHASE_CENTS * f.purchases
        }
        Reason::DeclinedCheckouts => f.checkouts - f.purchases >= 3,
        Reason::CartStuffing => f.cart_adds >= 12 && f.checkouts == 0,
        Reason::CatalogueSweep => f.products_viewed >= 20 && f.cart_adds == 0,
        Reason::MachinePace => f.events >= 20 && f.median_gap_ms <= 5_000,
        Reason::BulkCartAdds => f.largest_cart_add >= 5 && f.cart_adds >= 5,
        Reason::UnusualBehaviour => false,
    };
    Reason::ALL.into_iter().filter(|r| holds(*r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_fires_on_its_behaviour_and_not_on_a_shopper() {
        let shopper = Features {
            events: 8,
            median_gap_ms: 20_000,
            products_viewed: 4,
            cart_adds: 1,
            checkouts: 1,
            purchases: 1,
            ..Features::default()
        };
        assert!(reasons(&shopper).is_empty());
        let tester = Features { purchases: 4, products_purchased: 1, revenue_cents: 4 * 799, checkouts: 9, ..shopper.clone() };
        assert_eq!(reasons(&tester), [Reason::RepeatedSmallPurchases, Reason::DeclinedCheckouts]);
        let stuffer = Features { cart_adds: 30, largest_cart_add: 8, checkouts: 0, purchases: 0, ..shopper.clone() };
        assert_eq!(reasons(&stuffer), [Reason::CartStuffing, Reason::BulkCartAdds]);
        let scraper =
            Features { events: 90, median_gap_ms: 1_200, products_viewed: 70, cart_adds: 0, checkouts: 0, purchases: 0, ..shopper };
        assert_eq!(reasons(&scraper), [Reason::CatalogueSweep, Reason::MachinePace]);
    }

    #[test]
    fn thresholds_are_inclusive_and_big_buyers_are_not_card_testers() {
        let f = Features { purchases: 3, products_purchased: 1, revenue_cents: 3 * SMALL_PURCHASE_CENTS - 1, ..Features::default() };
        assert_eq!(reasons(&f), [Reason::RepeatedSmallPurchases]);
        let big = Features { revenue_cents: 3 * SMALL_PURCHASE_CENTS, ..f.clone() };
        assert!(reasons(&big).is_empty(), "three purchases of one dear product are a shopper's");
        let varied = Features { products_purchased: 2, ..f };
        assert!(reasons(&varied).is_empty(), "different products are an order, not card tests");
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), names.iter().collect::<std::collections::BTreeSet<_>>().len(), "names are distinct");
    }
}
