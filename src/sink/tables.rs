//! How each row maps to the columns of its PostgreSQL table (CONTRACT §4), as lines of
//! PostgreSQL's text COPY format. Rates, seconds and decimals are derived here.
//!
//! Owns column order and encoding; nothing here talks to the database.

use std::fmt::Write as _;
use std::hash::Hash;

use dataflows::event::{Event, EventType};
use dataflows::rows::{ConversionRow, DeadLetter, FunnelRow, ProductRow, SessionRow, TrafficRow};
use dataflows::time::{format_rfc3339, Millis};

/// A table's name, key and the columns the sink writes, in COPY order.
pub struct Table {
    pub name: &'static str,
    pub key: &'static [&'static str],
    pub columns: &'static [&'static str],
}

/// One line of text COPY input, fields separated by tabs.
#[derive(Default)]
pub struct CopyLine {
    buf: String,
    fields: usize,
}

impl CopyLine {
    fn sep(&mut self) {
        if self.fields > 0 {
            self.buf.push('\t');
        }
        self.fields += 1;
    }
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.sep();
        for c in s.chars() {
            match c {
                '\\' => self.buf.push_str("\\\\"),
                '\t' => self.buf.push_str("\\t"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                '\0' => {}
                c => self.buf.push(c),
            }
        }
        self
    }
    pub fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }
    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self.buf.push_str("\\N");
        self
    }
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }
    pub fn float(&mut self, v: f64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }
    /// `numerator / denominator`, or NULL when the denominator is 0.
    pub fn ratio(&mut self, numerator: i64, denominator: i64) -> &mut Self {
        if denominator == 0 {
            self.null()
        } else {
            self.float(numerator as f64 / denominator as f64)
        }
    }
    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.sep();
        self.buf.push(if v { 't' } else { 'f' });
        self
    }
    pub fn time(&mut self, t: Millis) -> &mut Self {
        self.sep();
        self.buf.push_str(&format_rfc3339(t));
        self
    }
    /// Cents as an exact decimal with two places.
    pub fn money(&mut self, cents: i64) -> &mut Self {
        self.sep();
        let sign = if cents < 0 { "-" } else { "" };
        let _ = write!(self.buf, "{sign}{}.{:02}", cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
        self
    }
    /// Ends the line and appends it to `out`.
    pub fn finish_into(&mut self, out: &mut String) {
        out.push_str(&self.buf);
        out.push('\n');
        self.buf.clear();
        self.fields = 0;
    }
}

/// A row the sink writes as a whole, with a key.
pub trait SinkRow: Clone {
    type Key: Hash + Eq + Clone;
    const TABLE: Table;
    fn key(&self) -> Self::Key;
    fn write(&self, line: &mut CopyLine);
    fn write_key(key: &Self::Key, line: &mut CopyLine);
}

fn counts_by_type(line: &mut CopyLine, counts: &[i64; 7]) {
    for t in EventType::ALL {
        line.int(counts[t.index()]);
    }
}

impl SinkRow for SessionRow {
    type Key = (String, Millis);
    const TABLE: Table = Table {
        name: "sessions",
        key: &["user_id", "session_start"],
        columns: &[
            "user_id",
            "session_start",
            "session_end",
            "duration_seconds",
            "event_count",
            "page_views",
            "product_views",
            "searches",
            "cart_adds",
            "cart_removes",
            "checkouts",
            "purchases",
            "units",
            "revenue",
            "converted",
            "bounced",
            "cart_abandoned",
            "landing_page",
            "exit_page",
            "device",
            "country",
            "referrer",
            "funnel_step",
            "is_final",
        ],
    };
    fn key(&self) -> Self::Key {
        (self.user_id.clone(), self.session_start)
    }
    fn write(&self, l: &mut CopyLine) {
        l.text(&self.user_id)
            .time(self.session_start)
            .time(self.session_end)
            .float(self.duration_ms() as f64 / 1000.0)
            .int(self.event_count());
        counts_by_type(l, &self.counts);
        l.int(self.units)
            .money(self.revenue_cents)
            .boolean(self.converted())
            .boolean(self.bounced())
            .boolean(self.cart_abandoned())
            .text(&self.landing_page)
            .text(&self.exit_page)
            .text(&self.device)
            .text(&self.country)
            .text(&self.referrer)
            .int(i64::from(self.funnel_step))
            .boolean(self.is_final);
    }
    fn write_key((user, start): &Self::Key, l: &mut CopyLine) {
        l.text(user).time(*start);
    }
}

impl SinkRow for TrafficRow {
    type Key = Millis;
    const TABLE: Table = Table {
        name: "traffic",
        key: &["window_start"],
        columns: &[
            "window_start",
            "window_end",
            "events",
            "page_views",
            "product_views",
            "searches",
            "cart_adds",
            "cart_removes",
            "checkouts",
            "purchases",
            "active_users",
            "revenue",
            "is_final",
        ],
    };
    fn key(&self) -> Self::Key {
        self.window_start
    }
    fn write(&self, l: &mut CopyLine) {
        l.time(self.window_start).time(self.window_end).int(self.counts.iter().sum());
        counts_by_type(l, &self.counts);
        l.int(self.active_users).money(self.revenue_cents).boolean(self.is_final);
    }
    fn write_key(start: &Self::Key, l: &mut CopyLine) {
        l.time(*start);
    }
}

impl SinkRow for ProductRow {
    type Key = (Millis, String);
    const TABLE: Table = Table {
        name: "product_stats",
        key: &["window_start", "product_id"],
        columns: &[
            "window_start",
            "product_id",
            "window_end",
            "category",
            "views",
            "cart_adds",
            "cart_removes",
            "purchases",
            "units",
            "revenue",
            "view_to_cart_rate",
            "cart_to_purchase_rate",
            "is_final",
        ],
    };
    fn key(&self) -> Self::Key {
        (self.window_start, self.product_id.clone())
    }
    fn write(&self, l: &mut CopyLine) {
        l.time(self.window_start)
            .text(&self.product_id)
            .time(self.window_end)
            .text(&self.category)
            .int(self.views)
            .int(self.cart_adds)
            .int(self.cart_removes)
            .int(self.purchases)
            .int(self.units)
            .money(self.revenue_cents)
            .ratio(self.cart_adds, self.views)
            .ratio(self.purchases, self.cart_adds)
            .boolean(self.is_final);
    }
    fn write_key((start, product): &Self::Key, l: &mut CopyLine) {
        l.time(*start).text(product);
    }
}

impl SinkRow for FunnelRow {
    type Key = Millis;
    const TABLE: Table = Table {
        name: "funnel",
        key: &["window_start"],
        columns: &[
            "window_start",
            "window_end",
            "sessions",
            "product_view_sessions",
            "cart_sessions",
            "checkout_sessions",
            "purchase_sessions",
            "conversion_rate",
            "cart_abandonment_rate",
            "bounce_rate",
            "avg_session_seconds",
            "revenue",
            "is_final",
        ],
    };
    fn key(&self) -> Self::Key {
        self.window_start
    }
    fn write(&self, l: &mut CopyLine) {
        l.time(self.window_start)
            .time(self.window_end)
            .int(self.sessions)
            .int(self.product_view_sessions)
            .int(self.cart_sessions)
            .int(self.checkout_sessions)
            .int(self.purchase_sessions)
            .ratio(self.purchase_sessions, self.sessions)
            .ratio(self.abandoned_sessions, self.sessions_with_cart_adds)
            .ratio(self.bounced_sessions, self.sessions)
            .float(self.total_duration_ms as f64 / 1000.0 / self.sessions as f64)
            .money(self.revenue_cents)
            .boolean(self.is_final);
    }
    fn write_key(start: &Self::Key, l: &mut CopyLine) {
        l.time(*start);
    }
}

impl SinkRow for ConversionRow {
    type Key = (Millis, String, String);
    const TABLE: Table = Table {
        name: "conversion",
        key: &["window_start", "dimension", "value"],
        columns: &[
            "window_start",
            "dimension",
            "value",
            "window_end",
            "sessions",
            "converted_sessions",
            "conversion_rate",
            "revenue",
            "is_final",
        ],
    };
    fn key(&self) -> Self::Key {
        (self.window_start, self.dimension.clone(), self.value.clone())
    }
    fn write(&self, l: &mut CopyLine) {
        l.time(self.window_start)
            .text(&self.dimension)
            .text(&self.value)
            .time(self.window_end)
            .int(self.sessions)
            .int(self.converted_sessions)
            .ratio(self.converted_sessions, self.sessions)
            .money(self.revenue_cents)
            .boolean(self.is_final);
    }
    fn write_key((start, dimension, value): &Self::Key, l: &mut CopyLine) {
        l.time(*start).text(dimension).text(value);
    }
}

/// `events_raw`: written once per event, never updated.
pub const EVENTS_RAW: Table = Table {
    name: "events_raw",
    key: &["event_id", "event_time"],
    columns: &[
        "event_id",
        "event_time",
        "event_type",
        "user_id",
        "page",
        "product_id",
        "category",
        "price",
        "quantity",
        "order_id",
        "device",
        "country",
        "referrer",
        "user_agent",
        "ip",
    ],
};

pub fn write_event(e: &Event, l: &mut CopyLine) {
    l.text(&e.event_id).time(e.event_time).text(e.event_type.as_str()).text(&e.user_id).text(&e.page);
    l.opt_text(e.product_id.as_deref()).opt_text(e.category.as_deref());
    match e.price_cents {
        Some(c) => l.money(c),
        None => l.null(),
    };
    match e.quantity {
        Some(q) => l.int(q),
        None => l.null(),
    };
    l.opt_text(e.order_id.as_deref()).text(&e.device).text(&e.country).text(&e.referrer).text(&e.user_agent).text(&e.ip);
}

/// `dead_letters`: written once per source position, never updated.
pub const DEAD_LETTERS: Table =
    Table { name: "dead_letters", key: &["source"], columns: &["received_at", "source", "reason", "detail", "payload"] };

pub fn write_dead_letter(d: &DeadLetter, l: &mut CopyLine) {
    l.time(d.received_at).text(&d.source).text(d.reason.as_str()).text(&d.detail).text(&d.payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_formats_money_and_nulls() {
        let mut l = CopyLine::default();
        let mut out = String::new();
        l.text("a\tb\\c\nd\0").money(-5).money(123_456).ratio(1, 0).ratio(1, 4).boolean(true).finish_into(&mut out);
        assert_eq!(out, "a\\tb\\\\c\\nd\t-0.05\t1234.56\t\\N\t0.25\tt\n");
    }
}
