//! The rows of the result tables (CONTRACT §4) as the dataflow produces them, and the
//! [`Change`] records the sink receives.
//!
//! Rows hold only integers and strings (money in cents, durations in milliseconds) so
//! that they compare exactly; the sink derives rates, seconds and decimals when it writes.
//! Owns no logic beyond those derived figures.

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventType, Reason, Rejection, Text, OVERSIZED_PAYLOAD_KEPT};
use crate::ingest::Counts;
use crate::risk::features::Features;
use crate::time::Millis;

/// Counts of events by type, indexed by [`EventType::index`].
pub type TypeCounts = [i64; 7];

/// One row of `sessions`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionRow {
    pub user_id: Text,
    pub session_start: Millis,
    pub session_end: Millis,
    pub counts: TypeCounts,
    pub units: i64,
    pub revenue_cents: i64,
    pub landing_page: Text,
    pub exit_page: Text,
    pub device: Text,
    pub country: Text,
    pub referrer: Text,
    pub funnel_step: u8,
    /// On a final row, the products the session's `product_view`s name, sorted, each
    /// once: what `product_similar` counts (not a column of `sessions`). Empty on an
    /// open row, which nothing reads it from: open rows are emitted again and again.
    pub viewed: Vec<Text>,
    /// On a final row, what its events say about how it was made: what `session_risk`
    /// scores (not columns of `sessions`). `None` on an open row.
    pub features: Option<Box<Features>>,
    pub is_final: bool,
}

impl SessionRow {
    pub fn event_count(&self) -> i64 {
        self.counts.iter().sum()
    }
    pub fn count(&self, t: EventType) -> i64 {
        self.counts[t.index()]
    }
    pub fn converted(&self) -> bool {
        self.count(EventType::Purchase) > 0
    }
    pub fn bounced(&self) -> bool {
        self.event_count() == 1
    }
    pub fn cart_abandoned(&self) -> bool {
        self.count(EventType::AddToCart) > 0 && !self.converted()
    }
    pub fn duration_ms(&self) -> i64 {
        self.session_end - self.session_start
    }
}

/// One row of `traffic`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrafficRow {
    pub window_start: Millis,
    pub window_end: Millis,
    pub counts: TypeCounts,
    pub active_users: i64,
    pub revenue_cents: i64,
    pub is_final: bool,
}

/// One row of `product_stats`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductRow {
    pub window_start: Millis,
    pub window_end: Millis,
    pub product_id: Text,
    pub category: Text,
    pub views: i64,
    pub cart_adds: i64,
    pub cart_removes: i64,
    pub purchases: i64,
    pub units: i64,
    pub revenue_cents: i64,
    pub is_final: bool,
}

/// One row of `funnel`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FunnelRow {
    pub window_start: Millis,
    pub window_end: Millis,
    pub sessions: i64,
    pub product_view_sessions: i64,
    pub cart_sessions: i64,
    pub checkout_sessions: i64,
    pub purchase_sessions: i64,
    /// Sessions with `cart_adds > 0`: the denominator of the abandonment rate.
    pub sessions_with_cart_adds: i64,
    pub abandoned_sessions: i64,
    pub bounced_sessions: i64,
    pub total_duration_ms: i64,
    pub revenue_cents: i64,
    pub is_final: bool,
}

/// One row of `conversion`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConversionRow {
    pub window_start: Millis,
    pub window_end: Millis,
    pub dimension: Text,
    pub value: Text,
    pub sessions: i64,
    pub converted_sessions: i64,
    pub revenue_cents: i64,
    pub is_final: bool,
}

/// One row of `cohort_retention` (CONTRACT §7): the users whose first accepted event was
/// on `cohort_date`, and those of them active `day_offset` days later.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CohortRow {
    pub cohort_date: Millis,
    pub day_offset: i64,
    pub cohort_users: i64,
    pub active_users: i64,
    pub revenue_cents: i64,
    pub is_final: bool,
}

/// One row of `customer_rfm` (CONTRACT §7), as of the end of the latest closed day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RfmRow {
    pub user_id: Text,
    pub as_of: Millis,
    pub last_purchase_at: Millis,
    pub recency_days: i64,
    /// Orders.
    pub frequency: i64,
    pub monetary_cents: i64,
    pub r_score: u8,
    pub f_score: u8,
    pub m_score: u8,
    pub segment: Text,
}

/// One row of `product_pairs` (CONTRACT §7): the counts behind its confidence and lift,
/// which the sink derives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PairRow {
    pub product_id: Text,
    pub other_product_id: Text,
    pub orders_together: i64,
    /// Orders holding `product_id`.
    pub product_orders: i64,
    /// Orders holding `other_product_id`.
    pub other_orders: i64,
    pub all_orders: i64,
}

/// One row of `product_similar` (CONTRACT §7): the counts behind its similarity, which
/// the sink derives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SimilarRow {
    pub product_id: Text,
    pub other_product_id: Text,
    pub sessions_together: i64,
    /// Final sessions viewing `product_id`.
    pub product_sessions: i64,
    /// Final sessions viewing `other_product_id`.
    pub other_sessions: i64,
}

/// One row of `session_risk` (CONTRACT §7): a final session scoring at least the
/// threshold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RiskRow {
    pub user_id: Text,
    pub session_start: Millis,
    pub session_end: Millis,
    pub score: u8,
    /// From the documented vocabulary, most important first.
    pub reasons: Vec<Text>,
    pub model_version: Text,
    /// When the session became final in event time (its end plus the session gap), so
    /// that a replay writes the same row.
    pub scored_at: Millis,
}

/// One row of `risk_models`: a model version, stored once, when first used.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelRow {
    pub model_version: Text,
    pub valid_from: Millis,
    /// The sessions it was trained on.
    pub sessions: i64,
    /// The model as JSON (`risk::score::Model`).
    pub model: String,
}

/// A message that ended in `dead_letters`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    pub received_at: Millis,
    /// Where the message came from, e.g. `file:events.jsonl:17`.
    pub source: String,
    pub reason: Reason,
    pub detail: String,
    pub payload: String,
}

impl DeadLetter {
    /// The dead letter of a rejected message. The payload is the message as text
    /// (invalid UTF-8 replaced, NUL bytes dropped: PostgreSQL text holds neither), cut to
    /// its first KiB when the message was `oversized`.
    pub fn new(source: String, rejection: Rejection, bytes: &[u8], received_at: Millis) -> Self {
        let kept = if rejection.reason == Reason::Oversized { &bytes[..bytes.len().min(OVERSIZED_PAYLOAD_KEPT)] } else { bytes };
        let payload = String::from_utf8_lossy(kept).replace('\0', "");
        DeadLetter { received_at, source, reason: rejection.reason, detail: rejection.detail, payload }
    }
}

/// Where a source partition resumes after the messages read so far: the next Kafka
/// offset, or for a file the byte offset of the next line and the number of lines read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub offset: i64,
    /// Lines read (files); 0 for Kafka.
    pub line: i64,
}

/// What a source did up to the end of one epoch: its running totals, its watermark, and
/// where it resumes. Committed with the rows of that epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceProgress {
    /// Which source partition this is, e.g. `file:events.jsonl`.
    pub source: String,
    pub counts: Counts,
    pub watermark: Millis,
    pub max_event_time: Option<Millis>,
    /// Messages in the partition not yet read (Kafka consumer lag), when known.
    pub lag: Option<i64>,
    /// Where the partition resumes after this epoch.
    pub position: Position,
}

/// Everything the sink writes, as updates `(Change, epoch, diff)`: a row with diff +1 is
/// the current version of its key, −1 retracts a version written before.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Change {
    Event(Event),
    Session(SessionRow),
    Traffic(TrafficRow),
    Product(ProductRow),
    Funnel(FunnelRow),
    Conversion(ConversionRow),
    Cohort(CohortRow),
    Rfm(RfmRow),
    Pair(PairRow),
    Similar(SimilarRow),
    Risk(RiskRow),
    RiskModel(ModelRow),
    DeadLetter(DeadLetter),
    Progress(SourceProgress),
    /// A message of this source partition that its process accepted, found by the
    /// dataflow to copy an event another process accepted first (cluster mode, see
    /// `operators::dedupe`); its diff is how many. The sink moves them from the source's
    /// accepted to its duplicates.
    Duplicate(Text),
}

impl Change {
    /// Whether this is a result row that can no longer change (events, dead letters and
    /// progress are not result rows).
    pub fn is_final(&self) -> bool {
        match self {
            Change::Session(r) => r.is_final,
            Change::Traffic(r) => r.is_final,
            Change::Product(r) => r.is_final,
            Change::Funnel(r) => r.is_final,
            Change::Conversion(r) => r.is_final,
            Change::Cohort(r) => r.is_final,
            Change::Rfm(_) | Change::Pair(_) | Change::Similar(_) => false, // rewritten as their counts move
            Change::Risk(_) | Change::RiskModel(_) => false,                // written once, with no is_final column
            Change::Event(_) | Change::DeadLetter(_) | Change::Progress(_) | Change::Duplicate(_) => false,
        }
    }
}
