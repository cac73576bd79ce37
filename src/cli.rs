//! Command-line parsing helpers shared by the subcommands: durations and timestamps.

use dataflows::time::{parse_rfc3339, Millis};

/// Parses `500ms`, `90s`, `30m`, `1h` or `2d` into milliseconds (positive).
pub fn duration(s: &str) -> Result<Millis, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: Millis = number.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 30m or 1h"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?} has no unit: use ms, s, m, h or d")),
    };
    match n.checked_mul(unit_ms) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("{s:?} must be positive and under 290 million years")),
    }
}

/// Parses an RFC 3339 timestamp.
pub fn timestamp(s: &str) -> Result<Millis, String> {
    parse_rfc3339(s).map_err(|e| format!("{s:?} is not an RFC 3339 timestamp: {}", e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("90s"), Ok(90_000));
        assert_eq!(duration("30m"), Ok(1_800_000));
        assert_eq!(duration("1h"), Ok(3_600_000));
        assert_eq!(duration("250ms"), Ok(250));
        for bad in ["", "10", "s", "-5s", "0s", "1.5h", "9999999999999999999d"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
