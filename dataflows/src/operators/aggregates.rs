//! The four windowed aggregates of CONTRACT §4 as [`WindowAggregate`]s: traffic and
//! product stats over events, funnel and conversion over session rows.
//!
//! Each owns only how one window's figures add up and become a row; windowing, update
//! mode and finality are `windows`' business.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventType, Text};
use crate::operators::windows::WindowAggregate;
use crate::rows::{ConversionRow, FunnelRow, ProductRow, SessionRow, TrafficRow, TypeCounts};
use crate::time::Millis;

/// What traffic needs of an event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hit {
    pub event_type: EventType,
    pub user_id: Text,
    pub revenue_cents: i64,
}

impl Hit {
    pub fn of(e: &Event) -> Hit {
        Hit { event_type: e.event_type, user_id: e.user_id.clone(), revenue_cents: e.revenue_cents() }
    }
}

/// `traffic`: events by type, exact distinct users, revenue.
#[derive(Default)]
pub struct Traffic {
    counts: TypeCounts,
    users: HashMap<Text, isize>,
    revenue_cents: i64,
}

impl WindowAggregate for Traffic {
    type In = Hit;
    type Group = ();
    type Row = TrafficRow;

    fn add(&mut self, hit: Hit, diff: isize) {
        self.counts[hit.event_type.index()] += diff as i64;
        self.revenue_cents += hit.revenue_cents * diff as i64;
        match self.users.entry(hit.user_id) {
            Entry::Occupied(mut seen) => {
                *seen.get_mut() += diff;
                if *seen.get() == 0 {
                    seen.remove();
                }
            }
            Entry::Vacant(new) => {
                new.insert(diff);
            }
        }
    }

    fn row(&self, (window_start, window_end): (Millis, Millis), _: &(), is_final: bool) -> Option<TrafficRow> {
        (self.counts.iter().sum::<i64>() > 0).then_some(TrafficRow {
            window_start,
            window_end,
            counts: self.counts,
            active_users: self.users.len() as i64,
            revenue_cents: self.revenue_cents,
            is_final,
        })
    }
}

/// What product stats need of an event that names a product.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductHit {
    pub time: Millis,
    pub event_id: Text,
    pub event_type: EventType,
    pub category: Text,
    pub quantity: i64,
    pub revenue_cents: i64,
}

impl ProductHit {
    /// The product and hit of an event of the four product types; `None` for others.
    pub fn of(e: &Event) -> Option<(Text, ProductHit)> {
        let counted =
            matches!(e.event_type, EventType::ProductView | EventType::AddToCart | EventType::RemoveFromCart | EventType::Purchase);
        let product = e.product_id.clone().filter(|_| counted)?;
        let hit = ProductHit {
            time: e.event_time,
            event_id: e.event_id.clone(),
            event_type: e.event_type,
            category: e.category.clone().unwrap_or_default(),
            quantity: e.quantity.unwrap_or(0),
            revenue_cents: e.revenue_cents(),
        };
        Some((product, hit))
    }
}

/// `product_stats`: a product's views, cart moves and sales; its category is the one on
/// its earliest event (by time, then event_id), so the row does not depend on arrival order.
#[derive(Default)]
pub struct ProductStats {
    counts: TypeCounts,
    units: i64,
    revenue_cents: i64,
    first: Option<(Millis, Text, Text)>,
}

impl WindowAggregate for ProductStats {
    type In = ProductHit;
    type Group = Text;
    type Row = ProductRow;

    fn add(&mut self, hit: ProductHit, diff: isize) {
        debug_assert!(diff > 0, "events are never retracted");
        let diff = diff as i64;
        self.counts[hit.event_type.index()] += diff;
        if hit.event_type == EventType::Purchase {
            self.units += hit.quantity * diff;
            self.revenue_cents += hit.revenue_cents * diff;
        }
        let key = (hit.time, hit.event_id, hit.category);
        if self.first.as_ref().is_none_or(|f| (f.0, &f.1) > (key.0, &key.1)) {
            self.first = Some(key);
        }
    }

    fn row(&self, (window_start, window_end): (Millis, Millis), product_id: &Text, is_final: bool) -> Option<ProductRow> {
        let (_, _, category) = self.first.as_ref()?;
        Some(ProductRow {
            window_start,
            window_end,
            product_id: product_id.clone(),
            category: category.clone(),
            views: self.counts[EventType::ProductView.index()],
            cart_adds: self.counts[EventType::AddToCart.index()],
            cart_removes: self.counts[EventType::RemoveFromCart.index()],
            purchases: self.counts[EventType::Purchase.index()],
            units: self.units,
            revenue_cents: self.revenue_cents,
            is_final,
        })
    }
}

/// `funnel`: sums over the sessions that started in the window. Linear in the session
/// rows, so a retracted version subtracts exactly what it added.
#[derive(Default)]
pub struct Funnel {
    row: FunnelRow,
    open_sessions: i64,
}

impl WindowAggregate for Funnel {
    type In = SessionRow;
    type Group = ();
    type Row = FunnelRow;

    fn add(&mut self, s: SessionRow, diff: isize) {
        let d = diff as i64;
        let r = &mut self.row;
        let at_least = |step: u8| d * i64::from(s.funnel_step >= step);
        r.sessions += d;
        r.product_view_sessions += at_least(2);
        r.cart_sessions += at_least(3);
        r.checkout_sessions += at_least(4);
        r.purchase_sessions += at_least(5);
        r.sessions_with_cart_adds += d * i64::from(s.count(EventType::AddToCart) > 0);
        r.abandoned_sessions += d * i64::from(s.cart_abandoned());
        r.bounced_sessions += d * i64::from(s.bounced());
        r.total_duration_ms += d * s.duration_ms();
        r.revenue_cents += d * s.revenue_cents;
        self.open_sessions += d * i64::from(!s.is_final);
    }

    fn row(&self, (window_start, window_end): (Millis, Millis), _: &(), is_final: bool) -> Option<FunnelRow> {
        (self.row.sessions > 0).then(|| FunnelRow { window_start, window_end, is_final, ..self.row.clone() })
    }

    fn complete(&self) -> bool {
        self.open_sessions == 0
    }
}

/// The dimensions of `conversion`, and a session's value in each.
pub fn dimensions(s: &SessionRow) -> [(&'static str, Text); 3] {
    [("device", s.device.clone()), ("country", s.country.clone()), ("referrer", s.referrer.clone())]
}

/// One session's contribution to a `conversion` row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionOutcome {
    pub converted: bool,
    pub revenue_cents: i64,
    pub is_final: bool,
}

impl SessionOutcome {
    pub fn of(s: &SessionRow) -> SessionOutcome {
        SessionOutcome { converted: s.converted(), revenue_cents: s.revenue_cents, is_final: s.is_final }
    }
}

/// `conversion`: sessions, converted sessions and revenue per (dimension, value).
#[derive(Default)]
pub struct Conversion {
    sessions: i64,
    converted: i64,
    revenue_cents: i64,
    open_sessions: i64,
}

impl WindowAggregate for Conversion {
    type In = SessionOutcome;
    type Group = (Text, Text);
    type Row = ConversionRow;

    fn add(&mut self, s: SessionOutcome, diff: isize) {
        let d = diff as i64;
        self.sessions += d;
        self.converted += d * i64::from(s.converted);
        self.revenue_cents += d * s.revenue_cents;
        self.open_sessions += d * i64::from(!s.is_final);
    }

    fn row(
        &self,
        (window_start, window_end): (Millis, Millis),
        (dimension, value): &(Text, Text),
        is_final: bool,
    ) -> Option<ConversionRow> {
        (self.sessions > 0).then(|| ConversionRow {
            window_start,
            window_end,
            dimension: dimension.clone(),
            value: value.clone(),
            sessions: self.sessions,
            converted_sessions: self.converted,
            revenue_cents: self.revenue_cents,
            is_final,
        })
    }

    fn complete(&self) -> bool {
        self.open_sessions == 0
    }
}
