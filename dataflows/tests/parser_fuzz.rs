//! Fuzzing the parser: no input panics, and every message is either an event or a
//! rejection with one of the contract's reasons and a one-line detail.

use dataflows::event::{parse_event, Reason};
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000_000;

const VALID: &str = r#"{"event_id":"e1","event_time":"2026-11-01T08:15:30.123Z","event_type":"purchase","user_id":"u1","page":"/checkout","product_id":"P1","category":"books","price":19.99,"quantity":2,"order_id":"o1","device":"mobile","country":"DE","referrer":"search","user_agent":"Mozilla/5.0","ip":"2001:db8::1"}"#;

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_event(bytes, NOW) {
        Ok(e) => {
            prop_assert!(!e.event_id.is_empty() && !e.user_id.is_empty());
            prop_assert!(e.price_cents.is_none_or(|p| (0..=100_000_000).contains(&p)));
            prop_assert!(e.quantity.is_none_or(|q| (1..=10_000).contains(&q)));
        }
        Err(r) => {
            prop_assert!(Reason::ALL.contains(&r.reason) && r.reason != Reason::Late);
            prop_assert!(!r.detail.contains('\n'), "detail is one line: {:?}", r.detail);
        }
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

    #[test]
    fn any_value_in_any_field(field in prop::sample::select(vec![
        "event_id", "event_time", "event_type", "user_id", "page", "product_id", "category", "price",
        "quantity", "order_id", "device", "country", "referrer", "user_agent", "ip",
    ]), value in prop_oneof![
        Just("null".to_owned()), Just("[]".to_owned()), Just("{}".to_owned()), Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()), any::<f64>().prop_map(|x| format!("{x:e}")),
        "[0-9.eE+-]{1,40}", "\"[^\"\\\\]{0,30}\"", "\"\\\\u[0-9a-fA-F]{4}\"",
    ]) {
        let v: serde_json::Value = serde_json::from_str(VALID).unwrap();
        let text = v.to_string().replacen(&format!("\"{field}\":{}", v[field]), &format!("\"{field}\":{value}"), 1);
        prop_assert_ne!(&text, &v.to_string(), "the field was replaced");
        check(text.as_bytes())?;
    }
}
