//! The clickstream event (CONTRACT §1) and its validation from raw message bytes.
//!
//! Owns the rules for what a valid event is and which dead-letter reason a bad message
//! gets. Pure functions of the bytes (and, for `future_event_time`, of a wall-clock time
//! passed in); no watermark, no dedupe, no I/O: see `ingest` for those.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time::{parse_rfc3339, Millis};

/// A message longer than this many bytes is dead-lettered as `oversized`.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How much of an oversized message's payload is kept in `dead_letters`.
pub const OVERSIZED_PAYLOAD_KEPT: usize = 1024;
/// An event more than this far ahead of the wall clock is `future_event_time`.
pub const MAX_FUTURE_MS: Millis = 15 * 60 * 1000;
const MAX_PRICE_CENTS: i64 = 100_000_000;
const MAX_QUANTITY: i64 = 10_000;

/// The seven event types, in funnel order where they belong to the funnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    PageView,
    ProductView,
    Search,
    AddToCart,
    RemoveFromCart,
    BeginCheckout,
    Purchase,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::PageView,
        EventType::ProductView,
        EventType::Search,
        EventType::AddToCart,
        EventType::RemoveFromCart,
        EventType::BeginCheckout,
        EventType::Purchase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PageView => "page_view",
            EventType::ProductView => "product_view",
            EventType::Search => "search",
            EventType::AddToCart => "add_to_cart",
            EventType::RemoveFromCart => "remove_from_cart",
            EventType::BeginCheckout => "begin_checkout",
            EventType::Purchase => "purchase",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Index into per-type count arrays (`[i64; 7]`).
    pub fn index(self) -> usize {
        self as usize
    }

    fn needs_product(self) -> bool {
        matches!(self, EventType::ProductView | EventType::AddToCart | EventType::RemoveFromCart | EventType::Purchase)
    }

    fn needs_price(self) -> bool {
        matches!(self, EventType::AddToCart | EventType::Purchase)
    }

    fn needs_quantity(self) -> bool {
        matches!(self, EventType::AddToCart | EventType::RemoveFromCart | EventType::Purchase)
    }
}

/// The text of an event field: inline up to 23 bytes, shared beyond, so that the copies
/// an event's fields make on their way through the graph never copy a string.
pub type Text = smol_str::SmolStr;

/// One accepted event. Money is in cents; time in UTC milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Text,
    pub event_time: Millis,
    pub event_type: EventType,
    pub user_id: Text,
    pub page: Text,
    pub product_id: Option<Text>,
    pub category: Option<Text>,
    pub price_cents: Option<i64>,
    pub quantity: Option<i64>,
    pub order_id: Option<Text>,
    pub device: Text,
    pub country: Text,
    pub referrer: Text,
    pub user_agent: Text,
    pub ip: Text,
}

impl Event {
    /// `price × quantity` in cents for a purchase, 0 for every other event.
    pub fn revenue_cents(&self) -> i64 {
        match self.event_type {
            EventType::Purchase => self.price_cents.unwrap_or(0) * self.quantity.unwrap_or(0),
            _ => 0,
        }
    }
}

/// The dead-letter reasons of CONTRACT §1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    InvalidJson,
    MissingField,
    InvalidField,
    UnknownEventType,
    Oversized,
    FutureEventTime,
    Late,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::InvalidJson,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::UnknownEventType,
        Reason::Oversized,
        Reason::FutureEventTime,
        Reason::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidJson => "invalid_json",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::Oversized => "oversized",
            Reason::FutureEventTime => "future_event_time",
            Reason::Late => "late",
        }
    }
}

/// Why a message was not accepted: the reason and one line of detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection { reason, detail: detail.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// The fields as they arrive, each kept raw so that its own problem can be named.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow)]
    event_time: Option<&'a RawValue>,
    #[serde(borrow)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    page: Option<&'a RawValue>,
    #[serde(borrow)]
    product_id: Option<&'a RawValue>,
    #[serde(borrow)]
    category: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    order_id: Option<&'a RawValue>,
    #[serde(borrow)]
    device: Option<&'a RawValue>,
    #[serde(borrow)]
    country: Option<&'a RawValue>,
    #[serde(borrow)]
    referrer: Option<&'a RawValue>,
    #[serde(borrow)]
    user_agent: Option<&'a RawValue>,
    #[serde(borrow)]
    ip: Option<&'a RawValue>,
}

/// Validates one message into an [`Event`], or names the first problem.
///
/// Checks run in this order, the first failure deciding the reason: size
/// (`oversized`), UTF-8 and JSON syntax and being an object (`invalid_json`), then the
/// fields in the contract's order, where an absent or null required field is
/// `missing_field`, an `event_type` outside the seven is `unknown_event_type`, and any
/// other breach of a rule is `invalid_field`; last, an `event_time` more than
/// 15 minutes after `now` is `future_event_time`.
pub fn parse_event(bytes: &[u8], now: Millis) -> Result<Event, Rejection> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::new(Reason::Oversized, format!("message is over the limit of {MAX_MESSAGE_BYTES} bytes")));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Rejection::new(Reason::InvalidJson, format!("not UTF-8: {e}")))?;
    let wire: Wire = serde_json::from_str(text).map_err(|e| classify_json_error(text, e))?;
    let event_id = required_string(wire.event_id, "event_id", true)?;
    let event_time = required_string(wire.event_time, "event_time", false)?;
    let event_time = parse_rfc3339(&event_time).map_err(|e| Rejection::new(Reason::InvalidField, format!("event_time: {}", e.0)))?;
    let type_name = required_string(wire.event_type, "event_type", false)?;
    let event_type = EventType::parse(&type_name)
        .ok_or_else(|| Rejection::new(Reason::UnknownEventType, format!("event_type: {:?}", truncate(&type_name, 64))))?;
    let user_id = required_string(wire.user_id, "user_id", true)?;
    let page = required_string(wire.page, "page", false)?;
    let product_id = optional_string(wire.product_id, "product_id", event_type.needs_product())?;
    let category = optional_string(wire.category, "category", event_type.needs_product())?;
    let price_cents = optional(wire.price, "price", event_type.needs_price(), parse_price)?;
    let quantity = optional(wire.quantity, "quantity", event_type.needs_quantity(), parse_quantity)?;
    let order_id = optional_string(wire.order_id, "order_id", false)?.filter(|s| !s.is_empty());
    let device = one_of(wire.device, "device", &["desktop", "mobile", "tablet"])?;
    let country = required_string(wire.country, "country", false)?;
    if !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err(Rejection::new(
            Reason::InvalidField,
            format!("country: {:?} is not an ISO 3166-1 alpha-2 code", truncate(&country, 64)),
        ));
    }
    let referrer = one_of(wire.referrer, "referrer", &["direct", "search", "social", "email", "ads", "affiliate"])?;
    let user_agent = required_string(wire.user_agent, "user_agent", false)?;
    let ip = required_string(wire.ip, "ip", false)?;
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Rejection::new(Reason::InvalidField, format!("ip: {:?} is not an IPv4 or IPv6 address", truncate(&ip, 64))));
    }
    if event_time > now.saturating_add(MAX_FUTURE_MS) {
        return Err(Rejection::new(Reason::FutureEventTime, "event_time is more than 15 minutes after the wall clock"));
    }
    Ok(Event {
        event_id,
        event_time,
        event_type,
        user_id,
        page,
        product_id,
        category,
        price_cents,
        quantity,
        order_id,
        device,
        country,
        referrer,
        user_agent,
        ip,
    })
}

fn classify_json_error(text: &str, e: serde_json::Error) -> Rejection {
    // Valid JSON of the wrong shape is `invalid_json` unless it is an object: then a
    // field broke the struct (a duplicated key), which is that field's fault.
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Err(syntax) => Rejection::new(Reason::InvalidJson, syntax.to_string()),
        Ok(_) if text.trim_start().starts_with('{') => Rejection::new(Reason::InvalidField, e.to_string()),
        Ok(_) => Rejection::new(Reason::InvalidJson, "not a JSON object"),
    }
}

fn is_null(raw: Option<&RawValue>) -> bool {
    raw.is_none_or(|r| r.get() == "null")
}

fn string_value(raw: &RawValue, field: &str) -> Result<Text, Rejection> {
    let s = serde_json::from_str::<Cow<str>>(raw.get())
        .map_err(|_| Rejection::new(Reason::InvalidField, format!("{field}: expected a string, got {}", truncate(raw.get(), 64))))?;
    if s.contains('\0') {
        // PostgreSQL text cannot hold NUL: storing the event would change it.
        return Err(Rejection::new(Reason::InvalidField, format!("{field}: contains a NUL character")));
    }
    Ok(Text::new(&*s))
}

fn required_string(raw: Option<&RawValue>, field: &str, non_empty: bool) -> Result<Text, Rejection> {
    match raw {
        Some(r) if !is_null(raw) => {
            let s = string_value(r, field)?;
            if non_empty && s.is_empty() {
                return Err(Rejection::new(Reason::InvalidField, format!("{field}: must not be empty")));
            }
            Ok(s)
        }
        _ => Err(Rejection::new(Reason::MissingField, field)),
    }
}

fn optional<T>(
    raw: Option<&RawValue>,
    field: &str,
    required: bool,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, Rejection> {
    match raw {
        Some(r) if !is_null(raw) => parse(r.get()).map(Some).map_err(|why| Rejection::new(Reason::InvalidField, format!("{field}: {why}"))),
        _ if required => Err(Rejection::new(Reason::MissingField, field)),
        _ => Ok(None),
    }
}

fn optional_string(raw: Option<&RawValue>, field: &str, required: bool) -> Result<Option<Text>, Rejection> {
    let value = match raw {
        Some(r) if !is_null(raw) => Some(string_value(r, field)?),
        _ => None,
    };
    match value {
        Some(s) if s.is_empty() && required => Err(Rejection::new(Reason::InvalidField, format!("{field}: must not be empty"))),
        None if required => Err(Rejection::new(Reason::MissingField, field)),
        v => Ok(v),
    }
}

fn one_of(raw: Option<&RawValue>, field: &str, allowed: &[&str]) -> Result<Text, Rejection> {
    let s = required_string(raw, field, false)?;
    if allowed.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(Rejection::new(Reason::InvalidField, format!("{field}: {:?} is not one of {}", truncate(&s, 64), allowed.join(", "))))
    }
}

/// A JSON number with at most two decimals, 0 ≤ price ≤ 1,000,000, as exact cents.
fn parse_price(text: &str) -> Result<i64, String> {
    let (digits, scale) = decimal(text).ok_or_else(|| format!("expected a number, got {}", truncate(text, 64)))?;
    // value = digits × 10^-scale; cents = digits × 10^(2 - scale).
    let cents = match 2 - scale {
        s if s >= 0 => digits.checked_mul(10i128.checked_pow(s as u32).ok_or("out of range")?),
        s => {
            let div = 10i128.checked_pow((-s) as u32).ok_or("has more than 2 decimals")?;
            (digits % div == 0).then(|| digits / div)
        }
    }
    .ok_or_else(|| format!("{} has more than 2 decimals or is out of range", truncate(text, 64)))?;
    if !(0..=i128::from(MAX_PRICE_CENTS)).contains(&cents) {
        return Err(format!("{} is outside 0 to 1000000", truncate(text, 64)));
    }
    Ok(cents as i64)
}

/// Reads a JSON number exactly as (digits, scale): value = digits × 10^-scale.
/// `None` when the text is not a JSON number or is absurdly long.
fn decimal(text: &str) -> Option<(i128, i64)> {
    let b = text.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut digits: i128 = 0;
    let mut scale: i64 = 0;
    let mut seen_digit = false;
    let mut significant = 0;
    let mut push = |d: u8, digits: &mut i128| -> Option<()> {
        if *digits != 0 || d != 0 {
            significant += 1;
        }
        if significant > 30 {
            return None;
        }
        *digits = *digits * 10 + i128::from(d);
        Some(())
    };
    while i < b.len() && b[i].is_ascii_digit() {
        push(b[i] - b'0', &mut digits)?;
        seen_digit = true;
        i += 1;
    }
    if !seen_digit {
        return None;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            push(b[i] - b'0', &mut digits)?;
            scale += 1;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let mut exp: i64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            exp = (exp * 10 + i64::from(b[i] - b'0')).min(1_000_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        scale += if exp_negative { exp } else { -exp };
    }
    if i != b.len() {
        return None;
    }
    // Trailing zeros of the digits do not make a value finer: 1.50 has two decimals, 1.500 too.
    while scale > 0 && digits != 0 && digits % 10 == 0 {
        digits /= 10;
        scale -= 1;
    }
    if digits == 0 {
        scale = 0;
    }
    Some((if negative { -digits } else { digits }, scale))
}

fn parse_quantity(text: &str) -> Result<i64, String> {
    let valid_integer =
        !text.is_empty() && text.bytes().enumerate().all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == b'-')) && text != "-";
    let q = valid_integer
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| format!("expected an integer, got {}", truncate(text, 64)))?;
    if !(1..=MAX_QUANTITY).contains(&q) {
        return Err(format!("{q} is outside 1 to {MAX_QUANTITY}"));
    }
    Ok(q)
}

/// The first `max` characters of `s`, for error details.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "event_id": "e1", "event_time": "2026-11-01T08:15:30.123Z", "event_type": "purchase",
            "user_id": "u1", "page": "/checkout", "product_id": "P1", "category": "books",
            "price": 19.99, "quantity": 2, "order_id": "o1", "device": "mobile", "country": "DE",
            "referrer": "search", "user_agent": "Mozilla/5.0", "ip": "2001:db8::1"
        })
    }

    fn parse_value(v: &serde_json::Value) -> Result<Event, Rejection> {
        parse_event(v.to_string().as_bytes(), NOW)
    }

    fn reason_with(field: &str, value: serde_json::Value) -> Reason {
        let mut v = valid();
        v[field] = value;
        parse_value(&v).expect_err(field).reason
    }

    #[test]
    fn accepts_a_valid_purchase_with_exact_money() {
        let e = parse_value(&valid()).unwrap();
        assert_eq!(e.price_cents, Some(1999));
        assert_eq!(e.revenue_cents(), 3998);
        assert_eq!(e.event_time, 1_793_520_930_123);
        assert_eq!(e.event_type, EventType::Purchase);
    }

    #[test]
    fn ignores_unknown_fields_and_accepts_nulls_where_optional() {
        let mut v = valid();
        v["event_type"] = "page_view".into();
        v["product_id"] = serde_json::Value::Null;
        v["category"] = serde_json::Value::Null;
        v["price"] = serde_json::Value::Null;
        v["quantity"] = serde_json::Value::Null;
        v["order_id"] = serde_json::Value::Null;
        v["campaign"] = "black-friday".into();
        let e = parse_value(&v).unwrap();
        assert_eq!((e.product_id, e.price_cents, e.quantity), (None, None, None));
    }

    #[test]
    fn each_reason_for_bad_input() {
        assert_eq!(parse_event(b"{not json", NOW).unwrap_err().reason, Reason::InvalidJson);
        assert_eq!(parse_event(b"[1,2]", NOW).unwrap_err().reason, Reason::InvalidJson);
        assert_eq!(parse_event(b"\xff\xfe", NOW).unwrap_err().reason, Reason::InvalidJson);
        assert_eq!(parse_event(b"", NOW).unwrap_err().reason, Reason::InvalidJson);
        let mut v = valid();
        v.as_object_mut().unwrap().remove("user_id");
        assert_eq!(parse_value(&v).unwrap_err().reason, Reason::MissingField);
        assert_eq!(reason_with("user_id", serde_json::Value::Null), Reason::MissingField);
        assert_eq!(reason_with("price", serde_json::Value::Null), Reason::MissingField);
        assert_eq!(reason_with("event_type", "refund".into()), Reason::UnknownEventType);
        assert_eq!(reason_with("event_time", "yesterday".into()), Reason::InvalidField);
        assert_eq!(reason_with("event_id", "".into()), Reason::InvalidField);
        assert_eq!(reason_with("event_id", 7.into()), Reason::InvalidField);
        assert_eq!(reason_with("price", (-1).into()), Reason::InvalidField);
        assert_eq!(reason_with("price", 1_000_000.01.into()), Reason::InvalidField);
        assert_eq!(reason_with("price", 1.001.into()), Reason::InvalidField);
        assert_eq!(reason_with("price", "9.99".into()), Reason::InvalidField);
        assert_eq!(reason_with("quantity", 0.into()), Reason::InvalidField);
        assert_eq!(reason_with("quantity", 10_001.into()), Reason::InvalidField);
        assert_eq!(reason_with("quantity", 1.5.into()), Reason::InvalidField);
        assert_eq!(reason_with("device", "watch".into()), Reason::InvalidField);
        assert_eq!(reason_with("country", "Germany".into()), Reason::InvalidField);
        assert_eq!(reason_with("referrer", "tv".into()), Reason::InvalidField);
        assert_eq!(reason_with("ip", "999.1.1.1".into()), Reason::InvalidField);
        assert_eq!(reason_with("user_agent", "a\u{0}b".into()), Reason::InvalidField);
        assert_eq!(reason_with("event_time", "2027-02-01T00:00:00Z".into()), Reason::FutureEventTime);
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(parse_event(big.as_bytes(), NOW).unwrap_err().reason, Reason::Oversized);
    }

    #[test]
    fn duplicated_key_is_the_fields_fault() {
        let text = valid().to_string().replacen('{', "{\"user_id\":\"u0\",", 1);
        assert_eq!(parse_event(text.as_bytes(), NOW).unwrap_err().reason, Reason::InvalidField);
    }

    #[test]
    fn price_is_exact_decimal() {
        assert_eq!(parse_price("0"), Ok(0));
        assert_eq!(parse_price("0.1"), Ok(10));
        assert_eq!(parse_price("19.99"), Ok(1999));
        assert_eq!(parse_price("19.990"), Ok(1999));
        assert_eq!(parse_price("1e2"), Ok(10000));
        assert_eq!(parse_price("1234.5e-1"), Ok(12345));
        assert!(parse_price("1234.5e-2").is_err());
        assert_eq!(parse_price("1000000"), Ok(100_000_000));
        assert_eq!(parse_price("-0"), Ok(0));
        assert!(parse_price("0.005").is_err());
        assert!(parse_price("1e400").is_err());
        assert!(parse_price("1.").is_err());
        assert!(parse_price(".5").is_err());
    }

    #[test]
    fn future_check_is_relative_to_now() {
        let mut v = valid();
        v["event_time"] = crate::time::format_rfc3339(NOW + MAX_FUTURE_MS).into();
        assert!(parse_value(&v).is_ok());
        v["event_time"] = crate::time::format_rfc3339(NOW + MAX_FUTURE_MS + 1).into();
        assert_eq!(parse_value(&v).unwrap_err().reason, Reason::FutureEventTime);
    }
}
