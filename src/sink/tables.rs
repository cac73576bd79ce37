//! How each row maps to the columns of its PostgreSQL table (CONTRACT §4), as rows of
//! PostgreSQL's binary COPY format. Rates, seconds and decimals are derived here.
//!
//! Owns column order, column types and encoding; nothing here talks to the database.
//! Binary COPY spares the server from parsing text (times, decimals, integers), but
//! each field must have its column's exact type: a mismatch fails the write, and every
//! table is written by the integration tests.

use std::hash::Hash;

use dataflows::event::{Event, EventType, Text};
use dataflows::rows::{
    CohortRow, ConversionRow, DeadLetter, FunnelRow, ModelRow, PairRow, ProductRow, RfmRow, RiskRow, SessionRow, SimilarRow, TrafficRow,
};
use dataflows::time::Millis;

/// A table's name, key and the columns the sink writes, in COPY order.
pub struct Table {
    pub name: &'static str,
    pub key: &'static [&'static str],
    pub columns: &'static [&'static str],
}

/// Milliseconds from the Unix epoch to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_MS: Millis = 946_684_800_000;

/// Rows in PostgreSQL's binary COPY format: [`CopyRows::row`], then one call per
/// column in COPY order, then [`CopyRows::finish`].
pub struct CopyRows {
    buf: Vec<u8>,
    rows: usize,
}

impl Default for CopyRows {
    fn default() -> Self {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyRows { buf, rows: 0 }
    }
}

impl CopyRows {
    /// Starts a row of `fields` columns.
    pub fn row(&mut self, fields: usize) -> &mut Self {
        self.buf.extend_from_slice(&(fields as i16).to_be_bytes());
        self.rows += 1;
        self
    }
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }
    /// `text`. PostgreSQL text cannot hold NUL: events with one are rejected when
    /// parsed, and elsewhere (a dead letter's detail) it is dropped.
    pub fn text(&mut self, s: &str) -> &mut Self {
        if s.contains('\0') {
            return self.field(s.replace('\0', "").as_bytes());
        }
        self.field(s.as_bytes())
    }
    /// `text[]`: one dimension, no NULLs (an empty array has no dimension).
    pub fn texts(&mut self, items: &[Text]) -> &mut Self {
        const TEXT_OID: i32 = 25;
        let mut a = Vec::new();
        let dims: i32 = if items.is_empty() { 0 } else { 1 };
        for v in [dims, 0, TEXT_OID] {
            a.extend_from_slice(&v.to_be_bytes());
        }
        if !items.is_empty() {
            a.extend_from_slice(&(items.len() as i32).to_be_bytes());
            a.extend_from_slice(&1i32.to_be_bytes()); // lower bound
            for item in items {
                let item = item.replace('\0', "");
                a.extend_from_slice(&(item.len() as i32).to_be_bytes());
                a.extend_from_slice(item.as_bytes());
            }
        }
        self.field(&a)
    }
    /// `jsonb`, from JSON text.
    pub fn jsonb(&mut self, json: &str) -> &mut Self {
        let mut a = Vec::with_capacity(json.len() + 1);
        a.push(1); // the jsonb binary format's version
        a.extend_from_slice(json.as_bytes());
        self.field(&a)
    }
    pub fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }
    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }
    /// `smallint`
    pub fn int2(&mut self, v: i16) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    /// `integer`. A value beyond its range goes as 8 bytes, which PostgreSQL refuses:
    /// the write fails rather than store a wrong number.
    pub fn int4(&mut self, v: i64) -> &mut Self {
        match i32::try_from(v) {
            Ok(v) => self.field(&v.to_be_bytes()),
            Err(_) => self.field(&v.to_be_bytes()),
        }
    }
    /// `bigint`
    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    /// `double precision`
    pub fn float8(&mut self, v: f64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    /// `numerator / denominator` as `double precision`, or NULL when the denominator is 0.
    pub fn ratio(&mut self, numerator: i64, denominator: i64) -> &mut Self {
        if denominator == 0 {
            self.null()
        } else {
            self.float8(numerator as f64 / denominator as f64)
        }
    }
    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.field(&[u8::from(v)])
    }
    /// `timestamptz`: microseconds since 2000-01-01 UTC; `Millis::MAX` is infinity.
    pub fn time(&mut self, t: Millis) -> &mut Self {
        let micros = match t {
            Millis::MAX => i64::MAX,
            Millis::MIN => i64::MIN,
            t => (t - POSTGRES_EPOCH_MS).saturating_mul(1000),
        };
        self.field(&micros.to_be_bytes())
    }
    /// `date`: days since 2000-01-01, of a UTC day's start.
    pub fn date(&mut self, day_start: Millis) -> &mut Self {
        let days = (day_start - POSTGRES_EPOCH_MS).div_euclid(86_400_000);
        self.int4(days)
    }
    /// Cents as an exact `numeric` with two decimals.
    pub fn money(&mut self, cents: i64) -> &mut Self {
        let (weight, digits) = numeric_digits(cents.unsigned_abs());
        self.buf.extend_from_slice(&(8 + 2 * digits.len() as i32).to_be_bytes());
        for v in [digits.len() as i16, weight, if cents < 0 { 0x4000 } else { 0 }, 2] {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            self.buf.extend_from_slice(&d.to_be_bytes());
        }
        self
    }
    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The COPY data: the rows and the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// `cents / 100` as PostgreSQL's `numeric` stores it: base-10000 digits, most
/// significant first and without trailing zeros, and the weight (power of 10000) of the
/// first one.
fn numeric_digits(cents: u64) -> (i16, Vec<i16>) {
    let mut digits = Vec::new();
    let mut whole = cents / 100;
    while whole > 0 {
        digits.push((whole % 10_000) as i16);
        whole /= 10_000;
    }
    digits.reverse();
    let weight = digits.len() as i16 - 1;
    digits.push((cents % 100 * 100) as i16);
    while digits.last() == Some(&0) {
        digits.pop();
    }
    (if digits.is_empty() { 0 } else { weight }, digits)
}

/// A row the sink writes as a whole, with a key.
pub trait SinkRow: Clone {
    type Key: Hash + Eq + Clone;
    const TABLE: Table;
    fn key(&self) -> Self::Key;
    fn write(&self, rows: &mut CopyRows);
    fn write_key(key: &Self::Key, rows: &mut CopyRows);
}

impl SinkRow for SessionRow {
    type Key = (Text, Millis);
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
    fn write(&self, l: &mut CopyRows) {
        l.text(&self.user_id)
            .time(self.session_start)
            .time(self.session_end)
            .float8(self.duration_ms() as f64 / 1000.0)
            .int4(self.event_count());
        for t in EventType::ALL {
            l.int4(self.counts[t.index()]);
        }
        l.int8(self.units)
            .money(self.revenue_cents)
            .boolean(self.converted())
            .boolean(self.bounced())
            .boolean(self.cart_abandoned())
            .text(&self.landing_page)
            .text(&self.exit_page)
            .text(&self.device)
            .text(&self.country)
            .text(&self.referrer)
            .int2(i16::from(self.funnel_step))
            .boolean(self.is_final);
    }
    fn write_key((user, start): &Self::Key, l: &mut CopyRows) {
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
    fn write(&self, l: &mut CopyRows) {
        l.time(self.window_start).time(self.window_end).int8(self.counts.iter().sum());
        for t in EventType::ALL {
            l.int8(self.counts[t.index()]);
        }
        l.int8(self.active_users).money(self.revenue_cents).boolean(self.is_final);
    }
    fn write_key(start: &Self::Key, l: &mut CopyRows) {
        l.time(*start);
    }
}

impl SinkRow for ProductRow {
    type Key = (Millis, Text);
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
    fn write(&self, l: &mut CopyRows) {
        l.time(self.window_start)
            .text(&self.product_id)
            .time(self.window_end)
            .text(&self.category)
            .int8(self.views)
            .int8(self.cart_adds)
            .int8(self.cart_removes)
            .int8(self.purchases)
            .int8(self.units)
            .money(self.revenue_cents)
            .ratio(self.cart_adds, self.views)
            .ratio(self.purchases, self.cart_adds)
            .boolean(self.is_final);
    }
    fn write_key((start, product): &Self::Key, l: &mut CopyRows) {
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
    fn write(&self, l: &mut CopyRows) {
        l.time(self.window_start)
            .time(self.window_end)
            .int8(self.sessions)
            .int8(self.product_view_sessions)
            .int8(self.cart_sessions)
            .int8(self.checkout_sessions)
            .int8(self.purchase_sessions)
            .ratio(self.purchase_sessions, self.sessions)
            .ratio(self.abandoned_sessions, self.sessions_with_cart_adds)
            .ratio(self.bounced_sessions, self.sessions)
            .float8(self.total_duration_ms as f64 / 1000.0 / self.sessions as f64)
            .money(self.revenue_cents)
            .boolean(self.is_final);
    }
    fn write_key(start: &Self::Key, l: &mut CopyRows) {
        l.time(*start);
    }
}

impl SinkRow for ConversionRow {
    type Key = (Millis, Text, Text);
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
    fn write(&self, l: &mut CopyRows) {
        l.time(self.window_start)
            .text(&self.dimension)
            .text(&self.value)
            .time(self.window_end)
            .int8(self.sessions)
            .int8(self.converted_sessions)
            .ratio(self.converted_sessions, self.sessions)
            .money(self.revenue_cents)
            .boolean(self.is_final);
    }
    fn write_key((start, dimension, value): &Self::Key, l: &mut CopyRows) {
        l.time(*start).text(dimension).text(value);
    }
}

impl SinkRow for CohortRow {
    type Key = (Millis, i64);
    const TABLE: Table = Table {
        name: "cohort_retention",
        key: &["cohort_date", "day_offset"],
        columns: &["cohort_date", "day_offset", "cohort_users", "active_users", "retention", "revenue", "is_final"],
    };
    fn key(&self) -> Self::Key {
        (self.cohort_date, self.day_offset)
    }
    fn write(&self, l: &mut CopyRows) {
        l.date(self.cohort_date)
            .int4(self.day_offset)
            .int8(self.cohort_users)
            .int8(self.active_users)
            .ratio(self.active_users, self.cohort_users)
            .money(self.revenue_cents)
            .boolean(self.is_final);
    }
    fn write_key((cohort, offset): &Self::Key, l: &mut CopyRows) {
        l.date(*cohort).int4(*offset);
    }
}

impl SinkRow for RfmRow {
    type Key = Text;
    const TABLE: Table = Table {
        name: "customer_rfm",
        key: &["user_id"],
        columns: &[
            "user_id",
            "as_of",
            "last_purchase_at",
            "recency_days",
            "frequency",
            "monetary",
            "r_score",
            "f_score",
            "m_score",
            "segment",
        ],
    };
    fn key(&self) -> Self::Key {
        self.user_id.clone()
    }
    fn write(&self, l: &mut CopyRows) {
        l.text(&self.user_id)
            .time(self.as_of)
            .time(self.last_purchase_at)
            .int4(self.recency_days)
            .int8(self.frequency)
            .money(self.monetary_cents)
            .int2(i16::from(self.r_score))
            .int2(i16::from(self.f_score))
            .int2(i16::from(self.m_score))
            .text(&self.segment);
    }
    fn write_key(user: &Self::Key, l: &mut CopyRows) {
        l.text(user);
    }
}

impl SinkRow for PairRow {
    type Key = (Text, Text);
    const TABLE: Table = Table {
        name: "product_pairs",
        key: &["product_id", "other_product_id"],
        columns: &["product_id", "other_product_id", "orders_together", "confidence", "lift"],
    };
    fn key(&self) -> Self::Key {
        (self.product_id.clone(), self.other_product_id.clone())
    }
    fn write(&self, l: &mut CopyRows) {
        l.text(&self.product_id)
            .text(&self.other_product_id)
            .int8(self.orders_together)
            .ratio(self.orders_together, self.product_orders)
            .float8((self.orders_together * self.all_orders) as f64 / (self.product_orders * self.other_orders) as f64);
    }
    fn write_key((product, other): &Self::Key, l: &mut CopyRows) {
        l.text(product).text(other);
    }
}

impl SinkRow for SimilarRow {
    type Key = (Text, Text);
    const TABLE: Table = Table {
        name: "product_similar",
        key: &["product_id", "other_product_id"],
        columns: &["product_id", "other_product_id", "sessions_together", "similarity"],
    };
    fn key(&self) -> Self::Key {
        (self.product_id.clone(), self.other_product_id.clone())
    }
    fn write(&self, l: &mut CopyRows) {
        let viewing = (self.product_sessions as f64 * self.other_sessions as f64).sqrt();
        l.text(&self.product_id).text(&self.other_product_id).int8(self.sessions_together).float8(self.sessions_together as f64 / viewing);
    }
    fn write_key((product, other): &Self::Key, l: &mut CopyRows) {
        l.text(product).text(other);
    }
}

impl SinkRow for RiskRow {
    type Key = (Text, Millis);
    const TABLE: Table = Table {
        name: "session_risk",
        key: &["user_id", "session_start"],
        columns: &["user_id", "session_start", "session_end", "score", "reasons", "model_version", "scored_at"],
    };
    fn key(&self) -> Self::Key {
        (self.user_id.clone(), self.session_start)
    }
    fn write(&self, l: &mut CopyRows) {
        l.text(&self.user_id)
            .time(self.session_start)
            .time(self.session_end)
            .int2(i16::from(self.score))
            .texts(&self.reasons)
            .text(&self.model_version)
            .time(self.scored_at);
    }
    fn write_key((user, start): &Self::Key, l: &mut CopyRows) {
        l.text(user).time(*start);
    }
}

impl SinkRow for ModelRow {
    type Key = Text;
    const TABLE: Table =
        Table { name: "risk_models", key: &["model_version"], columns: &["model_version", "valid_from", "sessions", "model"] };
    fn key(&self) -> Self::Key {
        self.model_version.clone()
    }
    fn write(&self, l: &mut CopyRows) {
        l.text(&self.model_version).time(self.valid_from).int8(self.sessions).jsonb(&self.model);
    }
    fn write_key(version: &Self::Key, l: &mut CopyRows) {
        l.text(version);
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

pub fn write_event(e: &Event, l: &mut CopyRows) {
    l.text(&e.event_id).time(e.event_time).text(e.event_type.as_str()).text(&e.user_id).text(&e.page);
    l.opt_text(e.product_id.as_deref()).opt_text(e.category.as_deref());
    match e.price_cents {
        Some(c) => l.money(c),
        None => l.null(),
    };
    match e.quantity {
        Some(q) => l.int4(q),
        None => l.null(),
    };
    l.opt_text(e.order_id.as_deref()).text(&e.device).text(&e.country).text(&e.referrer).text(&e.user_agent).text(&e.ip);
}

/// `dead_letters`: written once per source position, never updated.
pub const DEAD_LETTERS: Table =
    Table { name: "dead_letters", key: &["source"], columns: &["received_at", "source", "reason", "detail", "payload"] };

pub fn write_dead_letter(d: &DeadLetter, l: &mut CopyRows) {
    l.time(d.received_at).text(&d.source).text(d.reason.as_str()).text(&d.detail).text(&d.payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_numeric_base_10000_digits() {
        assert_eq!(numeric_digits(0), (0, vec![]));
        assert_eq!(numeric_digits(5), (-1, vec![500])); // 0.05
        assert_eq!(numeric_digits(100), (0, vec![1])); // 1.00
        assert_eq!(numeric_digits(123_456), (0, vec![1234, 5600])); // 1234.56
        assert_eq!(numeric_digits(1_000_000), (1, vec![1])); // 10000.00
        assert_eq!(numeric_digits(1_234_567_890_101), (2, vec![123, 4567, 8901, 100]));
        // 12345678901.01
    }

    #[test]
    fn rows_are_counted_fields_with_lengths_and_a_trailer() {
        let mut rows = CopyRows::default();
        rows.row(4).text("a\0b").null().int2(7).time(POSTGRES_EPOCH_MS + 1);
        assert_eq!(rows.rows(), 1);
        let data = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 4, 0, 0, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 7]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0xff, 0xff]);
        assert_eq!(data, expected);
    }
}
