//! Fuzzing the parser against the reference's own parser: no input panics, both agree
//! on every message (the same event, or the same dead-letter reason), details are one
//! line; and every edge rule the README documents holds in both.

use dataflows::event::{parse_event, Reason};
use dataflows::rows::DeadLetter;
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000_000;

const VALID: &str = r#"{"event_id":"e1","event_time":"2026-11-01T08:15:30.123Z","event_type":"purchase","user_id":"u1","page":"/checkout","product_id":"P1","category":"books","price":19.99,"quantity":2,"order_id":"o1","device":"mobile","country":"DE","referrer":"search","user_agent":"Mozilla/5.0","ip":"2001:db8::1"}"#;

/// The contract's fields, in its order.
const FIELDS: [&str; 15] = [
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
];

/// A JSON value for a field: of every type, mostly wrong for it.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:e}")),
        "[0-9.eE+-]{1,40}",
        "\"[^\"\\\\]{0,30}\"",
        "\"\\\\u[0-9a-fA-F]{4}\"",
    ]
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = parse_event(bytes, NOW);
    let reference = reference::parse::event(bytes, NOW);
    match (&ours, &reference) {
        (Ok(event), Ok(expected)) => prop_assert_eq!(event, expected),
        (Err(rejection), Err(reason)) => {
            prop_assert_eq!(rejection.reason, *reason, "{} on {:?}", rejection.detail, String::from_utf8_lossy(bytes));
            prop_assert!(!rejection.detail.contains('\n'), "detail is one line: {:?}", rejection.detail);
        }
        _ => prop_assert!(false, "the parsers disagree on {:?}: {:?} vs {:?}", String::from_utf8_lossy(bytes), ours, reference),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&bytes)?;
    }

    #[test]
    fn mutated_valid_messages(edits in prop::collection::vec((0usize..VALID.len(), any::<u8>(), 0u8..3), 1..6)) {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len());
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        check(&bytes)?;
    }

    /// Two fields broken at once: the first in the contract's order decides the reason.
    #[test]
    fn two_fields_at_once(fields in prop::sample::subsequence(FIELDS.to_vec(), 2), values in prop::collection::vec(field_value(), 2)) {
        let v: serde_json::Value = serde_json::from_str(VALID).unwrap();
        let original = v.to_string();
        let mut text = original.clone();
        for (field, value) in fields.iter().zip(&values) {
            text = text.replacen(&format!("\"{field}\":{}", v[*field]), &format!("\"{field}\":{value}"), 1);
        }
        prop_assume!(text != original, "drew the values already there");
        check(text.as_bytes())?;
    }

    #[test]
    fn any_value_in_any_field(field in prop::sample::select(FIELDS.to_vec()), value in field_value()) {
        let v: serde_json::Value = serde_json::from_str(VALID).unwrap();
        let original = v.to_string();
        let text = original.replacen(&format!("\"{field}\":{}", v[field]), &format!("\"{field}\":{value}"), 1);
        prop_assume!(text != original, "drew the value already there");
        check(text.as_bytes())?;
    }
}

/// `VALID` with `field`'s raw JSON replaced by `value`.
fn with(field: &str, value: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(VALID).unwrap();
    let text = v.to_string().replacen(&format!("\"{field}\":{}", v[field]), &format!("\"{field}\":{value}"), 1);
    assert_ne!(text, v.to_string(), "{field} was replaced");
    text.into_bytes()
}

#[test]
fn documented_edge_rules_hold_in_both_parsers() {
    let cases: Vec<(&str, Vec<u8>, Option<Reason>)> = vec![
        ("lower-case z offset", with("event_time", "\"2026-11-01t08:15:30.123z\""), None),
        ("a space between date and time", with("event_time", "\"2026-11-01 08:15:30.123Z\""), None),
        ("a leap second", with("event_time", "\"2026-11-01T08:15:60Z\""), Some(Reason::InvalidField)),
        ("a lone surrogate escape", with("page", "\"\\ud800\""), Some(Reason::InvalidField)),
        ("a NUL character in a string", with("user_agent", "\"a\\u0000b\""), Some(Reason::InvalidField)),
        ("a UTF-8 byte-order mark", [&[0xEF, 0xBB, 0xBF][..], VALID.as_bytes()].concat(), Some(Reason::InvalidJson)),
        ("invalid UTF-8", [VALID.as_bytes(), &[0xFF][..]].concat(), Some(Reason::InvalidJson)),
        ("a blank line", Vec::new(), Some(Reason::InvalidJson)),
        ("a duplicated key", VALID.replacen("\"page\":", "\"page\":\"/x\",\"page\":", 1).into_bytes(), Some(Reason::InvalidField)),
        ("JSON that is not an object", b"[1,2]".to_vec(), Some(Reason::InvalidJson)),
        ("a price exact to the cent with a third zero", with("price", "19.990"), None),
        ("a price finer than a cent", with("price", "19.995"), Some(Reason::InvalidField)),
        ("a price with an exponent", with("price", "1999e-2"), None),
        ("a quantity that is not an integer literal", with("quantity", "2.0"), Some(Reason::InvalidField)),
        ("an empty order_id", with("order_id", "\"\""), None),
        ("a lower-case country", with("country", "\"de\""), Some(Reason::InvalidField)),
        ("a missing required field", with("ip", "null"), Some(Reason::MissingField)),
        ("an unknown event type", with("event_type", "\"refund\""), Some(Reason::UnknownEventType)),
        ("an event 16 minutes ahead of the clock", with("event_time", "\"2027-01-15T08:16:00Z\""), Some(Reason::FutureEventTime)),
        ("a message over 64 KiB", with("user_agent", &format!("\"{}\"", "x".repeat(70_000))), Some(Reason::Oversized)),
    ];
    // NOW is 2027-01-15T08:00:00Z.
    assert_eq!(dataflows::time::format_rfc3339(NOW), "2027-01-15T08:00:00.000Z");
    for (what, bytes, want) in cases {
        let ours = parse_event(&bytes, NOW).map_err(|r| r.reason);
        let theirs = reference::parse::event(&bytes, NOW);
        assert_eq!(ours.as_ref().err(), want.as_ref(), "{what}: {ours:?}");
        assert_eq!(theirs.as_ref().err(), want.as_ref(), "{what} (reference): {theirs:?}");
        if let (Ok(a), Ok(b)) = (&ours, &theirs) {
            assert_eq!(a, b, "{what}");
        }
    }
    let z = parse_event(&with("event_time", "\"2026-11-01t08:15:30.123z\""), NOW).unwrap();
    assert_eq!(z.event_time, 1_793_520_930_123);
    assert_eq!(parse_event(&with("order_id", "\"\""), NOW).unwrap().order_id, None, "an empty order_id is stored as NULL");
}

#[test]
fn dead_letter_payloads_are_text_postgres_can_store() {
    let rejection = |bytes: &[u8]| parse_event(bytes, NOW).unwrap_err();
    let bad_utf8 = b"{\"a\":\"\xFF\x00x\"}".to_vec();
    let letter = DeadLetter::new("file:t:1".into(), rejection(&bad_utf8), &bad_utf8, NOW);
    assert_eq!(letter.payload, "{\"a\":\"\u{FFFD}x\"}", "invalid UTF-8 replaced, NUL dropped");
    let big = with("user_agent", &format!("\"{}\"", "x".repeat(70_000)));
    let letter = DeadLetter::new("file:t:2".into(), rejection(&big), &big, NOW);
    assert_eq!((letter.reason, letter.payload.len()), (Reason::Oversized, 1024), "an oversized payload keeps its first KiB");
    let letter = DeadLetter::new("file:t:3".into(), rejection(b"{"), b"{", NOW);
    assert_eq!(letter.payload, "{", "other payloads are kept whole");
}
