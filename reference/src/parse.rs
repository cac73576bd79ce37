//! The reference's own reading of one message (docs/contract.md §1 and the README's
//! "Choices where the contract is silent"), written apart from `dataflows::event` and
//! kept deliberately plain: JSON syntax is serde_json's, everything else is spelled out
//! here rule by rule, in the contract's field order, the first broken rule deciding the
//! dead-letter reason.

use std::fmt;

use dataflows::event::{Event, EventType, Reason, Text};
use dataflows::time::Millis;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

const LIMIT: usize = 65_536;

/// The message as an event, or the reason it is dead-lettered (`late` is not decided here).
pub fn event(bytes: &[u8], now: Millis) -> Result<Event, Reason> {
    if bytes.len() > LIMIT {
        return Err(Reason::Oversized);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Reason::InvalidJson)?;
    if serde_json::from_str::<IgnoredAny>(text).is_err() {
        return Err(Reason::InvalidJson);
    }
    let fields = match serde_json::Deserializer::from_str(text).deserialize_map(Fields) {
        Ok(fields) => fields,
        Err(_) if !text.trim_start().starts_with('{') => return Err(Reason::InvalidJson),
        Err(_) => return Err(Reason::InvalidField),
    };
    let get = |name: &str| -> Option<&str> { fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.get()).filter(|v| *v != "null") };
    let known = ["event_id", "event_time", "event_type", "user_id", "page", "product_id", "category", "price", "quantity", "order_id"];
    let known = known.iter().chain(&["device", "country", "referrer", "user_agent", "ip"]);
    if known.clone().any(|name| fields.iter().filter(|(k, _)| k == name).count() > 1) {
        return Err(Reason::InvalidField); // a duplicated key
    }

    let event_id = text_field(get("event_id"))?;
    non_empty(&event_id)?;
    let event_time = timestamp(&text_field(get("event_time"))?).ok_or(Reason::InvalidField)?;
    let event_type = text_field(get("event_type"))?;
    let event_type = EventType::ALL.into_iter().find(|t| t.as_str() == event_type).ok_or(Reason::UnknownEventType)?;
    let user_id = text_field(get("user_id"))?;
    non_empty(&user_id)?;
    let page = text_field(get("page"))?;
    use EventType::*;
    let product_needed = matches!(event_type, ProductView | AddToCart | RemoveFromCart | Purchase);
    let product_id = maybe(get("product_id"), product_needed, text_field_present)?;
    let category = maybe(get("category"), product_needed, text_field_present)?;
    if product_needed && (product_id.as_deref() == Some("") || category.as_deref() == Some("")) {
        return Err(Reason::InvalidField);
    }
    let price_cents = maybe(get("price"), matches!(event_type, AddToCart | Purchase), cents)?;
    let quantity = maybe(get("quantity"), matches!(event_type, AddToCart | RemoveFromCart | Purchase), whole)?;
    let order_id = maybe(get("order_id"), false, text_field_present)?.filter(|o| !o.is_empty());
    let device = choice(get("device"), &["desktop", "mobile", "tablet"])?;
    let country = text_field(get("country"))?;
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(Reason::InvalidField);
    }
    let referrer = choice(get("referrer"), &["direct", "search", "social", "email", "ads", "affiliate"])?;
    let user_agent = text_field(get("user_agent"))?;
    let ip = text_field(get("ip"))?;
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Reason::InvalidField);
    }
    if event_time - now > 15 * 60 * 1000 {
        return Err(Reason::FutureEventTime);
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

/// The top-level object's members in order, values left as raw JSON.
struct Fields;

impl<'de> Visitor<'de> for Fields {
    type Value = Vec<(String, Box<RawValue>)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
            out.push(entry);
        }
        Ok(out)
    }
}

/// A required string: absent or null is `missing_field`, anything else not a string (or
/// a string PostgreSQL cannot store) is `invalid_field`.
fn text_field(raw: Option<&str>) -> Result<Text, Reason> {
    text_field_present(raw.ok_or(Reason::MissingField)?)
}

fn text_field_present(raw: &str) -> Result<Text, Reason> {
    match serde_json::from_str::<String>(raw) {
        Ok(s) if !s.contains('\u{0}') => Ok(Text::from(s)),
        _ => Err(Reason::InvalidField),
    }
}

fn non_empty(s: &str) -> Result<(), Reason> {
    if s.is_empty() {
        Err(Reason::InvalidField)
    } else {
        Ok(())
    }
}

/// An optional field: `None` when absent or null (`missing_field` if `needed`).
fn maybe<T>(raw: Option<&str>, needed: bool, read: fn(&str) -> Result<T, Reason>) -> Result<Option<T>, Reason> {
    match raw {
        Some(raw) => read(raw).map(Some),
        None if needed => Err(Reason::MissingField),
        None => Ok(None),
    }
}

fn choice(raw: Option<&str>, allowed: &[&str]) -> Result<Text, Reason> {
    let s = text_field(raw)?;
    if allowed.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(Reason::InvalidField)
    }
}

/// A JSON number with at most two decimals, 0 to 1,000,000, as cents. The number is
/// taken apart as digits D and a scale (value = D × 10^-scale), trailing zeros of D
/// moved into the scale; then cents = D × 10^(2 - scale) must be whole.
fn cents(raw: &str) -> Result<i64, Reason> {
    let bad = Reason::InvalidField;
    let (negative, body) = raw.strip_prefix('-').map_or((false, raw), |rest| (true, rest));
    let (mantissa, exponent) = body.split_once(['e', 'E']).unwrap_or((body, "0"));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || (mantissa.contains('.') && !all_digits(fraction)) || !all_digits(exponent_digits) {
        return Err(bad);
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0); // zero, however written
    }
    if negative {
        return Err(bad);
    }
    let significant = digits.trim_end_matches('0');
    let exponent: i64 = exponent.parse().unwrap_or(if exponent.starts_with('-') { i64::MIN / 2 } else { i64::MAX / 2 });
    let scale = fraction.len() as i64 - exponent - (digits.len() - significant.len()) as i64;
    let shift = 2 - scale;
    if shift < 0 || significant.len() as i64 + shift > 9 {
        return Err(bad); // finer than a cent, or more than 1,000,000.00
    }
    let value: i64 = format!("{significant}{}", "0".repeat(shift as usize)).parse().map_err(|_| bad)?;
    if value > 100_000_000 {
        Err(bad)
    } else {
        Ok(value)
    }
}

/// A JSON integer literal from 1 to 10,000.
fn whole(raw: &str) -> Result<i64, Reason> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reason::InvalidField);
    }
    match raw.parse::<i64>() {
        Ok(q) if (1..=10_000).contains(&q) => Ok(q),
        _ => Err(Reason::InvalidField),
    }
}

/// RFC 3339 with an offset, read against the template `YYYY-MM-DDTHH:MM:SS[.f…](Z|±HH:MM)`
/// (`t` or a space for `T`, `z` for `Z`), as UTC milliseconds, digits below the
/// millisecond dropped; years 0001–9999, no leap seconds.
pub fn timestamp(s: &str) -> Option<Millis> {
    let (head, tail) = (s.get(..19)?, s.get(19..)?);
    let template = b"dddd-dd-ddTdd:dd:dd";
    for (c, t) in head.bytes().zip(template) {
        let ok = match t {
            b'd' => c.is_ascii_digit(),
            b'T' => matches!(c, b'T' | b't' | b' '),
            other => c == *other,
        };
        if !ok {
            return None;
        }
    }
    let num = |range: std::ops::Range<usize>| head[range].parse::<i64>().unwrap();
    let (year, month, day, hour, minute, second) = (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    let (fraction, zone) = match tail.strip_prefix('.') {
        Some(rest) => {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            (&rest[..n], &rest[n..])
        }
        None => ("", tail),
    };
    let offset_minutes = match zone {
        "Z" | "z" => 0,
        _ => {
            let b = zone.as_bytes();
            if b.len() != 6
                || !matches!(b[0], b'+' | b'-')
                || b[3] != b':'
                || !zone[1..3].bytes().chain(zone[4..].bytes()).all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let (h, m) = (zone[1..3].parse::<i64>().unwrap(), zone[4..].parse::<i64>().unwrap());
            if h > 23 || m > 59 {
                return None;
            }
            if b[0] == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
    };
    let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1
        || !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since 0001-01-01, then since 1970-01-01 (719,162 days later).
    let y = year - 1;
    let days = y * 365 + y / 4 - y / 100 + y / 400 + month_days[..(month - 1) as usize].iter().sum::<i64>() + day - 1 - 719_162;
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().unwrap();
    Some(((days * 24 + hour) * 60 + minute - offset_minutes) * 60_000 + second * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(timestamp("2026-11-01T08:15:30.123Z"), Some(1_793_520_930_123));
        assert_eq!(timestamp("2026-11-01t09:15:30.1239+01:00"), Some(1_793_520_930_123));
        assert_eq!(timestamp("2026-11-01 08:15:30z"), Some(1_793_520_930_000));
        assert_eq!(timestamp("0001-01-01T00:00:00Z"), Some(-62_135_596_800_000));
        for bad in [
            "2026-11-01T08:15:60Z",
            "2026-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-11-01T08:15:30",
            "2026-11-01T08:15:30.Z",
            "2026-11-01T08:15:30+0100",
        ] {
            assert_eq!(timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn money() {
        for (text, want) in [
            ("19.99", Some(1999)),
            ("19.990", Some(1999)),
            ("1999e-2", Some(1999)),
            ("0", Some(0)),
            ("-0.0", Some(0)),
            ("1e6", Some(100_000_000)),
            ("0.5", Some(50)),
        ] {
            assert_eq!(cents(text).ok(), want, "{text}");
        }
        for bad in ["19.995", "-1", "1000000.01", "1e7", "1.", "\"19.99\"", "1e-400"] {
            assert!(cents(bad).is_err(), "{bad}");
        }
    }
}
